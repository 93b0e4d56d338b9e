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

from clvmodels._validation import check_number
from clvmodels.exceptions import DataValidationError, ModelError, ParameterError
from clvmodels.models.gamma_gamma import conditional_spend

__all__ = [
    "TIERS",
    "DEFAULT_SHARES",
    "assign_tiers",
    "tier_summary",
    "tier_intervals",
    "retention_what_if",
    "backtest_error",
    "widen_intervals",
]

TIERS = ("Platinum", "Gold", "Iron", "Lead")
#: Share of customers per tier, most valuable first. Value in non-contractual businesses is
#: very concentrated (on CDNOW the top 5% of customers hold about a third of predicted value),
#: so Platinum is a small elite; Lead is the large tail of one-time buyers who are most likely
#: gone. Shares are of customers, not value; negative-CLV customers are always Lead.
DEFAULT_SHARES: dict[str, float] = {"Platinum": 0.05, "Gold": 0.15, "Iron": 0.50, "Lead": 0.30}

TIER_DTYPE = pd.CategoricalDtype(list(TIERS), ordered=True)


def _check_shares(shares: Mapping[str, float] | None) -> dict[str, float]:
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
    s = _check_shares(shares)
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
    leave during the horizon) and ``share_of_active_leaving`` (their share of the active). With
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
        return _group_spend(p, q, v, self.n, self.n_valid, self.x, self.sum_m)


def tier_groups(rfm: pd.DataFrame, tiers: pd.Series, *, max_simulated: int = SIMULATED_CUSTOMERS,
                rng: np.random.Generator | None = None) -> TierGroups:
    """:class:`TierGroups` of an in-memory RFM table and its tiers (simulated: everyone, or a
    random ``max_simulated`` of them drawn with ``rng``; nobody when it is 0)."""
    from clvmodels._compress import compress
    from clvmodels.forecast import _rfm_arrays

    if not tiers.index.equals(rfm.index):
        raise DataValidationError("tiers must be indexed like rfm (one tier per customer).")
    x, tx, T, m = _rfm_arrays(rfm)
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


def tier_intervals(
    transaction_model: Any,
    spend_model: Any,
    rfm: pd.DataFrame,
    tiers: pd.Series,
    *,
    horizon: float,
    discount_rate: float = 0.10,
    margin: float = 1.0,
    cost_to_serve: float = 0.0,
    level: float = 0.90,
    n_draws: int = 200,
    seed: int | None = 0,
    max_simulated: int = SIMULATED_CUSTOMERS,
) -> pd.DataFrame:
    """Intervals for each tier's totals over the horizon.

    Purchases and revenue: parameter uncertainty *and* the randomness of purchases. For each
    of ``n_draws`` parameter draws (see :meth:`BetaGeoModel.sample_params`):

    * the tier's expected totals under that draw, exactly, on compressed rows: customers with
      the same ``(frequency, recency, T)`` and tier share every purchase term, and Gamma-Gamma's
      expected spend is linear in ``monetary_value``, so a count and a sum of spends per group
      suffice (cost grows with distinct histories, not customers);
    * plus the randomness of purchases, simulated from the posterior for up to ``max_simulated``
      customers: active with probability P(alive), then purchases from the model's posterior
      given active (BG/NBD: rate ``lambda ~ Gamma(r+x, alpha+T)``, dropout ``p ~ Beta(a, b+x)``,
      purchases the smaller of a Poisson(``lambda h``) count and a Geometric(``p``) number until
      dropout; Pareto/NBD: Poisson over the lifetime left); spend rate
      ``nu ~ Gamma(q + p_s x, v + x zbar)`` and revenue ``Gamma(p_s N, nu)``. With more
      customers than that, a random subsample is simulated and its deviation from its own
      expectation is scaled by ``sqrt(customers in tier / simulated in tier)``: totals of many
      independent customers, whose noise grows with the square root of their number.

    CLV: parameter uncertainty only (the sum of expected values per draw). Memory and time grow
    with distinct histories plus ``max_simulated``, not with customers. Above
    :data:`clvmodels.forecast.DELTA_METHOD_ABOVE` customers the expected totals of each draw come
    from their linearisation in the log-parameters (the delta method) and the purchases are
    simulated at the estimates, instead of recomputing every forecast per draw.

    Returns
    -------
    DataFrame
        Index Platinum..Lead and Total; ``expected_purchases_lower/upper``,
        ``expected_revenue_lower/upper``, ``total_clv_lower/upper``.
    """
    from clvmodels.forecast import (
        _check_models,
        _settings,
    )

    _check_models(transaction_model, spend_model)
    s = _settings(transaction_model, rfm, horizon, discount_rate, margin, cost_to_serve, None)
    max_simulated = check_number("max_simulated", max_simulated, minimum=100, integer=True)
    rng = np.random.default_rng(seed)
    groups = tier_groups(rfm, tiers, max_simulated=max_simulated, rng=rng)
    return grouped_tier_intervals(transaction_model, spend_model, groups, s, level=level, n_draws=n_draws,
                                  seed=seed, rng=rng)


