"""Retention a manager can act on: the valuable customers likely to buy nothing during the horizon,
ranked by how unusual that risk is for their tier, each with the reason in words.

Both analysis paths (customers in memory, customers in the engine) hand this module a table of
candidates with their history and forecast; it needs no more of the engine than the spend of the
few customers it lists.
"""

from __future__ import annotations

from typing import Any

import ibis
import numpy as np
import pandas as pd

from clvmodels._validation import DAYS_PER_UNIT
from clvmodels.engine import execute
from clvmodels.forecast import forecast

__all__ = ["at_risk_customers", "approximate_value_at_risk", "tier_p_no_purchase", "with_last_run",
           "AT_RISK_MIN_P_NO_PURCHASE", "AT_RISK_MIN_RISK_RATIO", "AT_RISK_CANDIDATES", "P_ALIVE_FALL_SAID"]


#: chance of no purchase during the horizon at or above which a valuable customer is listed: more
#: likely than not to buy nothing (measured in ``validation/at_risk_lift.py``)
AT_RISK_MIN_P_NO_PURCHASE = 0.5
#: and at least this many times their tier's mean chance of no purchase: a risk unusual for the
#: tier (the list is ranked by that ratio; the issue's measure of the list is the same ratio of
#: what then happened)
AT_RISK_MIN_RISK_RATIO = 2.0
#: the most customers the ranked list (and its CSV) holds: the first by the risk against the tier
#: (which the engine computes exactly), ties by an approximate value at risk
AT_RISK_CANDIDATES = 5000

_COLUMNS = ["tier", "why", "last_purchase", "time_since_last_purchase", "usual_gap", "purchases_so_far",
            "spend_so_far", "p_alive", "p_no_purchase_in_horizon", "risk_against_tier", "clv", "value_if_retained",
            "value_at_risk"]


def approximate_value_at_risk(clv: Any, p_any_purchase: Any) -> Any:
    """The ranking's tie-break before the exact one, in pandas or as an engine expression alike:
    expected value x chance of no purchase in the horizon (the exact value at risk replaces the
    expected value by the value within reach, which needs a second forecast)."""
    return clv * (1 - p_any_purchase)


def tier_p_no_purchase(customers: pd.DataFrame) -> pd.Series:
    """Each tier's mean chance of no purchase in the horizon, over all its customers (``tier``,
    ``p_any_purchase`` per customer): what a listed customer's risk is measured against."""
    return (1 - customers["p_any_purchase"]).groupby(customers["tier"].astype(str)).mean()


def at_risk_customers(candidates: pd.DataFrame, model: Any, spend: Any, settings: dict[str, Any], *,
                      observation_end: str, time_unit: str, log: Any = None,
                      tiers_considered: tuple[str, ...] = ("Platinum", "Gold")) -> pd.DataFrame:
    """Valuable customers likely to buy nothing during the horizon, the most unusual risk first.

    ``candidates``: per customer ``frequency, recency, T, monetary_value``, the forecast columns
    (``clv``, ``p_alive``, ``p_any_purchase``) and ``tier`` - every customer, or those the engine
    pre-selected with each tier's mean chance of no purchase in ``attrs["tier_p_no_purchase"]``
    (:func:`clvmodels.scoring.at_risk_candidates`). Listed: the tiers considered with a chance of
    no purchase in the horizon of at least :data:`AT_RISK_MIN_P_NO_PURCHASE` and at least
    :data:`AT_RISK_MIN_RISK_RATIO` times their tier's mean, ranked by that ratio - the
    **risk against the tier** (a Platinum customer with a 60% chance of buying nothing, where a
    typical Platinum customer has 20%, comes before a Gold customer at 90% where Gold's is 45%) -
    then by the **value at risk** = value if retained x P(active now) x P(no purchase in the
    horizon), shown on every row: what the customer brings if still active and kept (the
    forecast with dropout switched off), the share of it a retention effort can still reach, and
    how likely it is to be lost.

    Why this ranking: on CDNOW master cut at 1997-09-30 and 1997-12-31 (the issue's cuts) with BG/NBD,
    MBG/NBD and Pareto/NBD, the 50 customers it lists bought nothing in the next 26 weeks 2.04-2.33
    times as often as their tiers' average (the goal: 2; 1.94-2.44 at 1997-06-30 and 1998-01-31 as
    well), where ranking by the value at risk (the list until this ranking) gave 1.63-2.09 - the value
    weighting pulls in valuable customers whose risk is ordinary for their tier - and by the value at
    stake (value if retained minus expected value; the list until December 2026) 0.2-0.3. The value at
    risk ranking held a somewhat larger share of the tiers' lost value (3.9-6.1% against 3.4-5.7%;
    ``validation/at_risk_lift.py``).

    Returns up to :data:`AT_RISK_CANDIDATES` rows (``attrs["qualified"]``: how many met the criteria
    in all), best first, indexed by customer: tier, why
    (in words: usual gap between purchases against the silence since the last, and the risk
    against the tier's), last purchase date, time since it and the usual gap (in the time unit),
    purchases so far, spend so far (from ``log`` when given, else the repeat purchases' spend),
    chance still active, chance of no purchase in the horizon, its ratio to the tier's mean,
    expected value (CLV), value if retained, value at risk.
    """
    means = candidates.attrs.get("tier_p_no_purchase")
    means = tier_p_no_purchase(candidates) if means is None else pd.Series(means, dtype=float)
    tier = candidates["tier"].astype(str)
    p_no = 1 - candidates["p_any_purchase"]
    ratio = p_no / tier.map(means).astype(float)
    df = candidates[tier.isin(tiers_considered) & (p_no >= AT_RISK_MIN_P_NO_PURCHASE)
                    & (ratio >= AT_RISK_MIN_RISK_RATIO)]
    if df.empty:
        return _empty_at_risk(time_unit)
    qualified = int(candidates.attrs.get("qualified", len(df)))  # the engine pre-selected: it counted them
    order = pd.DataFrame({"ratio": ratio[df.index], "approx": approximate_value_at_risk(df["clv"], df["p_any_purchase"])})
    df = df.loc[order.sort_values(["ratio", "approx"], ascending=False, kind="stable").index[:AT_RISK_CANDIDATES]]
    ratio = ratio[df.index]
    rfm = df[["frequency", "recency", "T", "monetary_value"]].copy()
    rfm.attrs["time_unit"] = time_unit
    kept = (model.forecast(spend, rfm, dropout_scale=1e-9, **settings) if hasattr(model, "parts") else
            forecast(model, spend, rfm, dropout_scale=1e-9, **settings))
    within_reach = kept["clv"]
    if_retained = within_reach / df["p_alive"]
    p_no = 1 - df["p_any_purchase"]
    since = df["T"] - df["recency"]
    gap = (df["recency"] / df["frequency"]).where(df["frequency"] > 0)
    days = DAYS_PER_UNIT[time_unit]
    last = pd.Timestamp(observation_end) - pd.to_timedelta(np.round(since.to_numpy() * days), unit="D")
    out = pd.DataFrame({
        "tier": df["tier"].astype(str),
        "why": [f"{w}; {r:.1f}x a typical {t} customer's risk of buying nothing"
                for w, r, t in zip(_reasons(gap, since, df["frequency"], time_unit), ratio, df["tier"].astype(str),
                                   strict=True)],
        "last_purchase": pd.DatetimeIndex(last).date,
        "time_since_last_purchase": since,
        "usual_gap": gap,
        "purchases_so_far": df["frequency"] + 1,
        "spend_so_far": df["frequency"] * df["monetary_value"],
        "p_alive": df["p_alive"],
        "p_no_purchase_in_horizon": p_no,
        "risk_against_tier": ratio,
        "clv": df["clv"],
        "value_if_retained": if_retained,
        "value_at_risk": within_reach * p_no,
    }, index=df.index)
    out = out.sort_values(["risk_against_tier", "value_at_risk", "clv"], ascending=False, kind="stable")
    if log is not None and len(out):
        out["spend_so_far"] = _spend_so_far(log, out.index, observation_end).reindex(out.index).fillna(
            out["spend_so_far"]).to_numpy()
    out.attrs.update({"time_unit": time_unit, "spend_so_far": "all purchases" if log is not None else
                      "repeat purchases", "qualified": max(qualified, len(out))})
    return out


