"""The text and tables of the subscription report (``subscription_report`` template); user
text (title, currency, ids) is inert everywhere, as in the transaction report."""

from __future__ import annotations

from typing import Any

import pandas as pd

from clvmodels.reporting.content import (
    assumptions_html,
    escape_html,
    md_escape,
    money_text,
    pyramid_html,
    tile,
)
from clvmodels.reporting.tables import inert, ranked_list
from clvmodels.subscriptions import SubscriptionConfig

__all__ = ["subscription_heading", "subscription_first_screen", "subscription_summary",
           "format_subscription_tiers", "format_subscription_backtest", "subscription_method",
           "subscription_since", "format_subscription_migration", "subscription_assumptions",
           "format_subscribers_at_risk"]


def subscription_heading(cfg: Any) -> str:
    source = cfg.input_path or "a generated example log (two plans; churn from Fader & Hardie's 2007 estimates)"
    return f"# {md_escape(cfg.title)}\n\nData: {md_escape(source)}."


def subscription_first_screen(an: Any) -> str:
    """Four headline figures in plain words and the subscriber pyramid (HTML)."""
    cfg, t = an.config, an.tier_table
    cur = cfg.currency
    total, top = t.loc["Total"], t.loc["Platinum"]
    horizon = f"{cfg.horizon} {cfg.period}s"
    miss = (("not measured", "this run had no backtest") if an.backtest_error is None else
            (f"{an.backtest_error:+.1f}%", f"subscribers still active {cfg.holdout_periods} {cfg.period}s after "
                                           f"the backtest's date, forecast against what happened"))
    tiles = [
        tile("Value of today's subscribers over their remaining lifetime (payments still to come)",
              money_text(total["total_clv"], cur),
              f"likely between {money_text(total['total_clv_lower'], cur)} and "
              f"{money_text(total['total_clv_upper'], cur)} ({cfg.interval_level:.0%} range); margin "
              f"{cfg.margin:.0%}, discounted"),
        tile(f"Subscribers expected to leave in the next {horizon}", f"{total['expected_to_leave']:,.0f}",
              f"of the {int(total['subscribers']):,} active now ({total['share_leaving']:.0%})"),
        tile("Platinum subscribers' share of that value", f"{top['share_of_clv']:.0%}",
              f"from the top {int(top['subscribers']):,} subscribers"),
        tile("How far the last backtest missed", *miss),
    ]
    risk = getattr(an, "at_risk", None)
    act = ""
    if risk is not None and len(risk):
        act = (f'<p class="act"><b>What to do:</b> call the Platinum and Gold subscribers most likely to cancel in the '
               f'next {escape_html(horizon)}: {escape_html(money_text(float(risk["value_at_stake"].sum()), cur))} of lifetime value at '
               f'stake over {len(risk):,} subscribers, the most first: <a href="#Subscribers-to-call">the list</a>.</p>')
    return f'<div class="tiles">{"".join(tiles)}</div>{act}{pyramid_html(t, "subscribers")}'


def format_subscribers_at_risk(at_risk: pd.DataFrame, top: int = 50, *, money: str = "", period: str = "month"):
    """The subscribers to call, first ``top`` rows, sortable and filterable in the page."""
    t = at_risk.head(top).rename(columns={
        "tier": "Tier", "why": "Why listed", "periods": f"{period.capitalize()}s subscribed",
        "churn_probability_during_horizon": "Chance of cancelling in the horizon",
        "clv": f"Lifetime value{money}", "value_at_stake": f"Value at stake{money}"})
    t.index = t.index.astype(str)
    t.index.name, t.columns.name = None, "Subscriber"
    styler = inert(t.style).format({"Chance of cancelling in the horizon": "{:.0%}", f"Lifetime value{money}": "{:,.2f}",
                                     f"Value at stake{money}": "{:,.2f}"}, escape="html")
    return ranked_list(styler, f"{len(at_risk):,} subscribers listed, the first {len(t):,} shown")


def subscription_summary(an: Any) -> str:
    """The summary in sentences (Markdown)."""
    cfg, t = an.config, an.tier_table
    lines = [
        f"* **{int(t.loc['Total', 'subscribers']):,} subscribers are active** as of {an.observation_end}; "
        f"{int((~an.forecast['active']).sum()):,} have left since the log began.",
        f"* Over the next {cfg.horizon} {cfg.period}s they are expected to renew "
        f"{t.loc['Total', 'expected_renewals']:,.0f} times in all, and {t.loc['Total', 'expected_to_leave']:,.0f} "
        f"of them to leave.",
        "* Retention rises with tenure: those who stay are the loyal ones"
        + (" (and, as the chosen model says, each subscriber's own propensity to leave changes with tenure)."
           if an.model_name == "BdW" else "."),
    ]
    lines += [f"* {md_escape(n)}" for n in an.notes]
    return "\n".join(lines)


