"""The report's tables as the page shows them (pandas Stylers): labelled columns, numbers
formatted per column, every label inert (customer ids and currency labels never become markup),
and the lists of people to act on sortable and filterable. Split from
:mod:`clvmodels.reporting.content` (which keeps the prose)."""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["inert", "ranked_list", "format_selection", "format_scorecard", "format_backtest_tiers", "format_deciles",
           "format_at_risk", "format_lost_customers", "format_migration", "format_since_accuracy", "format_tier_table",
           "format_what_if", "format_cash_flow", "format_tier_overview", "format_segments"]


def format_tier_overview(tier_table: pd.DataFrame, *, clv: str = "CLV", money: str = ""):
    """The short tier table of the first screen: customers, value and its share, purchases and churn."""
    t = tier_table
    out = pd.DataFrame({
        "Customers": t["customers"].to_numpy(), f"Value ({clv}){money}": t["total_clv"].to_numpy(),
        "Share of value": t["share_of_clv"].to_numpy(), "Expected purchases": t["expected_purchases"].to_numpy(),
        "Probably gone now": t["expected_gone_now"].to_numpy(),
        "Expected to leave": t["expected_to_leave"].to_numpy(),
    }, index=t.index.astype(str).rename(None))
    out.columns.name = "Tier"
    return inert(out.style).format({"Customers": "{:,.0f}", f"Value ({clv}){money}": "{:,.0f}",
                                     "Share of value": "{:.0%}", "Expected purchases": "{:,.0f}",
                                     "Probably gone now": "{:,.0f}", "Expected to leave": "{:,.0f}"},
                                    na_rep="", escape="html")


_METRIC_LABELS = {
    "predicted_purchases": "Predicted purchases", "actual_purchases": "Actual purchases",
    "aggregate_pct_error": "Total error %", "mse": "MSE per customer", "mae": "MAE per customer", "rmse": "RMSE per customer",
    "auc": "AUC (any purchase)", "brier": "Brier score", "gini": "Normalised Gini", "spearman": "Spearman",
    "spend_mae": "Spend MAE (buyers)", "log_likelihood": "Log-likelihood", "bic": "BIC",
    "fit_seconds": "Fit time (s)", "chosen": "Chosen", "revenue_pct_error": "Revenue total error %",
    "tier_pct_error": "Mean tier error %", "score": "Score (1 = best)", "origins": "Origins",
}


def _labelled(df: pd.DataFrame, index_label: str) -> pd.DataFrame:
    out = df.rename(columns=_METRIC_LABELS)
    out.index = out.index.astype(str)
    out.index.name = None
    out.columns.name = index_label
    return out


def inert(styler: Any) -> Any:
    """A Styler whose row and column labels are shown as text: customer ids, currency labels and
    other user text never become markup (pandas' Styler does not escape by default)."""
    return styler.format_index(escape="html", axis=0).format_index(escape="html", axis=1)


def format_selection(selection: Any):
    """The model comparison of the backtest as a formatted table."""
    t = selection.table.drop(columns=[c for c in ("fit_seconds",) if c in selection.table.columns])
    t = _labelled(t, "Model")
    t["Chosen"] = t["Chosen"].map({True: "yes", False: ""})
    return inert(t.style).set_caption("Purchase models compared on the backtest holdout").format({"MSE per customer": "{:.4f}", "MAE per customer": "{:.3f}", "RMSE per customer": "{:.3f}", "Total error %": "{:+.1f}",
                           "Predicted purchases": "{:,.0f}", "Actual purchases": "{:,.0f}",
                           "Log-likelihood": "{:,.1f}", "BIC": "{:,.1f}", "Revenue total error %": "{:+.1f}",
                           "Mean tier error %": "{:.1f}", "Score (1 = best)": "{:.3f}", "Origins": "{:,.0f}"},
                          na_rep="", escape="html")


