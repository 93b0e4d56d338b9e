"""Holdout scorecard: how well the models predicted a period they never saw, against baselines."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from clvmodels._validation import DAYS_PER_UNIT, UNIT_NAMES, check_rfm, check_timestamp
from clvmodels.engine import execute, quiet_engine
from clvmodels.exceptions import DataValidationError, ParameterError
from clvmodels.forecast import forecast
from clvmodels.models import GammaGammaModel
from clvmodels.models._purchase import PurchaseModel
from clvmodels.rfm import calibration_holdout, date_literal, purchase_days_between
from clvmodels.threads import within_budget
from clvmodels.tiers import TIER_DTYPE, assign_tiers
from clvmodels.transactions import load_transactions, mark_validated

__all__ = ["evaluate", "Scorecard", "tracking_curve", "naive_baseline", "gradient_boosting_baseline",
           "normalized_gini", "decile_table"]

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
        customer bought, ``gini`` (normalised Gini of predicted vs actual purchases: 1 ranks
        customers perfectly, 0 randomly), ``spearman`` (rank correlation), ``spend_mae``
        (buyers only).
    calibration : DataFrame
        Per model and bin of predicted probability of any purchase: mean prediction,
        observed share of buyers, customers.
    tiers : DataFrame
        Per tier (by the model's predicted value): predicted vs actual purchases and revenue.
    tracking : DataFrame or None
        Per period: actual vs expected cumulative repeat purchases of the cohort.
    predictions : DataFrame
        Per customer: actual holdout purchases and each model's prediction.
    info : dict
        ``description``, ``holdout_length``, ``time_unit``, ``model`` and ``notes`` (e.g. why a
        baseline was not scored).
    deciles : DataFrame
        Per model and decile of predicted purchases: mean predicted and actual purchases and the
        decile's share of actual purchases (see :func:`decile_table`).
    """

    metrics: pd.DataFrame
    calibration: pd.DataFrame
    tiers: pd.DataFrame
    tracking: pd.DataFrame | None
    predictions: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)
    deciles: pd.DataFrame | None = None

    def _repr_html_(self) -> str:
        head = "<p><b>Holdout scorecard</b> &mdash; " + html.escape(self.info.get("description", "")) + "</p>"
        return head + self.metrics.to_html(float_format=lambda v: f"{v:.4g}", na_rep="n/a")

    def __repr__(self) -> str:
        return "Scorecard\n" + self.metrics.to_string(float_format=lambda v: f"{v:.4g}")


def check_calibration(cal: pd.DataFrame) -> None:
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
    check_calibration(cal)
    t = cal["duration_holdout"].to_numpy(float)
    rate = cal["frequency"].to_numpy(float) / np.maximum(cal["T"].to_numpy(float), 1e-9)
    expected = rate * t
    buyers = (cal["frequency"] > 0) & (cal["monetary_value"] > 0)
    pop = cal.loc[buyers, "monetary_value"].mean() if buyers.any() else 0.0
    spend = np.where(buyers, cal["monetary_value"], pop)
    return pd.DataFrame({"expected_purchases": expected, "p_any_purchase": -np.expm1(-expected),
                         "expected_spend": spend}, index=cal.index)


def _features(cal: pd.DataFrame, transactions: Any, end: pd.Timestamp, unit: str, window_days: int,
              columns: dict[str, str] | None) -> pd.DataFrame:
    """Features of the customers of an RFM table at ``end``.

    Time since the last purchase, mean repeat spend, the repeat rate ``frequency / T``, and
    purchase days in the last quarter and the last half of a window before ``end`` (recent
    activity, the strongest sign of being alive). Nothing that grows with a customer's age
    (``T``, ``recency``, ``frequency``): the training windows end earlier, when customers were
    younger, and trees cannot extrapolate past the ages they saw (with those features the
    baseline over-predicts CDNOW's 26-week holdout by 30% instead of under-predicting by 5%).
    """
    days = DAYS_PER_UNIT[unit]
    out = pd.DataFrame({
        "since_last": cal["T"] - cal["recency"], "monetary_value": cal["monetary_value"],
        "rate": cal["frequency"] / cal["T"].clip(lower=1.0 / days),
    })
    first_day = end - pd.Timedelta(days=float(cal["T"].max()) * days)
    starts = {name: end - pd.Timedelta(days=max(int(window_days * share), 1))
              for share, name in ((0.25, "recent_quarter"), (0.5, "recent_half"))}
    windows = {name: (start, end) for name, start in starts.items() if start > first_day}
    # purchase days in the lookbacks of those already customers at their start, in one pass
    recent = purchase_days_between(transactions, windows, columns=columns) if windows else None
    for name in starts:
        # where the whole history is inside the lookback, it is the frequency
        out[name] = recent[name].reindex(cal.index, fill_value=0) if name in windows else cal["frequency"]
    return out


