"""Per-customer forecasts: churn, purchases, spend and discounted customer lifetime value.

Everything is computed on compressed rows: ``P(alive)`` on distinct ``(frequency, recency, T)``,
the horizon terms on distinct ``(frequency, T)`` (given that a customer is alive, the BG/NBD
forecast no longer depends on recency), then joined back to customers.
"""

from __future__ import annotations

import warnings
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
from clvmodels.exceptions import ClvModelsWarning, ModelError, ParameterError
from clvmodels.models import GammaGammaModel
from clvmodels.models._purchase import PurchaseModel

__all__ = [
    "forecast",
    "forecast_by_model",
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
    "lifetime_purchases",
    "lifetime_clv",
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
    lifetime: bool = False
    """Also the residual lifetime terms (:meth:`PurchaseModel._lifetime_if_alive`)."""

    @property
    def per_period_rate(self) -> float:
        return period_discount_rate(self.discount_rate, self.time_unit)

    @property
    def continuous_rate(self) -> float:
        """The discount rate per time unit, continuously compounded: ``log(1 + per_period_rate)``."""
        return float(np.log1p(self.per_period_rate))

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


def forecast_settings(transaction_model: Any, rfm: pd.DataFrame | None, horizon: Any, discount_rate: Any,
              margin: Any, cost_to_serve: Any, time_unit: Any, lifetime: bool = False) -> Settings:
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
        warnings.warn(
            f"horizon={h:g} is in days, the unit of the RFM table and model: a {h:g}-day forecast. For "
            f"{h:g} weeks pass horizon={7 * h:g} (or build the RFM table with time_unit='W').",
            ClvModelsWarning, stacklevel=3)
    return Settings(h, unit, float(discount_rate), float(margin), float(cost_to_serve), bool(lifetime))


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


def check_models(transaction_model: Any, spend_model: Any) -> None:
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
    if s.lifetime:
        life = model._lifetime_if_alive(x, T, s.continuous_rate, dropout_scale, **one)
        out["lifetime_purchases"], out["lifetime_active"] = life["purchases"], life["active"]
    return out


def purchase_arrays(tm: PurchaseModel, x, tx, T, s: Settings, dropout_scale: float = 1.0) -> dict[str, Any]:
    """The forecast's parts that depend on the purchase history alone (not on spend):
    P(alive), and the horizon's purchases, discounted purchases, discounted active time,
    survival and P(any purchase), each already multiplied by P(alive)."""
    p_alive = tm._p_alive(x, tx, T)
    pairs = history_groups(tm, x, tx, T)
    terms = _group_horizon_terms(tm, pairs, s, dropout_scale)
    names = ("purchases", "discounted_purchases", "discounted_active", "survival", "any") + (
        ("lifetime_purchases", "lifetime_active") if s.lifetime else ())
    return {"p_alive": p_alive, **{name: p_alive * terms[name][pairs.inverse] for name in names}}


def recency_terms(tm: PurchaseModel, tx) -> dict[str, Any]:
    """``tx`` for the hooks of a model whose posterior given active uses it (else nothing)."""
    return {"tx": tx} if getattr(tm, "_uses_recency_given_alive", False) else {}


def combine_parts(parts: dict[str, Any], spend: Any, s: Settings) -> dict[str, Any]:
    """The forecast's columns from the purchase parts and the expected spend per purchase.
    Arithmetic only, so the same code combines numpy arrays (here) and engine columns
    (:mod:`clvmodels.scoring`)."""
    purchases = parts["purchases"]
    gross = s.margin * spend * parts["discounted_purchases"]
    cost = s.cost_to_serve * parts["discounted_active"]
    lifetime = {}
    if "lifetime_purchases" in parts:
        lifetime = {"lifetime_purchases": parts["lifetime_purchases"],
                    "lifetime_clv": s.margin * spend * parts["lifetime_purchases"]
                    - s.cost_to_serve * parts["lifetime_active"]}
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
        **lifetime,
    }


def _forecast_arrays(tm: PurchaseModel, sm: GammaGammaModel, x, tx, T, m, s: Settings,
                     dropout_scale: float = 1.0) -> dict[str, np.ndarray]:
    return combine_parts(purchase_arrays(tm, x, tx, T, s, dropout_scale), sm._expected(x, m), s)


