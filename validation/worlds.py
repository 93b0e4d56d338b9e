"""Transaction logs that break the models' assumptions one at a time, with the truth kept.

Each world is a log in weeks from 2020-01-06 (continuous purchase times, merged to calendar days
as any real log is), a date to report from (``cut``) and a date the log runs to (``end``): the
report is made as of ``cut`` with the horizon ``end - cut`` and checked against what the
generated customers did after ``cut``.

While active a customer buys as a Poisson process of rate ``lambda m(t)`` with
``lambda ~ Gamma(r, alpha)`` and ``m`` a calendar multiplier (1 unless the world says
otherwise); after each repeat purchase they leave with probability ``p ~ Beta(a, b)``
(BG/NBD). Spend per purchase is Gamma-Gamma unless the world says otherwise.

=================== ===================================================================
world               what breaks
=================== ===================================================================
``BG/NBD``          nothing (the control)
``left-truncated``  the log starts in the middle of a customer base acquired over three
                    years before it: the first purchase seen is not the first purchase
``no dropout``      nobody leaves (a / (a+b) ~ 1e-6)
``seasonal``        purchase rates swing +-60% over the calendar year
``trending``        purchase rates fall 45% over the 2.5 years of the log
``heavy-tailed``    spend per purchase is log-normal with a heavy tail (not Gamma-Gamma)
``spend drifts``    Gamma-Gamma spend whose level moves from year to year (log-normal shock
                    of spread ``DRIFT`` per customer-year): past spend says less about future
                    spend than within-year consistency suggests (an apparel shop's top spenders)
``weakly identified`` 400 customers acquired in two weeks, observed 20 weeks
``regular buyers``  inter-purchase times are Erlang-3, not exponential (MBG/CNBD-k's world,
                    :func:`simulate_regular`: a customer silent for three of their usual
                    gaps is probably gone)
``seasonal dropout`` Pareto/NBD customers (:func:`simulate_pareto_calendar`), acquired over
                    two years, who buy +-50% over the year and leave e^0.8 times as often
                    around New Year as on average, e^-0.8 in midsummer; cut at week 160 of
                    212 (a dropout season needs two years of calibration before the
                    backtest's holdout year)
``no prices``       every purchase is worth 1 (a log of counts, or one fixed-price product):
                    spend has no variation to model
``left-truncated, late arrivals differ`` a customer base from before the log, and newcomers
                    during it who buy half as often (a loyalty panel: learning from the
                    newcomers alone under-forecasts everyone else)
=================== ===================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

START = pd.Timestamp("2020-01-06")


@dataclass
class World:
    name: str
    log: pd.DataFrame
    cut: str
    end: str
    note: str


#: spread (log scale) of a customer's yearly spend level in the ``spend drifts`` world
DRIFT = 0.7


def _simulate(n: int, *, acquisition: tuple[float, float], span: float, r: float = 0.5, alpha: float = 5.0,
              a: float = 0.8, b: float = 2.5, multiplier: Callable[[np.ndarray], np.ndarray] | None = None,
              mult_max: float = 1.0, spend: str = "gamma-gamma", observed_from: float = 0.0,
              seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    t0 = rng.uniform(*acquisition, n)
    nu = rng.gamma(3.74, 1.0 / 15.44, n)  # Gamma-Gamma's spend rate (CDNOW's q, v)
    cust_mean = np.exp(rng.normal(3.0, 1.0, n))  # heavy-tailed world: a customer's typical spend
    ids, times, amounts = [], [], []
    for i in range(n):
        # candidate purchases at the top rate, thinned by the calendar multiplier
        k = rng.poisson(lam[i] * mult_max * (span - t0[i]))
        cand = np.sort(rng.uniform(t0[i], span, k))
        if multiplier is not None and k:
            cand = cand[rng.random(k) < multiplier(cand) / mult_max]
        # they leave right after their K-th repeat purchase, K ~ Geometric(p)
        keep = min(len(cand), int(rng.geometric(max(p[i], 1e-12))))
        t = np.concatenate([[t0[i]], cand[:keep]])
        t = t[t >= observed_from]
        if not len(t):
            continue
        if spend == "gamma-gamma":
            z = rng.gamma(6.25, 1.0 / nu[i], len(t))
        elif spend == "outliers":
            z = rng.gamma(6.25, 1.0 / nu[i], len(t)) * np.where(rng.random(len(t)) < 0.03, 15.0, 1.0)
        elif spend == "drifting":
            # Gamma-Gamma spend whose level moves from year to year (one shock per customer-year)
            shock = np.exp(rng.normal(-0.5 * DRIFT ** 2, DRIFT, int(span // 52) + 2))
            z = rng.gamma(6.25, 1.0 / nu[i], len(t)) * shock[(t // 52).astype(int)]
        else:
            z = cust_mean[i] * np.exp(rng.normal(-0.5, 1.0, len(t)))
        ids.append(np.full(len(t), i))
        times.append(t)
        amounts.append(z)
    t = np.concatenate(times) - observed_from
    return pd.DataFrame({
        "customer_id": np.concatenate(ids).astype(str),
        "date": (START + pd.to_timedelta(t * 7, unit="D")).normalize(),
        "amount": np.round(np.concatenate(amounts), 2),
    })


def simulate_regular(n: int, *, k: int = 3, r: float = 2.0, alpha: float = 4.0, a: float = 0.6, b: float = 8.0,
                     acquisition: tuple[float, float] = (0.0, 26.0), span: float = 130.0,
                     seed: int = 0) -> pd.DataFrame:
    """Purchase times (weeks, continuous) under MBG/CNBD-k (Platzer & Reutterer 2016): the first
    purchase at acquisition, then Erlang-k gaps of rate ``lambda ~ Gamma(r, alpha)`` (a mean
    gap of ``k/lambda``); right after every purchase, the first included, the customer leaves
    with probability ``p ~ Beta(a, b)``. Returns ``customer, time, amount`` rows up to ``span``."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    nu = rng.gamma(3.74, 1.0 / 15.44, n)
    now = rng.uniform(*acquisition, n)
    ids, times = [np.arange(n)], [now.copy()]
    active = np.ones(n, bool)
    while True:
        active &= rng.random(n) >= p  # the coin after the purchase just made
        now = now + rng.gamma(k, 1.0 / lam)
        active &= now <= span
        if not active.any():
            break
        ids.append(np.flatnonzero(active))
        times.append(now[active])
    cust = np.concatenate(ids)
    return pd.DataFrame({"customer": cust, "time": np.concatenate(times),
                         "amount": np.round(rng.gamma(6.25, 1.0 / nu[cust]), 2)})


