"""The text and tables of the report: headline figures, sentences, caveats and formatted tables,
with every piece of user text inert (escaped for HTML and Markdown)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from clvmodels._text import md_escape
from clvmodels._validation import (
    UNIT_NAMES,
)
from clvmodels.engine import engine_named
from clvmodels.models.gamma_gamma import spend_frequency_check
from clvmodels.reporting.config import ReportConfig
from clvmodels.since import headline as since_headline


def _money(v: float, currency: str = "") -> str:
    """An amount for Markdown, the currency label escaped."""
    return money_text(v, md_escape(currency))


def escape_html(text: Any) -> str:
    """Text for HTML, inert (user text never becomes markup)."""
    import html as _html

    return _html.escape(str(text), quote=True)


def tile(label: str, big: str, small: str) -> str:
    return (f'<div class="tile"><div class="tile-label">{escape_html(label)}</div><div class="tile-big">{escape_html(big)}</div>'
            f'<div class="tile-small">{escape_html(small)}</div></div>')


def first_screen(analysis: Any) -> str:
    """The answer in 30 seconds (HTML): four headline figures in plain words and the customer
    pyramid. Model names and statistical terms stay in the method section."""
    cfg = analysis.config
    cur = cfg.currency
    t = analysis.tier_table
    total, top = t.loc["Total"], t.loc["Platinum"]
    horizon = f"{cfg.horizon:g} {cfg.unit_name}"
    value_small = ""
    if "total_clv_lower" in t.columns:
        value_small = (f"likely between {money_text(total['total_clv_lower'], cur)} and "
                       f"{money_text(total['total_clv_upper'], cur)} ({cfg.interval_level:.0%} range)")
    err = analysis.backtest_error
    if err is not None:
        e = err.loc["Total"]
        miss = (f"{e['purchases_pct_error']:+.1f}%", f"purchases, against what customers then did over "
                f"{_holdout_words(analysis)} (revenue {e['revenue_pct_error']:+.1f}%); per tier typically "
                f"{100 * err.attrs['sigma_revenue']:.0f}%")
    else:
        miss = ("not measured", "this run had no backtest: too little history before the forecast date")
    if "total_lifetime_clv" in t.columns:
        value_small += ("; " if value_small else "") + (
            f"{money_text(total['total_lifetime_clv'], cur)} over their remaining lifetime")
    tiles = [
        tile(f"Value of the customers over the next {horizon}", money_text(total["total_clv"], cur), value_small),
        tile(f"Customers expected to leave in the next {horizon}", f"{total['expected_to_leave']:,.0f}",
              f"of the {total['expected_active_now']:,.0f} still active ({total['share_of_active_leaving']:.0%}); "
              f"another {total['expected_gone_now']:,.0f} have probably left already"),
        tile("Platinum customers' share of that value", f"{top['share_of_clv']:.0%}",
              f"from the top {top['share_of_customers']:.0%} of customers ({int(top['customers']):,})"),
        tile("How far the last backtest missed", *miss),
    ]
    return f'<div class="tiles">{"".join(tiles)}</div>{_act_lines(analysis)}{pyramid_html(t, "customers")}'


def _act_lines(analysis: Any) -> str:
    """What to do and what changed, one line each (HTML) under the headline figures."""
    cfg = analysis.config
    risk = getattr(analysis, "at_risk", None)
    out = []
    if risk is not None and len(risk):
        at_risk = float(risk["value_at_risk"].sum())
        out.append(f'<p class="act"><b>What to do:</b> contact the {len(risk):,} Platinum and Gold customers likely '
                   f'to buy nothing in the next {escape_html(f"{cfg.horizon:g} {cfg.unit_name}")} - '
                   f'{escape_html(money_text(at_risk, cfg.currency))} of value at risk, the most unusual risk first: '
                   '<a href="#Valuable-customers-at-risk">the list</a>.</p>')
    changed = since_headline(getattr(analysis, "since", None), cfg.currency)
    if changed:
        out.append(f'<p class="act"><b>What changed:</b> {escape_html(changed)}</p>')
    return "".join(out)


def pyramid_html(t: pd.DataFrame, who: str) -> str:
    """The pyramid graphic (HTML): a band per tier with its count (column ``who``, e.g.
    "customers" or "subscribers") and share of value."""
    widths = {"Platinum": 46, "Gold": 62, "Iron": 80, "Lead": 100}
    bands = []
    for tier in ("Platinum", "Gold", "Iron", "Lead"):
        row = t.loc[tier]
        share = "" if pd.isna(row["share_of_clv"]) else f" &middot; {row['share_of_clv']:.0%} of value"
        bands.append(f'<div class="band band-{tier.lower()}" style="width:{widths[tier]}%">'
                     f'<b>{tier}</b> &middot; {int(row[who]):,} {who}{share}</div>')
    return (f'<div class="pyramid" role="img" aria-label="The {who[:-1]} pyramid: {who} per tier and their '
            'share of value">' + "".join(bands) + "</div>")


def _holdout_words(analysis: Any) -> str:
    sc = analysis.scorecard
    if sc is None:
        return "the holdout"
    return f"{sc.info['holdout_length']:g} {UNIT_NAMES[sc.info['time_unit']]}"


def money_text(v: float, currency: str = "") -> str:
    """An amount as plain text (escape it for where it goes)."""
    text = f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}"
    return f"{currency} {text}" if currency else text


def plain_notes(analysis: Any) -> list[str]:
    """Caveats a manager needs, in plain words (the statistical detail is in the method section)."""
    notes = []
    model = analysis.model
    info = getattr(model, "fit_info_", None) or {}
    for text in info.get("limits", []):
        if "No dropout" in text:
            notes.append("The data show no sign of customers leaving: nearly every customer counts as active.")
        elif "Dropout barely differs" in text or "Dropout rates barely differ" in text:
            notes.append("Customers seem to leave at much the same rate: churn is estimated for the customer base "
                         "as a whole more than for each customer.")
    weak = model.poorly_identified_ if hasattr(model, "poorly_identified_") else []
    if set(weak) & _DROPOUT_PARAMS:
        notes.append("Churn figures are rough: the data say little about how customers leave.")
    elif weak:
        notes.append("Purchase figures are rough: the data say little about how often customers buy.")
    constant = getattr(getattr(analysis, "spend", None), "constant_spend", None)
    if constant is not None:
        notes.append(f"Every purchase is taken to be worth the same ({_money(constant, analysis.config.currency)}): "
                     "the log shows almost no price variation, so revenue and value follow purchases alone.")
    trunc = getattr(analysis, "left_truncation", None)
    if trunc is not None and trunc.detected:
        notes.append(trunc.describe())
    return notes


def _when_they_leave(analysis: Any) -> str:
    """A sentence on the months customers leave most, when the model has a dropout season."""
    model = getattr(analysis, "model", None)
    if not getattr(model, "dropout_harmonics", 0) or getattr(model, "calendar_", None) is None:
        return ""
    months = model.monthly_pattern(dropout=True)
    hi = str(months.idxmax())
    return f" Customers leave most in {hi} (about {months[hi]:.1f} times an average month's rate)."


def executive_summary(analysis: Any) -> str:
    """The sentences under the headline figures (Markdown): the horizon in words, purchases and
    revenue, the acquisition budget, what a purchase is, and plain caveats."""
    cfg = analysis.config
    cur = cfg.currency
    tier_table, budget = analysis.tier_table, analysis.budget
    total = tier_table.loc["Total"]
    trunc = getattr(analysis, "left_truncation", None)
    budget_note = ""
    if trunc is not None and trunc.detected and not trunc.fits_cohort:
        budget_note = (" (not reliable here: the models learn from every customer, long-standing ones included)"
                       if trunc.usable_cohort else
                       " (not reliable here: the log holds no cohort of genuinely new customers)")
    lines = [
        f"**The next {cfg.horizon:g} {cfg.unit_name}** after {analysis.observation_end}, for "
        f"{analysis.customers:,} customers. Value is margin ({cfg.margin:.0%}) on expected spend, discounted at "
        f"{cfg.discount_rate:.0%} a year"
        + (f", net of a cost to serve of {cfg.cost_to_serve:g} per {cfg.unit_name[:-1]} while active"
           if cfg.cost_to_serve else "") + ".",
        "",
        f"* **Expected purchases**: {total['expected_purchases']:,.0f}, worth "
        f"{_money(total['expected_revenue'], cur)} in revenue. A purchase is a customer's buying day: "
        "everything a customer bought on one calendar day counts as one purchase.",
        f"* **Churn**: about {total['expected_gone_now']:,.0f} customers are probably gone already; of the "
        f"{total['expected_active_now']:,.0f} still active, about {total['expected_to_leave']:,.0f} are expected to "
        "leave during the horizon - the ones a retention effort can still reach." + _when_they_leave(analysis),
        f"* **Acquisition budget**: a comparable new customer is worth {_money(budget['budget'], cur)} "
        f"over the horizon (first purchase included) - the most to spend to win one and break even{budget_note}"
        + (f"; over their whole expected lifetime {_money(budget['lifetime_budget'], cur)}"
           if "lifetime_budget" in budget.index else "") + ".",
    ]
    notes = plain_notes(analysis)
    if notes:
        lines.append("* **Read with care**: " + " ".join(notes))
    if trunc is not None and trunc.detected:
        lines.append("* **Customers from before the log**: see the note above.")
    return "\n".join(lines)


def assumptions_box(cfg: Any) -> str:
    """The settings behind every value (HTML), each marked when it is a default rather than the
    user's choice."""
    defaults = {f.name: f.default for f in ReportConfig.__dataclass_fields__.values()}
    unit = cfg.unit_name
    rows = [
        ("Horizon", f"{cfg.horizon:g} {unit}", cfg.horizon == defaults["horizon"]),
        ("Margin (share of revenue that is profit)", f"{cfg.margin:.0%}", cfg.margin == defaults["margin"]),
        ("Discount rate", f"{cfg.discount_rate:.0%} a year", cfg.discount_rate == defaults["discount_rate"]),
        ("Cost to serve", f"{cfg.cost_to_serve:g} per {unit[:-1]} while active" if cfg.cost_to_serve else "none",
         cfg.cost_to_serve == defaults["cost_to_serve"]),
        ("Currency", cfg.currency or "not given", cfg.currency_is_default),
        ("Time unit", unit, cfg.time_unit == defaults["time_unit"]),
    ]
    return assumptions_html(rows)


