"""Intervals: how far forecasts may be from what happens.

Per customer, predictive intervals (:func:`forecast_intervals`: the randomness of purchases,
dropout and spend plus parameter uncertainty) and intervals of the expected values from
parameter uncertainty alone (:func:`parameter_intervals`); per tier, intervals of the totals
(:func:`tier_intervals`); their widening by the backtests' errors is
:mod:`clvmodels.backtest_ranges`'s.
Parameter draws and the delta method (derivatives in the log-parameters) are shared by all of
them. Imports point down: this module uses :mod:`clvmodels.forecast` and
:mod:`clvmodels.tiers`, never the other way round.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from clvmodels._compress import compress
from clvmodels._validation import check_number
from clvmodels.backtest_ranges import (  # kept importable here
    backtest_error,
    widen_intervals,
    with_earlier_origins,
)
from clvmodels.exceptions import ModelError, ParameterError
from clvmodels.forecast import (
    Settings,
    check_models,
    forecast_settings,
    group_terms,
    history_groups,
    purchase_arrays,
    recency_terms,
    rfm_arrays,
)
from clvmodels.models import GammaGammaModel
from clvmodels.models._purchase import PurchaseModel
from clvmodels.models.gamma_gamma import conditional_spend
from clvmodels.tiers import SIMULATED_CUSTOMERS, TIERS, TierGroups, tier_groups

__all__ = [
    "forecast_intervals",
    "parameter_intervals",
    "tier_intervals",
    "grouped_tier_intervals",
    "backtest_error",
    "widen_intervals",
    "with_earlier_origins",
    "DELTA_METHOD_ABOVE",
    "PREDICTIVE_FEW_SIMS_ABOVE",
]


#: customers above which the predictive intervals use fewer simulated futures per customer
PREDICTIVE_FEW_SIMS_ABOVE = 1_000_000


def forecast_intervals(
    transaction_model: PurchaseModel,
    spend_model: GammaGammaModel,
    rfm: pd.DataFrame,
    *,
    horizon: float,
    discount_rate: float = 0.10,
    margin: float = 1.0,
    cost_to_serve: float = 0.0,
    time_unit: str | None = None,
    level: float = 0.90,
    n_sims: int = 400,
    n_param_draws: int = 20,
    seed: int | None = 0,
    chunk_size: int = 50_000,
) -> pd.DataFrame:
    """Per-customer predictive intervals: what each customer may do over the horizon.

    Unlike :func:`parameter_intervals` (how well the *expected* values are known) these include
    the randomness of the purchase and dropout process and of spend, so a frequent buyer's interval
    is at least as wide as the Poisson spread of their count (tested), not the narrow band of
    parameter uncertainty alone. For each customer
    ``n_sims`` futures are drawn, ``n_sims / n_param_draws`` for each of ``n_param_draws`` draws of
    the parameters (their uncertainty included): active now with probability P(alive), then
    purchases from the model's posterior given active (:meth:`PurchaseModel._simulate`), spend
    rate ``nu ~ Gamma(q + p x, v + x zbar)`` and revenue ``Gamma(p N, nu)`` (Gamma-Gamma,
    Fader & Hardie 2013). CLV: ``margin x revenue x`` the customer's mean discount factor of
    expected purchases, minus the expected cost to serve (a stated approximation: the timing of
    the simulated purchases is not drawn). Intervals are the equal-tailed quantiles at ``level``.
    Holdout coverage is measured in ``validation/real_logs.py`` (validation/README.md).

    Above :data:`PREDICTIVE_FEW_SIMS_ABOVE` customers, 100 futures per customer.

    Returns
    -------
    DataFrame
        ``purchases_lower/upper``, ``revenue_lower/upper``, ``clv_lower/upper`` indexed like ``rfm``.
    """
    check_models(transaction_model, spend_model)
    s = forecast_settings(transaction_model, rfm, horizon, discount_rate, margin, cost_to_serve, time_unit)
    level = check_number("level", level, minimum=0.0, maximum=1.0, min_inclusive=False, max_inclusive=False)
    n_sims = check_number("n_sims", n_sims, minimum=20, integer=True)
    n_param_draws = check_number("n_param_draws", n_param_draws, minimum=1, integer=True)
    chunk_size = check_number("chunk_size", chunk_size, minimum=1000, integer=True)
    x, tx, T, m = rfm_arrays(rfm)
    n = len(x)
    if n > PREDICTIVE_FEW_SIMS_ABOVE:
        n_sims = min(n_sims, 100)
    n_param_draws = min(n_param_draws, n_sims)
    per_draw = int(np.ceil(n_sims / n_param_draws))
    parts = purchase_arrays(transaction_model, x, tx, T, s)
    with np.errstate(divide="ignore", invalid="ignore"):
        disc = np.where(parts["purchases"] > 0, parts["discounted_purchases"] / parts["purchases"], 1.0)
    cost = s.cost_to_serve * parts["discounted_active"]
    tm_draws, sm_draws, omitted = parameter_draws(transaction_model, spend_model, n_param_draws, seed)
    # a draw that is not a valid parameter set (far along a poorly identified direction) is
    # replaced by the estimates
    models = [(transaction_model, spend_model.params_) if tm is None else (tm, sm_draws.iloc[i])
              for i, tm in enumerate(draw_models(transaction_model, tm_draws))]
    rng = np.random.default_rng(seed)
    qs = [(1 - level) / 2, 1 - (1 - level) / 2]
    out = {k: np.empty(n) for k in ("purchases_lower", "purchases_upper", "revenue_lower", "revenue_upper",
                                    "clv_lower", "clv_upper")}
    buyer = (x > 0) & (m > 0)
    for c0 in range(0, n, chunk_size):
        sl = slice(c0, min(c0 + chunk_size, n))
        xc, txc, Tc, mc, bc = x[sl], tx[sl], T[sl], m[sl], buyer[sl]
        counts = np.empty((per_draw * len(models), len(xc)))
        revenue = np.empty_like(counts)
        k = 0
        for tm, (p_s, q_s, v_s) in models:
            q_s = max(float(q_s), 1.0 + 1e-6)
            with np.errstate(all="ignore"):
                p_alive = tm._p_alive(xc, txc, Tc)
            p_alive = np.where(np.isfinite(p_alive), p_alive, parts["p_alive"][sl])
            shape = q_s + np.where(bc, p_s * xc, 0.0)
            rate = v_s + np.where(bc, xc * mc, 0.0)
            for _ in range(per_draw):
                alive = rng.random(len(xc)) < p_alive
                cnt = tm._simulate(rng, xc, Tc, s.horizon, alive, **recency_terms(tm, txc)).astype(float)
                nu = rng.gamma(shape, 1.0 / rate)
                rev = np.zeros(len(xc))
                pos = cnt > 0
                rev[pos] = rng.gamma(p_s * cnt[pos], 1.0 / nu[pos])
                counts[k], revenue[k] = cnt, rev
                k += 1
        qc = np.quantile(counts, qs, axis=0, method="inverted_cdf")
        qr = np.quantile(revenue, qs, axis=0)
        out["purchases_lower"][sl], out["purchases_upper"][sl] = qc
        out["revenue_lower"][sl], out["revenue_upper"][sl] = qr
        out["clv_lower"][sl] = s.margin * qr[0] * disc[sl] - cost[sl]
        out["clv_upper"][sl] = s.margin * qr[1] * disc[sl] - cost[sl]
    result = pd.DataFrame(out, index=rfm.index, copy=False)
    result.attrs.update(s.as_dict())
    result.attrs.update({"level": level, "n_sims": per_draw * len(models), "kind": "predictive",
                         "parameter_uncertainty": omitted or "included"})
    return result


#: customers above which intervals use the delta method (a linearisation in the log-parameters)
#: instead of recomputing every forecast for each parameter draw: parameter uncertainty
#: shrinks like 1/sqrt(customers) and the linearisation error faster; on CDNOW master (23,570
#: customers) the two already agree within a tenth of the interval width (tested)
DELTA_METHOD_ABOVE = 1_000_000


def use_delta_method(tm: PurchaseModel, customers: int) -> bool:
    """Whether intervals linearise in the parameters instead of recomputing every draw: above
    :data:`DELTA_METHOD_ABOVE` customers, or always for a model whose forecasts are sums of
    many terms (MBG/CNBD-k: nine evaluations instead of one per draw)."""
    return customers > DELTA_METHOD_ABOVE or bool(getattr(tm, "_costly_forecasts", False))


_STEP = 1e-5  # finite-difference step in the log-parameters


def purchase_jacobian(tm: PurchaseModel, s: Settings, gx, gtx, gT, pairs) -> tuple[np.ndarray, np.ndarray]:
    """Group terms at the estimates (4, G) and their derivatives in each log-parameter (k, 4, G),
    by central differences."""
    base = group_terms(tm, s, gx, gtx, gT, pairs)
    theta = np.log(tm.params_.to_numpy())
    jac = np.empty((len(theta), *base.shape))
    for j in range(len(theta)):
        step = np.zeros_like(theta)
        step[j] = _STEP
        up = tm._with_params(dict(zip(tm.params_.index, np.exp(theta + step), strict=True)))
        down = tm._with_params(dict(zip(tm.params_.index, np.exp(theta - step), strict=True)))
        jac[j] = (group_terms(up, s, gx, gtx, gT, pairs) - group_terms(down, s, gx, gtx, gT, pairs)) / (2 * _STEP)
    return base, jac


def log_jacobian(fn, params: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``fn(*params)`` and its derivatives in each log-parameter (k, ...), by central differences."""
    base = np.asarray(fn(*params))
    jac = np.empty((len(params), *base.shape))
    for j in range(len(params)):
        up, down = list(params), list(params)
        up[j] *= np.exp(_STEP)
        down[j] *= np.exp(-_STEP)
        jac[j] = (fn(*up) - fn(*down)) / (2 * _STEP)
    return base, jac


