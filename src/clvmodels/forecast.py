"""Per-customer forecasts: churn, purchases, spend and discounted customer lifetime value.

Everything is computed on compressed rows: ``P(alive)`` on distinct ``(frequency, recency, T)``,
the horizon terms on distinct ``(frequency, T)`` (given that a customer is alive, the BG/NBD
forecast no longer depends on recency), then joined back to customers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from clvmodels._compress import compress
from clvmodels._validation import (
    DAYS_PER_UNIT,
    DAYS_PER_YEAR,
    UNIT_NAMES,
    check_number,
    check_rfm,
    check_time_unit,
)
from clvmodels.exceptions import ModelError, ParameterError
from clvmodels.models import GammaGammaModel
from clvmodels.models._purchase import PurchaseModel
from clvmodels.models.gamma_gamma import conditional_spend

__all__ = [
    "forecast",
    "forecast_intervals",
    "parameter_intervals",
    "acquisition_budget",
    "period_discount_rate",
    "annual_discount_rate",
    "FORECAST_COLUMNS",
]

FORECAST_COLUMNS = (
    "p_alive",
    "churn_probability",
    "churn_probability_by_horizon",
    "churn_probability_during_horizon",
    "expected_purchases",
    "p_any_purchase",
    "expected_spend",
    "expected_revenue",
    "gross_clv",
    "cost_to_serve",
    "clv",
)


def period_discount_rate(annual_rate: float, time_unit: str) -> float:
    """Discount rate per time unit equivalent to ``annual_rate`` per year (365.25 days).

    ``(1 + annual_rate) ** (days_per_unit / 365.25) - 1``: compounding over a year of units
    gives exactly the annual rate; no 30-day months or factor tables.
    """
    unit = check_time_unit(time_unit)
    rate = check_number("discount_rate", annual_rate, minimum=0.0, maximum=10.0)
    return float(np.expm1(np.log1p(rate) * DAYS_PER_UNIT[unit] / DAYS_PER_YEAR))


#: period names for :func:`annual_discount_rate`, in days
DISCOUNT_PERIODS = {"day": 1.0, "week": 7.0, "month": DAYS_PER_YEAR / 12, "quarter": DAYS_PER_YEAR / 4,
                    "year": DAYS_PER_YEAR}


def annual_discount_rate(rate: float, per: str = "month") -> float:
    """The annual rate equivalent to ``rate`` per ``per`` (day, week, month, quarter, year):
    ``(1 + rate) ** (periods in a year) - 1``. Every ``discount_rate`` of the forecasts is
    annual; a rate known per month (say 1%) goes in as ``annual_discount_rate(0.01, "month")``
    (12.7%), and :func:`period_discount_rate` takes it back to the forecast's time unit exactly."""
    if per not in DISCOUNT_PERIODS:
        raise ParameterError(f"per must be one of {sorted(DISCOUNT_PERIODS)}, got {per!r}.")
    r = check_number("rate", rate, minimum=0.0, maximum=1.0)
    return float(np.expm1(np.log1p(r) * DAYS_PER_YEAR / DISCOUNT_PERIODS[per]))


@dataclass(frozen=True)
class Settings:
    horizon: float
    time_unit: str
    discount_rate: float
    margin: float
    cost_to_serve: float

    @property
    def per_period_rate(self) -> float:
        return period_discount_rate(self.discount_rate, self.time_unit)

    def describe(self) -> str:
        unit = UNIT_NAMES[self.time_unit]
        return (
            f"horizon {self.horizon:g} {unit}, discount rate {self.discount_rate:.1%} a year, "
            f"margin {self.margin:.0%}, cost to serve {self.cost_to_serve:g} per "
            f"{unit[:-1]} while active"
        )

    def as_dict(self) -> dict[str, Any]:
        return {"horizon": self.horizon, "time_unit": self.time_unit,
                "discount_rate": self.discount_rate, "margin": self.margin,
                "cost_to_serve": self.cost_to_serve}