def _training_window(transactions: Any, cutoff: pd.Timestamp, unit: str, window_days: int,
                     columns: dict[str, str] | None) -> pd.DataFrame:
    """Features at ``cutoff`` and the target: purchase days and revenue in the window after it."""
    cal = calibration_holdout(transactions, calibration_end=cutoff,
                              observation_end=cutoff + pd.Timedelta(days=window_days),
                              time_unit=unit, columns=columns)
    return _features(cal, transactions, cutoff, unit, window_days, columns).assign(
        purchases=cal["frequency_holdout"], revenue=cal["revenue_holdout"])


#: training examples (customer x window) the gradient-boosting baseline learns from at most
MAX_TRAINING_ROWS = 300_000


def gradient_boosting_baseline(
    transactions: Any, cal: pd.DataFrame, *, seed: int = 0, columns: dict[str, str] | None = None,
    max_windows: int = 3,
) -> pd.DataFrame:
    """A scikit-learn gradient-boosting model trained on windows as long as the holdout.

    Training examples are customers at earlier cut-offs ``calibration_end - L - k L/2``
    (``k = 0 .. max_windows-1``, ``L`` the holdout length) with their features at the cut-off
    and, as the target, their purchases in the ``L`` that follow, all inside the calibration
    window: the model learns exactly the quantity it is scored on (no rescaling) and never sees
    the holdout. Counts are fitted with a Poisson loss; the probability of any purchase with a
    classifier; spend per purchase with a regressor on customers who bought in the target window.
    At most :data:`MAX_TRAINING_ROWS` examples are used (a random sample when there are more).
    The count and purchase models stop early (a tenth of the examples held out) at any size, not
    only above scikit-learn's 10,000 rows: on small logs every one of the 300 iterations cost about
    1 ms however few the rows, and stopping early forecast as well or better
    (``validation/baseline_early_stopping.py``: over 13 logs of 400-5,000 customers mean squared
    error 0.93x on average, mean absolute revenue error 19% -> 9%, half the time); the spend
    regressor does not (stopping it early too missed one log's revenue by 22%).

    Raises
    ------
    DataValidationError
        When the calibration window is too short to hold one training window of length ``L``
        with customers before it (e.g. CDNOW's 39-week calibration and 39-week holdout); the
        scorecard then omits the baseline and says why.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    with within_budget():  # scikit-learn's OpenMP is loaded just now: the run's budget applies to it too
        return _gradient_boosting(HistGradientBoostingClassifier, HistGradientBoostingRegressor, transactions, cal,
                                  max_windows, seed, columns)


def _gradient_boosting(classifier: Any, regressor: Any, transactions: Any, cal: pd.DataFrame, max_windows: int,
                       seed: int, columns: dict[str, str] | None) -> pd.DataFrame:
    check_calibration(cal)
    unit = cal.attrs.get("time_unit")
    cal_end = cal.attrs.get("calibration_end")
    if unit is None or cal_end is None:
        raise DataValidationError("cal lacks its attrs (time_unit, calibration_end); build it with calibration_holdout.")
    days = DAYS_PER_UNIT[unit]
    window_days = int(round(float(cal["duration_holdout"].iloc[0]) * days))
    end = check_timestamp("calibration_end", cal_end)
    first_day = end - pd.Timedelta(days=float(cal["T"].max()) * days)
    frames = []
    for k in range(int(max_windows)):
        cutoff = end - pd.Timedelta(days=window_days + k * (window_days // 2))
        # at least a tenth of the customers must already exist at the cut-off
        if cutoff <= first_day or (cal["T"] * days > (end - cutoff).days).mean() < 0.1:
            break
        frames.append(_training_window(transactions, cutoff, unit, window_days, columns))
    if not frames:
        span = (end - first_day).days / days
        raise DataValidationError(
            f"The calibration window ({span:.0f} {UNIT_NAMES[unit]}) is too short to train gradient "
            f"boosting on an earlier window as long as the holdout ({window_days / days:g} "
            f"{UNIT_NAMES[unit]}); choose a calibration end that leaves at least twice the holdout before it."
        )
    train = pd.concat(frames, ignore_index=True)
    if len(train) > MAX_TRAINING_ROWS:
        # more rows add little to trees on six features and cost minutes at scale
        train = train.sample(MAX_TRAINING_ROWS, random_state=seed).reset_index(drop=True)
    feats = [c for c in train.columns if c not in ("purchases", "revenue")]
    X_pred = _features(cal, transactions, end, unit, window_days, columns)[feats]
    X_train = train[feats].to_numpy()
    y = train["purchases"].to_numpy(float)
    counts = regressor(loss="poisson", max_iter=300, learning_rate=0.05, early_stopping=True,
                       random_state=seed).fit(X_train, y)
    bought = (y > 0).astype(int)
    if bought.min() == bought.max():
        p_any = np.full(len(cal), float(bought.mean()))
    else:
        clf = classifier(max_iter=300, learning_rate=0.05, early_stopping=True, random_state=seed)
        p_any = clf.fit(X_train, bought).predict_proba(X_pred.to_numpy())[:, 1]
    spenders = y > 0
    if spenders.sum() >= 10:
        target = train.loc[spenders, "revenue"] / train.loc[spenders, "purchases"]
        spend_model = regressor(max_iter=200, random_state=seed)
        spend = spend_model.fit(X_train[spenders], target.to_numpy()).predict(X_pred.to_numpy())
    else:
        spend = naive_baseline(cal)["expected_spend"].to_numpy()
    out = pd.DataFrame({"expected_purchases": counts.predict(X_pred.to_numpy()), "p_any_purchase": p_any,
                        "expected_spend": spend}, index=cal.index)
    out.attrs["training_windows"] = len(frames)
    out.attrs["training_rows"] = len(train)
    return out


def normalized_gini(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Gini of ``actual`` ordered by ``predicted``, divided by its value ordered by ``actual``.

    1 means the predictions rank customers exactly as their actual purchases do, 0 no better
    than random; ties in the prediction are averaged (they get no credit for an order they
    do not give).
    """
    actual = np.asarray(actual, float)
    predicted = np.asarray(predicted, float)

    def gini(order_by: np.ndarray) -> float:
        # mean of the actual values within tied groups of the ordering key, highest first
        keys, inverse = np.unique(-order_by, return_inverse=True)
        sums = np.bincount(inverse, weights=actual)
        counts = np.bincount(inverse)
        sorted_actual = np.repeat(sums / counts, counts)
        n = len(actual)
        cum = np.cumsum(sorted_actual) / sorted_actual.sum()
        return float(cum.sum() / n - (n + 1) / (2 * n))

    if actual.sum() == 0 or len(actual) < 2:
        return float("nan")
    best = gini(actual)
    return gini(predicted) / best if best != 0 else float("nan")


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import stats

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)


