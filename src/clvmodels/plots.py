"""Figures for reports and notebooks (seaborn/matplotlib).

Every function takes ``ax=None`` (a new figure when omitted), returns the ``Axes`` and passes
``**kwargs`` on to the main drawing call.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from clvmodels._validation import DAYS_PER_UNIT, UNIT_NAMES
from clvmodels.exceptions import DataValidationError, ParameterError
from clvmodels.models.calendar import needs_calendar
from clvmodels.tiers import TIERS

__all__ = [
    "plot_cash_flow",
    "set_report_style",
    "plot_tier_value",
    "plot_tier_churn",
    "plot_frequency_fit",
    "plot_probability_heatmap",
    "plot_spend_assumption",
    "plot_tracking",
    "plot_calibration",
    "plot_retention_what_if",
    "plot_clv_distribution",
    "plot_period_transactions",
    "plot_frequency_recency_matrix",
    "plot_probability_alive_matrix",
    "history_alive",
    "plot_history_alive",
    "plot_calibration_purchases_vs_holdout_purchases",
]

#: most points a scatter or box plot draws; larger tables are randomly sampled (and say so)
MAX_POINTS = 200_000

TIER_COLORS = {"Platinum": "#7f8c8d", "Gold": "#d4ac0d", "Iron": "#5d6d7e", "Lead": "#2c3e50"}


#: figure width (inches at :data:`DPI`) and the smallest text (points) of the report's figures:
#: shown 352 px wide on a 400 px phone, text of ``pt`` points on a figure ``w`` inches wide is
#: ``pt * 352 / (72 w)`` pixels, so 12 pt on 5.6 in is 10.5 px; on a 1280 px screen the figure
#: keeps its own 616 px
FIGURE_WIDTH, SMALLEST_TEXT, DPI = 5.6, 12.0, 110


def set_report_style() -> None:
    """Figures as a report wants them: readable on a phone and on a screen (text at least 10 px
    wide at 400 px, see :data:`FIGURE_WIDTH`), sharp, labels kept inside the frame."""
    plt.rcParams.update({
        "figure.dpi": DPI, "savefig.dpi": DPI, "figure.figsize": (FIGURE_WIDTH, 4.2),
        "figure.constrained_layout.use": True, "axes.titlesize": SMALLEST_TEXT + 1, "axes.labelsize": SMALLEST_TEXT,
        "xtick.labelsize": SMALLEST_TEXT, "ytick.labelsize": SMALLEST_TEXT, "legend.fontsize": SMALLEST_TEXT,
        "legend.title_fontsize": SMALLEST_TEXT, "font.size": SMALLEST_TEXT,
        "axes.spines.top": False, "axes.spines.right": False,
    })


def _ax(ax: Any, size: tuple[float, float] | None = None):
    if ax is None:
        _, ax = plt.subplots(figsize=size or plt.rcParams["figure.figsize"])
    return ax


def _tiers_only(table: pd.DataFrame) -> pd.DataFrame:
    return table.loc[[t for t in TIERS if t in table.index]]


def plot_tier_value(tier_table: pd.DataFrame, ax=None, *, money: str = "", **kwargs):
    """Total CLV per tier, with the interval when the table has ``total_clv_lower/upper``;
    ``money``: the currency label of the axis (e.g. " (USD)")."""
    ax = _ax(ax)
    t = _tiers_only(tier_table)
    colors = [TIER_COLORS[i] for i in t.index]
    ax.bar(t.index, t["total_clv"], color=colors, **kwargs)
    if {"total_clv_lower", "total_clv_upper"} <= set(t.columns):
        err = np.vstack([t["total_clv"] - t["total_clv_lower"], t["total_clv_upper"] - t["total_clv"]])
        ax.errorbar(t.index, t["total_clv"], yerr=np.clip(err, 0, None), fmt="none", color="black", capsize=4)
    tops = t["total_clv_upper"] if "total_clv_upper" in t.columns else t["total_clv"]
    for i, (v, share) in enumerate(zip(np.maximum(tops, t["total_clv"]), t["share_of_clv"], strict=True)):
        # above the interval's top, so the label never sits on the error bar
        ax.annotate(f"{share:.0%}", (i, v), ha="center", va="bottom", fontsize=SMALLEST_TEXT, xytext=(0, 4),
                    textcoords="offset points")
    ax.set_ylabel(f"Total CLV{money}")
    ax.set_title("Predicted value by tier (share of total above each bar)")
    ax.axhline(0, color="black", linewidth=0.8)
    return ax


def plot_tier_churn(tier_table: pd.DataFrame, ax=None, **kwargs):
    """Mean probability of being gone now and by the horizon's end, per tier."""
    ax = _ax(ax)
    t = _tiers_only(tier_table)
    long = pd.DataFrame({
        "tier": list(t.index) * 2,
        "when": ["already gone"] * len(t) + ["gone by horizon end"] * len(t),
        "probability": list(t["mean_churn_probability"]) + list(t["mean_churn_by_horizon"]),
    })
    sns.barplot(data=long, x="tier", y="probability", hue="when", ax=ax, **kwargs)
    # the axis from the data: on frequent buyers churn is small and a 0-1 axis hides the bars
    top = float(np.nanmax(long["probability"])) if len(long) else 1.0
    ax.set_ylim(0, min(1.0, max(top * 1.15, 0.02)))
    ax.set_ylabel("Mean churn probability")
    ax.set_xlabel("")
    ax.set_title("Churn by tier")
    return ax