def _settings(transaction_model: Any, rfm: pd.DataFrame | None, horizon: Any, discount_rate: Any,
              margin: Any, cost_to_serve: Any, time_unit: Any) -> Settings:
    h = check_number("horizon", horizon, minimum=0.0, min_inclusive=False)
    check_number("discount_rate", discount_rate, minimum=0.0, maximum=10.0)
    check_number("margin", margin, minimum=0.0, maximum=1.0, min_inclusive=False)
    check_number("cost_to_serve", cost_to_serve, minimum=0.0)
    candidates = {
        "time_unit argument": time_unit,
        "model": getattr(transaction_model, "time_unit_", None),
        "RFM table": rfm.attrs.get("time_unit") if rfm is not None else None,
    }
    given = {k: v for k, v in candidates.items() if v is not None}
    if not given:
        raise ParameterError(
            "The time unit is unknown: pass time_unit='D' or 'W' (the unit of the RFM table "
            "and of horizon)."
        )
    units = set(given.values())
    if len(units) > 1:
        raise ParameterError(
            "Conflicting time units: " + ", ".join(f"{k} {v!r}" for k, v in given.items())
            + ". Use one unit throughout."
        )
    unit = check_time_unit(units.pop())
    check_horizon(h, unit)
    if unit == "D" and h < 90 and time_unit is None:
        import warnings

        from clvmodels.exceptions import ClvModelsWarning

        warnings.warn(
            f"horizon={h:g} is in days, the unit of the RFM table and model: a {h:g}-day forecast. For "
            f"{h:g} weeks pass horizon={7 * h:g} (or build the RFM table with time_unit='W').",
            ClvModelsWarning, stacklevel=3)
    return Settings(h, unit, float(discount_rate), float(margin), float(cost_to_serve))


#: the longest forecast horizon, in days: ten years. Forecasts are computed per time unit, so a
#: horizon of a million days would build arrays of a million columns per distinct customer
#: history (and no purchase model is credible that far out).
MAX_HORIZON_DAYS = 3653.0


def check_horizon(horizon: float, unit: str) -> float:
    """Refuse a horizon longer than ten years (522 weeks or 3,653 days)."""
    limit = np.floor(MAX_HORIZON_DAYS / DAYS_PER_UNIT[unit])
    if horizon > limit:
        raise ParameterError(
            f"horizon must be at most {limit:g} {UNIT_NAMES[unit]} (ten years), got {horizon:g}. "
            "Forecasts that far ahead are not credible; value beyond them is in the discounting."
        )
    return horizon


def _check_models(transaction_model: Any, spend_model: Any) -> None:
    if not isinstance(transaction_model, PurchaseModel):
        raise ParameterError(
            "transaction_model must be a fitted purchase model (BetaGeoModel, ModifiedBetaGeoModel "
            f"or ParetoNBDModel), got {type(transaction_model).__name__}."
        )
    transaction_model._check_fitted()
    if not isinstance(spend_model, GammaGammaModel):
        raise ParameterError(
            f"spend_model must be a fitted GammaGammaModel, got {type(spend_model).__name__}."
        )
    spend_model._check_fitted()


def history_groups(tm: PurchaseModel, x, tx, T) -> Any:
    """The distinct histories a model's forecasts given active depend on: ``(x, T)`` for the
    NBD family (given active, the posterior forgets when the last purchase was), ``(x, T, t_x)``
    for MBG/CNBD-k (the time since the last purchase tells how far the next one is). The
    result's ``columns`` are in that order, ``inverse`` maps each row to its group."""
    x = np.asarray(x, float).astype(np.int64)
    if getattr(tm, "_uses_recency_given_alive", False):
        return compress(x, np.asarray(T, float), np.asarray(tx, float))
    return compress(x, np.asarray(T, float))


def _group_horizon_terms(tm: PurchaseModel, groups: Any, s: Settings, dropout_scale: float = 1.0):
    """:func:`_horizon_terms` of the groups of :func:`history_groups`."""
    cols = groups.columns
    return _horizon_terms(tm, cols[0].astype(float), cols[1], s, dropout_scale, cols[2] if len(cols) > 2 else None)