def decile_table(actual: pd.Series, predictions: dict[str, pd.Series]) -> pd.DataFrame:
    """Customers in ten equal groups by each model's predicted purchases (1 = highest): mean
    predicted and actual purchases per group, and the group's share of all actual purchases."""
    frames = []
    act = np.asarray(actual, float)
    for name, pred in predictions.items():
        p = np.asarray(pred, float)
        order = np.lexsort((np.arange(len(p)), -p))
        decile = np.empty(len(p), dtype=int)
        decile[order] = np.arange(len(p)) * 10 // len(p) + 1
        df = pd.DataFrame({"decile": decile, "predicted": p, "actual": act})
        g = df.groupby("decile").agg(customers=("actual", "size"), mean_predicted=("predicted", "mean"),
                                     mean_actual=("actual", "mean"), actual_total=("actual", "sum"))
        g["share_of_actual"] = g["actual_total"] / act.sum() if act.sum() else np.nan
        frames.append(g.drop(columns="actual_total").assign(model=name).reset_index())
    return pd.concat(frames, ignore_index=True)[["model", "decile", "customers", "mean_predicted",
                                                 "mean_actual", "share_of_actual"]]


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
        "gini": normalized_gini(actual, expected),
        "spearman": _spearman(actual, expected),
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
    gradient_boosting: bool = True,
    tier_shares: dict[str, float] | None = None,
    columns: dict[str, str] | None = None,
    seed: int = 0,
    max_customers: int | None = 1_000_000,
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
    gradient_boosting : bool, default True
        With ``baselines`` and ``transactions``: also the gradient-boosting baseline (its cost is
        most of a small log's backtest; False leaves it out and says so in the notes).
    tier_shares : dict, optional
        Shares for :func:`clvmodels.assign_tiers`.
    max_customers : int or None, default 1,000,000
        Score a random sample of this many customers when there are more (the models stay
        fitted on everyone; the transaction log is cut to the sample's customers for the
        baseline and the tracking curve). Metrics of a million customers are precise to the
        third digit; ``None`` scores everyone.

    Returns
    -------
    Scorecard
    """
    check_calibration(cal)
    notes: list[str] = []
    if max_customers is not None and len(cal) > int(max_customers):
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(len(cal), int(max_customers), replace=False))
        attrs = dict(cal.attrs)
        notes.append(f"Scored on a random sample of {int(max_customers):,} of {len(cal):,} customers.")
        cal = cal.iloc[keep]
        cal.attrs.update(attrs)
        if transactions is not None:
            transactions = restrict_log(transactions, cal.index, columns)
            columns = None
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
        if transactions is not None and not gradient_boosting:
            notes.append("Gradient boosting not scored: left out by the run's settings (baseline 'no').")
        elif transactions is not None:
            try:
                preds["gradient boosting"] = gradient_boosting_baseline(transactions, cal, seed=seed, columns=columns)
            except DataValidationError as exc:
                notes.append(f"Gradient boosting not scored: {exc}")
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
        tracking.attrs["model"] = transaction_model._long_name
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
        "model": transaction_model._long_name,
        "notes": notes,
    }
    deciles = decile_table(cal["frequency_holdout"], {n: p["expected_purchases"] for n, p in preds.items()})
    return Scorecard(metrics, pd.concat(calibs, ignore_index=True), tier_table, tracking, predictions,
                     info, deciles)


def restrict_log(transactions: Any, ids: pd.Index, columns: dict[str, str] | None) -> Any:
    """The validated log of the customers in ``ids`` only (a semi-join in the engine)."""
    import ibis

    t = load_transactions(transactions, **(columns or {}))
    with quiet_engine():
        keep = ibis.memtable(pd.DataFrame({"customer_id": np.asarray(ids)}))
    return mark_validated(t.semi_join(keep, "customer_id"))


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
    check_calibration(cal)
    unit = cal.attrs["time_unit"]
    days = DAYS_PER_UNIT[unit]
    cal_end = check_timestamp("calibration_end", cal.attrs["calibration_end"])
    hold_end = check_timestamp("observation_end", cal.attrs["holdout_end"])
    t = load_transactions(transactions, **(columns or {}))
    daily = t.filter(t.date <= date_literal(hold_end)).select("customer_id", "date").distinct()
    first = daily.group_by("customer_id").aggregate(first=daily.date.min())
    j = daily.inner_join(first, "customer_id")
    j = j.filter((j.first <= date_literal(cal_end)) & (j.date > j.first))
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