def format_scorecard(scorecard: Any):
    """The backtest metrics of the model and the baselines as a formatted table."""
    t = _labelled(scorecard.metrics, "Model")
    fmt = {c: "{:.3f}" for c in t.columns}
    fmt.update({"Predicted purchases": "{:,.0f}", "Actual purchases": "{:,.0f}", "Total error %": "{:+.1f}",
                "Spend MAE (buyers)": "{:,.2f}"})
    return inert(t.style).set_caption("The chosen model against the baselines on the backtest holdout").format(fmt, na_rep="n/a", escape="html")


def format_backtest_tiers(error: pd.DataFrame):
    """Predicted vs actual purchases and revenue per tier in the backtest."""
    t = error[["predicted_purchases", "actual_purchases", "purchases_pct_error", "predicted_revenue",
               "actual_revenue", "revenue_pct_error"]].rename(columns={
        "predicted_purchases": "Predicted purchases", "actual_purchases": "Actual purchases",
        "purchases_pct_error": "Purchases error %", "predicted_revenue": "Predicted revenue",
        "actual_revenue": "Actual revenue", "revenue_pct_error": "Revenue error %"})
    t.index.name = None
    t.columns.name = "Tier"
    return inert(t.style).set_caption("Backtest by tier: what the model predicted and what happened").format({"Predicted purchases": "{:,.0f}", "Actual purchases": "{:,.0f}", "Purchases error %": "{:+.1f}",
                           "Predicted revenue": "{:,.0f}", "Actual revenue": "{:,.0f}", "Revenue error %": "{:+.1f}"},
                          na_rep="n/a", escape="html")


def format_deciles(deciles: pd.DataFrame):
    """Decile table: customers in ten groups by predicted purchases, per model (the model's name
    once above its three columns, so the columns stay narrow enough for a phone)."""
    quantities = {"mean_predicted": "predicted", "mean_actual": "actual", "share_of_actual": "share of actual"}
    wide = deciles.pivot(index="decile", columns="model", values=list(quantities)).rename(columns=quantities, level=0)
    # the models in the table's order (the chosen one first), each over its three columns
    wide = wide.swaplevel(axis=1)[list(dict.fromkeys(deciles["model"]))]
    wide.columns.names = ["Model", "Decile"]
    wide.index.name = None
    return inert(wide.style).set_caption("Customers in ten equal groups by predicted purchases (decile 1: the highest "
                                         "predicted): mean predicted and actual purchases, and each group's share of "
                                         "all actual purchases").format(
        {c: ("{:.1%}" if c[1] == "share of actual" else "{:.2f}") for c in wide.columns}, escape="html").set_table_styles(
        [{"selector": "th.col_heading.level0", "props": "text-align: center;"}], overwrite=False)