def _regular_log(n: int, seed: int) -> pd.DataFrame:
    purchases = simulate_regular(n, seed=seed)
    return pd.DataFrame({"customer_id": purchases["customer"].astype(str),
                         "date": (START + pd.to_timedelta(purchases["time"] * 7, unit="D")).dt.normalize(),
                         "amount": purchases["amount"]})


def _date(weeks: float) -> str:
    return str((START + pd.Timedelta(days=7 * weeks)).date())


def worlds(n: int = 4000, seed: int = 0) -> list[World]:
    """The generated worlds (see the module docstring); ``n`` customers each."""
    span, cut = 130.0, 78.0
    acq = (0.0, 26.0)
    out = [
        World("BG/NBD", _simulate(n, acquisition=acq, span=span, seed=seed), _date(cut), _date(span),
              "the model's own assumptions"),
        World("left-truncated", _simulate(n * 3, acquisition=(-156.0, span), span=span + 156.0, observed_from=156.0,
                                          seed=seed + 1), _date(cut), _date(span),
              "customers acquired steadily for three years before the log starts"),
        World("no dropout", _simulate(n, acquisition=acq, span=span, a=1e-5, b=10.0, seed=seed + 2), _date(cut),
              _date(span), "nobody leaves"),
        World("seasonal", _simulate(n, acquisition=acq, span=span, seed=seed + 3, mult_max=1.6,
                                    multiplier=lambda t: 1 + 0.6 * np.sin(2 * np.pi * t / 52.0)),
              _date(cut), _date(span), "purchase rates +-60% over the year"),
        World("trending", _simulate(n, acquisition=acq, span=span, seed=seed + 4,
                                    multiplier=lambda t: np.exp(-0.0046 * t)),
              _date(cut), _date(span), "purchase rates fall 45% over the log"),
        World("heavy-tailed", _simulate(n, acquisition=acq, span=span, seed=seed + 5, spend="lognormal"),
              _date(cut), _date(span), "log-normal spend, customer means spread over a factor of 50"),
        World("spend drifts", _simulate(n, acquisition=acq, span=span, seed=seed + 11, spend="drifting"),
              _date(cut), _date(span), "a customer's spend level changes from year to year"),
        World("outliers", _simulate(n, acquisition=acq, span=span, seed=seed + 12, spend="outliers"),
              _date(cut), _date(span), "3% of purchases 15x"),
        World("weakly identified", _simulate(400, acquisition=(0.0, 2.0), span=46.0, seed=seed + 6),
              _date(20.0), _date(46.0), "400 customers, 20 weeks"),
        World("regular buyers", _regular_log(n, seed + 7), _date(cut), _date(span),
              "Erlang-3 inter-purchase times (MBG/CNBD-k)"),
        World("seasonal dropout", simulate_pareto_calendar(
            n, seed=seed + 8, acquisition=(0.0, 104.0), span=212.0, beta=40.0,
            purchase=lambda t: 1 + 0.5 * np.sin(2 * np.pi * t / 52.0), purchase_max=1.5,
            dropout=lambda t: np.exp(0.8 * np.cos(2 * np.pi * t / 52.0)), dropout_max=float(np.exp(0.8))),
              _date(160.0), _date(212.0), "purchases +-50% and dropout x e^+-0.8 over the year"),
        World("no prices", _simulate(n, acquisition=acq, span=span, seed=seed + 9).assign(amount=1.0),
              _date(cut), _date(span), "every purchase is worth the same (a log of counts)"),
        World("left-truncated, late arrivals differ", _late_arrivals_differ(n, span, seed + 10), _date(cut),
              _date(span), "a customer base from before the log, and newcomers who buy half as often"),
    ]
    return out