def assumptions_html(rows: list[tuple[str, str, bool]]) -> str:
    """The assumptions box (HTML) from (setting, value, is it a default) rows, all text inert."""
    body = "".join(
        f"<tr><th scope=\"row\">{escape_html(name)}</th><td>{escape_html(value)}</td><td>"
        + ('<span class="default">default - set it to your own</span>' if is_default else "yours")
        + "</td></tr>" for name, value, is_default in rows)
    return ('<div class="assumptions"><table><caption>Assumptions behind every value</caption>'
            f"<tbody>{body}</tbody></table></div>")


def report_heading(cfg: ReportConfig) -> str:
    """The report's title and data source (Markdown), with user text escaped."""
    return f"# {md_escape(cfg.title)}\n\nData: {md_escape(cfg.data_label)}."


#: the parameters of each family that carry dropout (churn)
_DROPOUT_PARAMS = {"a", "b", "s", "beta"}


def identification_notes(model: Any) -> list[str]:
    """Plain sentences on what the data could not pin down: a fit that ran to a limiting model
    (said as that model), and parameters with standard errors so large that the figures
    resting on them are uncertain (churn, when they are the dropout parameters)."""
    info = getattr(model, "fit_info_", None) or {}
    notes = [str(t) for t in info.get("limits", [])]
    weak = model.poorly_identified_ if hasattr(model, "poorly_identified_") else []
    if weak:
        names = ", ".join(weak)
        what = ("the churn figures rest on them" if set(weak) & _DROPOUT_PARAMS
                else "the purchase-rate figures rest on them")
        notes.append(f"The data pin down {names} only poorly (standard errors larger than the estimates "
                     f"themselves); {what}, so read them as rough.")
    if info.get("flat_ridge"):
        notes.append("The fit ended on a flat ridge of the likelihood: other parameter values fit the data "
                     "equally well.")
    return notes


