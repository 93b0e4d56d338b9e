"""Tier ranges widened by what the backtests missed: the model's own intervals cover parameter
uncertainty and the randomness of purchases, not a model that is wrong in a way the data can
show. Each backtest origin's error per tier (:func:`backtest_error`, :func:`with_earlier_origins`)
widens the tier table's ranges (:func:`widen_intervals`). Split from :mod:`clvmodels.intervals`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from clvmodels._validation import check_number
from clvmodels.exceptions import DataValidationError

__all__ = ["backtest_error", "with_earlier_origins", "widen_intervals"]


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


def with_earlier_origins(error: pd.DataFrame, origins: pd.DataFrame) -> pd.DataFrame:
    """:func:`backtest_error` of the latest backtest with the tier errors of earlier origins
    (rows of :attr:`clvmodels.selection.ModelSelection.origins` for the chosen model, origin >= 1):
    ``{q}_log_error_low`` / ``_high`` span every origin's log error per tier and ``sigma_{q}`` is
    the root mean square over all of them, so the ranges carry how much the model's misses
    varied from one window to the next (issue 27, item 6)."""
    earlier = origins[origins["origin"] > 0] if len(origins) else origins
    if not len(earlier):
        return error
    out = error.copy()
    out.attrs.update(error.attrs)
    for q, total in (("purchases", "total_pct"), ("revenue", "revenue_total_pct")):
        cols = {tier: f"{q}_{tier}_pct" for tier in error.index if tier != "Total"} | {"Total": total}
        logs = np.column_stack([error[f"{q}_log_error"].reindex(list(cols)).to_numpy(float)] + [
            -np.log1p(np.clip(row[list(cols.values())].to_numpy(float) / 100, -0.999, None))
            for _, row in earlier.iterrows()])
        with np.errstate(all="ignore"):
            out[f"{q}_log_error_low"] = pd.Series(np.nanmin(logs, axis=1), index=list(cols)).reindex(out.index)
            out[f"{q}_log_error_high"] = pd.Series(np.nanmax(logs, axis=1), index=list(cols)).reindex(out.index)
        finite = logs[np.isfinite(logs)]
        out.attrs[f"sigma_{q}"] = float(np.sqrt((finite**2).mean())) if len(finite) else float("nan")
    out.attrs["origins"] = 1 + int(earlier["origin"].nunique())
    return out


def widen_intervals(tier_table: pd.DataFrame, error: pd.DataFrame, *, level: float = 0.90,
                    stretch: float = 1.0) -> pd.DataFrame:
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
    error (every origin's, with :func:`with_earlier_origins`), widened by both sources of
    uncertainty. ``stretch`` multiplies the backtest's log errors and ``sigma`` when the forecast
    horizon is longer than the backtest's holdout (the report: ``sqrt(horizon / holdout)``,
    :data:`clvmodels.pipeline.STRETCH_POWER`). Revenue's errors also widen CLV. A point
    value that is not positive (net CLV of Lead) is widened the same way on the original scale.
    The point forecasts stay as they are. Coverage on generated and CDNOW data, with and
    without drift, is measured by ``validation/interval_coverage.py`` (validation/README.md).

    Returns
    -------
    DataFrame
        ``tier_table`` with the ``*_lower``/``*_upper`` columns replaced and ``attrs``
        ``sigma_purchases``, ``sigma_revenue``, ``model_error_z``.
    """
    lvl = check_number("level", level, minimum=0.0, maximum=1.0, min_inclusive=False, max_inclusive=False)
    stretch = check_number("stretch", stretch, minimum=1.0, maximum=100.0)
    z = float(stats.norm.ppf(0.5 + lvl / 2))
    out = tier_table.copy()
    source = {"expected_purchases": "purchases", "expected_revenue": "revenue", "total_clv": "revenue"}
    for col, q in source.items():
        lo_col, hi_col = f"{col}_lower", f"{col}_upper"
        sigma = error.attrs.get(f"sigma_{q}", np.nan)
        if lo_col not in out.columns or not np.isfinite(sigma):
            continue
        sigma = sigma * stretch
        e = stretch * error[f"{q}_log_error"].reindex(out.index).fillna(0.0).to_numpy(float)
        # with earlier origins: the span of the tier's errors over every backtest
        e_lo = (stretch * error[f"{q}_log_error_low"].reindex(out.index).fillna(0.0).to_numpy(float)
                if f"{q}_log_error_low" in error.columns else e)
        e_hi = (stretch * error[f"{q}_log_error_high"].reindex(out.index).fillna(0.0).to_numpy(float)
                if f"{q}_log_error_high" in error.columns else e)
        p = out[col].to_numpy(float)
        lo = out[lo_col].to_numpy(float)
        hi = out[hi_col].to_numpy(float)
        spread = z * sigma
        positive = (p > 0) & (lo > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_lo = np.minimum(0.0, e_lo) - np.sqrt(np.log(p / lo) ** 2 + spread**2)
            log_hi = np.maximum(0.0, e_hi) + np.sqrt(np.log(hi / p) ** 2 + spread**2)
        abs_lo = p + np.minimum(0.0, np.abs(p) * np.expm1(e_lo)) - np.sqrt((p - lo) ** 2 + (spread * np.abs(p)) ** 2)
        abs_hi = p + np.maximum(0.0, np.abs(p) * np.expm1(e_hi)) + np.sqrt((hi - p) ** 2 + (spread * np.abs(p)) ** 2)
        out[lo_col] = np.where(positive, p * np.exp(log_lo), abs_lo)
        out[hi_col] = np.where(positive, p * np.exp(log_hi), abs_hi)
    out.attrs.update({"sigma_purchases": error.attrs.get("sigma_purchases", np.nan),
                      "sigma_revenue": error.attrs.get("sigma_revenue", np.nan), "model_error_z": z,
                      "stretch": float(stretch)})
    return out