def format_at_risk(at_risk: pd.DataFrame, top: int = 50, *, unit: str = "weeks", money: str = ""):
    """The at-risk list's first ``top`` rows as a formatted table, sortable by any column and
    filterable in the page (by the report page's own script; no external one)."""
    since = f"{unit.capitalize()} since last purchase"
    gap = f"Usual gap ({unit})"
    spend = "Spend so far" + money
    # what decides the listing first, beside the reason: the rest scrolls into view
    first = [c for c in ("tier", "why", "p_no_purchase_in_horizon", "risk_against_tier", "value_at_risk")
             if c in at_risk.columns]
    t = at_risk.head(top)
    t = t[first + [c for c in t.columns if c not in first]].rename(columns={
        "tier": "Tier", "why": "Why listed", "last_purchase": "Last purchase", "time_since_last_purchase": since,
        "usual_gap": gap, "purchases_so_far": "Purchases so far", "spend_so_far": spend,
        "p_alive": "Chance still active", "p_alive_last_run": "Chance still active at the last run",
        "p_no_purchase_in_horizon": "Chance of no purchase in the horizon",
        "risk_against_tier": "Times the tier's chance of no purchase",
        "clv": "Expected value" + money, "value_if_retained": "Value if retained" + money,
        "value_at_risk": "Value at risk" + money})
    t.index = t.index.astype(str)
    t.columns.name = "Customer"
    t.index.name = None
    fmt = {since: "{:,.1f}", gap: "{:,.1f}", "Purchases so far": "{:,.0f}", spend: "{:,.2f}",
           "Chance still active": "{:.0%}", "Chance still active at the last run": "{:.0%}",
           "Chance of no purchase in the horizon": "{:.0%}", "Times the tier's chance of no purchase": "{:.1f}",
           "Expected value" + money: "{:,.2f}", "Value if retained" + money: "{:,.2f}",
           "Value at risk" + money: "{:,.2f}"}
    styler = inert(t.style).format({k: v for k, v in fmt.items() if k in t.columns}, escape="html", na_rep="")
    shown = f"the first {len(t):,} shown" if len(t) < len(at_risk) else "all shown"
    qualified = int(at_risk.attrs.get("qualified", len(at_risk)))
    listed = (f"{qualified:,} customers qualify; the {len(at_risk):,} most at risk for their tier are listed (and in "
              f"at_risk_customers.csv), {shown}" if qualified > len(at_risk) else
              f"{len(at_risk):,} customers listed, {shown}")
    return ranked_list(styler, listed if len(at_risk) else
                       "No Platinum or Gold customer is more likely than not to buy nothing in the horizon and twice as likely "
                       "as their tier's average")


def ranked_list(styler: Any, caption: str) -> Any:
    """A list of people to act on as the page shows it: the reasons left-aligned, the caption
    (how many listed, how many shown) above it, sortable and filterable by the page's script."""
    if "Why listed" in styler.data.columns:
        # the reason wraps in a column of its own width, so the numbers beside it stay in view
        styler = styler.set_properties(subset=["Why listed"], **{"text-align": "left", "white-space": "normal",
                                                                 "min-width": "16em", "max-width": "26em"})
    styler = styler.set_table_styles([{"selector": "caption", "props": "text-align: left; caption-side: top"}],
                                     overwrite=False)
    return styler.set_caption(caption).set_table_attributes('class="sortable filterable"')


def format_lost_customers(lost: pd.DataFrame, top: int = 20, *, money: str = ""):
    """The valuable customers lost since the earlier run, most valuable then first."""
    t = lost.head(top).rename(columns={"tier_then": "Tier then", "value_then": f"Value then{money}",
                                       "p_alive_now": "Chance still active now"})
    t.index = t.index.astype(str)
    t.index.name, t.columns.name = None, "Customer"
    shown = f", the first {len(t):,} shown" if len(t) < len(lost) else ""
    return inert(t.style).format({f"Value then{money}": "{:,.2f}", "Chance still active now": "{:.0%}"},
                                  escape="html").set_caption(
        f"Platinum and Gold customers of the earlier run probably gone now: {len(lost):,}{shown} "
        "(all in since_last_run_lost_customers.csv)")


def format_migration(migration: pd.DataFrame):
    """Customers by tier then (rows) and tier now (columns)."""
    t = migration.copy()
    t.index = [str(i) for i in t.index]
    t.columns = [str(c) for c in t.columns]
    t.index.name, t.columns.name = None, "Tier then / now"
    return inert(t.style).set_caption("Tier migration: customers by their tier in the earlier run (rows) and now "
                                       "(columns); 'new' = first seen since").format("{:,.0f}", escape="html")


def format_since_accuracy(accuracy: pd.DataFrame):
    """The earlier run's forecast for the elapsed period against what happened, per earlier tier."""
    t = accuracy.rename(columns={"predicted_purchases": "Predicted purchases", "actual_purchases": "Actual purchases",
                                 "purchases_pct_error": "Purchases error %", "predicted_revenue": "Predicted revenue",
                                 "actual_revenue": "Actual revenue", "revenue_pct_error": "Revenue error %"})
    t.index = [str(i) for i in t.index]
    t.index.name, t.columns.name = None, "Tier then"
    return inert(t.style).set_caption("The earlier run's forecast for the time since, against what happened").format(
        {"Predicted purchases": "{:,.0f}", "Actual purchases": "{:,.0f}", "Purchases error %": "{:+.1f}",
         "Predicted revenue": "{:,.0f}", "Actual revenue": "{:,.0f}", "Revenue error %": "{:+.1f}"}, escape="html")