def _late_arrivals_differ(n: int, span: float, seed: int) -> pd.DataFrame:
    """A loyalty panel's log: ``6n`` customers acquired over the three years before it starts
    (left truncation; about ``2n`` still buying when it starts) and ``n`` newcomers during it who
    buy half as often (alpha 10 instead of 5): learning from the newcomers alone mis-forecasts
    the long-standing customers."""
    old = _simulate(6 * n, acquisition=(-156.0, 0.0), span=span + 156.0, observed_from=156.0, seed=seed)
    new = _simulate(n, acquisition=(156.0, 156.0 + span), span=span + 156.0, observed_from=156.0, alpha=10.0,
                    seed=seed + 1000)
    return pd.concat([old, new.assign(customer_id="n" + new["customer_id"])], ignore_index=True)


def simulate_pareto_calendar(n: int, *, r: float = 0.6, alpha: float = 4.0, s: float = 0.8, beta: float = 30.0,
                             acquisition: tuple[float, float] = (0.0, 26.0), span: float = 130.0,
                             purchase: Callable[[np.ndarray], np.ndarray] | None = None, purchase_max: float = 1.0,
                             dropout: Callable[[np.ndarray], np.ndarray] | None = None, dropout_max: float = 1.0,
                             seed: int = 0) -> pd.DataFrame:
    """A Pareto/NBD log with calendar multipliers in both processes (weeks from 2020-01-06):
    purchases at rate ``lambda purchase(t)`` and dropout at hazard ``mu dropout(t)``, with
    ``lambda ~ Gamma(r, alpha)``, ``mu ~ Gamma(s, beta)``; both by thinning (each multiplier at
    most its ``_max``). Returns ``customer_id, date, amount`` (Gamma-Gamma spend)."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(r, 1.0 / alpha, n)
    mu = rng.gamma(s, 1.0 / beta, n)
    nu = rng.gamma(3.74, 1.0 / 15.44, n)
    t0 = rng.uniform(*acquisition, n)
    ids, times, amounts = [], [], []
    for i in range(n):
        # the dropout time: the first accepted event of a Poisson process at the top hazard
        end, now = span, t0[i]
        while True:
            now += rng.exponential(1.0 / max(mu[i] * dropout_max, 1e-300))
            if now >= span:
                break
            if dropout is None or rng.random() < dropout(np.array([now]))[0] / dropout_max:
                end = now
                break
        k = rng.poisson(lam[i] * purchase_max * (end - t0[i]))
        cand = np.sort(rng.uniform(t0[i], end, k))
        if purchase is not None and k:
            cand = cand[rng.random(k) < purchase(cand) / purchase_max]
        t = np.concatenate([[t0[i]], cand])
        ids.append(np.full(len(t), i))
        times.append(t)
        amounts.append(rng.gamma(6.25, 1.0 / nu[i], len(t)))
    t = np.concatenate(times)
    return pd.DataFrame({
        "customer_id": np.concatenate(ids).astype(str),
        "date": (START + pd.to_timedelta(t * 7, unit="D")).normalize(),
        "amount": np.round(np.concatenate(amounts), 2),
    })
