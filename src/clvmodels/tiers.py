"""The customer pyramid: Platinum, Gold, Iron and Lead tiers by predicted value.

Zeithaml, Rust & Lemon (2001), "The customer pyramid: creating and serving profitable
customers", *California Management Review* 43(4): Platinum customers are the most profitable,
loyal and not price-sensitive; Gold are profitable but less loyal; Iron bring volume but no
special treatment; Lead cost more than they bring.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from clvmodels._compress import compress
from clvmodels._validation import DAYS_PER_UNIT, check_number
from clvmodels.exceptions import DataValidationError, ParameterError
from clvmodels.forecast import (
    check_models,
    forecast_settings,
    group_terms,
    history_groups,
    rfm_arrays,
)

__all__ = [
    "TIERS",
    "DEFAULT_SHARES",
    "assign_tiers",
    "tier_summary",
    "retention_what_if",
    "cash_flow",
]

TIERS = ("Platinum", "Gold", "Iron", "Lead")
#: Share of customers per tier, most valuable first. Value in non-contractual businesses is
#: very concentrated (on CDNOW the top 5% of customers hold about a third of predicted value),
#: so Platinum is a small elite; Lead is the large tail of one-time buyers who are most likely
#: gone. Shares are of customers, not value; negative-CLV customers are always Lead.
DEFAULT_SHARES: dict[str, float] = {"Platinum": 0.05, "Gold": 0.15, "Iron": 0.50, "Lead": 0.30}

TIER_DTYPE = pd.CategoricalDtype(list(TIERS), ordered=True)


def check_shares(shares: Mapping[str, float] | None) -> dict[str, float]:
    if shares is None:
        return dict(DEFAULT_SHARES)
    if not isinstance(shares, Mapping):
        raise ParameterError(f"shares must be a mapping of tier to share, e.g. {DEFAULT_SHARES}.")
    unknown = [k for k in shares if k not in TIERS]
    missing = [t for t in TIERS if t not in shares]
    if unknown or missing:
        raise ParameterError(
            f"shares must give a share for each of {list(TIERS)}; missing {missing}, unknown {unknown}."
        )
    out = {t: check_number(f"shares[{t!r}]", shares[t], minimum=0.0, maximum=1.0) for t in TIERS}
    total = sum(out.values())
    if abs(total - 1.0) > 1e-6:
        raise ParameterError(f"Tier shares must add up to 1, they add up to {total:.4g}: {out}.")
    return out


def assign_tiers(
    forecast: pd.DataFrame,
    *,
    shares: Mapping[str, float] | None = None,
    value: str = "clv",
) -> pd.Series:
    """Tier of each customer: rank by predicted value and cut by shares of customers.

    Parameters
    ----------
    forecast : DataFrame
        A table from :func:`clvmodels.forecast` (any table with the ``value`` column).
    shares : mapping, optional
        Share of customers in each tier, most valuable first; defaults to
        :data:`DEFAULT_SHARES` (5% Platinum, 15% Gold, 50% Iron, 30% Lead).
    value : str, default "clv"
        Column to rank by.

    Returns
    -------
    Series
        Ordered categorical (Platinum < Gold < Iron < Lead in category order), indexed like
        ``forecast``, named ``tier``.

    Notes
    -----
    Customers are sorted by ``value`` descending, ties broken by ascending customer id (then
    row order), so the same table always gives the same tiers. Tier ``k`` takes the ranks up
    to ``round(n * cumulative share)``. Any customer with negative ``value`` (net CLV below
    zero: they cost more than they bring) is Lead whatever the shares say.
    """
    s = check_shares(shares)
    if not isinstance(forecast, pd.DataFrame) or value not in forecast.columns:
        raise DataValidationError(
            f"assign_tiers needs a DataFrame with a {value!r} column (from clvmodels.forecast)."
        )
    v = pd.to_numeric(forecast[value], errors="coerce").to_numpy(float)
    bad = ~np.isfinite(v)
    if bad.any():
        raise DataValidationError(
            f"Column {value!r}: {int(bad.sum())} of {len(v)} rows are missing or not finite; "
            "every customer needs a predicted value."
        )
    n = len(v)
    try:
        ids = np.argsort(np.argsort(forecast.index.to_numpy(), kind="stable"), kind="stable")
    except TypeError:  # mixed id types: fall back to their text
        ids = np.argsort(np.argsort(forecast.index.astype(str).to_numpy(), kind="stable"), kind="stable")
    order = np.lexsort((np.arange(n), ids, -v))
    bounds = np.rint(np.cumsum([s[t] for t in TIERS]) * n).astype(int)
    bounds[-1] = n
    codes_sorted = np.searchsorted(bounds, np.arange(n), side="right")
    codes = np.empty(n, dtype=int)
    codes[order] = np.minimum(codes_sorted, len(TIERS) - 1)
    codes[v < 0] = len(TIERS) - 1
    out = pd.Series(pd.Categorical.from_codes(codes, dtype=TIER_DTYPE), index=forecast.index, name="tier")
    out.attrs["shares"] = s
    return out


def tier_summary(
    forecast: pd.DataFrame,
    tiers: pd.Series,
    *,
    intervals: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per tier, Platinum to Lead, plus a total row.

    Columns: ``customers``, ``share_of_customers``, ``total_clv``, ``mean_clv``,
    ``share_of_clv``, ``expected_purchases``, ``expected_revenue`` (over the horizon,
    undiscounted), ``mean_churn_probability`` (already gone), ``mean_churn_by_horizon``,
    ``expected_gone_now`` (expected number of customers probably gone already),
    ``expected_active_now``, ``expected_to_leave`` (expected number of those active now who
    leave during the horizon) and ``share_of_active_leaving`` (their share of the active); with a
    forecast's ``lifetime_clv``, ``total_lifetime_clv`` and ``mean_lifetime_clv`` (the residual
    lifetime value). With
    ``intervals`` (from :func:`tier_intervals`) the interval columns are joined on.
    """
    if len(tiers) != len(forecast) or not tiers.index.equals(forecast.index):
        raise DataValidationError("tiers must be indexed like the forecast (one tier per customer).")
    df = forecast.assign(tier=tiers.astype(TIER_DTYPE))
    g = df.groupby("tier", observed=False)
    total_clv = df["clv"].sum()
    out = pd.DataFrame({
        "customers": g.size(),
        "total_clv": g["clv"].sum(),
        "mean_clv": g["clv"].mean(),
        "expected_purchases": g["expected_purchases"].sum(),
        "expected_revenue": g["expected_revenue"].sum(),
        "mean_churn_probability": g["churn_probability"].mean(),
        "mean_churn_by_horizon": g["churn_probability_by_horizon"].mean(),
        "expected_gone_now": g["churn_probability"].sum(),
        "expected_active_now": g["p_alive"].sum(),
        "expected_to_leave": g["churn_probability_during_horizon"].sum(),
    })
    out.insert(1, "share_of_customers", out["customers"] / len(df))
    out.insert(4, "share_of_clv", out["total_clv"] / total_clv if total_clv != 0 else np.nan)
    total = pd.DataFrame({
        "customers": [len(df)], "share_of_customers": [1.0], "total_clv": [total_clv],
        "mean_clv": [df["clv"].mean()], "share_of_clv": [1.0 if total_clv != 0 else np.nan],
        "expected_purchases": [df["expected_purchases"].sum()],
        "expected_revenue": [df["expected_revenue"].sum()],
        "mean_churn_probability": [df["churn_probability"].mean()],
        "mean_churn_by_horizon": [df["churn_probability_by_horizon"].mean()],
        "expected_gone_now": [df["churn_probability"].sum()],
        "expected_active_now": [df["p_alive"].sum()],
        "expected_to_leave": [df["churn_probability_during_horizon"].sum()],
    }, index=["Total"])
    out.index = out.index.astype(str)
    out = pd.concat([out, total])
    out["customers"] = out["customers"].astype(int)
    # an empty tier (everyone Lead when serving costs more than they bring) has means of 0, not NaN
    for col in ("mean_clv", "mean_churn_probability", "mean_churn_by_horizon"):
        out[col] = out[col].fillna(0.0)
    out["share_of_active_leaving"] = out["expected_to_leave"] / out["expected_active_now"].where(out["expected_active_now"] > 0)
    out["share_of_active_leaving"] = out["share_of_active_leaving"].fillna(0.0)
    if "lifetime_clv" in df.columns:
        life = df.groupby("tier", observed=False)["lifetime_clv"]
        out["total_lifetime_clv"] = list(life.sum()) + [df["lifetime_clv"].sum()]
        out["mean_lifetime_clv"] = (out["total_lifetime_clv"] / out["customers"].where(out["customers"] > 0)).fillna(0.0)
    out.index.name = "tier"
    if intervals is not None:
        out = out.join(intervals, how="left")
    out.attrs.update(forecast.attrs)
    return out