def format_tier_table(tier_table: pd.DataFrame, level: float = 0.90, *, clv: str = "CLV", money: str = ""):
    """The tier table as a readable, formatted table for the report (a pandas Styler).

    ``clv`` names the value with its horizon (e.g. "52-week CLV"), ``money`` labels amounts
    (e.g. " (USD)").
    """
    t = tier_table.copy()
    total, mean = f"Total {clv}{money}", f"Mean {clv}{money}"
    revenue = f"Expected revenue{money}"
    cols = {
        "customers": "Customers", "share_of_customers": "Share of customers",
        "total_clv": total, "share_of_clv": "Share of value", "mean_clv": mean,
        "expected_purchases": "Expected purchases", "expected_revenue": revenue,
        "mean_churn_probability": "Gone now (mean P)", "mean_churn_by_horizon": "Gone by horizon end (mean P)",
        "expected_gone_now": "Probably gone now", "expected_to_leave": "Expected to leave in horizon",
        "share_of_active_leaving": "Of the active, leaving",
    }
    life_total, life_mean = f"Lifetime value{money}", f"Mean lifetime value{money}"
    if "total_lifetime_clv" in t.columns:
        cols.update({"total_lifetime_clv": life_total, "mean_lifetime_clv": life_mean})
    out = pd.DataFrame(index=t.index.astype(str).rename(None))
    out.columns.name = "Tier"
    for key, label in cols.items():
        out[label] = t[key].to_numpy()
    pct = f"{level:.0%}"
    if "total_clv_lower" in t.columns:
        for label, col in ((f"Total {clv} {pct} interval", "total_clv"), (f"Purchases {pct} interval", "expected_purchases"),
                           (f"Revenue {pct} interval", "expected_revenue")):
            out[label] = [f"{lo:,.0f} to {hi:,.0f}" for lo, hi in zip(t[f"{col}_lower"], t[f"{col}_upper"], strict=True)]
    fmt = {"Customers": "{:,.0f}", "Share of customers": "{:.1%}", total: "{:,.0f}", "Share of value": "{:.1%}",
           mean: "{:,.2f}", "Expected purchases": "{:,.0f}", revenue: "{:,.0f}",
           "Gone now (mean P)": "{:.1%}", "Gone by horizon end (mean P)": "{:.1%}",
           "Probably gone now": "{:,.0f}", "Expected to leave in horizon": "{:,.0f}", "Of the active, leaving": "{:.1%}",
           life_total: "{:,.0f}", life_mean: "{:,.2f}"}
    styler = inert(out.style).format({k: v for k, v in fmt.items() if k in out.columns}, escape="html")
    if tier_table.attrs.get("stretch_words"):
        styler = styler.set_caption(tier_table.attrs["stretch_words"]).set_table_styles(
            [{"selector": "caption", "props": "text-align: left; caption-side: bottom; font-size: 12px"}], overwrite=False)
    return styler