def _spend_words(spend: Any) -> str:
    """How spend per purchase is modelled, in words (with why, when it is taken as constant)."""
    constant = getattr(spend, "constant_spend", None) if spend is not None else None
    if constant is None:
        return "spend per purchase the Gamma-Gamma model (Fader & Hardie 2013)"
    return "spend per purchase constant: " + " ".join(identification_notes(spend)).rstrip(".")


def _backtests(b: dict) -> str:
    """The covariate backtest's origins in words: "backtest" or "3 backtests (rolling origins)"."""
    n = int(b.get("origins", 1))
    return "backtest" if n == 1 else f"{n} backtests (rolling origins)"


def model_paragraph(analysis: Any) -> str:
    """Which purchase model the forecast uses, why, and its reference (Markdown)."""
    model = analysis.model
    if analysis.selection is None:
        lead = ("There was no backtest in this run (no calibration window), so the model is BG/NBD and the "
                "intervals do not include the model's own error. ")
        if analysis.config.events_path:
            # events enter the forecast only as calendar candidates of the backtest
            lead += ("The events table given was not used: calendar events enter through the backtest's "
                     "candidate models, and this run had no backtest. ")
    else:
        lead = ""
    cov = getattr(analysis, "covariate_model", None)
    if cov is not None:
        names = ", ".join(md_escape(c) for c in analysis.config.covariates)
        text = lead + (f"Purchases and dropout follow the **{cov.model._long_name}** model (Fader & Hardie, "
                       f"\"Incorporating time-invariant covariates into the Pareto/NBD and BG/NBD models\"): each "
                       f"customer's purchase and dropout parameters follow their attributes ({names}), "
                       f"{len(cov.models)} distinct combinations; {_spend_words(analysis.spend)}. ")
    else:
        text = lead + (f"Purchases and dropout follow the **{model._long_name}** model "
                       f"({model._reference.rstrip('.')}); {_spend_words(analysis.spend)}. ")
    if analysis.selection is not None:
        text += analysis.selection.reason + " "
    if cov is not None and analysis.attributes is not None and analysis.attributes.backtest:
        b = analysis.attributes.backtest
        scored = (f"on the same {_backtests(b)} by the same rule its tier cells were off by {b['tier_pct']:.1f}% "
                  f"on average (without: {b['chosen_tier_pct']:.1f}%)")
        text += (f"With the attributes, {scored}, so the forecasts use them" if b.get("better") else
                 f"With the attributes, {scored}; the forecasts use them because use_covariates is 'yes'")
        text += (f"; the figures of one customer below show the most common combination of attributes "
                 f"({md_escape(cov.labels[cov.reference_row])}). ")
    if hasattr(model, "season_in_words"):
        text += model.season_in_words() + " "
        # the event names are the user's: text, never markup
        text += md_escape(model.events_in_words()) + " " if model.events else ""
    notes = identification_notes(model)
    if notes:
        text += " ".join(notes) + " "
    if getattr(analysis.spend, "constant_spend", None) is None:
        words = spend_frequency_check(analysis.rfm)["words"]
        text += words + " " if words else ""
    return text + "Parameter intervals below are 95% and computed on the log scale."