def _reasons(gap: pd.Series, since: pd.Series, frequency: pd.Series, time_unit: str) -> list[str]:
    """Each row's reason in words: "usually buys every 3.0 weeks, silent for 11.0"."""
    unit = {"D": "days", "W": "weeks"}.get(time_unit, "time units")
    out = []
    for g, s, x in zip(gap.to_numpy(float), since.to_numpy(float), frequency.to_numpy(float), strict=True):
        if x > 0 and np.isfinite(g) and g > 0:
            times = f"{s / g:.1f} times the usual gap" if s >= g else "within the usual gap"
            out.append(f"usually buys every {g:.1f} {unit}, silent for {s:.1f} ({times})")
        else:
            out.append(f"one purchase so far, {s:.1f} {unit} ago")
    return out


def _empty_at_risk(time_unit: str = "W") -> pd.DataFrame:
    out = pd.DataFrame(columns=_COLUMNS)
    out.attrs["time_unit"] = time_unit
    return out


def _spend_so_far(log: Any, ids: pd.Index, observation_end: str) -> pd.Series:
    """Total spend of a few customers up to the observation end, asked of the log's engine."""
    wanted = [v.item() if hasattr(v, "item") else v for v in ids]
    t = log.filter(log.customer_id.isin(wanted) & (log.date <= ibis.date(str(observation_end))))
    got = execute(t.group_by("customer_id").aggregate(spend=t.amount.sum()))
    return got.set_index("customer_id")["spend"]


#: a fall of P(alive) since the last run at least this large is said in an at-risk row's reason
P_ALIVE_FALL_SAID = 0.10


def with_last_run(at_risk: pd.DataFrame, p_alive_then: pd.Series) -> pd.DataFrame:
    """The at-risk list with each customer's P(alive) in the earlier run (``p_alive_last_run``,
    empty where that run did not know them) and, where it fell by :data:`P_ALIVE_FALL_SAID` or
    more, the fall said in the reason ("...; chance still active fell from 90% to 41% since the
    last run"). The ranking stays the risk against the tier (measured; the fall is what a manager
    asks)."""
    if not len(at_risk):
        return at_risk
    out = at_risk.copy()
    out.attrs.update(at_risk.attrs)
    then = p_alive_then.reindex(out.index.astype(str)).to_numpy(float)
    out["p_alive_last_run"] = then
    fell = np.isfinite(then) & (then - out["p_alive"].to_numpy(float) >= P_ALIVE_FALL_SAID)
    out["why"] = [f"{w}; chance still active fell from {a:.0%} to {b:.0%} since the last run" if f else w
                  for w, a, b, f in zip(out["why"], then, out["p_alive"], fell, strict=True)]
    return out