def subscription_assumptions(cfg: Any) -> str:
    d = {f.name: f.default for f in SubscriptionConfig.__dataclass_fields__.values()}
    rows = [("Horizon", f"{cfg.horizon} {cfg.period}s", cfg.horizon == d["horizon"]),
            ("Margin (share of payments that is profit)", f"{cfg.margin:.0%}", cfg.margin == d["margin"]),
            ("Discount rate", f"{cfg.discount_rate:.0%} a year ({cfg.per_period_discount:.2%} a {cfg.period})",
             cfg.discount_rate == d["discount_rate"]),
            ("Currency", cfg.currency or "not given", not cfg.currency),
            ("Renewal period", cfg.period, cfg.period == d["period"])]
    return assumptions_html(rows)


def format_subscription_tiers(t: pd.DataFrame, cfg: Any):
    money = f" ({escape_html(cfg.currency)})" if cfg.currency else ""
    level = f"{cfg.interval_level:.0%}"
    out = pd.DataFrame({
        "Subscribers": t["subscribers"], f"Value{money}": t["total_clv"],
        f"Value, {level} range": [f"{lo:,.0f} to {hi:,.0f}" for lo, hi in zip(t["total_clv_lower"], t["total_clv_upper"],
                                                                              strict=True)],
        "Share of value": t["share_of_clv"], "Mean value": t["mean_clv"],
        f"Renewals, next {cfg.horizon}": t["expected_renewals"],
        f"Expected to leave, next {cfg.horizon}": t["expected_to_leave"],
        f"Leaving, {level} range": [f"{lo:,.0f} to {hi:,.0f}" for lo, hi in zip(t["expected_to_leave_lower"],
                                                                                t["expected_to_leave_upper"],
                                                                                strict=True)],
    })
    out.index = out.index.astype(str).rename(None)
    out.columns.name = "Tier"
    return inert(out.style).format({"Subscribers": "{:,.0f}", f"Value{money}": "{:,.0f}", "Share of value": "{:.0%}",
                                     "Mean value": "{:,.2f}", f"Renewals, next {cfg.horizon}": "{:,.0f}",
                                     f"Expected to leave, next {cfg.horizon}": "{:,.0f}"}, escape="html")


def format_subscription_backtest(table: pd.DataFrame):
    out = table.rename(columns={"log_loss": "Log-loss (lower is better)", "predicted_survivors": "Forecast survivors",
                                "actual_survivors": "Actual survivors", "survivors_pct_error": "Error %",
                                "log_likelihood": "Log-likelihood (fit)", "bic": "BIC", "chosen": "Chosen"})
    out.index = out.index.astype(str).rename(None)
    out.columns.name = "Model"
    return inert(out.style).format(precision=3, escape="html")


def subscription_method(an: Any) -> str:
    m = an.model
    params = ", ".join(f"{k} = {v:.3g}" for k, v in m.params_.items())
    text = (f"Churn follows the **{m._long_name}** model ({md_escape(m._reference.rstrip('.'))}), fitted by maximum "
            f"likelihood on {m.n_customers_:,} subscribers (those who left after each number of {an.config.period}s "
            f"and those still active after each): {params}.")
    if an.backtest is not None:
        bt = an.backtest
        text += (f" It was chosen by a backtest: both models were fitted on the log as of "
                 f"{bt.attrs['calibration_end']} and asked which of the {bt.attrs['subscribers']:,} subscribers "
                 f"active then would still be active {bt.attrs['holdout_periods']} {an.config.period}s later; the "
                 "lower log-loss (a proper scoring rule for probabilities) wins.")
    text += (" A subscriber's value is the margin on the payments still to come, each discounted: the payment "
             "times the discounted expected residual lifetime (DERL, Fader & Hardie 2010) for their tenure. "
             "Ranges come from the uncertainty of the model's parameters (and, for leavers, the chance of "
             "who leaves).")
    return text


def subscription_since(since: dict | None, cfg: Any) -> str:
    if not since or not since.get("available"):
        return md_escape((since or {}).get("reason", "No comparison with an earlier run."))
    cur = cfg.currency
    change = since["value_now"] - since["value_then"]
    lines = [
        f"Compared with the run as of **{md_escape(since['previous_end'])}** ({since['elapsed']} {cfg.period}s "
        "earlier):",
        "",
        f"* **Valuable subscribers lost**: {since['lost']['customers']:,} who were Platinum or Gold then have left; "
        f"the earlier run valued them at {money_text(since['lost']['value'], md_escape(cur))}.",
        f"* **How the last forecast did**: it expected {since['predicted_leavers']:,.0f} of the subscribers active then "
        f"to leave in the {since['elapsed']} {cfg.period}s since; {since['actual_leavers']:,} did.",
        f"* **Value of the active subscribers** is {money_text(since['value_now'], md_escape(cur))} now against "
        f"{money_text(since['value_then'], md_escape(cur))} then ({money_text(change, md_escape(cur))}).",
    ]
    return "\n".join(lines)


def format_subscription_migration(migration: pd.DataFrame):
    out = migration.copy()
    out.index = out.index.astype(str).rename(None)
    out.columns.name = "Tier then \\ now"
    return inert(out.style).format("{:,.0f}", escape="html")