def backtest_reading(analysis: Any) -> str:
    """The backtest in plain words (Markdown): what was predicted, what happened, which way the
    model erred, and what that means for the forecast."""
    sc, err = analysis.scorecard, analysis.backtest_error
    m = sc.metrics
    name = sc.info.get("model", m.index[0])
    row = m.loc[name]
    t = err.loc["Total"]
    direction = "fewer" if row["aggregate_pct_error"] < 0 else "more"
    lines = [
        f"**How to read this.** The model was fitted to the data up to {md_escape(analysis.calibration_end)} "
        f"and asked to predict the {sc.info['holdout_length']:g} {UNIT_NAMES[sc.info['time_unit']]} "
        f"that followed. It predicted {row['predicted_purchases']:,.0f} purchases; customers made "
        f"{row['actual_purchases']:,.0f}, so it predicted {abs(row['aggregate_pct_error']):.1f}% {direction} "
        f"than happened (revenue: {t['revenue_pct_error']:+.1f}%).",
        f"Customer by customer it was off by {row['mae']:.2f} purchases on average, against "
        f"{m.loc['naive rate', 'mae']:.2f} for a naive rate model"
        + (f" and {m.loc['gradient boosting', 'mae']:.2f} for gradient boosting" if "gradient boosting" in m.index else "")
        + f". Ranking customers by its predictions puts {sc.deciles.query('model == @name and decile == 1')['share_of_actual'].iloc[0]:.0%} "
        "of the actual purchases in the top tenth (the decile table at the end of this section).",
        f"Per tier its revenue was off by a typical {100 * err.attrs['sigma_revenue']:.0f}%; the intervals in this "
        "report are widened by errors of that size, so they are as wide as the model's own track record says "
        "they should be.",
    ]
    if "spearman" in m.columns and "naive rate" in m.index and pd.notna(m.loc["naive rate", "spearman"]):
        mine, naive = float(row["spearman"]), float(m.loc["naive rate", "spearman"])
        if naive >= mine - 0.01:
            lines.append(
                f"**Ranking customers**: a naive rate model (each customer's own past purchase rate) ranks customers "
                f"as well as this model or better (Spearman {naive:.3f} against {mine:.3f}). The model's strength is "
                "in the totals, churn and value per tier; for ordering individual customers, treat its ranking as "
                "no better than their past rate.")
    for note in sc.info.get("notes", []):
        lines.append(f"*{md_escape(note)}*")
    return "\n\n".join(lines)