def grouped_tier_intervals(transaction_model: Any, spend_model: Any, g: TierGroups, s: Any, *,
                           level: float = 0.90, n_draws: int = 200, seed: int | None = 0,
                           rng: np.random.Generator | None = None, _fixed_params: bool = False) -> pd.DataFrame:
    """:func:`tier_intervals` from :class:`TierGroups` and forecast settings (``s``)."""
    from clvmodels.forecast import _group_terms, _use_delta_method, history_groups

    level = check_number("level", level, minimum=0.0, maximum=1.0, min_inclusive=False, max_inclusive=False)
    n_draws = check_number("n_draws", n_draws, minimum=10, integer=True)
    rng = rng or np.random.default_rng(seed)
    k = len(TIERS)
    n = g.customers
    tm_draws, sm_draws, omitted = _parameter_draws(transaction_model, spend_model, n_draws, seed, _fixed_params)
    pairs = history_groups(transaction_model, g.x, g.tx, g.T)
    s_buyers = (g.sim_x > 0) & (g.sim_m > 0)
    n_sim_tier = np.bincount(g.sim_code, minlength=k).astype(float)
    scale = np.sqrt(np.divide(g.n_tier, n_sim_tier, out=np.zeros(k), where=n_sim_tier > 0))

    purchases = np.zeros((n_draws, k + 1))
    revenue = np.zeros((n_draws, k + 1))
    clv = np.zeros((n_draws, k + 1))
    delta = _use_delta_method(transaction_model, n)
    if delta:
        _delta_tier_draws(transaction_model, spend_model, s, rng, tm_draws, sm_draws, g, pairs, s_buyers, scale, k,
                          purchases, revenue, clv)
    models = [] if delta else _draw_models(transaction_model, tm_draws)
    for i, tm in enumerate(models):
        p_s, q_s, v_s = sm_draws.iloc[i]
        q_s = max(q_s, 1.0 + 1e-6)
        if tm is None:
            purchases[i] = revenue[i] = clv[i] = np.nan
            continue
        # exact expected totals per group (a draw far along a poorly identified direction may
        # not evaluate: it is dropped below)
        with np.errstate(all="ignore"):
            e_purch, e_disc, e_cost, p_alive = _group_terms(tm, s, g.x, g.tx, g.T, pairs)
        if not (np.all(np.isfinite(e_purch)) and np.all(np.isfinite(p_alive))):
            purchases[i] = revenue[i] = clv[i] = np.nan
            continue
        spend_sum = g.spend_sums(p_s, q_s, v_s)
        exp_purch = np.bincount(g.code, weights=g.n * e_purch, minlength=k)
        exp_rev = np.bincount(g.code, weights=e_purch * spend_sum, minlength=k)
        clv[i, :k] = np.bincount(g.code, weights=s.margin * e_disc * spend_sum - s.cost_to_serve * g.n * e_cost,
                                 minlength=k)
        # process noise from the simulated customers (their expectations come from their groups)
        sg = g.sim_group
        s_spend = conditional_spend(p_s, q_s, v_s, g.sim_x, g.sim_m)
        s_exp = e_purch[sg]
        dev_purch, dev_rev = _simulated_deviations(rng, tm, s.horizon, p_alive[sg], g.sim_x, g.sim_T, g.sim_m,
                                                   s_buyers, (p_s, q_s, v_s), s_exp, s_spend, g.sim_code, k,
                                                   g.tx[g.sim_group])
        purchases[i, :k] = exp_purch + scale * dev_purch
        revenue[i, :k] = exp_rev + scale * dev_rev
    for arr2 in (purchases, revenue, clv):
        arr2[:, k] = arr2[:, :k].sum(axis=1)
    valid = np.isfinite(purchases).all(axis=1) & np.isfinite(revenue).all(axis=1) & np.isfinite(clv).all(axis=1)
    if valid.sum() < max(10, n_draws // 2):
        if omitted:
            raise ModelError(
                "Tier intervals are not finite even at the estimated parameters ("
                + ", ".join(f"{k_}={v:.4g}" for k_, v in transaction_model.params_.items())
                + "); the fitted model cannot be evaluated for these customers.")
        # parameter draws far out along a poorly identified direction cannot be evaluated:
        # the normal approximation to the estimates' sampling distribution has broken down
        out = grouped_tier_intervals(transaction_model, spend_model, g, s, level=level, n_draws=n_draws,
                                     seed=seed, rng=rng, _fixed_params=True)
        out.attrs["parameter_uncertainty"] = (
            f"omitted: {int((~valid).sum())} of {n_draws} parameter draws could not be evaluated "
            "(a poorly identified parameter); the intervals hold the randomness of purchases only")
        return out
    lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
    index = pd.Index([*TIERS, "Total"], name="tier")
    out = pd.DataFrame(index=index)
    for name, arr2 in (("expected_purchases", purchases), ("expected_revenue", revenue), ("total_clv", clv)):
        q = np.quantile(arr2[valid], [lo, hi], axis=0)
        out[f"{name}_lower"] = q[0]
        out[f"{name}_upper"] = q[1]
    out.attrs.update({"level": level, "n_draws": int(valid.sum()), "simulated_customers": len(g.sim_x),
                      "parameter_uncertainty": omitted or (
                          "included" if valid.all() else
                          f"included; {int((~valid).sum())} of {n_draws} parameter draws could not be "
                          "evaluated and were left out")})
    return out


def _draw_models(tm: Any, draws: pd.DataFrame) -> list[Any]:
    """A model of ``tm``'s class per row of parameter draws; None where a draw is not a valid
    parameter set (so far along a poorly identified direction that it overflowed)."""
    out = []
    for i in range(len(draws)):
        try:
            out.append(tm._with_params(draws.iloc[i]))
        except ParameterError:
            out.append(None)
    return out


def _parameter_draws(tm: Any, sm: Any, n_draws: int, seed: int | None,
                     fixed: bool = False) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Draws of both models' parameters for intervals, and why parameter uncertainty is left
    out ("" when it is not): a model without a usable covariance (built from parameters, or a
    singular information matrix) or ``fixed`` gives its estimates in every draw."""
    why = []
    out = []
    for model, offset in ((tm, 0), (sm, 1)):
        cov = getattr(model, "covariance_log_", None)
        if fixed or cov is None or not np.all(np.isfinite(cov)):
            out.append(pd.DataFrame([model.params_.to_numpy()] * n_draws, columns=list(model.params_.index)))
            if not fixed:
                why.append(f"{type(model).__name__} has no parameter covariance")
        else:
            out.append(model.sample_params(n_draws, seed=None if seed is None else seed + offset))
    reason = "omitted: " + "; ".join(why) if why else ("omitted" if fixed else "")
    return out[0], out[1], reason


def _group_spend(p, q, v, g_n, g_valid, gx, g_sum_m):
    """Sum of Gamma-Gamma expected spend over each group of customers with one history:
    :func:`conditional_spend` is linear in a buyer's mean spend, so a count of buyers and the sum
    of their mean spends suffice (the others get the population mean)."""
    return (g_n - g_valid) * p * v / (q - 1) + p * (v * g_valid + gx * g_sum_m) / (p * gx + q - 1)


def _simulated_deviations(rng, tm, horizon, p_alive, x, T, m, buyers, spend_params, expected, spend, codes, k,
                          tx=None):
    """One posterior draw of the simulated customers' purchases and revenue over the horizon,
    minus their expectations, summed per tier: active with probability ``p_alive``, purchases
    from the model's posterior given active, spend rate ``nu ~ Gamma(q + p x, v + x zbar)`` and
    revenue ``Gamma(p N, nu)`` (Gamma-Gamma)."""
    p, q, v = spend_params
    alive = rng.random(len(x)) < p_alive
    from clvmodels.forecast import _recency

    counts = tm._simulate(rng, x, T, horizon, alive, **_recency(tm, tx))
    nu = rng.gamma(q + np.where(buyers, p * x, 0.0), 1.0 / (v + np.where(buyers, x * m, 0.0)))
    rev = np.zeros(len(x))
    pos = counts > 0
    rev[pos] = rng.gamma(p * counts[pos], 1.0 / nu[pos])
    return (np.bincount(codes, weights=counts - expected, minlength=k),
            np.bincount(codes, weights=rev - expected * spend, minlength=k))


def _delta_tier_draws(tm0, sm0, s, rng, tm_draws, sm_draws, g: TierGroups, pairs, s_buyers, scale, k,
                      purchases, revenue, clv) -> None:
    """Fill the per-draw tier totals by the delta method (see :func:`tier_intervals`)."""
    from clvmodels.forecast import _log_jacobian, _purchase_jacobian

    gcode, g_n = g.code, g.n
    base, jac = _purchase_jacobian(tm0, s, g.x, g.tx, g.T, pairs)  # (4, G), (4, 4, G)
    p, q, v = sm0._p()
    ss, d_ss = _log_jacobian(g.spend_sums, (p, q, v))

    def by_tier(w):
        return np.bincount(gcode, weights=w, minlength=k)

    e_purch = by_tier(g_n * base[0])
    e_rev = by_tier(base[0] * ss)
    e_clv = by_tier(s.margin * base[1] * ss - s.cost_to_serve * g_n * base[2])
    # derivatives of the tier totals in the 4 purchase and 3 spend log-parameters
    j_purch = np.array([by_tier(g_n * jac[j, 0]) for j in range(jac.shape[0])])
    j_rev_tm = np.array([by_tier(jac[j, 0] * ss) for j in range(jac.shape[0])])
    j_rev_sm = np.array([by_tier(base[0] * d_ss[j]) for j in range(3)])
    j_clv_tm = np.array([by_tier(s.margin * jac[j, 1] * ss - s.cost_to_serve * g_n * jac[j, 2])
                         for j in range(jac.shape[0])])
    j_clv_sm = np.array([by_tier(s.margin * base[1] * d_ss[j]) for j in range(3)])
    d_tm = np.log(tm_draws.to_numpy()) - np.log(tm0.params_.to_numpy())   # (draws, 4)
    d_sm = np.log(sm_draws.to_numpy()) - np.log(sm0.params_.to_numpy())   # (draws, 3)
    # purchases simulated at the estimates, for the simulated customers
    gi = g.sim_group
    sx, sT, s_m, scode = g.sim_x, g.sim_T, g.sim_m, g.sim_code
    s_exp = base[0][gi]
    p_alive = base[3][gi]
    s_spend = conditional_spend(p, q, v, sx, s_m)
    for i in range(len(d_tm)):
        dev_purch, dev_rev = _simulated_deviations(rng, tm0, s.horizon, p_alive, sx, sT, s_m, s_buyers, (p, q, v),
                                                   s_exp, s_spend, scode, k, g.tx[gi])
        purchases[i, :k] = e_purch + d_tm[i] @ j_purch + scale * dev_purch
        revenue[i, :k] = e_rev + d_tm[i] @ j_rev_tm + d_sm[i] @ j_rev_sm + scale * dev_rev
        clv[i, :k] = e_clv + d_tm[i] @ j_clv_tm + d_sm[i] @ j_clv_sm


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
        ``expected_purchases``, ``expected_purchases_what_if``.
    """
    from clvmodels.forecast import _check_models, _settings

    f = check_number("dropout_reduction", dropout_reduction, minimum=0.0, maximum=1.0, max_inclusive=False)
    _check_models(transaction_model, spend_model)
    s = _settings(transaction_model, rfm, horizon, discount_rate, margin, cost_to_serve, None)
    transaction_model._check_unit(rfm)
    return grouped_what_if(transaction_model, spend_model, tier_groups(rfm, tiers, max_simulated=0), s, f)


def grouped_what_if(transaction_model: Any, spend_model: Any, g: TierGroups, s: Any, f: float) -> pd.DataFrame:
    """:func:`retention_what_if` from :class:`TierGroups` and forecast settings (``s``)."""
    from clvmodels.forecast import _group_terms, history_groups

    # customers with one history and tier share every purchase term; spend enters as a sum
    g_spend = g.spend_sums(*spend_model._p())
    pairs = history_groups(transaction_model, g.x, g.tx, g.T)
    k = len(TIERS)
    columns = {}
    for label, scale in (("", 1.0), ("_what_if", 1.0 - f)):
        terms = _group_terms(transaction_model, s, g.x, g.tx, g.T, pairs, dropout_scale=scale)
        columns[f"clv{label}"] = np.bincount(
            g.code, weights=s.margin * terms[1] * g_spend - s.cost_to_serve * g.n * terms[2], minlength=k)
        columns[f"expected_purchases{label}"] = np.bincount(g.code, weights=g.n * terms[0], minlength=k)
    out = pd.DataFrame(columns, index=pd.Index(list(TIERS), name="tier"))[
        ["clv", "clv_what_if", "expected_purchases", "expected_purchases_what_if"]]
    out.loc["Total"] = out.sum()
    out["change"] = out["clv_what_if"] - out["clv"]
    out["change_pct"] = 100 * out["change"] / out["clv"].where(out["clv"] != 0)
    out.index.name = "tier"
    out.attrs.update({"dropout_reduction": f, **s.as_dict(), "description": s.describe()})
    return out


def backtest_error(scorecard: Any) -> pd.DataFrame:
    """How far the model's tier totals were from what happened in the backtest's holdout.

    Parameters
    ----------
    scorecard : Scorecard
        From :func:`clvmodels.evaluate` with a spend model (it carries predicted and actual
        purchases and revenue per tier).

    Returns
    -------
    DataFrame
        Index Platinum..Lead and Total; ``purchases_pct_error``, ``revenue_pct_error``
        (100 (predicted - actual) / actual) and ``purchases_log_error``,
        ``revenue_log_error`` (``ln(actual / predicted)``, NaN where either is 0). ``attrs``
        holds ``sigma_purchases`` and ``sigma_revenue``: the root mean square of the log errors
        over the tiers and the total, the typical relative size of the model's misses.
    """
    t = scorecard.tiers
    needed = ("predicted_purchases", "actual_purchases", "predicted_revenue", "actual_revenue")
    missing = [c for c in needed if c not in t.columns]
    if missing:
        raise DataValidationError(f"The scorecard's tier table lacks {missing}; evaluate it with a spend model.")
    t = t[list(needed)].astype(float)
    t.loc["Total"] = t.sum()
    out = pd.DataFrame(index=pd.Index(t.index, name="tier"))
    for q in ("purchases", "revenue"):
        pred, act = t[f"predicted_{q}"], t[f"actual_{q}"]
        out[f"predicted_{q}"] = pred
        out[f"actual_{q}"] = act
        out[f"{q}_pct_error"] = 100 * (pred - act) / act.where(act != 0)
        ok = (pred > 0) & (act > 0)
        out[f"{q}_log_error"] = np.log(act.where(ok) / pred.where(ok))
        errs = out[f"{q}_log_error"].dropna()
        out.attrs[f"sigma_{q}"] = float(np.sqrt((errs**2).mean())) if len(errs) else float("nan")
    out.attrs["holdout"] = scorecard.info.get("description", "")
    return out


def widen_intervals(tier_table: pd.DataFrame, error: pd.DataFrame, *, level: float = 0.90) -> pd.DataFrame:
    """Tier intervals that include model error as measured by a backtest.

    The intervals of :func:`tier_intervals` cover parameter uncertainty and the randomness of
    purchases, assuming the model is right. A backtest shows how wrong it is
    (:func:`backtest_error`): each tier's total missed by a log error ``e`` (the model's
    systematic error for that kind of customer, e.g. it under-predicts the tier of customers it
    ranks lowest), and the misses had a typical size ``sigma`` across tiers. On the log scale,
    with ``d`` the model-only half-widths and ``z`` the normal quantile of ``level``::

        lower = point * exp(min(0, e) - sqrt(d_lower^2 + (z sigma)^2))
        upper = point * exp(max(0, e) + sqrt(d_upper^2 + (z sigma)^2))

    The interval spans the model's forecast and the forecast corrected by the tier's backtest
    error, widened by both sources of uncertainty. Revenue's errors also widen CLV. A point
    value that is not positive (net CLV of Lead) is widened the same way on the original scale.
    The point forecasts stay as they are. Coverage on generated and CDNOW data, with and
    without drift, is measured by ``validation/interval_coverage.py`` (validation/README.md).

    Returns
    -------
    DataFrame
        ``tier_table`` with the ``*_lower``/``*_upper`` columns replaced and ``attrs``
        ``sigma_purchases``, ``sigma_revenue``, ``model_error_z``.
    """
    from scipy import stats

    lvl = check_number("level", level, minimum=0.0, maximum=1.0, min_inclusive=False, max_inclusive=False)
    z = float(stats.norm.ppf(0.5 + lvl / 2))
    out = tier_table.copy()
    source = {"expected_purchases": "purchases", "expected_revenue": "revenue", "total_clv": "revenue"}
    for col, q in source.items():
        lo_col, hi_col = f"{col}_lower", f"{col}_upper"
        sigma = error.attrs.get(f"sigma_{q}", np.nan)
        if lo_col not in out.columns or not np.isfinite(sigma):
            continue
        e = error[f"{q}_log_error"].reindex(out.index).fillna(0.0).to_numpy(float)
        p = out[col].to_numpy(float)
        lo = out[lo_col].to_numpy(float)
        hi = out[hi_col].to_numpy(float)
        spread = z * sigma
        positive = (p > 0) & (lo > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_lo = np.minimum(0.0, e) - np.sqrt(np.log(p / lo) ** 2 + spread**2)
            log_hi = np.maximum(0.0, e) + np.sqrt(np.log(hi / p) ** 2 + spread**2)
        shift = np.abs(p) * np.expm1(e)
        abs_lo = p + np.minimum(0.0, shift) - np.sqrt((p - lo) ** 2 + (spread * np.abs(p)) ** 2)
        abs_hi = p + np.maximum(0.0, shift) + np.sqrt((hi - p) ** 2 + (spread * np.abs(p)) ** 2)
        out[lo_col] = np.where(positive, p * np.exp(log_lo), abs_lo)
        out[hi_col] = np.where(positive, p * np.exp(log_hi), abs_hi)
    out.attrs.update({"sigma_purchases": error.attrs.get("sigma_purchases", np.nan),
                      "sigma_revenue": error.attrs.get("sigma_revenue", np.nan), "model_error_z": z})
    return out