#: customers whose futures are simulated for the process noise of tier totals; above it, a
#: random subsample's deviations from its expectation are scaled up (central limit theorem)
SIMULATED_CUSTOMERS = 200_000


@dataclass
class TierGroups:
    """Customers grouped by ``(frequency, recency, T, tier)``: all that tier totals and their
    intervals need (counts, and for spend the number of buyers and the sum of their mean
    spends), plus the customers whose purchases are simulated for the process noise. Built from
    an in-memory table (:func:`tier_groups`) or by the engine
    (:func:`clvmodels.scoring.engine_tier_groups`)."""

    x: np.ndarray
    tx: np.ndarray
    T: np.ndarray
    code: np.ndarray
    n: np.ndarray
    n_valid: np.ndarray
    sum_m: np.ndarray
    sim_x: np.ndarray
    sim_T: np.ndarray
    sim_m: np.ndarray
    sim_code: np.ndarray
    sim_group: np.ndarray
    """Group of each simulated customer."""
    n_tier: np.ndarray
    """Customers per tier (all of them, not only the simulated)."""

    @property
    def customers(self) -> int:
        return int(self.n_tier.sum())

    def spend_sums(self, p: float, q: float, v: float) -> np.ndarray:
        return group_spend(p, q, v, self.n, self.n_valid, self.x, self.sum_m)