def format_what_if(what_if: pd.DataFrame):
    """The retention what-if as a formatted table: over the horizon and, where the analysis has
    it, over the customers' remaining lifetime."""
    data = {
        "CLV now": what_if["clv"].to_numpy(), "CLV if dropout fell": what_if["clv_what_if"].to_numpy(),
        "Change": what_if["change"].to_numpy(), "Change %": what_if["change_pct"].to_numpy() / 100,
        "Purchases now": what_if["expected_purchases"].to_numpy(),
        "Purchases if dropout fell": what_if["expected_purchases_what_if"].to_numpy(),
    }
    if "lifetime_clv" in what_if.columns:
        data.update({"Lifetime value now": what_if["lifetime_clv"].to_numpy(),
                     "Lifetime value if dropout fell": what_if["lifetime_clv_what_if"].to_numpy(),
                     "Lifetime change": what_if["lifetime_change"].to_numpy(),
                     "Lifetime change %": what_if["lifetime_change_pct"].to_numpy() / 100})
    out = pd.DataFrame(index=what_if.index.astype(str).rename(None), data=data)
    out.columns.name = "Tier"
    fmt = {"CLV now": "{:,.0f}", "CLV if dropout fell": "{:,.0f}", "Change": "{:+,.0f}", "Change %": "{:+.2%}",
           "Purchases now": "{:,.0f}", "Purchases if dropout fell": "{:,.0f}", "Lifetime value now": "{:,.0f}",
           "Lifetime value if dropout fell": "{:,.0f}", "Lifetime change": "{:+,.0f}", "Lifetime change %": "{:+.1%}"}
    return inert(out.style).format({k: v for k, v in fmt.items() if k in out.columns}, escape="html")


def format_cash_flow(cash_flow: pd.DataFrame, level: float = 0.90, *, money: str = ""):
    """The cash flow by period as a formatted table (revenue and margin with their ranges)."""
    pct = f"{level:.0%}"
    data = {"From": [str(d) for d in cash_flow["start"]], "To": [str(d) for d in cash_flow["end"]],
            "Expected purchases": cash_flow["expected_purchases"].to_numpy(),
            f"Expected revenue{money}": cash_flow["expected_revenue"].to_numpy(),
            f"Expected margin{money}": cash_flow["expected_margin"].to_numpy()}
    if "expected_revenue_lower" in cash_flow.columns:
        data[f"Revenue, {pct} range"] = [f"{lo:,.0f} to {hi:,.0f}" for lo, hi in zip(
            cash_flow["expected_revenue_lower"], cash_flow["expected_revenue_upper"], strict=True)]
        data[f"Margin, {pct} range"] = [f"{lo:,.0f} to {hi:,.0f}" for lo, hi in zip(
            cash_flow["expected_margin_lower"], cash_flow["expected_margin_upper"], strict=True)]
    out = pd.DataFrame(data, index=[str(i) for i in cash_flow.index])
    out.loc["Total"] = ["", "", out["Expected purchases"].sum(), out[f"Expected revenue{money}"].sum(),
                        out[f"Expected margin{money}"].sum()] + [""] * (len(out.columns) - 5)
    out = out.reset_index(drop=True)
    out.index = [*[f"{i + 1}" for i in range(len(out) - 1)], "Total"]
    out.columns.name = cash_flow.attrs.get("period", "period").capitalize()
    fmt = {"Expected purchases": "{:,.0f}", f"Expected revenue{money}": "{:,.0f}", f"Expected margin{money}": "{:,.0f}"}
    return inert(out.style).format(fmt, escape="html")


def format_segments(segments: pd.DataFrame, *, clv: str = "CLV", money: str = ""):
    """The forecast per segment of the customer table."""
    out = pd.DataFrame({
        "Customers": segments["customers"], f"Value ({clv}){money}": segments["total_clv"],
        "Share of value": segments["share_of_clv"], "Mean value": segments["mean_clv"],
        "Expected purchases": segments["expected_purchases"], "Expected to leave": segments["expected_to_leave"],
        "Platinum or Gold": segments["share_platinum_or_gold"],
    })
    out.index = out.index.astype(str).rename(None)
    out.columns.name = "Segment"
    return inert(out.style).format({"Customers": "{:,.0f}", f"Value ({clv}){money}": "{:,.0f}",
                                     "Share of value": "{:.0%}", "Mean value": "{:,.2f}",
                                     "Expected purchases": "{:,.0f}", "Expected to leave": "{:,.0f}",
                                     "Platinum or Gold": "{:.0%}"}, escape="html")
