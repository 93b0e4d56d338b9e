"""Where a report's customer table lives: in memory (pandas, every customer) or in the engine
(DuckDB or Spark: models fitted on distinct histories, every customer scored and tiered there).

The report's analysis is one list of stages (:mod:`clvmodels.pipeline`); each stage asks the run's
customer table for what it needs - a fit, the forecast and tiers, tier groups, candidates for the
at-risk list, a sample for the figures - and both kinds answer the same questions. A new report
section is a stage that asks these questions, once for both.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clvmodels import scoring
from clvmodels.covariate_forecast import ByCovariateRow
from clvmodels.evaluate import restrict_log
from clvmodels.exceptions import ParameterError
from clvmodels.forecast import FORECAST_COLUMNS, acquisition_budget, forecast, forecast_settings
from clvmodels.intervals import forecast_intervals, grouped_tier_intervals, tier_intervals
from clvmodels.models.calendar import needs_calendar
from clvmodels.models.gamma_gamma import GammaGammaModel
from clvmodels.reporting import ReportConfig, data_overview, overview_table
from clvmodels.retention import (
    AT_RISK_CANDIDATES,
    AT_RISK_MIN_P_NO_PURCHASE,
    AT_RISK_MIN_RISK_RATIO,
)
from clvmodels.rfm import purchase_calendar
from clvmodels.tiers import (
    TIERS,
    assign_tiers,
    cash_flow,
    grouped_what_if,
    retention_what_if,
    tier_groups,
    tier_summary,
)

__all__ = ["Run", "InMemory", "InEngine"]


@dataclass
class Run:
    """What the stages of one report run have found so far (filled stage by stage)."""

    cfg: ReportConfig
    lap: Callable[[str], None]
    sample_customers: int
    """Customers the figures of an engine-scored run are drawn from."""
    engine_above: int = 0
    """Customers above which "auto" keeps the customer table in the engine (for messages)."""
    log: Any = None
    obs_end: str = ""
    cal_end: str | None = None
    table: Any = None
    """The customer table: :class:`InMemory` or :class:`InEngine`."""
    customers: int = 0
    truncation: Any = None
    selection: Any = None
    scorecard: Any = None
    error: pd.DataFrame | None = None
    model_cls: Any = None
    backtest_cal: pd.DataFrame | None = None
    choice: Any = None
    """The customer table's covariates as the backtest judged them (:func:`clvmodels.attributes.choose_covariates`)."""
    by_row: Any = None
    model: Any = None
    spend: Any = None
    forecast: pd.DataFrame | None = None
    tiers: pd.Series | None = None
    tier_table: pd.DataFrame | None = None
    model_only: pd.DataFrame | None = None
    budget: pd.Series | None = None
    what_if: pd.DataFrame | None = None
    cash_flow: pd.DataFrame | None = None
    customer_intervals: pd.DataFrame | None = None
    at_risk: pd.DataFrame | None = None
    since: Any = None
    attributes: Any = None
    details: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    analysis: Any = None
    """The analysis as the report shows it (:class:`clvmodels.pipeline.Analysis`), once built."""

    @property
    def settings(self) -> dict[str, Any]:
        cfg = self.cfg
        return dict(horizon=cfg.horizon, discount_rate=cfg.discount_rate, margin=cfg.margin,
                    cost_to_serve=cfg.cost_to_serve)

    @property
    def cohort_below_T(self) -> float | None:
        """The age below which customers are a left-truncated log's real cohort (None: everyone)."""
        t = self.truncation
        return t.cutoff_T if t is not None and t.fits_cohort else None


def run_settings(run: Run, lifetime: bool = False) -> Any:
    """The forecast settings of a run (:class:`clvmodels.forecast.Settings`)."""
    cfg = run.cfg
    return forecast_settings(run.model, None, cfg.horizon, cfg.discount_rate, cfg.margin, cfg.cost_to_serve,
                             cfg.time_unit, lifetime=lifetime)


