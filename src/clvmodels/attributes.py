"""What a customer table says beside the transaction log (issue 17, item 5).

A customer table (``--customers customers.csv``: one row per customer, joined on the id) adds
attributes such as the acquisition channel or the region. This module reads it, fits the
covariate models of :mod:`clvmodels.models.covariates` on the named attributes (purchase rate
and dropout: BG/NBD or MBG/NBD with covariates; spend: Gamma-Gamma with covariates), tests each
against the model without them (likelihood ratio), checks on the report's own backtest whether
the covariates would have forecast the holdout better, and summarises the forecast per segment.
The report's forecasts use the covariates when that backtest says they forecast the holdout
better (:func:`choose_covariates`; :mod:`clvmodels.covariate_forecast`); the report says which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clvmodels._validation import read_table_file
from clvmodels.exceptions import ClvModelsError, DataValidationError
from clvmodels.models.beta_geo import BetaGeoModel
from clvmodels.models.covariates import likelihood_ratio_test  # (and the families' covariate forms)
from clvmodels.models.gamma_gamma import GammaGammaModel
from clvmodels.models.modified_beta_geo import ModifiedBetaGeoModel
from clvmodels.models.pareto_nbd import ParetoNBDModel
from clvmodels.models.registry import info_of, models_where
from clvmodels.selection import TOLERANCE, compare_forecasts

__all__ = ["CustomerAttributes", "CovariateChoice", "read_customer_table", "choose_covariates", "customer_attributes",
           "segment_table"]


@dataclass
class CustomerAttributes:
    effects: pd.DataFrame | None = None
    tests: pd.DataFrame | None = None
    backtest: dict | None = None
    segments: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)


def read_customer_table(path: str | Path, id_col: str, ids: pd.Index) -> pd.DataFrame:
    """The customer table at ``path`` (CSV or Parquet), indexed by ``id_col`` as text and
    aligned to ``ids``; every customer of the log needs a row."""
    path = Path(path)
    table = read_table_file(path, "customer table", id_col)
    if id_col not in table.columns:
        raise DataValidationError(f"The customer table '{path}' has no column {id_col!r} (the customer id column of "
                                  f"the log); it has {list(table.columns)}.")
    table[id_col] = table[id_col].astype(str)
    if table[id_col].duplicated().any():
        dup = table.loc[table[id_col].duplicated(), id_col].head(3).tolist()
        raise DataValidationError(f"The customer table '{path}' has more than one row for customer(s) {dup}.")
    table = table.set_index(id_col)
    want = ids.astype(str)
    missing = want.difference(table.index)
    if len(missing):
        raise DataValidationError(f"{len(missing):,} customer(s) of the log have no row in the customer table "
                                  f"'{path}', e.g. {list(missing[:3])}.")
    out = table.loc[want]
    out.index = ids
    return out


def segment_table(forecast: pd.DataFrame, tiers: pd.Series, segments: pd.Series) -> pd.DataFrame:
    """Per segment: customers, value and its share, expected purchases, customers expected to
    leave during the horizon, and the share of the segment that is Platinum or Gold."""
    seg = segments.reindex(forecast.index).astype(str)
    active = forecast["p_alive"]
    df = pd.DataFrame({"segment": seg.to_numpy(), "clv": forecast["clv"].to_numpy(),
                       "purchases": forecast["expected_purchases"].to_numpy(),
                       "leaving": (active * forecast["churn_probability_during_horizon"]).to_numpy()
                       if "churn_probability_during_horizon" in forecast else np.nan,
                       "top": tiers.reindex(forecast.index).astype(str).isin(["Platinum", "Gold"]).to_numpy()})
    g = df.groupby("segment")
    out = pd.DataFrame({"customers": g.size(), "total_clv": g["clv"].sum(), "mean_clv": g["clv"].mean(),
                        "expected_purchases": g["purchases"].sum(), "expected_to_leave": g["leaving"].sum(),
                        "share_platinum_or_gold": g["top"].mean()})
    out["share_of_clv"] = out["total_clv"] / out["total_clv"].sum() if out["total_clv"].sum() else np.nan
    out = out.sort_values("total_clv", ascending=False)
    out.index.name = "segment"
    return out


@dataclass
class CovariateChoice:
    """Whether the report forecasts with the covariates: the chosen family with them, scored on
    the report's backtests beside the chosen model by the model choice's own rule (the tier
    cells and totals at each origin; better only beyond the tolerance: :func:`covariate_backtest`)."""

    table: pd.DataFrame
    backtest: dict | None
    use: bool
    modified: bool
    pareto: bool
    notes: list[str] = field(default_factory=list)

    def model(self, covariates: list[str]) -> Any:
        return _purchase_model(covariates, self.modified, self.pareto)


def _family(model: Any) -> tuple[bool, bool]:
    """(modified, pareto) of the covariate family closest to a chosen plain model (the
    registry's ``covariate_family``; BG/NBD for a model it does not know)."""
    info = info_of(model)
    family = (info.covariate_family if info is not None else None) or "BG/NBD"
    return family == "MBG/NBD", family == "Pareto/NBD"


def choose_covariates(cfg: Any, rfm: pd.DataFrame, model_cls: Any, cal: pd.DataFrame | None,
                      selection: Any) -> CovariateChoice | None:
    """Read the customer table and decide whether the forecasts use its covariates (None
    without a customer table)."""
    if not cfg.customers_path:
        return None
    table = read_customer_table(cfg.customers_path, cfg.customer_col, rfm.index)
    for col in [*cfg.covariates, *([cfg.segment_col] if cfg.segment_col else [])]:
        if col not in table.columns:
            raise DataValidationError(f"The customer table has no column {col!r} (named in covariates or "
                                      f"segment_col); it has {list(table.columns)}.")
    modified, pareto = _family(model_cls)
    out = CovariateChoice(table, None, cfg.use_covariates == "yes" and bool(cfg.covariates), modified, pareto)
    if not cfg.covariates or cal is None or selection is None:
        return out
    try:
        out.backtest = covariate_backtest(selection, table, cfg.covariates, modified, pareto, cfg.tier_shares)
    except ClvModelsError as exc:
        out.notes.append(f"The backtest with covariates could not be run: {str(exc).splitlines()[0]}")
        return out
    # the model choice's rule: better only beyond its tolerance
    better = out.backtest["score"] < out.backtest["chosen_score"] * (1 - TOLERANCE)
    out.use = {"yes": True, "no": False}.get(cfg.use_covariates, better)
    out.backtest.update(used=out.use, better=bool(better))
    if out.use != better:
        out.notes.append(f"use_covariates is '{cfg.use_covariates}': the forecasts "
                         + ("use the covariates although the backtest did not find them better."
                            if out.use else "leave the covariates out although the backtest found them better."))
    return out


def customer_attributes(cfg: Any, rfm: pd.DataFrame, forecast: pd.DataFrame, tiers: pd.Series, model: Any,
                        cal: pd.DataFrame | None = None, selection: Any = None,
                        choice: CovariateChoice | None = None) -> CustomerAttributes | None:
    """The customer table's section of the report (None without a customer table); ``cal`` and
    ``selection``: the report's backtest table and model choice, to score the covariates there
    (or ``choice``: that already done by :func:`choose_covariates`)."""
    if not cfg.customers_path:
        return None
    if choice is None:
        choice = choose_covariates(cfg, rfm, type(model), cal, selection)
    table = choice.table
    out = CustomerAttributes(notes=list(choice.notes))
    if cfg.segment_col:
        out.segments = segment_table(forecast, tiers, table[cfg.segment_col])
    if not cfg.covariates:
        return out
    modified, pareto = choice.modified, choice.pareto
    family = "Pareto/NBD" if pareto else ("MBG/NBD" if modified else "BG/NBD")
    info = info_of(model)
    if info is not None and info.label != family:
        out.notes.append(f"Covariates are modelled in BG/NBD, MBG/NBD and Pareto/NBD; the forecasts use "
                         f"{model._long_name}, so the effects shown are those of {family} with covariates.")
    try:
        with_cov = _purchase_model(cfg.covariates, modified, pareto).fit(rfm, table)
        plain = models_where(label=family)[family]().fit(rfm)
        spend_cov = GammaGammaModel.with_covariates(spend=cfg.covariates).fit(rfm, table)
        plain_spend = GammaGammaModel.with_covariates().fit(rfm, table)
    except ClvModelsError as exc:
        out.notes.append(f"The covariate models could not be fitted: {str(exc).splitlines()[0]}")
        return out
    out.effects = pd.concat([with_cov.effects(), spend_cov.effects()], ignore_index=True)
    out.effects.attrs["reference"] = {**with_cov.reference_, **spend_cov.reference_}
    rows = []
    for what, restricted, full in ((f"purchases and dropout ({family})", plain, with_cov),
                                   ("spend (Gamma-Gamma)", plain_spend, spend_cov)):
        lr = likelihood_ratio_test(restricted, full)
        rows.append({"process": what, **lr})
    out.tests = pd.DataFrame(rows).set_index("process")
    out.backtest = choice.backtest  # the report's own backtest: would the covariates have forecast better?
    return out


def _purchase_model(covariates: list[str], modified: bool, pareto: bool) -> Any:
    family = ParetoNBDModel if pareto else (ModifiedBetaGeoModel if modified else BetaGeoModel)
    return family.with_covariates(purchase=covariates, dropout=covariates)


def covariate_backtest(selection: Any, table: pd.DataFrame, covariates: list[str], modified: bool, pareto: bool,
                       tier_shares: dict[str, float] | None = None) -> dict:
    """The chosen family with covariates scored beside the chosen model by the model choice's own
    rule (:func:`clvmodels.selection.compare_forecasts`: the 8 tier cells and the totals at each
    of the choice's backtest origins, the latest weighted most), refitted at each origin. Returns
    the rule's ``score`` and ``chosen_score`` (1 = the better), the weighted mean tier errors
    ``tier_pct`` and ``chosen_tier_pct``, the ``origins`` scored, and at the latest origin the mean
    squared errors ``mse``, ``chosen_mse`` and the total error ``aggregate_pct_error``."""
    chosen = selection.chosen
    latest: dict[str, Any] = {}

    def with_attributes(origin: int, window: pd.DataFrame) -> np.ndarray | None:
        tab = table.loc[window.index]
        try:
            m = _purchase_model(covariates, modified, pareto).fit(window, tab)
            pred = m.predict("expected_purchases", window, tab, float(window["duration_holdout"].iloc[0]))
        except ClvModelsError:
            return None
        if origin == 0:
            latest.update(model=m, pred=np.asarray(pred, float))
        return np.asarray(pred, float)

    def without(origin: int, window: pd.DataFrame) -> np.ndarray | None:
        return selection.predictions[origin].get(chosen)

    scores = compare_forecasts(selection.windows, {"with": with_attributes, "without": without}, tier_shares)
    if "model" not in latest:
        raise ClvModelsError("the model with covariates could not be fitted on the latest backtest.")
    actual = selection.windows[0]["frequency_holdout"].to_numpy(float)
    pred = latest["pred"]
    return {"model": latest["model"]._long_name, "chosen": chosen,
            "score": float(scores.loc["with", "score"]), "chosen_score": float(scores.loc["without", "score"]),
            "tier_pct": float(scores.loc["with", "tier_pct"]),
            "chosen_tier_pct": float(scores.loc["without", "tier_pct"]),
            "origins": int(scores.loc["with", "origins"]),
            "mse": float(((pred - actual) ** 2).mean()), "chosen_mse": float(selection.table.loc[chosen, "mse"]),
            "aggregate_pct_error": float(100 * (pred.sum() - actual.sum()) / actual.sum())}