def _spend_and_jacobian(sm: GammaGammaModel, x: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gamma-Gamma expected spend per customer (N,) and its derivatives in log p, q, v (3, N)."""
    return log_jacobian(lambda p, q, v: conditional_spend(p, q, v, x, m), sm._p())


def _covariances(tm: PurchaseModel, sm: GammaGammaModel) -> tuple[np.ndarray, np.ndarray]:
    for model in (tm, sm):
        cov = getattr(model, "covariance_log_", None)
        if cov is None or not np.all(np.isfinite(cov)):
            model.sample_params(1)  # raises the explanatory ParameterError
    return np.asarray(tm.covariance_log_, float), np.asarray(sm.covariance_log_, float)


def _quadratic_form(g: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """``g_i' cov g_i`` for each column i of ``g`` (k, N)."""
    return np.einsum("jn,jk,kn->n", g, cov, g)


def parameter_intervals(
    transaction_model: PurchaseModel,
    spend_model: GammaGammaModel,
    rfm: pd.DataFrame,
    *,
    horizon: float,
    discount_rate: float = 0.10,
    margin: float = 1.0,
    cost_to_serve: float = 0.0,
    time_unit: str | None = None,
    level: float = 0.90,
    n_draws: int = 200,
    seed: int | None = 0,
    chunk_size: int = 200_000,
) -> pd.DataFrame:
    """Per-customer intervals for the *expected* purchases and CLV from parameter uncertainty
    alone (how well the model's parameters are known), not for what a customer will do: for that,
    :func:`forecast_intervals` (predictive intervals).

    Draws both models' parameters from their asymptotic sampling distributions (normal on the
    log scale, with the covariance of the fit), recomputes the forecast for each draw and takes
    quantiles. Purchase terms are computed once per distinct ``(frequency, recency, T)`` and
    draw; CLV is linear in a customer's mean spend given those terms, so it is assembled per
    customer. Work proceeds in chunks of about ``chunk_size`` customers, so memory is bounded by
    ``n_draws x chunk_size`` numbers however many customers there are. Above
    :data:`DELTA_METHOD_ABOVE` customers the delta method replaces the draws (normal intervals
    from the forecasts' derivatives in the log-parameters and the fits' covariances).

    Returns
    -------
    DataFrame
        ``expected_purchases_param_lower/upper``, ``clv_param_lower/upper`` indexed like ``rfm``.
    """
    check_models(transaction_model, spend_model)
    s = forecast_settings(transaction_model, rfm, horizon, discount_rate, margin, cost_to_serve, time_unit)
    level = check_number("level", level, minimum=0.0, maximum=1.0, min_inclusive=False, max_inclusive=False)
    n_draws = check_number("n_draws", n_draws, minimum=10, integer=True)
    chunk_size = check_number("chunk_size", chunk_size, minimum=1000, integer=True)
    x, tx, T, m = rfm_arrays(rfm)
    n = len(x)
    groups = compress(x, tx, T)
    gx, gtx, gT = groups.columns
    inv = groups.inverse
    if use_delta_method(transaction_model, n):
        return _delta_intervals(transaction_model, spend_model, rfm, s, level, n_draws, groups, x, m, chunk_size)
    order = np.argsort(inv, kind="stable")  # customers sorted by group
    bounds = np.searchsorted(inv[order], np.arange(len(gx) + 1))  # customers of group g: order[bounds[g]:bounds[g+1]]
    tm_draws, sm_draws, omitted = parameter_draws(transaction_model, spend_model, n_draws, seed)
    drawn = draw_models(transaction_model, tm_draws)
    keep = [i for i, tm in enumerate(drawn) if tm is not None]  # invalid draws are left out
    models = [drawn[i] for i in keep]
    sm_draws = sm_draws.iloc[keep]
    n_draws = len(keep)
    p_s = sm_draws["p"].to_numpy()[:, None]
    q_s = np.maximum(sm_draws["q"].to_numpy(), 1.0 + 1e-6)[:, None]  # q <= 1: mean spend undefined
    v_s = sm_draws["v"].to_numpy()[:, None]
    qs = [(1 - level) / 2, 1 - (1 - level) / 2]
    out = {name: np.empty(n) for name in ("expected_purchases_param_lower", "expected_purchases_param_upper",
                                          "clv_param_lower", "clv_param_upper")}
    g0 = 0
    while g0 < len(gx):
        # as many whole groups as fit in a chunk of customers (at least one group)
        g1 = max(int(np.searchsorted(bounds, bounds[g0] + chunk_size, side="right")) - 1, g0 + 1)
        cx, ctx, cT = gx[g0:g1], gtx[g0:g1], gT[g0:g1]
        pairs = history_groups(transaction_model, cx, ctx, cT)
        purch = np.empty((n_draws, g1 - g0))
        disc = np.empty_like(purch)
        cost = np.empty_like(purch)
        with np.errstate(all="ignore"):
            for i, tm in enumerate(models):
                purch[i], disc[i], cost[i], _ = group_terms(tm, s, cx, ctx, cT, pairs)
        # draws that cannot be evaluated (non-finite) are left out of the quantiles
        purch[~np.isfinite(purch)] = np.nan
        qp = np.nanquantile(purch, qs, axis=0)
        for c0 in range(bounds[g0], bounds[g1], chunk_size):
            cust = order[c0:min(c0 + chunk_size, bounds[g1])]
            local = inv[cust] - g0
            xc, mc = x[cust], m[cust]
            spend = conditional_spend(p_s, q_s, v_s, xc, mc)
            clv = s.margin * disc[:, local] * spend - s.cost_to_serve * cost[:, local]
            clv[~np.isfinite(clv)] = np.nan
            qc = np.nanquantile(clv, qs, axis=0)
            out["expected_purchases_param_lower"][cust] = qp[0][local]
            out["expected_purchases_param_upper"][cust] = qp[1][local]
            out["clv_param_lower"][cust] = qc[0]
            out["clv_param_upper"][cust] = qc[1]
        g0 = g1
    result = pd.DataFrame(out, index=rfm.index)
    result.attrs.update(s.as_dict())
    result.attrs.update({"level": level, "n_draws": n_draws, "parameter_uncertainty": omitted or "included"})
    return result


def _delta_intervals(tm, sm, rfm, s: Settings, level: float, n_draws: int, groups, x, m, chunk_size: int):
    """parameter_intervals by the delta method: normal intervals with the variance of each
    forecast's linearisation in both models' log-parameters."""
    cov_tm, cov_sm = _covariances(tm, sm)
    gx, gtx, gT = groups.columns
    pairs = history_groups(tm, gx, gtx, gT)
    base, jac = purchase_jacobian(tm, s, gx, gtx, gT, pairs)
    z = float(stats.norm.ppf(0.5 + level / 2))
    sd_purch_g = np.sqrt(_quadratic_form(jac[:, 0, :], cov_tm))
    n = len(x)
    out = {name: np.empty(n) for name in ("expected_purchases_param_lower", "expected_purchases_param_upper",
                                          "clv_param_lower", "clv_param_upper")}
    inv = groups.inverse
    out["expected_purchases_param_lower"] = np.maximum(base[0] - z * sd_purch_g, 0.0)[inv]
    out["expected_purchases_param_upper"] = (base[0] + z * sd_purch_g)[inv]
    for c0 in range(0, n, chunk_size):
        sl = slice(c0, min(c0 + chunk_size, n))
        g = inv[sl]
        spend, d_spend = _spend_and_jacobian(sm, x[sl], m[sl])
        clv = s.margin * base[1][g] * spend - s.cost_to_serve * base[2][g]
        g_tm = s.margin * jac[:, 1, g] * spend - s.cost_to_serve * jac[:, 2, g]
        g_sm = s.margin * base[1][g] * d_spend
        sd = np.sqrt(_quadratic_form(g_tm, cov_tm) + _quadratic_form(g_sm, cov_sm))
        out["clv_param_lower"][sl] = clv - z * sd
        out["clv_param_upper"][sl] = clv + z * sd
    result = pd.DataFrame(out, index=rfm.index, copy=False)
    result.attrs.update(s.as_dict())
    result.attrs.update({"level": level, "n_draws": n_draws, "method": "delta"})
    return result


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
    :data:`DELTA_METHOD_ABOVE` customers the expected totals of each draw come
    from their linearisation in the log-parameters (the delta method) and the purchases are
    simulated at the estimates, instead of recomputing every forecast per draw.

    Returns
    -------
    DataFrame
        Index Platinum..Lead and Total; ``expected_purchases_lower/upper``,
        ``expected_revenue_lower/upper``, ``total_clv_lower/upper``.
    """
    check_models(transaction_model, spend_model)
    s = forecast_settings(transaction_model, rfm, horizon, discount_rate, margin, cost_to_serve, None)
    max_simulated = check_number("max_simulated", max_simulated, minimum=100, integer=True)
    rng = np.random.default_rng(seed)
    groups = tier_groups(rfm, tiers, max_simulated=max_simulated, rng=rng)
    return grouped_tier_intervals(transaction_model, spend_model, groups, s, level=level, n_draws=n_draws,
                                  seed=seed, rng=rng)


def grouped_tier_intervals(transaction_model: Any, spend_model: Any, g: TierGroups, s: Any, *,
                           level: float = 0.90, n_draws: int = 200, seed: int | None = 0,
                           rng: np.random.Generator | None = None, _fixed_params: bool = False) -> pd.DataFrame:
    """:func:`tier_intervals` from :class:`TierGroups` and forecast settings (``s``)."""
    level = check_number("level", level, minimum=0.0, maximum=1.0, min_inclusive=False, max_inclusive=False)
    n_draws = check_number("n_draws", n_draws, minimum=10, integer=True)
    rng = rng or np.random.default_rng(seed)
    k = len(TIERS)
    n = g.customers
    tm_draws, sm_draws, omitted = parameter_draws(transaction_model, spend_model, n_draws, seed, _fixed_params)
    pairs = history_groups(transaction_model, g.x, g.tx, g.T)
    s_buyers = (g.sim_x > 0) & (g.sim_m > 0)
    n_sim_tier = np.bincount(g.sim_code, minlength=k).astype(float)
    scale = np.sqrt(np.divide(g.n_tier, n_sim_tier, out=np.zeros(k), where=n_sim_tier > 0))

    purchases = np.zeros((n_draws, k + 1))
    revenue = np.zeros((n_draws, k + 1))
    clv = np.zeros((n_draws, k + 1))
    delta = use_delta_method(transaction_model, n)
    if delta:
        _delta_tier_draws(transaction_model, spend_model, s, rng, tm_draws, sm_draws, g, pairs, s_buyers, scale, k,
                          purchases, revenue, clv)
    models = [] if delta else draw_models(transaction_model, tm_draws)
    for i, tm in enumerate(models):
        p_s, q_s, v_s = sm_draws.iloc[i]
        q_s = max(q_s, 1.0 + 1e-6)
        if tm is None:
            purchases[i] = revenue[i] = clv[i] = np.nan
            continue
        # exact expected totals per group (a draw far along a poorly identified direction may
        # not evaluate: it is dropped below)
        with np.errstate(all="ignore"):
            e_purch, e_disc, e_cost, p_alive = group_terms(tm, s, g.x, g.tx, g.T, pairs)
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
        dev_purch, dev_rev = simulated_deviations(rng, tm, s.horizon, p_alive[sg], g.sim_x, g.sim_T, g.sim_m,
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


def draw_models(tm: Any, draws: pd.DataFrame) -> list[Any]:
    """A model of ``tm``'s class per row of parameter draws; None where a draw is not a valid
    parameter set (so far along a poorly identified direction that it overflowed)."""
    out = []
    for i in range(len(draws)):
        try:
            out.append(tm._with_params(draws.iloc[i]))
        except ParameterError:
            out.append(None)
    return out


def parameter_draws(tm: Any, sm: Any, n_draws: int, seed: int | None,
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


def simulated_deviations(rng, tm, horizon, p_alive, x, T, m, buyers, spend_params, expected, spend, codes, k,
                          tx=None):
    """One posterior draw of the simulated customers' purchases and revenue over the horizon,
    minus their expectations, summed per tier: active with probability ``p_alive``, purchases
    from the model's posterior given active, spend rate ``nu ~ Gamma(q + p x, v + x zbar)`` and
    revenue ``Gamma(p N, nu)`` (Gamma-Gamma)."""
    p, q, v = spend_params
    alive = rng.random(len(x)) < p_alive
    counts = tm._simulate(rng, x, T, horizon, alive, **recency_terms(tm, tx))
    nu = rng.gamma(q + np.where(buyers, p * x, 0.0), 1.0 / (v + np.where(buyers, x * m, 0.0)))
    rev = np.zeros(len(x))
    pos = counts > 0
    rev[pos] = rng.gamma(p * counts[pos], 1.0 / nu[pos])
    return (np.bincount(codes, weights=counts - expected, minlength=k),
            np.bincount(codes, weights=rev - expected * spend, minlength=k))


def _delta_tier_draws(tm0, sm0, s, rng, tm_draws, sm_draws, g: TierGroups, pairs, s_buyers, scale, k,
                      purchases, revenue, clv) -> None:
    """Fill the per-draw tier totals by the delta method (see :func:`tier_intervals`)."""
    gcode, g_n = g.code, g.n
    base, jac = purchase_jacobian(tm0, s, g.x, g.tx, g.T, pairs)  # (4, G), (4, 4, G)
    p, q, v = sm0._p()
    ss, d_ss = log_jacobian(g.spend_sums, (p, q, v))

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
        dev_purch, dev_rev = simulated_deviations(rng, tm0, s.horizon, p_alive, sx, sT, s_m, s_buyers, (p, q, v),
                                                   s_exp, s_spend, scode, k, g.tx[gi])
        purchases[i, :k] = e_purch + d_tm[i] @ j_purch + scale * dev_purch
        revenue[i, :k] = e_rev + d_tm[i] @ j_rev_tm + d_sm[i] @ j_rev_sm + scale * dev_rev
        clv[i, :k] = e_clv + d_tm[i] @ j_clv_tm + d_sm[i] @ j_clv_sm