def md_since(since: Any) -> str:
    """The since-the-last-run section's text (Markdown)."""
    if since is None:
        return "No comparison with an earlier run."
    return since.summary()


def md_what_if(what_if: pd.DataFrame, dropout_reduction: float, horizon: str, currency: str = "") -> str:
    """The retention what-if in one sentence (Markdown): the horizon's change beside the lifetime's."""
    tot = what_if.loc["Total"]
    text = (f"Dropout lower by **{dropout_reduction:.0%}** adds {_money(tot['change'], currency)} "
            f"({tot['change_pct']:+.1f}%) over the next {horizon}")
    if "lifetime_change" in what_if.columns:
        top = what_if.loc[["Platinum", "Gold"], "lifetime_change"].sum()
        text += (f", and {_money(tot['lifetime_change'], currency)} ({tot['lifetime_change_pct']:+.1f}%) over the "
                 f"customers' remaining lifetime, {_money(top, currency)} of it from Platinum and Gold: retention "
                 "is worth far more than one horizon shows")
    return text + "."


def data_overview(rfm: pd.DataFrame) -> pd.DataFrame:
    """A few facts about the customer base in the RFM table."""
    repeat = rfm["frequency"] > 0
    return overview_table(rfm.attrs.get("time_unit", ""), rfm.attrs.get("observation_end", "n/a"), len(rfm),
                          int(repeat.sum()), int(rfm["frequency"].sum()), float(rfm["T"].mean()),
                          float(rfm["frequency"].mean()),
                          float(rfm.loc[repeat, "monetary_value"].mean()) if repeat.any() else None)