def _with_calendar(model_cls: Any, table: pd.DataFrame, log: Any, obs_end: str) -> pd.DataFrame:
    """``table`` with its purchase calendar when the chosen model needs one (a seasonal model)."""
    if needs_calendar(model_cls()):  # a class, or the selection's factory of the chosen model
        table.attrs["purchase_calendar"] = purchase_calendar(log, observation_end=obs_end)
    return table


class InMemory:
    """Every customer's row in a pandas table (``rfm``, indexed by customer)."""

    kind = "memory"

    def __init__(self, rfm: pd.DataFrame):
        self.rfm = rfm

    def customers(self) -> int:
        return len(self.rfm)

    def ages(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Each customer's time observed (``T``) and weights (None: one customer per row)."""
        return self.rfm["T"].to_numpy(float), None

    def frequencies(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Each customer's repeat purchases and weights (None: one customer per row)."""
        return self.rfm["frequency"].to_numpy(float), None

    def sample(self, run: Run, n_wanted: int) -> Any:
        """The log of ``n_wanted`` random customers."""
        rng = np.random.default_rng(0)
        ids = self.rfm.index[np.sort(rng.choice(len(self.rfm), n_wanted, replace=False))]
        return restrict_log(run.log, ids, None)

    def fit(self, run: Run) -> None:
        rfm, below = self.rfm, run.cohort_below_T
        # a left-truncated log: the purchase and dropout dynamics of its real cohort, applied to all
        fit_rows = rfm if below is None else rfm.loc[rfm.index[rfm["T"].to_numpy() < below]]
        if run.choice is not None and run.choice.use:
            cov_model = run.choice.model(run.cfg.covariates).fit(fit_rows, run.choice.table.loc[fit_rows.index])
            run.by_row = ByCovariateRow.build(cov_model, rfm, run.choice.table)
            run.model = run.by_row.reference_model
        else:
            run.model = run.model_cls().fit(_with_calendar(run.model_cls, rfm, run.log, run.obs_end)
                                            if below is None else fit_rows)
        run.spend = GammaGammaModel().fit(rfm)

    def forecast(self, run: Run) -> None:
        by_row, rfm = run.by_row, self.rfm
        run.forecast = (by_row.forecast(run.spend, rfm, **run.settings) if by_row else
                        forecast(run.model, run.spend, rfm, **run.settings))
        run.tiers = assign_tiers(run.forecast, shares=run.cfg.tier_shares)

    def tier_intervals(self, run: Run) -> pd.DataFrame:
        """The tier table with the model's own intervals."""
        iv = dict(level=run.cfg.interval_level, n_draws=run.cfg.n_draws, **run.settings)
        intervals = (run.by_row.tier_intervals(run.spend, self.rfm, run.tiers, **iv) if run.by_row else
                     tier_intervals(run.model, run.spend, self.rfm, run.tiers, **iv))
        return tier_summary(run.forecast, run.tiers, intervals=intervals)

    def budget_and_what_if(self, run: Run) -> tuple[pd.Series, pd.DataFrame]:
        wi = dict(dropout_reduction=run.cfg.dropout_reduction, **run.settings)
        if run.by_row:
            return (run.by_row.acquisition_budget(run.spend, **run.settings),
                    run.by_row.retention_what_if(run.spend, self.rfm, run.tiers, **wi))
        return (acquisition_budget(run.model, run.spend, **run.settings),
                retention_what_if(run.model, run.spend, self.rfm, run.tiers, **wi))

    def cash_flow(self, run: Run) -> pd.DataFrame | None:
        """Revenue and margin per month (or quarter) of the horizon; None for covariate forecasts."""
        if run.by_row:
            return None
        return cash_flow(run.model, run.spend, tier_groups(self.rfm, run.tiers, max_simulated=0),
                         run_settings(run), run.obs_end, run.tier_table.loc["Total"])

    def customer_intervals(self, run: Run) -> pd.DataFrame:
        """Predictive intervals (what each customer may do), 4 simulated futures per parameter draw."""
        pi = dict(level=run.cfg.interval_level, n_sims=4 * run.cfg.n_draws, n_param_draws=min(run.cfg.n_draws, 20),
                  **run.settings)
        return (run.by_row.forecast_intervals(run.spend, self.rfm, **pi) if run.by_row else
                forecast_intervals(run.model, run.spend, self.rfm, **pi))

    def at_risk_candidates(self, run: Run) -> pd.DataFrame:
        return self.rfm.join(run.forecast).assign(tier=run.tiers)

    def figures(self, run: Run, max_frequency: int) -> dict[str, Any]:
        """What the figures and the overview show: every customer."""
        rfm = self.rfm
        return {"rfm": rfm, "forecast": run.forecast, "tiers": run.tiers, "customers": len(rfm),
                "overview": data_overview(rfm), "max_T": float(rfm["T"].max()),
                "frequency_fit": (run.by_row.expected_customers_by_frequency(rfm, max_frequency) if run.by_row else
                                  run.model.expected_customers_by_frequency(rfm, max_frequency=max_frequency))}

    def comparison(self, run: Run) -> dict[str, Any]:
        """This run as :func:`clvmodels.since.compare_runs` takes it."""
        return {"forecast": run.forecast, "tiers": run.tiers}

    def files(self, run: Run) -> dict[str, Any]:
        """What :func:`clvmodels.reporting.save_artifacts` writes of the customers and models: with
        covariates each customer has their row's parameters, so no single purchase model file
        (the coefficients are in covariate_parameters.csv)."""
        models = {"gamma_gamma": run.spend} if run.by_row else {"purchase_model": run.model, "gamma_gamma": run.spend}
        extra = {"covariate_parameters": run.by_row.model.summary} if run.by_row else {}
        return {"forecast": run.forecast, "intervals": run.customer_intervals, "tiers": run.tiers, "models": models,
                "extra": extra}

    def release(self, run: Run) -> None:
        """Nothing kept outside this process."""


class InEngine:
    """The customer table kept by the engine (DuckDB or Spark): in memory only the distinct
    histories (``stats``) and, for the figures, a random sample of scored customers."""

    kind = "engine"

    def __init__(self, run: Run):
        if run.cfg.customers_path:
            why = (f" (more than {run.engine_above:,} customers)" if run.cfg.scoring == "auto" and run.engine_above
                   else "")
            raise ParameterError("A customer table (customers_path, --customers) is used with the customer table in "
                                 f"memory; this log is scored in the engine{why}. Leave the customer table out, or use "
                                 "scoring 'memory' on a machine that holds the customers.")
        self.stats = scoring.compressed_rfm(run.log, time_unit=run.cfg.time_unit, observation_end=run.obs_end)
        self.scores: Any = None
        self.groups: Any = None
        self.scratch: Path | None = None
        self.out: Path | None = None
        self.result: Any = None

    def customers(self) -> int:
        return self.stats.customers

    def ages(self) -> tuple[np.ndarray, np.ndarray | None]:
        rows = self.stats.purchases
        return rows["T"].to_numpy(float), rows["weight"].to_numpy(float)

    def frequencies(self) -> tuple[np.ndarray, np.ndarray | None]:
        rows = self.stats.purchases
        return rows["frequency"].to_numpy(float), rows["weight"].to_numpy(float)

    def sample(self, run: Run, n_wanted: int) -> Any:
        return scoring.sample_log(run.log, n_wanted / self.stats.customers)

    def fit(self, run: Run) -> None:
        _with_calendar(run.model_cls, self.stats.purchases, run.log, run.obs_end)
        run.model, run.spend = self.stats.fit(run.model_cls(), GammaGammaModel(), below_T=run.cohort_below_T)

    def forecast(self, run: Run) -> None:
        """Every customer scored and tiered by the engine into ``output_dir/forecast.parquet``
        (a scratch folder without one)."""
        if run.cfg.output_dir:
            self.out = Path(run.cfg.output_dir)
            self.out.mkdir(parents=True, exist_ok=True)
        else:
            self.out = self.scratch = Path(tempfile.mkdtemp(prefix="clvmodels-scores-"))
        self.result = scoring.score_customers(run.model, run.spend, run.log, self.out / "forecast.parquet",
                                              tier_shares=run.cfg.tier_shares, observation_end=run.obs_end,
                                              time_unit=run.cfg.time_unit, **run.settings)
        self.scores = scoring.read_scores(self.out / "forecast.parquet", like=run.log)
        run.details.update({f"forecast and tiers: {k}": v for k, v in self.result.seconds.items()})

    def tier_intervals(self, run: Run) -> pd.DataFrame:
        s = run_settings(run)
        started = time.perf_counter()
        self.groups = scoring.engine_tier_groups(self.scores, max_simulated=run.sample_customers)
        run.details["tier intervals: groups from the engine"] = time.perf_counter() - started
        intervals = grouped_tier_intervals(run.model, run.spend, self.groups, s, level=run.cfg.interval_level,
                                           n_draws=run.cfg.n_draws)
        out = self.result.tier_table.join(intervals, how="left")
        out.attrs.update({**s.as_dict(), "description": s.describe()})
        return out

    def cash_flow(self, run: Run) -> pd.DataFrame:
        """Revenue and margin per month (or quarter) of the horizon, from the engine's groups."""
        return cash_flow(run.model, run.spend, self.groups, run_settings(run), run.obs_end,
                         run.tier_table.loc["Total"])

    def budget_and_what_if(self, run: Run) -> tuple[pd.Series, pd.DataFrame]:
        return (acquisition_budget(run.model, run.spend, **run.settings),
                grouped_what_if(run.model, run.spend, self.groups, run_settings(run, lifetime=True),
                                run.cfg.dropout_reduction))

    def customer_intervals(self, run: Run) -> None:
        """Not computed in the engine (the page says so)."""
        return None

    def at_risk_candidates(self, run: Run) -> pd.DataFrame:
        return scoring.at_risk_candidates(self.scores, AT_RISK_MIN_P_NO_PURCHASE, AT_RISK_MIN_RISK_RATIO,
                                          AT_RISK_CANDIDATES)

    def figures(self, run: Run, max_frequency: int) -> dict[str, Any]:
        """A random sample of the scored customers for the figures; overview and frequency fit
        of everyone (aggregated by the engine, from the distinct histories)."""
        n = self.stats.customers
        sample = scoring.sample_scores(self.scores, run.sample_customers / n)
        rfm = sample[["frequency", "recency", "T", "monetary_value"]].copy()
        rfm.attrs.update({"time_unit": run.cfg.time_unit, "observation_end": run.obs_end})
        rows = self.stats.purchases
        w = rows["weight"].to_numpy(float)
        return {"rfm": rfm, "forecast": sample[list(FORECAST_COLUMNS)],
                "tiers": sample["tier"].astype(pd.CategoricalDtype(list(TIERS), ordered=True)).rename("tier"),
                "customers": n, "overview": overview_table(run.cfg.time_unit, run.obs_end,
                                                            **scoring.engine_overview(self.scores)),
                "max_T": float(rows["T"].max()),
                "frequency_fit": run.model.expected_customers_by_frequency(
                    rows, max_frequency=max_frequency, weights=w)}

    def comparison(self, run: Run) -> dict[str, Any]:
        return {"scores": self.scores}

    def files(self, run: Run) -> dict[str, Any]:
        """The forecast is already written (by the engine, partitioned by tier)."""
        return {"forecast": None, "intervals": None, "tiers": None,
                "models": {"purchase_model": run.model, "gamma_gamma": run.spend}, "extra": {}}

    def release(self, run: Run) -> None:
        """The engine's customer table: the scores are written, it is not needed again; a
        scratch folder of scores (no output folder) lives as long as the analysis."""
        scoring.release()
        if self.scratch is not None:
            weakref.finalize(run.analysis, shutil.rmtree, self.scratch, True)