def plot_frequency_fit(table: pd.DataFrame, ax=None, **kwargs):
    """Observed vs expected customers by repeat purchases (from
    :meth:`BetaGeoModel.expected_customers_by_frequency`)."""
    ax = _ax(ax)
    table = _grouped_counts(table)
    long = table.reset_index().melt(id_vars=table.index.name or "index", var_name="", value_name="customers")
    sns.barplot(data=long, x=table.index.name or "index", y="customers", hue="", ax=ax, **kwargs)
    if len(table) > 8 or any("-" in str(v) for v in table.index):
        ax.tick_params(axis="x", labelrotation=45)
    ax.set_xlabel("Repeat purchases in the calibration period")
    ax.set_title("Model fit: observed vs expected customers")
    return ax


def _grouped_counts(table: pd.DataFrame, most: int = 12) -> pd.DataFrame:
    """Rows "0", "1", ... "k+" grouped into at most ``most`` ranges of one width ("0-4", "5-9", ...)
    and a last open one ("40+": the rows the ranges leave over and the table's own "k+"), so a
    frequent-buyer log still reads as a chart on a phone."""
    if len(table) <= most:
        return table
    body, last = table.iloc[:-1], table.iloc[[-1]]
    width = int(np.ceil(len(body) / (most - 1)))
    full = len(body) // width
    if full == most - 1 and len(body) % width == 0:
        full -= 1  # the last range joins the open bin, so the chart keeps at most ``most`` bars
    head = body.iloc[:full * width]
    summed = head.groupby(np.arange(len(head)) // width).sum()
    summed.index = pd.Index([f"{head.index[g * width]}-{head.index[(g + 1) * width - 1]}" for g in summed.index],
                            name=table.index.name)
    rest = pd.concat([body.iloc[full * width:], last])
    open_bin = rest.sum().to_frame().T
    first = str(rest.index[0])
    open_bin.index = pd.Index([first if first.endswith("+") else f"{first}+"], name=table.index.name)
    return pd.concat([summed, open_bin])


def plot_probability_heatmap(model: Any, *, kind: str = "p_alive", t: float = 1.0,
                             max_frequency: int = 20, T: float | None = None, n_recency: int = 20,
                             ax=None, **kwargs):
    """P(alive) or expected purchases in ``t`` for a grid of frequency x recency, at age ``T``."""
    if kind not in ("p_alive", "expected_purchases"):
        raise ParameterError(f"Unknown kind {kind!r}; expected 'p_alive' or 'expected_purchases'.")
    ax = _ax(ax, (FIGURE_WIDTH, 4.8))
    T = float(T if T is not None else 52.0)
    freq = np.arange(max_frequency + 1)
    rec = np.linspace(0, T, n_recency)
    F, R = np.meshgrid(freq, rec)
    grid = pd.DataFrame({"frequency": F.ravel().astype(float), "recency": np.where(F.ravel() > 0, R.ravel(), 0.0),
                         "T": np.full(F.size, T)})
    values = model.probability_alive(grid) if kind == "p_alive" else model.expected_purchases(grid, t)
    mat = pd.DataFrame(values.to_numpy().reshape(F.shape), index=np.round(rec, 1), columns=freq).iloc[::-1]
    unit = UNIT_NAMES.get(getattr(model, "time_unit_", None) or "", "time units")
    # every second frequency and every third recency labelled: readable on a phone
    kwargs = {"xticklabels": 2, "yticklabels": 3, **kwargs}
    sns.heatmap(mat, ax=ax, cmap="viridis", cbar_kws={"label": kind.replace("_", " ")}, **kwargs)
    ax.set_xlabel("Repeat purchases (frequency)")
    ax.set_ylabel(f"Recency ({unit})")
    what = "P(alive)" if kind == "p_alive" else f"Expected purchases in next {t:g} {unit}"
    ax.set_title(f"{what}, customers observed {T:.1f} {unit}")
    return ax


def _sample_note(ax, shown: int, of: int, who: str = "customers") -> None:
    ax.annotate(f"random sample of {shown:,} of {of:,} {who}", (0.99, 0.98),
                xycoords="axes fraction", ha="right", va="top", fontsize=SMALLEST_TEXT, color="grey")


def plot_spend_assumption(rfm: pd.DataFrame, ax=None, *, sample_of: int | None = None, money: str = "",
                          **kwargs):
    """Gamma-Gamma's independence check: mean spend against frequency for repeat buyers.
    ``sample_of``: when ``rfm`` is a random sample, how many customers it was drawn from."""
    ax = _ax(ax)
    buyers = rfm[(rfm["frequency"] > 0) & (rfm["monetary_value"] > 0)]
    corr = buyers[["frequency", "monetary_value"]].corr().iloc[0, 1] if len(buyers) > 2 else np.nan
    shown = buyers.sample(MAX_POINTS, random_state=0) if len(buyers) > MAX_POINTS else buyers
    sns.scatterplot(data=shown, x="frequency", y="monetary_value", alpha=0.3, s=12, ax=ax, **kwargs)
    if sample_of and sample_of > len(rfm):
        _sample_note(ax, len(rfm), sample_of)
    elif len(shown) < len(buyers):
        _sample_note(ax, len(shown), len(buyers), "repeat buyers")
    ax.set_yscale("log")
    ax.set_xlabel("Repeat purchases (frequency)")
    ax.set_ylabel(f"Mean spend per repeat purchase{money}")
    ax.set_title(f"Spend vs frequency (Pearson r = {corr:.2f}; the model assumes ~0)")
    return ax


def plot_tracking(tracking: pd.DataFrame, ax=None, **kwargs):
    """Cumulative repeat purchases, actual vs expected, with the calibration end marked."""
    ax = _ax(ax)
    unit = UNIT_NAMES.get(tracking.attrs.get("time_unit", ""), "periods")
    ax.plot(tracking.index, tracking["actual_cumulative"], label="actual", color="black", **kwargs)
    model = tracking.attrs.get("model", "model")
    ax.plot(tracking.index, tracking["expected_cumulative"], label=f"expected ({model})", linestyle="--")
    if tracking["in_holdout"].any():
        ax.axvline(tracking.index[tracking["in_holdout"]][0] - 0.5, color="grey", linestyle=":")
        ax.annotate("holdout", (tracking.index[tracking["in_holdout"]][0], 0), xytext=(5, 5),
                    textcoords="offset points", color="grey")
    ax.set_xlabel(unit.capitalize())
    ax.set_ylabel("Cumulative repeat purchases")
    ax.set_title("Tracking: cumulative repeat purchases")
    ax.legend()
    return ax


def plot_calibration(calibration: pd.DataFrame, ax=None, **kwargs):
    """Predicted probability of any holdout purchase vs observed share of buyers, per model."""
    ax = _ax(ax, (FIGURE_WIDTH, 4.8))
    sns.lineplot(data=calibration, x="mean_predicted", y="observed_share", hue="model", marker="o", ax=ax, **kwargs)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
    if "customers" in calibration.columns and len(calibration):
        # how many customers stand behind each point of the first model (a jagged line on a
        # handful of customers is noise, not miscalibration)
        first = calibration[calibration["model"] == calibration["model"].iloc[0]]
        for _, row in first.iterrows():
            ax.annotate(f"{int(row['customers']):,}", (row["mean_predicted"], row["observed_share"]), fontsize=SMALLEST_TEXT,
                        color="grey", xytext=(4, -9), textcoords="offset points")
        ax.text(0.99, 0.02, f"numbers: customers per point ({first['model'].iloc[0]})", transform=ax.transAxes,
                ha="right", va="bottom", fontsize=SMALLEST_TEXT, color="grey")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("Predicted P(any purchase in holdout)")
    ax.set_ylabel("Observed share who bought")
    ax.set_title("Calibration")
    return ax


def plot_retention_what_if(what_if: pd.DataFrame, ax=None, *, money: str = "", **kwargs):
    """Change in CLV per tier if dropout fell (from :func:`clvmodels.retention_what_if`): over
    the horizon and, when the table has it, over the customers' remaining lifetime beside it (the
    pale bar is the horizon), each labelled with its change in percent."""
    ax = _ax(ax)
    t = _tiers_only(what_if)
    colors = [TIER_COLORS[i] for i in t.index]
    x = np.arange(len(t))
    lifetime = "lifetime_change" in t.columns and t["lifetime_change"].notna().any()
    bars = [("change", "change_pct", "over the horizon")]
    if lifetime:
        bars.append(("lifetime_change", "lifetime_change_pct", "over the lifetime"))
    width = 0.8 / len(bars)
    for j, (col, pct_col, _) in enumerate(bars):
        pos = x + (j - (len(bars) - 1) / 2) * width
        pale = lifetime and j == 0
        ax.bar(pos, t[col], width=width, color=colors, alpha=0.45 if pale else 1.0, **kwargs)
        # side by side, the labels lean away from each other: the horizon's ends at its bar's right
        # edge, the lifetime's starts at its bar's left edge
        ha, edge = ("center", 0.0) if not lifetime else (("right", width / 2) if j == 0 else ("left", -width / 2))
        for xi, v, pct in zip(pos, t[col], t[pct_col], strict=True):
            text = "n/a" if pd.isna(pct) else f"{pct:+.1f}%"
            ax.annotate(text, (xi + edge, max(v, 0)), ha=ha, va="bottom", fontsize=SMALLEST_TEXT, xytext=(0, 3),
                        textcoords="offset points")
    ax.set_xticks(x, list(t.index))
    if lifetime:
        ax.legend(handles=[Patch(color="grey", alpha=0.45, label=bars[0][2]), Patch(color="grey", label=bars[1][2])],
                  frameon=False, fontsize=SMALLEST_TEXT)
    f = what_if.attrs.get("dropout_reduction", np.nan)
    ax.set_ylabel(f"Change in total CLV{money}")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_title(f"If dropout fell by {f:.0%}" + (": horizon (pale) and lifetime" if lifetime else ""))
    ax.axhline(0, color="black", linewidth=0.8)
    ax.margins(y=0.15)
    return ax


def plot_cash_flow(cash_flow: pd.DataFrame, ax=None, *, money: str = "", **kwargs):
    """Expected revenue per month or quarter of the horizon, with its range (from
    :func:`clvmodels.tiers.cash_flow`); the margin is the darker part of each bar."""
    ax = _ax(ax)
    labels = [pd.Timestamp(s).strftime("%b %Y") for s in cash_flow["start"]]
    x = np.arange(len(cash_flow))
    rev = cash_flow["expected_revenue"].to_numpy(float)
    ax.bar(x, rev, color="#9fb3c8", label="revenue", **kwargs)
    ax.bar(x, cash_flow["expected_margin"].to_numpy(float), color="#2c3e50", label="margin")
    if "expected_revenue_lower" in cash_flow.columns:
        lo, hi = cash_flow["expected_revenue_lower"].to_numpy(float), cash_flow["expected_revenue_upper"].to_numpy(float)
        ax.errorbar(x, rev, yerr=[rev - lo, hi - rev], fmt="none", ecolor="black", capsize=3, linewidth=1)
    ax.set_xticks(x, labels, rotation=45, ha="right")
    ax.set_ylabel(f"Expected revenue{money}")
    ax.set_title(f"Cash flow by {cash_flow.attrs.get('period', 'period')}")
    ax.legend(frameon=False)
    return ax


def plot_clv_distribution(forecast: pd.DataFrame, tiers: pd.Series, ax=None, *, sample_of: int | None = None,
                          money: str = "", **kwargs):
    """Distribution of predicted CLV per tier (box plot with every outlier shown, on a
    symmetric-log scale so the few very valuable customers and the many small ones both show).
    ``sample_of``: when ``forecast`` is a random sample, how many customers it was drawn from."""
    ax = _ax(ax)
    df = pd.DataFrame({"clv": forecast["clv"], "tier": tiers})
    total = max(sample_of or 0, len(forecast))
    if len(df) > MAX_POINTS:
        # quartiles of a large random sample are those of everyone to the plot's resolution, and
        # drawing millions of outlier markers helps no one
        df = df.sample(MAX_POINTS, random_state=0)
    if len(df) < total:
        _sample_note(ax, len(df), total)
    sns.boxplot(data=df, x="tier", y="clv", hue="tier", palette=TIER_COLORS, showfliers=True,
                flierprops={"markersize": 2, "alpha": 0.4}, legend=False, ax=ax, **kwargs)
    positive = df["clv"][df["clv"] > 0]
    if len(positive) == len(df):
        ax.set_yscale("log")
        # a handful of customers with CLV near zero would stretch the axis over many decades
        floor = float(positive.quantile(0.01)) / 2
        hidden = int((positive < floor).sum())
        ax.set_ylim(bottom=floor)
        ax.set_ylabel(f"Predicted CLV per customer{money} (log scale)")
        if hidden:
            ax.annotate(f"{hidden:,} customers below {floor:.2g} not shown", (0.99, 0.02),
                        xycoords="axes fraction", ha="right", fontsize=SMALLEST_TEXT, color="grey")
    else:
        ax.set_yscale("symlog", linthresh=float(positive.quantile(0.05)) if len(positive) else 1.0)
        ax.set_ylabel(f"Predicted CLV per customer{money} (symmetric log scale)")
    ax.set_xlabel("")
    ax.set_title("CLV per customer by tier")
    return ax


def plot_retention(retention: pd.DataFrame, ax=None, *, period: str = "period", **kwargs):
    """Observed retention at each renewal (pooled over cohorts; marker size shows how many
    subscribers it rests on) against the model's."""
    ax = _ax(ax)
    t = retention.index.to_numpy()
    sizes = 10 + 80 * retention["at_risk"].to_numpy() / max(float(retention["at_risk"].max()), 1.0)
    ax.scatter(t, retention["observed"], s=sizes, color="#4C72B0", label="observed (size: subscribers)", **kwargs)
    ax.plot(t, retention["model"], color="black", label="model")
    lo = float(min(retention["observed"].min(), retention["model"].min()))
    ax.set_ylim(max(0.0, lo - 0.05), 1.0)
    ax.set_xlabel(f"renewal ({period}s of tenure)")
    ax.set_ylabel("share who renewed")
    ax.set_title("Retention by tenure: observed and model")
    ax.legend(loc="lower right")
    return ax


# ---------------------------------------------------------------------------------------------
# Notebook plots straight from a fitted model and its data: lifetimes' names where the meaning is
# the same (plot_period_transactions, plot_frequency_recency_matrix, plot_probability_alive_matrix,
# plot_history_alive, plot_calibration_purchases_vs_holdout_purchases).

def plot_period_transactions(model: Any, data: pd.DataFrame, max_frequency: int = 7, ax=None, **kwargs):
    """How many customers made 0, 1, 2 ... repeat purchases, observed in ``data`` and expected by
    ``model`` for customers observed as long as they were (lifetimes' ``plot_period_transactions``:
    :meth:`expected_customers_by_frequency` drawn by :func:`plot_frequency_fit`)."""
    return plot_frequency_fit(model.expected_customers_by_frequency(data, max_frequency=max_frequency), ax=ax,
                              **kwargs)


def plot_frequency_recency_matrix(model: Any, *, t: float = 1.0, T: float | None = None, max_frequency: int = 20,
                                  ax=None, **kwargs):
    """Expected purchases in the next ``t`` for every frequency and recency of customers observed
    ``T`` (lifetimes' ``plot_frequency_recency_matrix``; :func:`plot_probability_heatmap`)."""
    return plot_probability_heatmap(model, kind="expected_purchases", t=t, T=T, max_frequency=max_frequency, ax=ax,
                                    **kwargs)


def plot_probability_alive_matrix(model: Any, *, T: float | None = None, max_frequency: int = 20, ax=None,
                                  **kwargs):
    """P(alive) for every frequency and recency of customers observed ``T`` (lifetimes'
    ``plot_probability_alive_matrix``; :func:`plot_probability_heatmap`)."""
    return plot_probability_heatmap(model, kind="p_alive", T=T, max_frequency=max_frequency, ax=ax, **kwargs)


def history_alive(model: Any, transactions: pd.DataFrame, customer_id: Any, *, end: Any = None,
                  customer_col: str = "customer_id", date_col: str = "date") -> pd.DataFrame:
    """One customer's P(alive) at each time unit from their first purchase to ``end`` (default:
    the log's last day), each computed from what was known then: their repeat purchases so far,
    the last one's time and their age. Columns ``date``, ``frequency``, ``recency``, ``T``,
    ``p_alive``; ``attrs["purchases"]`` holds their purchase days."""
    if needs_calendar(model):
        raise ParameterError(f"{type(model).__name__} forecasts on a calendar clock as of one date; its P(alive) "
                             "over a customer's history is not drawn. Use the plain family's model.")
    unit = getattr(model, "time_unit_", None)
    if unit not in DAYS_PER_UNIT:
        raise ParameterError("The model does not record its time unit (fit it on an RFM table, or from_params(..., "
                             "time_unit='W')).")
    for col in (customer_col, date_col):
        if col not in transactions.columns:
            raise DataValidationError(f"transactions has no column {col!r}; it has {list(transactions.columns)}.")
    mine = transactions[transactions[customer_col].astype(str) == str(customer_id)]
    if mine.empty:
        raise DataValidationError(f"Customer {str(customer_id)[:100]!r} has no purchase in transactions.")
    days = pd.DatetimeIndex(pd.to_datetime(mine[date_col]).dt.normalize().unique()).sort_values()
    last_day = pd.to_datetime(transactions[date_col]).max().normalize() if end is None else pd.Timestamp(end).normalize()
    if last_day < days[0]:
        raise ParameterError(f"end {last_day.date()} is before the customer's first purchase {days[0].date()}.")
    per = DAYS_PER_UNIT[unit]
    offsets = (days - days[0]).days.to_numpy(float) / per
    T = np.arange(0.0, (last_day - days[0]).days / per + 1e-9, 1.0)
    n = np.searchsorted(offsets, T, side="right")  # purchase days up to each time
    table = pd.DataFrame({"frequency": (n - 1).astype(float), "recency": offsets[n - 1], "T": T})
    table["p_alive"] = model.probability_alive(table[["frequency", "recency", "T"]]).to_numpy()
    table.insert(0, "date", days[0] + pd.to_timedelta(T * per, unit="D"))
    table.attrs["purchases"] = list(days)
    return table


def plot_history_alive(model: Any, transactions: pd.DataFrame, customer_id: Any, *, end: Any = None,
                       customer_col: str = "customer_id", date_col: str = "date", ax=None, **kwargs):
    """One customer's P(alive) over their history (:func:`history_alive`) with their purchases
    marked: how the model's belief rose with each purchase and fell with each silence (lifetimes'
    ``plot_history_alive``)."""
    table = history_alive(model, transactions, customer_id, end=end, customer_col=customer_col, date_col=date_col)
    ax = _ax(ax)
    ax.plot(table["date"], table["p_alive"], drawstyle="steps-post", **kwargs)
    for i, day in enumerate(table.attrs["purchases"]):
        ax.axvline(day, color="grey", linestyle=":", label="purchase" if i == 0 else None)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("P(alive)")
    ax.set_title(f"Customer {str(customer_id)[:40]}: P(alive) over their history")
    ax.legend(loc="lower left")
    ax.tick_params(axis="x", labelrotation=45)
    return ax


def plot_calibration_purchases_vs_holdout_purchases(model: Any, cal: pd.DataFrame, max_frequency: int = 7,
                                                    ax=None, **kwargs):
    """Mean purchases in the holdout of the customers with 0, 1, 2 ... repeat purchases in the
    calibration window: what they did against what ``model`` (fitted on the calibration window)
    expected (lifetimes' ``plot_calibration_purchases_vs_holdout_purchases``)."""
    for col in ("frequency", "frequency_holdout", "duration_holdout"):
        if col not in cal.columns:
            raise DataValidationError(f"cal has no column {col!r}: build it with clvmodels.calibration_holdout.")
    t = float(cal["duration_holdout"].iloc[0])
    x = np.minimum(cal["frequency"].to_numpy(), max_frequency)
    table = pd.DataFrame({"actual": cal["frequency_holdout"].to_numpy(float),
                          "model": model.expected_purchases(cal, t).to_numpy(float), "bin": x})
    means = table.groupby("bin")[["actual", "model"]].mean()
    means.index = [str(int(v)) if v < max_frequency else f"{max_frequency}+" for v in means.index]
    ax = _ax(ax)
    ax.plot(means.index, means["actual"], marker="o", color="black", label="actual", **kwargs)
    ax.plot(means.index, means["model"], marker="o", linestyle="--", label="model")
    unit = UNIT_NAMES.get(cal.attrs.get("time_unit", ""), "time units")
    ax.set_xlabel("Repeat purchases in the calibration window")
    ax.set_ylabel(f"Mean purchases in the holdout ({t:g} {unit})")
    ax.set_title("Calibration vs holdout purchases")
    ax.legend()
    return ax
