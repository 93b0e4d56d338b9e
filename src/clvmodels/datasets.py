"""Bundled and generated data: the CDNOW logs and a BG/NBD + Gamma-Gamma simulator."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd

from clvmodels._validation import (
    DAYS_PER_UNIT,
    TimeUnit,
    check_choice,
    check_number,
    check_time_unit,
)

__all__ = ["load_cdnow", "cdnow_path", "load_donations", "simulate_transactions", "SimulatedData", "example_subscriptions",
           "CDNOW_PURCHASE_PARAMS", "CDNOW_SPEND_PARAMS"]

#: BG/NBD estimates on the CDNOW sample, weeks (Fader, Hardie & Lee 2005, section 5)
CDNOW_PURCHASE_PARAMS = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
#: Gamma-Gamma estimates on the CDNOW sample's repeat buyers (Fader & Hardie 2013)
CDNOW_SPEND_PARAMS = {"p": 6.25, "q": 3.74, "v": 15.44}

_CDNOW_FILES = {"master": "CDNOW_master.txt.gz", "sample": "CDNOW_sample.txt.gz"}


def cdnow_path(which: Literal["master", "sample"] = "master") -> Path:
    """Path of the raw CDNOW file shipped inside clvmodels (gzip-compressed, read-only input)."""
    check_choice("which", which, tuple(_CDNOW_FILES))
    return Path(str(resources.files("clvmodels") / "data" / _CDNOW_FILES[which]))


def load_donations() -> pd.DataFrame:
    """The 1995 cohort of donors of Fader, Hardie & Shang (2010): one row per repeat pattern.

    ``frequency`` (repeat donations in the 6 yearly opportunities 1996-2001), ``recency`` (the
    opportunity of the last one), ``n_periods`` (6) and ``weights`` (donors with that pattern;
    11,104 in all). For :class:`clvmodels.models.beta_geo_beta_binom.BetaGeoBetaBinomModel`.
    """
    path = Path(str(resources.files("clvmodels") / "data" / "donations.csv"))
    return pd.read_csv(path).rename(columns={"periods": "n_periods"})


def load_cdnow(which: Literal["master", "sample"] = "master") -> pd.DataFrame:
    """The CDNOW transaction log (Fader, Hardie & Lee 2005).

    Purchases of the 23,570 customers who first bought at CDNOW in the first quarter of 1997,
    followed to the end of June 1998 (``"master"``, 69,659 rows), or the 1/10th sample of
    2,357 customers used in the papers (``"sample"``, 6,919 rows).

    Parameters
    ----------
    which : {"master", "sample"}

    Returns
    -------
    pandas.DataFrame
        ``customer_id`` (int; in the sample, the sample's own ids 1..2357 as in the papers'
        tables), ``date`` (datetime64), ``amount`` (dollars) and ``quantity`` (CDs).
    """
    path = cdnow_path(which)
    if which == "master":
        raw = pd.read_csv(path, sep=r"\s+", header=0,
                          names=["customer_id", "date", "quantity", "amount"],
                          dtype={"customer_id": np.int64, "date": str})
    else:
        raw = pd.read_csv(path, sep=r"\s+", header=None,
                          names=["master_id", "customer_id", "date", "quantity", "amount"],
                          dtype={"customer_id": np.int64, "date": str})
    return pd.DataFrame({
        "customer_id": raw["customer_id"].to_numpy(),
        "date": pd.to_datetime(raw["date"], format="%Y%m%d"),
        "amount": raw["amount"].astype(float).to_numpy(),
        "quantity": raw["quantity"].astype(np.int64).to_numpy(),
    })


class SimulatedData(NamedTuple):
    """A generated log and the truth behind it."""

    transactions: pd.DataFrame
    """``customer_id``, ``date``, ``amount``: one row per purchase."""
    truth: pd.DataFrame
    """Per customer: ``purchase_rate`` (lambda per time unit), ``dropout_probability`` (p),
    ``alive`` (still active at the end), ``mean_spend`` (p/nu), ``first_purchase`` (date),
    ``repeat_purchases`` (in the window)."""


def simulate_transactions(
    n_customers: int,
    *,
    r: float = CDNOW_PURCHASE_PARAMS["r"],
    alpha: float = CDNOW_PURCHASE_PARAMS["alpha"],
    a: float = CDNOW_PURCHASE_PARAMS["a"],
    b: float = CDNOW_PURCHASE_PARAMS["b"],
    p: float = CDNOW_SPEND_PARAMS["p"],
    q: float = CDNOW_SPEND_PARAMS["q"],
    v: float = CDNOW_SPEND_PARAMS["v"],
    period: float = 78.0,
    acquisition_period: float = 12.0,
    time_unit: TimeUnit = "W",
    start: str = "2020-01-01",
    exact_times: bool = False,
    seed: int | None = 0,
) -> SimulatedData:
    """Draw a transaction log from BG/NBD purchases/dropout and Gamma-Gamma spend.

    Each customer gets a purchase rate ``lambda ~ Gamma(r, rate=alpha)``, a dropout probability
    ``p ~ Beta(a, b)`` and a spend rate ``nu ~ Gamma(q, rate=v)``; every purchase is worth
    ``Gamma(p, rate=nu)``. First purchases are uniform over ``[0, acquisition_period)``;
    repeat purchases follow a Poisson process of rate ``lambda`` until the customer drops out,
    which happens right after each repeat purchase with probability ``p`` (Fader, Hardie &
    Lee 2005). Rates are per ``time_unit``. Fully vectorised: no Python loop per customer or
    purchase.

    Parameters
    ----------
    n_customers : int
    r, alpha, a, b : float
        BG/NBD parameters (defaults: the CDNOW estimates, in weeks).
    p, q, v : float
        Gamma-Gamma parameters (defaults: the CDNOW estimates).
    period : float
        Length of the whole window in ``time_unit``; all customers are observed to its end.
    acquisition_period : float
        First purchases are spread uniformly over this first part of the window.
    time_unit : {"D", "W"}
    start : date-like
        Calendar date of time 0.
    exact_times : bool
        If False (default) purchase times are rounded down to calendar days, as in a real
        log (purchases on the same day then merge); if True ``date`` keeps the exact time.
    seed : int or None

    Returns
    -------
    SimulatedData
        ``(transactions, truth)``.
    """
    n = check_number("n_customers", n_customers, minimum=1, integer=True)
    unit = check_time_unit(time_unit)
    for name, value in {"r": r, "alpha": alpha, "a": a, "b": b, "p": p, "q": q, "v": v}.items():
        check_number(name, value, minimum=0, min_inclusive=False)
    check_number("period", period, minimum=0, min_inclusive=False)
    check_number("acquisition_period", acquisition_period, minimum=0, maximum=period)
    rng = np.random.default_rng(seed)

    lam = rng.gamma(r, 1.0 / alpha, n)
    drop = rng.beta(a, b, n)
    nu = rng.gamma(q, 1.0 / v, n)
    first = rng.random(n) * acquisition_period
    horizon = period - first
    # repeat purchases until dropout ~ Geometric(p) on 1, 2, ...; a purchase count in the window
    # ~ Poisson(lambda * horizon); the customer makes the smaller of the two
    n_until_dropout = rng.geometric(np.clip(drop, 1e-300, 1.0))
    n_in_window = rng.poisson(lam * horizon)
    repeats = np.minimum(n_until_dropout, n_in_window)
    alive = n_until_dropout > n_in_window

    # Given N Poisson events in [0, h], their sorted times are h * S_k / S_{N+1}, S the partial
    # sums of N+1 standard exponentials; we only need the first `repeats` of them.
    spacings = n_in_window + 1
    total = int(spacings.sum())
    cum = np.cumsum(rng.standard_exponential(total))
    ends = np.cumsum(spacings)
    starts = ends - spacings
    offset = np.where(starts > 0, cum[starts - 1], 0.0)
    group_total = cum[ends - 1] - offset
    owner = np.repeat(np.arange(n), spacings)
    position = np.arange(total) - starts[owner]
    keep = position < repeats[owner]
    k_owner = owner[keep]
    frac = (cum[keep] - offset[k_owner]) / group_total[k_owner]
    repeat_times = first[k_owner] + frac * horizon[k_owner]

    cust = np.concatenate([np.arange(n), k_owner])
    times = np.concatenate([first, repeat_times])
    order = np.argsort(cust, kind="stable")
    cust, times = cust[order], times[order]
    amounts = rng.gamma(p, 1.0, cust.size) / nu[cust]

    days = times * DAYS_PER_UNIT[unit]
    origin = pd.Timestamp(start)
    if exact_times:
        dates = origin + pd.to_timedelta(days, unit="D")
    else:
        dates = origin + pd.to_timedelta(np.floor(days).astype(np.int64), unit="D")
    transactions = pd.DataFrame({"customer_id": cust.astype(np.int64), "date": dates, "amount": amounts})
    truth = pd.DataFrame(
        {
            "purchase_rate": lam,
            "dropout_probability": drop,
            "alive": alive,
            "mean_spend": p / nu,
            "first_purchase": origin + pd.to_timedelta(np.floor(first * DAYS_PER_UNIT[unit]).astype(np.int64), unit="D"),
            "repeat_purchases": repeats,
        },
        index=pd.Index(np.arange(n, dtype=np.int64), name="customer_id"),
    )
    truth.attrs.update({"time_unit": unit, "observation_end": str((origin + pd.Timedelta(days=period * DAYS_PER_UNIT[unit])).date())})
    return SimulatedData(transactions, truth)


def example_subscriptions(per_month: int = 60, *, months: int = 48, start: str = "2021-01-01",
                          seed: int = 0) -> pd.DataFrame:
    """A generated subscription log for trying the subscription report: two plans, ``per_month``
    new subscribers each per month for ``months`` months, monthly renewals, churn from the
    shifted-beta-geometric model with Fader & Hardie (2007)'s estimates - "regular" (alpha 0.704,
    beta 1.182, 30 a month) and "high end" (alpha 0.668, beta 3.806, 80 a month) - read per
    month. The log ends on the last day of the last month; subscriptions still running then have
    no ``end``.

    Returns
    -------
    pandas.DataFrame
        ``customer_id``, ``plan``, ``start``, ``end`` (NaT while active), ``amount`` (per month).
    """
    rng = np.random.default_rng(seed)
    first = pd.Timestamp(start)
    last = (first + pd.DateOffset(months=months)) - pd.Timedelta(days=1)
    frames = []
    for plan, (alpha, beta, amount) in {"regular": (0.704, 1.182, 30.0), "high end": (0.668, 3.806, 80.0)}.items():
        n = per_month * months
        month = np.repeat(np.arange(months), per_month)
        starts = pd.DatetimeIndex([first + pd.DateOffset(months=int(m)) for m in range(months)])[month]
        starts = starts + pd.to_timedelta(rng.integers(0, 28, n), unit="D")
        theta = rng.beta(alpha, beta, n)
        stay = np.minimum(rng.geometric(np.clip(theta, 1e-9, 1.0)), 12 * 100)  # months paid
        ends = pd.DatetimeIndex([s + pd.DateOffset(months=int(k)) for s, k in zip(starts, stay, strict=True)])
        frames.append(pd.DataFrame({"plan": plan, "start": starts, "end": ends.where(ends <= last),
                                    "amount": amount}))
    out = pd.concat(frames, ignore_index=True)
    out.insert(0, "customer_id", [f"S{i:05d}" for i in range(len(out))])
    return out