def rfm_arrays(rfm: pd.DataFrame) -> tuple[np.ndarray, ...]:
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
    covariates: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per-customer churn, purchase, spend and CLV forecast over a horizon.

    Parameters
    ----------
    transaction_model : purchase model
        Fitted purchase/dropout model (any of :mod:`clvmodels.models.registry`'s purchase
        models; a covariate model forecasts each customer with their covariate row's parameters).
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
    covariates : DataFrame, optional
        For a covariate model: the customers' covariates, indexed like ``rfm`` (default: read
        from ``rfm``'s own columns).

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
        (discounted); ``clv`` = gross - cost; ``lifetime_purchases`` (the discounted expected
        residual purchases, DERT, over the customer's whole remaining lifetime - at most
        :data:`clvmodels.models._purchase.LIFETIME_YEARS` - at the same discount rate compounded
        continuously) and ``lifetime_clv`` (margin x spend x that, minus the discounted cost to
        serve while active: the residual lifetime value). ``attrs`` holds the settings.

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
    settings = {"horizon": horizon, "discount_rate": discount_rate, "margin": margin, "cost_to_serve": cost_to_serve,
                "time_unit": time_unit, "dropout_scale": dropout_scale}
    if hasattr(transaction_model, "customer_models"):  # a covariate model: its plain model per covariate row
        codes, models = transaction_model.customer_models(rfm, covariates)
        return forecast_by_model(codes, models, spend_model, rfm, **settings)
    check_models(transaction_model, spend_model)
    s = forecast_settings(transaction_model, rfm, horizon, discount_rate, margin, cost_to_serve, time_unit,
                          lifetime=True)
    check_number("dropout_scale", dropout_scale, minimum=0.0, min_inclusive=False, maximum=1e6)
    transaction_model._check_unit(rfm)
    x, tx, T, m = rfm_arrays(rfm)
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


def group_terms(tm: PurchaseModel, s: Settings, gx, gtx, gT, pairs, dropout_scale: float = 1.0) -> np.ndarray:
    """Per distinct history, per customer: expected purchases, discounted purchases and
    discounted active time over the horizon, and P(alive) (rows of the result, in that order);
    with ``s.lifetime`` then the lifetime's discounted purchases and active time."""
    p_alive = tm._p_alive(gx, gtx, gT)
    terms = _group_horizon_terms(tm, pairs, s, dropout_scale)
    names = ["purchases", "discounted_purchases", "discounted_active"]
    rows = [p_alive * terms[name][pairs.inverse] for name in names] + [p_alive]
    if s.lifetime:
        rows += [p_alive * terms[name][pairs.inverse] for name in ("lifetime_purchases", "lifetime_active")]
    return np.vstack(rows)



def forecast_by_model(codes: np.ndarray, models: list[Any], spend_model: GammaGammaModel, rfm: pd.DataFrame,
                      **settings: Any) -> pd.DataFrame:
    """:func:`forecast` of customer ``i`` of ``rfm`` with ``models[codes[i]]`` (a covariate
    model's plain model per covariate row), joined back in the order of ``rfm``."""
    codes = np.asarray(codes)
    parts = [forecast(m, spend_model, rfm[codes == i], **settings) for i, m in enumerate(models) if (codes == i).any()]
    if not parts:
        raise ParameterError("There is no customer to forecast (the table is empty).")
    out = pd.concat(parts).reindex(rfm.index)
    out.attrs.update(parts[0].attrs)  # the settings, the same for every row
    return out


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
        ``expected_repeat_purchases``; ``lifetime_budget``: the same over the customer's whole
        expected lifetime (discounted expected residual purchases, at most
        :data:`clvmodels.models._purchase.LIFETIME_YEARS`).
    """
    check_models(transaction_model, spend_model)
    s = forecast_settings(transaction_model, None, horizon, discount_rate, margin, cost_to_serve, time_unit,
                          lifetime=True)
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
            "lifetime_budget": first + s.margin * mean_spend * float(terms["lifetime_purchases"][0])
            - s.cost_to_serve * float(terms["lifetime_active"][0]),
        },
        name="acquisition_budget",
    )
    out.attrs.update(s.as_dict())
    return out
