"""Holdout scorecard: how well the models predicted a period they never saw, against baselines."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from clvmodels._validation import DAYS_PER_UNIT, UNIT_NAMES, check_rfm, check_timestamp
from clvmodels.exceptions import DataValidationError, ParameterError
from clvmodels.models import GammaGammaModel
from clvmodels.models._purchase import PurchaseModel

__all__ = ["evaluate", "Scorecard", "tracking_curve", "naive_baseline", "gradient_boosting_baseline"]

HOLDOUT_NEEDED = ("frequency_holdout", "duration_holdout")


@dataclass
class Scorecard:
    """Numbers from :func:`evaluate`.

    Attributes
    ----------
    metrics : DataFrame
        One row per model (the purchase model, e.g. ``BG/NBD``, first, then the baselines): ``predicted_purchases``,
        ``actual_purchases``, ``aggregate_pct_error``, ``mae``, ``rmse`` (per customer),
        ``auc`` and ``brier`` of the probability of any purchase against whether the
        customer bought, ``spend_mae`` (buyers only).
    calibration : DataFrame
        Per model and bin of predicted probability of any purchase: mean prediction,
        observed share of buyers, customers.
    tiers : DataFrame
        Per tier (by the model's predicted value): predicted vs actual purchases and revenue.
    tracking : DataFrame or None
        Per period: actual vs expected cumulative repeat purchases of the cohort.
    predictions : DataFrame
        Per customer: actual holdout purchases and each model's prediction.
    """

    metrics: pd.DataFrame
    calibration: pd.DataFrame
    tiers: pd.DataFrame
    tracking: pd.DataFrame | None
    predictions: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)

    def _repr_html_(self) -> str:
        head = "<p><b>Holdout scorecard</b> &mdash; " + html.escape(self.info.get("description", "")) + "</p>"
        return head + self.metrics.to_html(float_format=lambda v: f"{v:.4g}", na_rep="n/a")

    def __repr__(self) -> str:
        return "Scorecard\n" + self.metrics.to_string(float_format=lambda v: f"{v:.4g}")


def _check_cal(cal: pd.DataFrame) -> None:
    check_rfm(cal, monetary=True, name="cal")
    missing = [c for c in HOLDOUT_NEEDED if c not in cal.columns]
    if missing:
        raise DataValidationError(
            f"cal is missing {missing}: build it with clvmodels.calibration_holdout(...)."
        )


def naive_baseline(cal: pd.DataFrame) -> pd.DataFrame:
    """Calibration purchase rate x holdout length.

    Each customer's repeat purchases per time unit since their first purchase
    (``frequency / T``), times the holdout length; the probability of any purchase is that of a
    Poisson count with this mean; spend per purchase is the customer's calibration mean
    (the population mean of repeat buyers for everyone else).
    """
    _check_cal(cal)
    t = cal["duration_holdout"].to_numpy(float)
    rate = cal["frequency"].to_numpy(float) / np.maximum(cal["T"].to_numpy(float), 1e-9)
    expected = rate * t
    buyers = (cal["frequency"] > 0) & (cal["monetary_value"] > 0)
    pop = cal.loc[buyers, "monetary_value"].mean() if buyers.any() else 0.0
    spend = np.where(buyers, cal["monetary_value"], pop)
    return pd.DataFrame({"expected_purchases": expected, "p_any_purchase": -np.expm1(-expected),
                         "expected_spend": spend}, index=cal.index)


def gradient_boosting_baseline(
    transactions: Any, cal: pd.DataFrame, *, seed: int = 0, columns: dict[str, str] | None = None
) -> pd.DataFrame:
    """A scikit-learn gradient-boosting model on RFM features, trained on an earlier window.

    The training target is what customers did in the last ``L`` of the calibration window,
    from their RFM features at its start, with ``L`` the holdout length or, when the
    calibration window is shorter than twice that, half of it; so the model never sees the
    holdout. Its count predictions are scaled by ``holdout length / L``; its purchase
    probabilities are for a window of length ``L`` (unscaled). Spend per purchase comes from
    a regressor of the mean spend in the target window, for customers who bought there.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    from clvmodels.rfm import calibration_holdout

    _check_cal(cal)
    unit = cal.attrs.get("time_unit")
    cal_end = cal.attrs.get("calibration_end")
    if unit is None or cal_end is None:
        raise DataValidationError("cal lacks its attrs (time_unit, calibration_end); build it with calibration_holdout.")
    days = DAYS_PER_UNIT[unit]
    holdout_days = float(cal["duration_holdout"].iloc[0]) * days
    span_days = float(cal["T"].max()) * days
    window_days = int(min(holdout_days, span_days / 2))
    if window_days < 1:
        raise DataValidationError("The calibration window is too short to train a baseline on an earlier window.")
    end = check_timestamp("calibration_end", cal_end)
    cutoff = end - pd.Timedelta(days=window_days)
    train = calibration_holdout(transactions, calibration_end=cutoff, observation_end=end,
                                time_unit=unit, columns=columns)

    def features(df: pd.DataFrame) -> np.ndarray:
        return np.column_stack([df["frequency"], df["recency"], df["T"], df["T"] - df["recency"],
                                df["monetary_value"]])

    X_train, X_pred = features(train), features(cal)
    y_count = train["frequency_holdout"].to_numpy(float)
    counts = HistGradientBoostingRegressor(loss="poisson", max_iter=200, random_state=seed)
    counts.fit(X_train, y_count)
    bought = (y_count > 0).astype(int)
    if bought.min() == bought.max():
        p_any = np.full(len(cal), float(bought.mean()))
    else:
        clf = HistGradientBoostingClassifier(max_iter=200, random_state=seed).fit(X_train, bought)
        p_any = clf.predict_proba(X_pred)[:, 1]
    spenders = y_count > 0
    if "revenue_holdout" in train.columns and spenders.sum() >= 10:
        target = train.loc[spenders, "revenue_holdout"] / train.loc[spenders, "frequency_holdout"]
        spend_model = HistGradientBoostingRegressor(max_iter=200, random_state=seed)
        spend_model.fit(X_train[spenders], target.to_numpy())
        spend = spend_model.predict(X_pred)
    else:
        spend = naive_baseline(cal)["expected_spend"].to_numpy()
    scale = holdout_days / window_days
    out = pd.DataFrame({"expected_purchases": counts.predict(X_pred) * scale, "p_any_purchase": p_any,
                        "expected_spend": spend}, index=cal.index)
    out.attrs["training_window_days"] = window_days
    return out


def _score(name: str, pred: pd.DataFrame, cal: pd.DataFrame) -> tuple[dict[str, float], pd.DataFrame]:
    from sklearn.metrics import brier_score_loss, roc_auc_score  # heavy import, only when scoring

    actual = cal["frequency_holdout"].to_numpy(float)
    expected = pred["expected_purchases"].to_numpy(float)
    bought = (actual > 0).astype(int)
    p_any = np.clip(pred["p_any_purchase"].to_numpy(float), 0.0, 1.0)
    err = expected - actual
    row = {
        "predicted_purchases": expected.sum(),
        "actual_purchases": actual.sum(),
        "aggregate_pct_error": 100 * (expected.sum() - actual.sum()) / actual.sum() if actual.sum() else np.nan,
        "mae": np.abs(err).mean(),
        "rmse": np.sqrt((err**2).mean()),
        "auc": roc_auc_score(bought, p_any) if 0 < bought.sum() < len(bought) else np.nan,
        "brier": brier_score_loss(bought, p_any),
    }
    if "revenue_holdout" in cal.columns and bought.any():
        actual_spend = (cal["revenue_holdout"] / cal["frequency_holdout"].where(actual > 0)).to_numpy()
        mask = actual > 0
        row["spend_mae"] = np.abs(pred["expected_spend"].to_numpy()[mask] - actual_spend[mask]).mean()
    else:
        row["spend_mae"] = np.nan
    edges = np.linspace(0, 1, 11)
    bins = np.clip(np.digitize(p_any, edges[1:-1]), 0, 9)
    calib = (
        pd.DataFrame({"bin": bins, "p": p_any, "bought": bought})
        .groupby("bin")
        .agg(mean_predicted=("p", "mean"), observed_share=("bought", "mean"), customers=("p", "size"))
        .reset_index()
    )
    calib.insert(0, "model", name)
    calib["bin_lower"] = edges[calib["bin"]]
    calib["bin_upper"] = edges[calib["bin"] + 1]
    return row, calib


def evaluate(
    cal: pd.DataFrame,
    transaction_model: PurchaseModel,
    spend_model: GammaGammaModel | None = None,
    *,
    transactions: Any = None,
    baselines: bool = True,
    tier_shares: dict[str, float] | None = None,
    columns: dict[str, str] | None = None,
    seed: int = 0,
) -> Scorecard:
    """Score a model's holdout predictions, and baselines scored the same way.

    Parameters
    ----------
    cal : DataFrame
        From :func:`clvmodels.calibration_holdout`; the models must have been fitted on its
        calibration columns.
    transaction_model : BetaGeoModel
    spend_model : GammaGammaModel, optional
        Adds spend error and revenue per tier.
    transactions : optional
        The transaction log: enables the gradient-boosting baseline (trained on an earlier
        window) and the cumulative tracking curve.
    baselines : bool
        Score the naive rate model (and, with ``transactions``, gradient boosting).
    tier_shares : dict, optional
        Shares for :func:`clvmodels.assign_tiers`.

    Returns
    -------
    Scorecard
    """
    from clvmodels.forecast import forecast
    from clvmodels.tiers import TIER_DTYPE, assign_tiers

    _check_cal(cal)
    if not isinstance(transaction_model, PurchaseModel):
        raise ParameterError(f"transaction_model must be a fitted purchase model, got {type(transaction_model).__name__}.")
    t = float(cal["duration_holdout"].iloc[0])
    preds: dict[str, pd.DataFrame] = {}
    if spend_model is not None:
        fc = forecast(transaction_model, spend_model, cal, horizon=t, discount_rate=0.0,
                      time_unit=cal.attrs.get("time_unit"))
        bg = fc[["expected_purchases", "p_any_purchase", "expected_spend"]]
        value = fc["clv"]
    else:
        bg = pd.DataFrame({
            "expected_purchases": transaction_model.expected_purchases(cal, t),
            "p_any_purchase": transaction_model.probability_any_purchase(cal, t),
            "expected_spend": np.nan,
        })
        value = bg["expected_purchases"]
    preds[transaction_model._long_name] = bg
    if baselines:
        preds["naive rate"] = naive_baseline(cal)
        if transactions is not None:
            preds["gradient boosting"] = gradient_boosting_baseline(transactions, cal, seed=seed, columns=columns)
    rows, calibs = {}, []
    for name, p in preds.items():
        rows[name], c = _score(name, p, cal)
        calibs.append(c)
    metrics = pd.DataFrame(rows).T
    metrics.index.name = "model"

    tiers = assign_tiers(pd.DataFrame({"clv": value}), shares=tier_shares)
    per = pd.DataFrame({
        "tier": tiers.astype(TIER_DTYPE),
        "predicted_purchases": bg["expected_purchases"],
        "actual_purchases": cal["frequency_holdout"],
        "predicted_revenue": bg["expected_purchases"] * bg["expected_spend"],
        "actual_revenue": cal["revenue_holdout"] if "revenue_holdout" in cal.columns else np.nan,
    })
    tier_table = per.groupby("tier", observed=False).agg(
        customers=("predicted_purchases", "size"),
        predicted_purchases=("predicted_purchases", "sum"),
        actual_purchases=("actual_purchases", "sum"),
        predicted_revenue=("predicted_revenue", "sum"),
        actual_revenue=("actual_revenue", "sum"),
    )
    tier_table.index = tier_table.index.astype(str)
    tier_table["purchases_pct_error"] = 100 * (tier_table["predicted_purchases"] / tier_table["actual_purchases"] - 1)

    tracking = None
    if transactions is not None:
        tracking = tracking_curve(transaction_model, transactions, cal, columns=columns)
    predictions = pd.DataFrame({"actual_purchases": cal["frequency_holdout"]})
    for name, p in preds.items():
        predictions[f"{name}: expected_purchases"] = p["expected_purchases"]
    unit = cal.attrs.get("time_unit")
    info = {
        "holdout_length": t,
        "time_unit": unit,
        "description": f"holdout of {t:g} {UNIT_NAMES.get(unit, 'time units')} after "
                       f"{cal.attrs.get('calibration_end', 'the calibration end')}, "
                       f"{len(cal):,} customers",
    }
    return Scorecard(metrics, pd.concat(calibs, ignore_index=True), tier_table, tracking, predictions, info)


def tracking_curve(
    transaction_model: PurchaseModel, transactions: Any, cal: pd.DataFrame, *,
    columns: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Cumulative repeat purchases of the calibration cohort, actual vs expected, per period.

    Expected: ``sum_i E[X(t - s_i)]`` over customers with first purchase at ``s_i`` (FHL 2005
    eq. 9; their Figure 3). Actual: the cohort's purchase days other than each customer's
    first, counted by the end of each period from the first customer's first purchase to the
    holdout end.
    """
    from clvmodels._engine import execute
    from clvmodels.rfm import _date_literal
    from clvmodels.transactions import load_transactions

    _check_cal(cal)
    unit = cal.attrs["time_unit"]
    days = DAYS_PER_UNIT[unit]
    cal_end = check_timestamp("calibration_end", cal.attrs["calibration_end"])
    hold_end = check_timestamp("observation_end", cal.attrs["holdout_end"])
    t = load_transactions(transactions, **(columns or {}))
    daily = t.filter(t.date <= _date_literal(hold_end)).select("customer_id", "date").distinct()
    first = daily.group_by("customer_id").aggregate(first=daily.date.min())
    j = daily.inner_join(first, "customer_id")
    j = j.filter((j.first <= _date_literal(cal_end)) & (j.date > j.first))
    per_day = execute(j.group_by("date").aggregate(n=j.count()))
    start = cal_end - pd.Timedelta(days=float(cal["T"].max()) * days)
    n_periods = int(np.ceil((hold_end - start).days / days))
    ends = np.arange(1, n_periods + 1) * days  # days since start
    day_offsets = (pd.to_datetime(per_day["date"]) - start).dt.days.to_numpy()
    order = np.argsort(day_offsets)
    running = np.concatenate([[0.0], np.cumsum(per_day["n"].to_numpy(float)[order])])
    # purchases on days before each period's end: a running total read at the cut-offs
    actual = running[np.searchsorted(day_offsets[order], ends, side="left")]
    # first purchase of each customer, in days after start
    first_days = np.rint((cal_end - start).days - cal["T"].to_numpy(float) * days)
    uniq, counts = np.unique(first_days, return_counts=True)
    expected = np.zeros(n_periods)
    for f, c in zip(uniq, counts, strict=True):
        age = np.maximum(ends - f - 1, 0.0) / days  # purchases on the first day are the first purchase
        expected += c * transaction_model.expected_purchases_new_customer(age)
    period_end = start + pd.to_timedelta(ends - 1, unit="D")
    out = pd.DataFrame({
        "period_end": period_end,
        "actual_cumulative": actual,
        "expected_cumulative": expected,
        "in_holdout": period_end > cal_end,
    }, index=pd.RangeIndex(1, n_periods + 1, name="period"))
    out.attrs["time_unit"] = unit
    return out
