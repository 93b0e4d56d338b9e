"""Choose the purchase model by how well each predicted a holdout it never saw.

Every applicable model is fitted on the calibration window, asked for each customer's
purchases in the holdout window, and scored against what customers did. The rule is stated
in the result (and in the report): the lowest mean squared error per customer wins; models
within ``tolerance`` of the best MSE count as tied, and among tied models the lowest absolute
aggregate error wins, then the lowest BIC (fewer or better-used parameters).

Why squared error: the models forecast each customer's *expected* purchases, and the expected
value is what minimises the expected squared error (squared error is a consistent scoring
function for the mean; Gneiting 2011, "Making and evaluating point forecasts", JASA 106(494)).
The mean absolute error is minimised by the median instead, which is 0 for most customers of a
non-contractual business, so MAE rewards forecasts that are too low (on CDNOW master it
preferred MBG/NBD, 6.6% short of the holdout total, to Pareto/NBD, 0.2% off).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from clvmodels._validation import DAYS_PER_UNIT, UNIT_NAMES, check_number
from clvmodels.evaluate import check_calibration
from clvmodels.exceptions import ClvModelsError, DataValidationError, ParameterError
from clvmodels.models._purchase import PurchaseModel
from clvmodels.models.gamma_gamma import GammaGammaModel
from clvmodels.models.registry import models_where
from clvmodels.tiers import TIERS, assign_tiers

__all__ = ["select_model", "ModelSelection", "CANDIDATES", "REGULARITY_CANDIDATES", "CALENDAR_CANDIDATES"]

#: purchase models tried by default, by their name in the papers
CANDIDATES: dict[str, type[PurchaseModel]] = models_where(choice="base")

#: tried as well when the calibration table has each customer's ``litt`` (regularity), which it
#: needs to choose its k: ``calibration_holdout(..., regularity=True)``
REGULARITY_CANDIDATES: dict[str, type[PurchaseModel]] = models_where(choice="regularity")

#: tried as well when the calibration table carries its repeat purchases per calendar day
#: (``calibration_holdout(..., calendar=True)``) and spans at least a year: BG/NBD with a yearly season
#: in the purchase rate, Pareto/NBD with one in the purchase rate and one in the dropout hazard
CALENDAR_CANDIDATES: dict[str, type[PurchaseModel]] = models_where(choice="calendar")

#: relative MSE difference under which two models count as tied (the default of select_model)
TOLERANCE = 0.005

RULE = ("lowest holdout mean squared error of purchases per customer (the scoring rule made for "
        "an expected-value forecast); models within {tol:.1%} of the best count as tied, and the tie "
        "goes to the model with fewest parameters (a season or a regularity must earn its place), then "
        "the smallest absolute aggregate error, then the lowest BIC")


@dataclass
class ModelSelection:
    """What :func:`select_model` found.

    Attributes
    ----------
    table : DataFrame
        One row per candidate: ``mse``, ``mae``, ``rmse``, ``aggregate_pct_error``, ``predicted_purchases``,
        ``actual_purchases``, ``log_likelihood``, ``bic``, ``fit_seconds``, ``chosen``; and
        ``error`` for a candidate that could not be fitted.
    chosen : str
        Name of the chosen model (a key of :data:`CANDIDATES`).
    reason : str
        The rule and how the chosen model met it, in words.
    models : dict
        The candidates fitted on the calibration window.
    """

    table: pd.DataFrame
    chosen: str
    reason: str
    models: dict[str, PurchaseModel] = field(default_factory=dict)
    rule: str = ""

    @property
    def model_class(self) -> type[PurchaseModel]:
        return type(self.models[self.chosen])

    @property
    def calibration_model(self) -> PurchaseModel:
        """The chosen model as fitted on the calibration window."""
        return self.models[self.chosen]

    def new_model(self, **init: Any) -> PurchaseModel:
        """An unfitted model like the chosen one, with what defines it kept (MBG/CNBD-k's
        regularity ``k`` as chosen on the calibration window)."""
        chosen = self.models[self.chosen]
        return self.model_class(**{**chosen._defining(), **init})

    def refit(self, rfm: pd.DataFrame, **init: Any) -> PurchaseModel:
        """The chosen model fitted afresh on ``rfm`` (typically all data to the observation end)."""
        return self.new_model(**init).fit(rfm)

    def _repr_html_(self) -> str:
        return f"<p>{self.reason}</p>" + self.table.to_html(float_format=lambda v: f"{v:.4g}", na_rep="")

    def __repr__(self) -> str:
        return f"ModelSelection(chosen={self.chosen!r})\n" + self.table.to_string(float_format=lambda v: f"{v:.4g}")


def holdout_spend(cal: pd.DataFrame) -> np.ndarray:
    """Each customer's expected spend per purchase from the calibration window, the way the
    report gets it (Gamma-Gamma, which states a constant spend when amounts do not vary); the
    mean spend of repeat purchases for everyone when Gamma-Gamma cannot be fitted."""
    try:
        return GammaGammaModel().fit(cal).expected_spend(cal).to_numpy(float)
    except ClvModelsError:
        rep = cal["frequency"].to_numpy(float) > 0
        m = cal["monetary_value"].to_numpy(float)
        mean = float(m[rep].mean()) if rep.any() else 0.0
        return np.full(len(cal), mean)


def holdout_scores(cal: pd.DataFrame, predicted: Any, spend: np.ndarray,
                   tier_shares: dict[str, float] | None = None) -> dict[str, float]:
    """How a forecast of each customer's holdout purchases did on what the report promises.

    ``predicted``: expected purchases per customer in the holdout (rows of ``cal``); ``spend``:
    expected spend per purchase. Customers are tiered by predicted value (purchases x spend, the
    report's ranking) and each tier's predicted purchases and revenue compared with what its
    customers did. Returns ``mse`` (per customer, purchases), ``total_pct`` and
    ``revenue_total_pct`` (100 (predicted - actual) / actual over everyone), ``<q>_<tier>_pct``
    for the 4 tiers x purchases, revenue, and ``tier_pct``: the mean absolute error of those 8
    cells (a cell with nothing actual counts as 100% when something was predicted)."""
    pred = np.asarray(predicted, float)
    actual = cal["frequency_holdout"].to_numpy(float)
    revenue = (cal["revenue_holdout"].to_numpy(float) if "revenue_holdout" in cal.columns
               else actual * spend)
    tiers = assign_tiers(pd.DataFrame({"clv": pred * spend}, index=cal.index), shares=tier_shares).to_numpy()
    out = {"mse": float(((pred - actual) ** 2).mean())}
    cells = []
    for q, p, a in (("purchases", pred, actual), ("revenue", pred * spend, revenue)):
        tot = float(a.sum())
        out[("total_pct" if q == "purchases" else "revenue_total_pct")] = (
            100 * (float(p.sum()) - tot) / tot if tot > 0 else float("nan"))
        for tier in TIERS:
            inside = tiers == tier
            pt, at = float(p[inside].sum()), float(a[inside].sum())
            e = 100 * (pt - at) / at if at > 0 else (100.0 if pt > 0 else 0.0)
            out[f"{q}_{tier}_pct"] = e
            cells.append(abs(e))
    out["tier_pct"] = float(np.mean(cells))
    return out


def _calendar_candidates(cal: pd.DataFrame, events: Any = None) -> dict[str, tuple[type[PurchaseModel], dict]]:
    """The calendar candidates ``cal`` can fit, with their settings: it carries its purchase
    calendar and spans the history each one needs (a year for a purchase season, two for a
    dropout season); with ``events`` each takes them, and where the history is too short for
    its season it is offered with the events alone."""
    unit = DAYS_PER_UNIT.get(cal.attrs.get("time_unit", ""), 0.0)
    if cal.attrs.get("purchase_calendar") is None or len(cal) == 0:
        return {}
    span = float(cal["T"].max()) * unit
    out: dict[str, tuple[type[PurchaseModel], dict]] = {}
    for name, cls in CALENDAR_CANDIDATES.items():
        probe = cls()  # its defaults: the history they need, whether they have a dropout season
        if span >= probe.min_span_days:
            out[name + (" + events" if events is not None else "")] = (cls, {"events": events} if events is not None
                                                                       else {})
        elif events is not None:
            flat = {"harmonics": 0} | ({"dropout_harmonics": 0} if probe.dropout_harmonics else {})
            out[name.replace(" + season", "") + " + events"] = (cls, {"events": events, **flat})
    return out


def candidate_classes(cal: pd.DataFrame, candidates: dict[str, type[PurchaseModel]] | None = None,
                      events: Any = None) -> dict[str, tuple[type[PurchaseModel], dict]]:
    """The models the choice tries on ``cal``, by name, each with its settings: ``candidates``
    as given, or by default :data:`CANDIDATES`, :data:`REGULARITY_CANDIDATES` when ``cal`` has
    each customer's ``litt`` and the calendar candidates its history allows."""
    if candidates is None:
        cands = {name: (cls, {}) for name, cls in
                 {**CANDIDATES, **(REGULARITY_CANDIDATES if "litt" in cal.columns else {})}.items()}
        cands.update(_calendar_candidates(cal, events))
        return cands
    if not candidates:
        raise ParameterError("candidates must name at least one model.")
    for name, cls in candidates.items():
        if not (isinstance(cls, type) and issubclass(cls, PurchaseModel)):
            raise ParameterError(f"candidates[{name!r}] must be a purchase model class, got {cls!r}.")
    return {name: (cls, {}) for name, cls in candidates.items()}


def select_model(
    cal: pd.DataFrame,
    *,
    candidates: dict[str, type[PurchaseModel]] | None = None,
    tolerance: float = TOLERANCE,
    events: Any = None,
) -> ModelSelection:
    """Fit every candidate on the calibration window and pick one by its holdout error.

    Parameters
    ----------
    cal : DataFrame
        From :func:`clvmodels.calibration_holdout` (calibration RFM plus ``frequency_holdout``
        and ``duration_holdout``).
    candidates : dict, optional
        Name to model class; defaults to :data:`CANDIDATES` (BG/NBD, MBG/NBD, Pareto/NBD), plus
        MBG/CNBD-k (:data:`REGULARITY_CANDIDATES`) when ``cal`` has a ``litt`` column, plus
        the seasonal BG/NBD and Pareto/NBD (:data:`CALENDAR_CANDIDATES`) when ``cal`` carries its
        purchase calendar and the history each needs (:data:`clvmodels.models.seasonal.MIN_SPAN_DAYS`,
        :data:`clvmodels.models.seasonal.MIN_DROPOUT_SPAN_DAYS`).
    tolerance : float, default 0.005
        Relative MSE difference under which two models count as tied.
    events : DataFrame, optional
        Calendar events (indexed by date, a column per event; :func:`clvmodels.models.seasonal.read_events`)
        given to the calendar candidates; with less than a year of history they are offered with the
        events alone (BG/NBD + events, Pareto/NBD + events).

    Returns
    -------
    ModelSelection

    Raises
    ------
    DataValidationError
        ``cal`` lacks the holdout columns.
    ClvModelsError
        No candidate could be fitted (each one's error is in the message).

    Notes
    -----
    BG/BB needs discrete opportunities (:mod:`clvmodels.models.beta_geo_beta_binom`) and is
    not a candidate for continuous-time logs.
    """
    check_calibration(cal)
    tol = check_number("tolerance", tolerance, minimum=0.0, maximum=1.0)
    cands = candidate_classes(cal, candidates, events)
    t = float(cal["duration_holdout"].iloc[0])
    actual = cal["frequency_holdout"].to_numpy(float)
    if actual.sum() == 0:
        raise DataValidationError(
            "Nobody bought in the holdout window (frequency_holdout is 0 for every customer); "
            "models cannot be compared on it. Choose an earlier calibration_end."
        )
    rows: dict[str, dict[str, Any]] = {}
    models: dict[str, PurchaseModel] = {}
    for name, (cls, init) in cands.items():
        start = time.perf_counter()
        try:
            model = cls(**init).fit(cal)
        except ClvModelsError as exc:
            rows[name] = {"error": str(exc).splitlines()[0]}
            continue
        pred = model.expected_purchases(cal, t).to_numpy()
        err = pred - actual
        models[name] = model
        rows[name] = {
            "mse": float((err**2).mean()),
            "mae": float(np.abs(err).mean()),
            "rmse": float(np.sqrt((err**2).mean())),
            "aggregate_pct_error": float(100 * (pred.sum() - actual.sum()) / actual.sum()),
            "predicted_purchases": float(pred.sum()),
            "actual_purchases": float(actual.sum()),
            "log_likelihood": float(model.log_likelihood_),
            "bic": float(model.bic),
            "fit_seconds": time.perf_counter() - start,
        }
    if not models:
        raise ClvModelsError("No candidate model could be fitted:\n" + "\n".join(
            f"  - {n}: {r['error']}" for n, r in rows.items()))
    table = pd.DataFrame(rows).T
    table.index.name = "model"
    ok = table.loc[list(models)]
    best = float(ok["mse"].min())
    tied = ok[ok["mse"] <= best * (1 + tol)]
    # stable: on a full tie the earlier candidate wins (MBG/NBD over an identical MBG/CNBD-1)
    keys = tied.assign(abs_agg=tied["aggregate_pct_error"].abs().round(6), bic_=tied["bic"].round(6),
                       n_params=[models[name].n_free_params for name in tied.index])
    order = keys.sort_values(["n_params", "abs_agg", "bic_"], kind="stable")
    chosen = str(order.index[0])
    table["chosen"] = table.index == chosen
    for col in ("mse", "mae", "rmse", "aggregate_pct_error", "predicted_purchases", "actual_purchases",
                "log_likelihood", "bic", "fit_seconds"):
        if col in table:
            table[col] = pd.to_numeric(table[col])
    rule = RULE.format(tol=tol)
    c = table.loc[chosen]
    others = [n for n in models if n != chosen]
    if len(tied) > 1:
        more = [n for n in tied.index if models[n].n_free_params > models[chosen].n_free_params]
        equal = [n for n in tied.index if n != chosen and n not in more]
        how = (f"missed the holdout total by less ({c['aggregate_pct_error']:+.1f}%)" if not more else
               "has the fewest parameters" + (f" and, among those, missed the holdout total by less "
                                              f"({c['aggregate_pct_error']:+.1f}%)" if equal else ""))
        why = f"{', '.join(n for n in tied.index if n != chosen)} came within {tol:.1%} of its squared error, and {chosen} {how}"
    elif others:
        runner = ok.drop(index=chosen)["mse"].idxmin()
        why = (f"its mean squared error {c['mse']:.4g} beat the next best, {runner}, at "
               f"{ok.loc[runner, 'mse']:.4g}; it missed the holdout total by {c['aggregate_pct_error']:+.1f}% "
               f"({runner}: {ok.loc[runner, 'aggregate_pct_error']:+.1f}%)")
    else:
        why = "it was the only model that could be fitted"
    reason = (f"{chosen} was chosen by backtest on a holdout of {t:g} "
              f"{UNIT_NAMES.get(cal.attrs.get('time_unit', ''), 'time units')}: {why}. Rule: {rule}.")
    return ModelSelection(table, chosen, reason, models, rule)