def scoring_note(analysis: Any) -> str:
    """One sentence (Markdown) when the customer table stayed in the engine; empty otherwise."""
    if getattr(analysis, "scoring", "memory") != "engine":
        return ""
    where = engine_named(analysis.config.engine).label
    shown = (f"figures of individual customers show a random sample of {len(analysis.rfm):,}"
             if len(analysis.rfm) < analysis.customers else "figures of individual customers show all of them")
    return (f"The {analysis.customers:,} customers were scored inside {where} (the customer table never came "
            f"into this process): the tables above and below cover everyone; {shown}. The per-customer "
            "forecast is in `forecast.parquet/` beside this report, without per-customer intervals.")


def overview_table(time_unit: str, observation_end: str, customers: int, repeat_buyers: int,
                   repeat_purchases: int, mean_T: float, mean_frequency: float,
                   mean_spend: float | None) -> pd.DataFrame:
    """The data overview's table from its numbers (in memory or aggregated by an engine)."""
    unit = UNIT_NAMES.get(time_unit, "time units")
    facts = {
        "Customers": f"{customers:,}",
        "Observation ends": observation_end,
        "Repeat buyers": f"{repeat_buyers:,} ({repeat_buyers / customers:.0%})",
        "Repeat purchases": f"{repeat_purchases:,}",
        f"Mean time observed ({unit})": f"{mean_T:.1f}",
        "Mean repeat purchases per customer": f"{mean_frequency:.2f}",
        "Mean spend per repeat purchase (repeat buyers)": f"{mean_spend:,.2f}" if mean_spend is not None else "n/a",
    }
    out = pd.DataFrame({"Value": list(facts.values())}, index=pd.Index(list(facts), name=None))
    out.columns.name = "Fact"
    return out


# ------------------------------------------------------------------ running templates


def md_customer_table(attributes: Any) -> str:
    """The customer table's section in sentences (Markdown); user text escaped."""
    if attributes is None:
        return ("No customer table was given. With one (`--customers customers.csv`, one row per customer), "
                "`-p covariates [channel, region]` measures how attributes change purchasing, dropout and spend, "
                "and `-p segment_col region` summarises the forecast per segment.")
    lines = []
    if attributes.effects is not None and len(attributes.effects):
        ref = attributes.effects.attrs.get("reference", {})
        if ref:
            lines.append("Effects are against the reference customers: "
                         + ", ".join(f"{md_escape(k)} = {md_escape(v)}" for k, v in ref.items()) + ".")
        lines += [f"* {md_escape(w)}" for w in attributes.effects["words"]]
    if attributes.tests is not None:
        for process, row in attributes.tests.iterrows():
            verdict = "matter" if row["p_value"] < 0.05 else "do not clearly matter"
            lines.append(f"* For {md_escape(process)} the attributes {verdict} (likelihood-ratio test: "
                         f"statistic {row['statistic']:.1f} on {row['df']:.0f} degrees of freedom, p = {row['p_value']:.2g}).")
    if attributes.backtest:
        b = attributes.backtest
        better = "better" if b.get("better") else "no better"
        lines.append(f"* On the {_backtests(b)} of the model choice, scored by its rule, {md_escape(b['model'])} "
                     f"forecast the holdouts {better} than the chosen {md_escape(b['chosen'])}: tier cells off by "
                     f"{b['tier_pct']:.1f}% against {b['chosen_tier_pct']:.1f}% on average, score {b['score']:.3f} "
                     f"against {b['chosen_score']:.3f} (1 = the better); at the latest origin mean squared error "
                     f"{b['mse']:.4g} against {b['chosen_mse']:.4g}, total {b['aggregate_pct_error']:+.1f}%. "
                     + (f"The forecasts in this report come from {md_escape(b['model'])}: every customer's "
                        "purchase and dropout parameters follow their attributes."
                        if b.get("used") else
                        f"The forecasts in this report come from {md_escape(b['chosen'])} without the attributes."))
    lines += [f"* {md_escape(n)}" for n in attributes.notes]
    return "\n".join(lines) if lines else "The customer table was read; no covariates or segment were named."