def tier_groups(rfm: pd.DataFrame, tiers: pd.Series, *, max_simulated: int = SIMULATED_CUSTOMERS,
                rng: np.random.Generator | None = None) -> TierGroups:
    """:class:`TierGroups` of an in-memory RFM table and its tiers (simulated: everyone, or a
    random ``max_simulated`` of them drawn with ``rng``; nobody when it is 0)."""
    if not tiers.index.equals(rfm.index):
        raise DataValidationError("tiers must be indexed like rfm (one tier per customer).")
    x, tx, T, m = rfm_arrays(rfm)
    codes = tiers.astype(TIER_DTYPE).cat.codes.to_numpy().astype(np.int64)
    n = len(x)
    groups = compress(x, tx, T, codes)
    gx, gtx, gT, gcode = groups.columns
    valid = (x > 0) & (m > 0)
    g_valid = np.bincount(groups.inverse, weights=valid.astype(float), minlength=len(groups.weights))
    g_sum_m = np.bincount(groups.inverse, weights=np.where(valid, m, 0.0), minlength=len(groups.weights))
    if max_simulated == 0:
        sim = np.arange(0)
    elif n <= max_simulated:
        sim = np.arange(n)
    else:
        sim = np.sort((rng or np.random.default_rng(0)).choice(n, size=max_simulated, replace=False))
    return TierGroups(gx, gtx, gT, gcode, groups.weights, g_valid, g_sum_m, x[sim], T[sim], m[sim], codes[sim],
                      groups.inverse[sim], np.bincount(codes, minlength=len(TIERS)).astype(float))


