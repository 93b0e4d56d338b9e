"""Retention a manager can act on: the valuable customers who are probably still active but may
leave, ranked, with what is at stake.

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

__all__ = ["at_risk_customers", "AT_RISK_MIN_P_ALIVE", "AT_RISK_CANDIDATES"]


#: P(alive) at or above which a customer counts as still likely active: the at-risk list is of
#: customers a retention effort can still reach, not of those who are probably gone already
AT_RISK_MIN_P_ALIVE = 0.5
#: customers pre-selected (by expected value lost in the horizon) before the exact ranking
AT_RISK_CANDIDATES = 500


def at_risk_customers(candidates: pd.DataFrame, model: Any, spend: Any, settings: dict[str, Any], *,
                      observation_end: str, time_unit: str, log: Any = None, top: int = 50,
                      tiers_considered: tuple[str, ...] = ("Platinum", "Gold")) -> pd.DataFrame:
    """Valuable customers who are probably still active but may leave during the horizon.

    ``candidates``: per customer ``frequency, recency, T, monetary_value``, the forecast columns
    and ``tier``. Kept: the tiers considered with P(alive) >= :data:`AT_RISK_MIN_P_ALIVE`.
    Ranked by the **value at stake**: the value the customer brings over the horizon if retained
    (active now and not dropping out during the horizon: the forecast with dropout switched off,
    divided by P(alive)) minus the expected value (CLV). Every figure is what its label says and
    at most what it is compared with: value at stake <= value if retained.

    Returns up to ``top`` rows, indexed by customer: tier, last purchase date, time since it (in
    the time unit), purchases so far, spend so far (from ``log`` when given, else the repeat
    purchases' spend), chance still active, chance of leaving during the horizon if active now,
    expected value (CLV), value if retained, value at stake.
    """
    df = candidates[candidates["tier"].astype(str).isin(tiers_considered)
                    & (candidates["p_alive"] >= AT_RISK_MIN_P_ALIVE)]
    if df.empty:
        return _empty_at_risk()
    # pre-selection by the expected value lost in the horizon, then the exact figures
    approx = df["churn_probability_during_horizon"] / df["p_alive"] * df["clv"]
    df = df.loc[approx.sort_values(ascending=False, kind="stable").index[:AT_RISK_CANDIDATES]]
    rfm = df[["frequency", "recency", "T", "monetary_value"]].copy()
    rfm.attrs["time_unit"] = time_unit
    kept = (model.forecast(spend, rfm, dropout_scale=1e-9, **settings) if hasattr(model, "parts") else
            forecast(model, spend, rfm, dropout_scale=1e-9, **settings))
    if_retained = kept["clv"] / df["p_alive"]
    stake = if_retained - df["clv"]
    since = df["T"] - df["recency"]
    days = DAYS_PER_UNIT[time_unit]
    last = pd.Timestamp(observation_end) - pd.to_timedelta(np.round(since.to_numpy() * days), unit="D")
    out = pd.DataFrame({
        "tier": df["tier"].astype(str),
        "last_purchase": pd.DatetimeIndex(last).date,
        "time_since_last_purchase": since,
        "purchases_so_far": df["frequency"] + 1,
        "spend_so_far": df["frequency"] * df["monetary_value"],
        "p_alive": df["p_alive"],
        "p_leave_in_horizon_if_active": df["churn_probability_during_horizon"] / df["p_alive"],
        "clv": df["clv"],
        "value_if_retained": if_retained,
        "value_at_stake": stake,
    }, index=df.index)
    out = out.sort_values(["value_at_stake", "clv"], ascending=False, kind="stable").head(int(top))
    if log is not None and len(out):
        out["spend_so_far"] = _spend_so_far(log, out.index, observation_end).reindex(out.index).fillna(
            out["spend_so_far"]).to_numpy()
    out.attrs.update({"time_unit": time_unit, "spend_so_far": "all purchases" if log is not None else
                      "repeat purchases"})
    return out


def _empty_at_risk() -> pd.DataFrame:
    cols = ["tier", "last_purchase", "time_since_last_purchase", "purchases_so_far", "spend_so_far", "p_alive",
            "p_leave_in_horizon_if_active", "clv", "value_if_retained", "value_at_stake"]
    return pd.DataFrame(columns=cols)


def _spend_so_far(log: Any, ids: pd.Index, observation_end: str) -> pd.Series:
    """Total spend of a few customers up to the observation end, asked of the log's engine."""
    wanted = [v.item() if hasattr(v, "item") else v for v in ids]
    t = log.filter(log.customer_id.isin(wanted) & (log.date <= ibis.date(str(observation_end))))
    got = execute(t.group_by("customer_id").aggregate(spend=t.amount.sum()))
    return got.set_index("customer_id")["spend"]