def _horizon_terms(model: PurchaseModel, x: np.ndarray, T: np.ndarray, s: Settings,
                   dropout_scale: float = 1.0, tx: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per distinct (x, T) (and t_x, for a model whose forecasts given active use it), given
    alive now: purchases, survival, discounted sums over periods."""
    one = {} if tx is None else {"tx": tx}
    two = {} if tx is None else {"tx": tx[:, None]}
    n_steps = int(np.ceil(s.horizon - 1e-12))
    ends = np.minimum(np.arange(1, n_steps + 1, dtype=float), s.horizon)
    starts = np.concatenate([[0.0], ends[:-1]])
    length = ends - starts
    disc = np.exp(-np.log1p(s.per_period_rate) * ends)
    xx, TT = x[:, None], T[:, None]
    cum = model._expected_if_alive(ends[None, :], xx, TT, dropout_scale, **two)
    incr = np.diff(cum, axis=1, prepend=0.0)
    out = {
        "purchases": cum[:, -1],
        "discounted_purchases": (incr * disc[None, :]).sum(axis=1),
        "survival": model._survival_if_alive(s.horizon, x, T, dropout_scale, **one),
        "any": model._any_if_alive(s.horizon, x, T, dropout_scale, **one),
    }
    if s.cost_to_serve > 0:
        # cost of each period for customers active at its start, paid at its end
        surv = np.ones((len(x), n_steps))
        if n_steps > 1:
            surv[:, 1:] = model._survival_if_alive(starts[None, 1:], xx, TT, dropout_scale, **two)
        out["discounted_active"] = (surv * (length * disc)[None, :]).sum(axis=1)
    else:
        out["discounted_active"] = np.zeros(len(x))
    return out


def _purchase_arrays(tm: PurchaseModel, x, tx, T, s: Settings, dropout_scale: float = 1.0) -> dict[str, Any]:
    """The forecast's parts that depend on the purchase history alone (not on spend):
    P(alive), and the horizon's purchases, discounted purchases, discounted active time,
    survival and P(any purchase), each already multiplied by P(alive)."""
    p_alive = tm._p_alive(x, tx, T)
    pairs = history_groups(tm, x, tx, T)
    terms = _group_horizon_terms(tm, pairs, s, dropout_scale)
    return {"p_alive": p_alive,
            **{name: p_alive * terms[name][pairs.inverse]
               for name in ("purchases", "discounted_purchases", "discounted_active", "survival", "any")}}


def _recency(tm: PurchaseModel, tx) -> dict[str, Any]:
    """``tx`` for the hooks of a model whose posterior given active uses it (else nothing)."""
    return {"tx": tx} if getattr(tm, "_uses_recency_given_alive", False) else {}


def _combine(parts: dict[str, Any], spend: Any, s: Settings) -> dict[str, Any]:
    """The forecast's columns from the purchase parts and the expected spend per purchase.
    Arithmetic only, so the same code combines numpy arrays (here) and engine columns
    (:mod:`clvmodels.scoring`)."""
    purchases = parts["purchases"]
    gross = s.margin * spend * parts["discounted_purchases"]
    cost = s.cost_to_serve * parts["discounted_active"]
    return {
        "p_alive": parts["p_alive"],
        "churn_probability": 1.0 - parts["p_alive"],
        "churn_probability_by_horizon": 1.0 - parts["survival"],
        # active now and gone by the horizon's end: the churn a retention team can still act on
        "churn_probability_during_horizon": parts["p_alive"] - parts["survival"],
        "expected_purchases": purchases,
        "p_any_purchase": parts["any"],
        "expected_spend": spend,
        "expected_revenue": purchases * spend,
        "gross_clv": gross,
        "cost_to_serve": cost,
        "clv": gross - cost,
    }


def _forecast_arrays(tm: PurchaseModel, sm: GammaGammaModel, x, tx, T, m, s: Settings,
                     dropout_scale: float = 1.0) -> dict[str, np.ndarray]:
    return _combine(_purchase_arrays(tm, x, tx, T, s, dropout_scale), sm._expected(x, m), s)


def _rfm_arrays(rfm: pd.DataFrame) -> tuple[np.ndarray, ...]:
    check_rfm(rfm, monetary=True)
    return tuple(rfm[c].to_numpy(float) for c in ("frequency", "recency", "T", "monetary_value"))


def forecast(
    transaction_model: PurchaseModel,
    spend_model: GammaGammaModel,
    rfm: pd.DataFrame,
    *,
    horizon: float,
    discount_rate: float = 0.10,
    margin: float = 1.0,
    cost_to_serve: float = 0.0,
    time_unit: str | None = None,
    dropout_scale: float = 1.0,
) -> pd.DataFrame:
    """Per-customer churn, purchase, spend and CLV forecast over a horizon.

    Parameters
    ----------
    transaction_model : BetaGeoModel, ModifiedBetaGeoModel or ParetoNBDModel
        Fitted purchase/dropout model.
    spend_model : GammaGammaModel
        Fitted spend model.
    rfm : DataFrame
        ``frequency``, ``recency``, ``T``, ``monetary_value`` per customer.
    horizon : float
        Length of the forecast in the table's time unit (e.g. 52 weeks).
    discount_rate : float, default 0.10
        Annual discount rate; converted exactly to the time unit
        (:func:`period_discount_rate`). A rate per month or quarter: :func:`annual_discount_rate`.
    margin : float, default 1.0
        Share of revenue that is profit, in (0, 1].
    cost_to_serve : float, default 0
        Cost per customer per time unit while active; makes CLV net and possibly negative.
    time_unit : {"D", "W"}, optional
        Only needed when neither the model nor the table records it.
    dropout_scale : float, default 1.0
        Multiplies every customer's dropout probability from now on (0.9 = 10% less dropout);
        used by :func:`clvmodels.tiers.retention_what_if`.

    Returns
    -------
    DataFrame
        Indexed like ``rfm``: ``p_alive``; ``churn_probability`` (1 - p_alive, already gone);
        ``churn_probability_by_horizon`` (not active any more at the horizon's end: gone now
        or leaving during the horizon); ``churn_probability_during_horizon`` (active now and
        gone by the horizon's end, ``P(alive) - P(alive at the end)``);
        ``expected_purchases`` and ``p_any_purchase`` over the horizon; ``expected_spend`` per
        purchase; ``expected_revenue`` (undiscounted); ``gross_clv`` (margin x spend x
        purchases in each period, discounted at each period's end); ``cost_to_serve``
        (discounted); ``clv`` = gross - cost. ``attrs`` holds the settings.

    Notes
    -----
    The horizon is cut into periods of one time unit (the last may be shorter). Purchases
    expected in period k are ``E[Y(k)] - E[Y(k-1)]`` (FHL 2005 eq. 10), discounted by
    ``(1 + d)^-k`` with ``d`` the per-unit rate. The cost to serve is paid for each period a
    customer starts active (probability from :meth:`probability_alive_after` of the purchase model).

    Examples
    --------
    >>> fc = forecast(bgnbd, gg, rfm, horizon=52, discount_rate=0.1)  # doctest: +SKIP
    """
    _check_models(transaction_model, spend_model)
    s = _settings(transaction_model, rfm, horizon, discount_rate, margin, cost_to_serve, time_unit)
    check_number("dropout_scale", dropout_scale, minimum=0.0, min_inclusive=False, maximum=1e6)
    transaction_model._check_unit(rfm)
    x, tx, T, m = _rfm_arrays(rfm)
    arrays = _forecast_arrays(transaction_model, spend_model, x, tx, T, m, s, dropout_scale)
    for name, values in arrays.items():
        bad = ~np.isfinite(values)
        if bad.any():
            raise ModelError(
                f"The forecast's {name!r} is not a finite number for {int(bad.sum()):,} of {len(values):,} "
                f"customers with {type(transaction_model).__name__} parameters "
                + ", ".join(f"{k}={v:.4g}" for k, v in transaction_model.params_.items())
                + "; the fitted parameters are at the edge of what the model can evaluate. Refit with "
                "a small penalizer_coef or try another purchase model (clvmodels.select_model)."
            )
    # copy=False: one block per column, no second customer-sized copy of the whole table
    out = pd.DataFrame(arrays, index=rfm.index, columns=list(FORECAST_COLUMNS), copy=False)
    out.attrs.update(s.as_dict())
    out.attrs["description"] = s.describe()
    return out


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
    from clvmodels.tiers import _draw_models, _parameter_draws

    _check_models(transaction_model, spend_model)
    s = _settings(transaction_model, rfm, horizon, discount_rate, margin, cost_to_serve, time_unit)
    level = check_number("level", level, minimum=0.0, maximum=1.0, min_inclusive=False, max_inclusive=False)
    n_sims = check_number("n_sims", n_sims, minimum=20, integer=True)
    n_param_draws = check_number("n_param_draws", n_param_draws, minimum=1, integer=True)
    chunk_size = check_number("chunk_size", chunk_size, minimum=1000, integer=True)
    x, tx, T, m = _rfm_arrays(rfm)
    n = len(x)
    if n > PREDICTIVE_FEW_SIMS_ABOVE:
        n_sims = min(n_sims, 100)
    n_param_draws = min(n_param_draws, n_sims)
    per_draw = int(np.ceil(n_sims / n_param_draws))
    parts = _purchase_arrays(transaction_model, x, tx, T, s)
    with np.errstate(divide="ignore", invalid="ignore"):
        disc = np.where(parts["purchases"] > 0, parts["discounted_purchases"] / parts["purchases"], 1.0)
    cost = s.cost_to_serve * parts["discounted_active"]
    tm_draws, sm_draws, omitted = _parameter_draws(transaction_model, spend_model, n_param_draws, seed)
    # a draw that is not a valid parameter set (far along a poorly identified direction) is
    # replaced by the estimates
    models = [(transaction_model, spend_model.params_) if tm is None else (tm, sm_draws.iloc[i])
              for i, tm in enumerate(_draw_models(transaction_model, tm_draws))]
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
                cnt = tm._simulate(rng, xc, Tc, s.horizon, alive, **_recency(tm, txc)).astype(float)
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


def _use_delta_method(tm: PurchaseModel, customers: int) -> bool:
    """Whether intervals linearise in the parameters instead of recomputing every draw: above
    :data:`DELTA_METHOD_ABOVE` customers, or always for a model whose forecasts are sums of
    many terms (MBG/CNBD-k: nine evaluations instead of one per draw)."""
    return customers > DELTA_METHOD_ABOVE or bool(getattr(tm, "_costly_forecasts", False))

_STEP = 1e-5  # finite-difference step in the log-parameters


def _group_terms(tm: PurchaseModel, s: Settings, gx, gtx, gT, pairs, dropout_scale: float = 1.0) -> np.ndarray:
    """Per distinct history, per customer: expected purchases, discounted purchases and
    discounted active time over the horizon, and P(alive) (rows of the result, in that order)."""
    p_alive = tm._p_alive(gx, gtx, gT)
    terms = _group_horizon_terms(tm, pairs, s, dropout_scale)
    return np.vstack([p_alive * terms["purchases"][pairs.inverse],
                      p_alive * terms["discounted_purchases"][pairs.inverse],
                      p_alive * terms["discounted_active"][pairs.inverse],
                      p_alive])


def _purchase_jacobian(tm: PurchaseModel, s: Settings, gx, gtx, gT, pairs) -> tuple[np.ndarray, np.ndarray]:
    """Group terms at the estimates (4, G) and their derivatives in each log-parameter (k, 4, G),
    by central differences."""
    base = _group_terms(tm, s, gx, gtx, gT, pairs)
    theta = np.log(tm.params_.to_numpy())
    jac = np.empty((len(theta), *base.shape))
    for j in range(len(theta)):
        step = np.zeros_like(theta)
        step[j] = _STEP
        up = tm._with_params(dict(zip(tm.params_.index, np.exp(theta + step), strict=True)))
        down = tm._with_params(dict(zip(tm.params_.index, np.exp(theta - step), strict=True)))
        jac[j] = (_group_terms(up, s, gx, gtx, gT, pairs) - _group_terms(down, s, gx, gtx, gT, pairs)) / (2 * _STEP)
    return base, jac


def _log_jacobian(fn, params: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
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
    return _log_jacobian(lambda p, q, v: conditional_spend(p, q, v, x, m), sm._p())


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
    _check_models(transaction_model, spend_model)
    s = _settings(transaction_model, rfm, horizon, discount_rate, margin, cost_to_serve, time_unit)
    level = check_number("level", level, minimum=0.0, maximum=1.0, min_inclusive=False, max_inclusive=False)
    n_draws = check_number("n_draws", n_draws, minimum=10, integer=True)
    chunk_size = check_number("chunk_size", chunk_size, minimum=1000, integer=True)
    x, tx, T, m = _rfm_arrays(rfm)
    n = len(x)
    groups = compress(x, tx, T)
    gx, gtx, gT = groups.columns
    inv = groups.inverse
    if _use_delta_method(transaction_model, n):
        return _delta_intervals(transaction_model, spend_model, rfm, s, level, n_draws, groups, x, m, chunk_size)
    order = np.argsort(inv, kind="stable")  # customers sorted by group
    bounds = np.searchsorted(inv[order], np.arange(len(gx) + 1))  # customers of group g: order[bounds[g]:bounds[g+1]]
    from clvmodels.tiers import _draw_models, _parameter_draws

    tm_draws, sm_draws, omitted = _parameter_draws(transaction_model, spend_model, n_draws, seed)
    drawn = _draw_models(transaction_model, tm_draws)
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
                purch[i], disc[i], cost[i], _ = _group_terms(tm, s, cx, ctx, cT, pairs)
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
    from scipy import stats

    cov_tm, cov_sm = _covariances(tm, sm)
    gx, gtx, gT = groups.columns
    pairs = history_groups(tm, gx, gtx, gT)
    base, jac = _purchase_jacobian(tm, s, gx, gtx, gT, pairs)
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


def acquisition_budget(
    transaction_model: PurchaseModel,
    spend_model: GammaGammaModel,
    *,
    horizon: float,
    discount_rate: float = 0.10,
    margin: float = 1.0,
    cost_to_serve: float = 0.0,
    time_unit: str | None = None,
    include_first_purchase: bool = True,
) -> pd.Series:
    """Expected (net) CLV of a brand-new customer: the most worth paying to acquire one.

    A new customer has just made their first purchase (frequency 0, recency 0, T 0) and is
    certainly active; they spend the population mean per purchase. The budget is the margin
    on that first purchase (``include_first_purchase``) plus the discounted margin on their
    expected repeat purchases over the horizon, minus the discounted cost to serve. Spending
    more than this to acquire a comparable customer loses money over the horizon.

    Returns
    -------
    Series
        ``first_purchase``, ``repeat_purchases_value``, ``cost_to_serve``, ``budget``,
        ``expected_repeat_purchases``.
    """
    _check_models(transaction_model, spend_model)
    s = _settings(transaction_model, None, horizon, discount_rate, margin, cost_to_serve, time_unit)
    zero = np.zeros(1)
    terms = _horizon_terms(transaction_model, zero, zero, s)
    mean_spend = spend_model.mean_spend
    first = s.margin * mean_spend if include_first_purchase else 0.0
    repeat = s.margin * mean_spend * float(terms["discounted_purchases"][0])
    cost = s.cost_to_serve * float(terms["discounted_active"][0])
    out = pd.Series(
        {
            "first_purchase": first,
            "repeat_purchases_value": repeat,
            "cost_to_serve": cost,
            "budget": first + repeat - cost,
            "expected_repeat_purchases": float(terms["purchases"][0]),
        },
        name="acquisition_budget",
    )
    out.attrs.update(s.as_dict())
    return out