def group_spend(p, q, v, g_n, g_valid, gx, g_sum_m):
    """Sum of Gamma-Gamma expected spend over each group of customers with one history:
    :func:`conditional_spend` is linear in a buyer's mean spend, so a count of buyers and the sum
    of their mean spends suffice (the others get the population mean)."""
    return (g_n - g_valid) * p * v / (q - 1) + p * (v * g_valid + gx * g_sum_m) / (p * gx + q - 1)


def retention_what_if(
    transaction_model: Any,
    spend_model: Any,
    rfm: pd.DataFrame,
    tiers: pd.Series,
    *,
    dropout_reduction: float = 0.10,
    horizon: float,
    discount_rate: float = 0.10,
    margin: float = 1.0,
    cost_to_serve: float = 0.0,
) -> pd.DataFrame:
    """Change in value per tier if every customer's dropout probability fell by a fraction.

    From now on each customer's dropout probability ``p`` becomes
    ``(1 - dropout_reduction) * p`` (the posterior of ``p`` given the history is unchanged);
    expected purchases, survival and CLV are recomputed in closed form (see
    :meth:`BetaGeoModel._expected_if_alive`). Tiers stay as assigned.

    Returns
    -------
    DataFrame
        Per tier and in total: ``clv``, ``clv_what_if``, ``change``, ``change_pct``,
        ``expected_purchases``, ``expected_purchases_what_if``, and the same over the customers'
        remaining lifetime: ``lifetime_clv``, ``lifetime_clv_what_if``, ``lifetime_change``,
        ``lifetime_change_pct`` (where a few points of retention show their worth).
    """
    f = check_number("dropout_reduction", dropout_reduction, minimum=0.0, maximum=1.0, max_inclusive=False)
    check_models(transaction_model, spend_model)
    s = forecast_settings(transaction_model, rfm, horizon, discount_rate, margin, cost_to_serve, None, lifetime=True)
    transaction_model._check_unit(rfm)
    return grouped_what_if(transaction_model, spend_model, tier_groups(rfm, tiers, max_simulated=0), s, f)


def grouped_what_if(transaction_model: Any, spend_model: Any, g: TierGroups, s: Any, f: float) -> pd.DataFrame:
    """:func:`retention_what_if` from :class:`TierGroups` and forecast settings (``s``)."""
    # customers with one history and tier share every purchase term; spend enters as a sum
    g_spend = g.spend_sums(*spend_model._p())
    pairs = history_groups(transaction_model, g.x, g.tx, g.T)
    k = len(TIERS)
    columns = {}
    for label, scale in (("", 1.0), ("_what_if", 1.0 - f)):
        terms = group_terms(transaction_model, s, g.x, g.tx, g.T, pairs, dropout_scale=scale)
        columns[f"clv{label}"] = np.bincount(
            g.code, weights=s.margin * terms[1] * g_spend - s.cost_to_serve * g.n * terms[2], minlength=k)
        columns[f"expected_purchases{label}"] = np.bincount(g.code, weights=g.n * terms[0], minlength=k)
        if s.lifetime:
            columns[f"lifetime_clv{label}"] = np.bincount(
                g.code, weights=s.margin * terms[4] * g_spend - s.cost_to_serve * g.n * terms[5], minlength=k)
    names = ["clv", "clv_what_if", "expected_purchases", "expected_purchases_what_if"] + (
        ["lifetime_clv", "lifetime_clv_what_if"] if s.lifetime else [])
    out = pd.DataFrame(columns, index=pd.Index(list(TIERS), name="tier"))[names]
    out.loc["Total"] = out.sum()
    out["change"] = out["clv_what_if"] - out["clv"]
    out["change_pct"] = 100 * out["change"] / out["clv"].where(out["clv"] != 0)
    if s.lifetime:
        out["lifetime_change"] = out["lifetime_clv_what_if"] - out["lifetime_clv"]
        out["lifetime_change_pct"] = 100 * out["lifetime_change"] / out["lifetime_clv"].where(out["lifetime_clv"] != 0)
    out.index.name = "tier"
    out.attrs.update({"dropout_reduction": f, **s.as_dict(), "description": s.describe()})
    return out


#: horizons up to this many months are cut into months for the cash flow, longer ones into quarters
CASH_FLOW_MONTHS = 18


def cash_flow(transaction_model: Any, spend_model: Any, g: TierGroups, s: Any, observation_end: str,
              total: pd.Series | None = None) -> pd.DataFrame:
    """Expected purchases, revenue and margin per calendar period of the horizon, for finance.

    The horizon after ``observation_end`` is cut into months (quarters beyond
    :data:`CASH_FLOW_MONTHS` months; the last period may be partial, and less than a week joins
    the one before); each period's expected
    purchases are the model's cumulative purchases at its end minus at its start, summed over
    every customer's history (``g``: :class:`TierGroups`, of memory or of the engine) and weighted
    by their expected spend for revenue; margin is ``s.margin`` x revenue, undiscounted (what
    comes in, when). ``total``: the tier table's total row; with its ranges, each period's range is
    the total's relative range applied to the period (the periods' errors move together, as a
    model's do).

    Returns
    -------
    DataFrame
        One row per period: ``start``, ``end``, ``expected_purchases``, ``expected_revenue``,
        ``expected_margin`` and, with ranges, ``expected_revenue_lower`` / ``_upper`` and
        ``expected_margin_lower`` / ``_upper``.
    """
    days = DAYS_PER_UNIT[s.time_unit]
    start = pd.Timestamp(observation_end)
    end = start + pd.Timedelta(days=float(s.horizon) * days)
    months = int(np.ceil((end - start).days / 30.4375 - 1e-9))
    step = 1 if months <= CASH_FLOW_MONTHS else 3
    edges = [start]
    k = 1
    while edges[-1] < end:
        edges.append(min(start + pd.DateOffset(months=k * step), end))
        k += 1
    if len(edges) > 2 and (edges[-1] - edges[-2]).days < 7:
        edges.pop(-2)  # a stub of days at the end joins the period before it
    t = np.array([(e - start).days / days for e in edges[1:]], float)
    pairs = history_groups(transaction_model, g.x, g.tx, g.T)
    cols = pairs.columns
    p_alive = transaction_model._p_alive(g.x, g.tx, g.T)
    extra = {"tx": cols[2][:, None]} if len(cols) > 2 else {}
    cum = transaction_model._expected_if_alive(t[None, :], cols[0].astype(float)[:, None], cols[1][:, None],
                                               **extra)[pairs.inverse] * p_alive[:, None]
    per = np.diff(cum, axis=1, prepend=0.0)
    spend = g.spend_sums(*spend_model._p())
    out = pd.DataFrame({
        "start": [e.date() for e in edges[:-1]], "end": [e.date() for e in edges[1:]],
        "expected_purchases": (g.n[:, None] * per).sum(axis=0),
        "expected_revenue": (spend[:, None] * per).sum(axis=0),
    })
    out["expected_margin"] = s.margin * out["expected_revenue"]
    if total is not None and "expected_revenue_lower" in total.index and total["expected_revenue"] > 0:
        lo = total["expected_revenue_lower"] / total["expected_revenue"]
        hi = total["expected_revenue_upper"] / total["expected_revenue"]
        for col in ("expected_revenue", "expected_margin"):
            out[f"{col}_lower"], out[f"{col}_upper"] = out[col] * lo, out[col] * hi
    out.index = pd.Index([str(d) for d in out["start"]], name="period")
    out.attrs.update({"period": "month" if step == 1 else "quarter", **s.as_dict()})
    return out
