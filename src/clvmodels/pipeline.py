"""The whole analysis behind a report, as one function: used by the notebook templates, the
command line and scripts alike, so the steps and their order are defined once.

load -> RFM -> backtest and model choice -> refit on all data -> forecast -> tiers ->
intervals (widened by the backtest's error) -> budget, what-if, at-risk list -> files.

The steps are one list, :data:`STAGES`, run in order for every report whether its customer
table is in memory or kept by the engine: each stage asks the run's customer table
(:mod:`clvmodels.customer_tables`) for what it needs. A new section of the report is one stage here.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import ibis.expr.types as ir
import numpy as np
import pandas as pd

from clvmodels._validation import DAYS_PER_UNIT, UNIT_NAMES, check_timestamp
from clvmodels.attributes import choose_covariates, customer_attributes
from clvmodels.backtest_ranges import backtest_error, widen_intervals, with_earlier_origins
from clvmodels.cohorts import (
    MIN_COHORT,
    LeftTruncation,
    cohort_of,
    cohort_or_everyone,
    detect_left_truncation,
)
from clvmodels.customer_tables import InEngine, InMemory, Run
from clvmodels.engine import engine_named, engine_of, set_engine_memory
from clvmodels.evaluate import evaluate
from clvmodels.exceptions import DataValidationError
from clvmodels.models.beta_geo import BetaGeoModel
from clvmodels.models.calendar import MIN_SPAN_DAYS, read_events
from clvmodels.models.gamma_gamma import GammaGammaModel
from clvmodels.reporting import ReportConfig, data_overview, report_source, save_artifacts
from clvmodels.retention import (
    AT_RISK_CANDIDATES,
    AT_RISK_MIN_P_NO_PURCHASE,
    at_risk_customers,
    with_last_run,
)
from clvmodels.rfm import calibration_holdout, summarise_log
from clvmodels.selection import ROLLING_ORIGINS, select_model
from clvmodels.since import (
    SinceLastRun,
    compare_runs,
    earlier_p_alive,
    find_previous_run,
    write_run_record,
)
from clvmodels.stages import Clock, run_stages
from clvmodels.threads import limited_threads
from clvmodels.transactions import date_range

__all__ = ["Analysis", "run_analysis", "resolve_windows", "earlier_backtests", "at_risk_customers", "frequency_bins", "BACKTEST_CUSTOMERS",
           "ENGINE_SCORING_ABOVE", "SAMPLE_CUSTOMERS", "STAGES", "AT_RISK_MIN_P_NO_PURCHASE", "AT_RISK_CANDIDATES"]

#: customers the backtest (model choice, scorecard, error for the intervals) uses at most; with
#: more, a random sample of this many (the final model is still fitted on everyone)
BACKTEST_CUSTOMERS = 2_000_000

#: with scoring "auto" on DuckDB, customers above which the customer table stays in the engine
#: (on Spark it always does); below, the whole table is in memory (36M customers took 9.8 GiB)
ENGINE_SCORING_ABOVE = 10_000_000

#: customers the figures of an engine-scored report are drawn from (a random sample)
SAMPLE_CUSTOMERS = 200_000


@dataclass
class Analysis:
    """Everything a report shows, computed by :func:`run_analysis`."""

    config: ReportConfig
    transactions: Any
    rfm: pd.DataFrame
    observation_end: str
    calibration_end: str | None
    selection: Any
    scorecard: Any
    backtest_error: pd.DataFrame | None
    model: Any
    spend: Any
    forecast: pd.DataFrame
    tiers: pd.Series
    tier_table: pd.DataFrame
    tier_table_model_only: pd.DataFrame
    budget: pd.Series
    what_if: pd.DataFrame
    customer_intervals: pd.DataFrame
    at_risk: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds spent in each stage (for the scale benchmark and curious users)."""
    details: dict[str, float] = field(default_factory=dict)
    """Seconds of parts of stages (the engine's scoring: cut-offs, columns and write, ...)."""
    scoring: str = "memory"
    """"memory": ``rfm``/``forecast``/``tiers`` hold every customer; "engine": the customer table
    stayed in the engine (forecast written there) and they hold a random sample for the figures."""
    customers: int = 0
    """Customers in the analysis (all of them, also when ``rfm`` is a sample)."""
    overview: pd.DataFrame | None = None
    """Facts about the customer base (:func:`clvmodels.reporting.data_overview`), of everyone."""
    frequency_fit: pd.DataFrame | None = None
    """Observed vs expected customers by repeat purchases, of everyone."""
    max_T: float = 0.0
    """The longest time a customer was observed (for the probability maps)."""
    left_truncation: Any = None
    """What :func:`clvmodels.cohorts.detect_left_truncation` found (None: not checked)."""
    since: Any = None
    """The comparison with the previous run (:class:`clvmodels.since.SinceLastRun`)."""
    attributes: Any = None
    """What the customer table says (:class:`clvmodels.attributes.CustomerAttributes`; None without one)."""
    cash_flow: pd.DataFrame | None = None
    """Expected purchases, revenue and margin per month or quarter of the horizon
    (:func:`clvmodels.tiers.cash_flow`); None for a covariate forecast."""
    covariate_model: Any = None
    """The forecasts' covariate model per covariate row (:class:`clvmodels.covariate_forecast.ByCovariateRow`)
    when the backtest chose the customer table's covariates; ``model`` is then the plain model of the
    most common row (for the figures of one customer)."""

    def __post_init__(self) -> None:
        self.customers = self.customers or len(self.rfm)
        self.max_T = self.max_T or float(self.rfm["T"].max())
        if self.overview is None:
            self.overview = data_overview(self.rfm)
        if self.frequency_fit is None:
            self.frequency_fit = self.model.expected_customers_by_frequency(
                self.rfm, max_frequency=frequency_bins(self.rfm["frequency"].to_numpy(float)))

    @property
    def frequency_range(self) -> int:
        """Repeat purchases the probability maps span: the 95th percentile (20 to 200)."""
        f = self.rfm["frequency"].to_numpy(float)
        return int(min(max(20, np.ceil(np.quantile(f, 0.95))), 200)) if len(f) else 20

    @property
    def model_name(self) -> str:
        return self.covariate_model.model._long_name if self.covariate_model is not None else self.model._long_name


def frequency_bins(frequency: np.ndarray, weights: np.ndarray | None = None) -> int:
    """Where the observed-vs-expected chart's last ("n+") bin starts: at the 90th percentile of
    repeat purchases (at least 7, at most 120), so frequent buyers are not all in one bar (the
    chart groups the counts into ranges when there are many)."""
    w = np.ones_like(frequency) if weights is None else weights
    order = np.argsort(frequency)
    cum = np.cumsum(w[order]) / w.sum()
    p90 = float(frequency[order][np.searchsorted(cum, 0.9)]) if len(frequency) else 7.0
    return int(min(max(7, np.ceil(p90)), 120))


def resolve_windows(cfg: ReportConfig, transactions: Any) -> tuple[str, str | None]:
    """The observation end and calibration end of a run, from the parameters or the data.

    ``observation_end`` empty: the last purchase day. ``calibration_end`` empty: the data
    decide, holding out ``min(horizon, a third of the span)`` whole time units before the
    observation end (so a calibration window at least twice the holdout remains); ``"none"``:
    no backtest. A given calibration end must leave data on both sides.
    """
    t = transactions
    first, last = date_range(t)
    obs = check_timestamp("observation_end", cfg.observation_end) if cfg.observation_end else last
    if obs < first:
        raise DataValidationError(
            f"Parameter 'observation_end' ({obs.date()}) is before the first purchase in the data "
            f"({first.date()}); the data run from {first.date()} to {last.date()}."
        )
    if cfg.calibration_end.strip().lower() == "none":
        return str(obs.date()), None
    days = DAYS_PER_UNIT[cfg.time_unit]
    if cfg.calibration_end:
        cal = check_timestamp("calibration_end", cfg.calibration_end)
        if not first <= cal < obs:
            raise DataValidationError(
                f"Parameter 'calibration_end' ({cal.date()}) must fall between the first purchase "
                f"({first.date()}) and observation_end ({obs.date()}); use 'none' to skip the backtest."
            )
        return str(obs.date()), str(cal.date())
    span_units = (obs - first).days / days
    holdout_units = float(np.floor(min(cfg.horizon, span_units / 3)))
    if holdout_units < 1:
        return str(obs.date()), None  # too little history for a backtest; the report says so
    cal = obs - pd.Timedelta(days=holdout_units * days)
    return str(obs.date()), str(cal.date())


def _backtest(cfg: ReportConfig, log: Any, obs_end: str, cal_end: str | None, customers: int,
              sample: Any, lap: Any, cohort_below_T: float | None = None,
              details: dict[str, float] | None = None) -> tuple[Any, Any, Any, Any, Any, Any]:
    """Model choice, scorecard, tier errors, a factory of the chosen model and the calibration
    table the choice was made on (BG/NBD and no backtest when there is none); ``sample(n)``
    returns the log of a random ``n`` customers.
    ``cohort_below_T``: the models learn from the customers whose age at the observation end is
    below this (a left-truncated log's real cohort); the model choice then uses only them (their
    age at the end is their age at the calibration end plus the holdout), unless learning from
    everyone forecasts the backtests better (:func:`clvmodels.cohorts.cohort_or_everyone`). Last: the treatment
    of left truncation as the backtest judged it, (learn from the cohort, words), or None."""
    if cal_end is None:
        return None, None, None, BetaGeoModel, None, None
    # the backtest compares models and measures their error on a large random sample of
    # customers, not everyone: at 36M customers it saves most of its time and memory
    backtest_log = sample(BACKTEST_CUSTOMERS) if customers > BACKTEST_CUSTOMERS else log
    # a season needs a year of calibration history; the calendar describes every customer, so
    # not when the model learns from a left-truncated log's cohort alone
    events = None
    if cfg.events_path:
        events = read_events(cfg.events_path)
    calendar = cohort_below_T is None and (events is not None or _spans_a_year(log, cal_end))
    started = time.perf_counter()
    cal = calibration_holdout(backtest_log, calibration_end=cal_end, observation_end=obs_end,
                                        time_unit=cfg.time_unit, regularity=True, calendar=calendar)
    choose_on = cohort_of(cal, cohort_below_T)
    earlier_windows = earlier_backtests(cfg, backtest_log, obs_end, cal_end, calendar)
    earlier = [cohort_of(window, cohort_below_T, shift) for window, shift in earlier_windows]
    if details is not None:
        details["backtest: model choice: calibration tables"] = time.perf_counter() - started
    selection = select_model(choose_on, events=events, earlier=earlier, tier_shares=cfg.tier_shares)
    treatment = None
    if cohort_below_T is not None and choose_on is cal:
        treatment = (False, f"The backtest's window holds too few of the cohort (at least {MIN_COHORT} are needed, "
                            "some buying in the holdout) to judge learning from it alone.")
    elif cohort_below_T is not None:
        # a left-truncated log: learning from its cohort alone is a candidate, not a decision
        selection, treatment = cohort_or_everyone(selection, cal, earlier_windows, cohort_below_T, events=events,
                                                  tier_shares=cfg.tier_shares, time_unit=cfg.time_unit)
        if not treatment[0]:
            choose_on = cal
    lap("backtest: model choice")
    scorecard = evaluate(cal, selection.calibration_model, GammaGammaModel().fit(cal), transactions=backtest_log,
                         gradient_boosting=cfg.baseline == "yes", tier_shares=cfg.tier_shares)
    if backtest_log is not log:
        scorecard.info["notes"].append(
            f"The backtest used a random sample of about {BACKTEST_CUSTOMERS:,} of {customers:,} customers.")
    if events is not None and not calendar:
        scorecard.info["notes"].append(
            "The events table was not used: the log is left-truncated and the backtest compares learning from its "
            "cohort of new customers alone, on which the calendar of everyone's purchases cannot be fitted.")
    error = with_earlier_origins(backtest_error(scorecard),
                                 selection.origins[selection.origins["model"] == selection.chosen])
    lap("backtest: scorecard and baselines")
    return selection, scorecard, error, selection.new_model, choose_on, treatment


def earlier_backtests(cfg: ReportConfig, log: Any, obs_end: str, cal_end: str,
                     calendar: bool) -> list[tuple[pd.DataFrame, float]]:
    """Backtests at earlier origins (rolling origin), each with the holdout of the latest one and
    half a holdout before the last: as many as :data:`clvmodels.selection.ROLLING_ORIGINS` allows
    while the calibration window stays at least a holdout long. Returns each window with its
    distance to the observation end, in time units."""
    days = DAYS_PER_UNIT[cfg.time_unit]
    obs, cal = pd.Timestamp(obs_end), pd.Timestamp(cal_end)
    holdout_days = (obs - cal).days
    step = int(np.floor(holdout_days / 2 / days)) * days
    first = date_range(log)[0]
    out = []
    for k in range(1, ROLLING_ORIGINS):
        end_k, cal_k = obs - pd.Timedelta(days=k * step), cal - pd.Timedelta(days=k * step)
        if step <= 0 or (cal_k - first).days < holdout_days:
            break
        window = calibration_holdout(log, calibration_end=str(cal_k.date()), observation_end=str(end_k.date()),
                                     time_unit=cfg.time_unit, regularity=True, calendar=calendar)
        out.append((window, k * step / days))
    return out


def _spans_a_year(log: Any, end: str) -> bool:
    """At least a season's history (:data:`clvmodels.models.seasonal.MIN_SPAN_DAYS`) before ``end``."""
    return (pd.Timestamp(end) - date_range(log)[0]).days >= MIN_SPAN_DAYS


def _truncation(cfg: ReportConfig, T: np.ndarray, weights: np.ndarray | None = None) -> Any:
    """Left truncation as the parameter says: detected from the data ("auto") or not checked ("no")."""
    if cfg.left_truncation == "no":
        return LeftTruncation(False, float(len(T) if weights is None else weights.sum()),
                              reason="Left truncation was not checked (left_truncation 'no').")
    return detect_left_truncation(T, weights, time_unit=cfg.time_unit)


def _customer_table_home(cfg: ReportConfig, source: Any) -> str:
    """Where the customer table lives (``keep`` of :func:`clvmodels.rfm.summarise_log`): as the
    ``scoring`` parameter says; "auto" is the engine above :data:`ENGINE_SCORING_ABOVE` customers,
    and on Spark unless a customer table is given (whose covariate models work in memory)."""
    if cfg.scoring != "auto":
        return cfg.scoring
    distributed = engine_named(cfg.engine).distributed or (isinstance(source, ir.Table)
                                                             and engine_of(source).distributed)
    return "engine" if distributed and not cfg.customers_path else "auto"

# ------------------------------------------------------------------ the stages, in order


def _truncation_and_backtest(run: Run) -> None:
    """Left truncation, then the backtest: model choice, scorecard and the tier errors that widen
    the intervals, on the customers the models learn from."""
    run.truncation = _truncation(run.cfg, *run.table.ages())
    (run.selection, run.scorecard, run.error, run.model_cls, run.backtest_cal, treatment) = _backtest(
        run.cfg, run.log, run.obs_end, run.cal_end, run.customers, lambda k: run.table.sample(run, k), run.lap,
        run.cohort_below_T, run.details)
    if treatment is not None:
        run.truncation = replace(run.truncation, learn_from_cohort=treatment[0], backtest=treatment[1])


def _covariates(run: Run) -> None:
    """The customer table: do its covariates forecast the backtest's holdout better than the
    chosen model? (scored on the customers the model choice was scored on)"""
    if run.cfg.customers_path:
        run.choice = choose_covariates(run.cfg, run.table.rfm, run.model_cls, run.backtest_cal, run.selection)
        run.lap("customer table: covariates in the backtest")


def _fit(run: Run) -> None:
    run.table.fit(run)
    run.lap("fit on all data")


def _forecast_and_tiers(run: Run) -> None:
    run.table.forecast(run)
    run.lap("forecast and tiers")


def _tier_intervals(run: Run) -> None:
    run.model_only = run.table.tier_intervals(run)
    stretch = _stretch(run)
    run.tier_table = (run.model_only if run.error is None else
                      widen_intervals(run.model_only, run.error, level=run.cfg.interval_level, stretch=stretch))
    if run.error is not None and stretch > 1:
        unit = UNIT_NAMES[run.cfg.time_unit]
        holdout = float(run.backtest_cal["duration_holdout"].iloc[0])
        run.tier_table.attrs["stretch_words"] = (
            f"The ranges carry the backtest's misses, stretched x{stretch:.2f} from its {holdout:g}-{unit[:-1]} holdout "
            f"to the {run.cfg.horizon:g}-{unit[:-1]} horizon (misses grow with the horizon, here as a random walk's "
            "spread does).")
    run.lap("tier intervals")


#: how the backtest's misses grow from its holdout to a longer horizon: as a random walk's spread,
#: (horizon / holdout) ** STRETCH_POWER. Measured (validation/real_logs.py, CDNOW cut at 1997-06-30,
#: -09-30 and -12-31 with a 52-week horizon and backtest holdouts of 8, 13 and 17 weeks): tier
#: cells covered 4, 5, 8 of 8 unstretched; 7, 8, 8 with 0.5 (median half-widths 25-36% -> 45-60%);
#: 8, 8, 8 with 1 (56-158%)
STRETCH_POWER = 0.5


def _stretch(run: Run) -> float:
    """(horizon / backtest holdout) ** STRETCH_POWER when the horizon is the longer, else 1."""
    cal = run.backtest_cal
    if cal is None or not len(cal):
        return 1.0
    holdout = float(cal["duration_holdout"].iloc[0])
    return max(1.0, float(run.cfg.horizon) / holdout) ** STRETCH_POWER if holdout > 0 else 1.0


def _budget_and_what_if(run: Run) -> None:
    run.budget, run.what_if = run.table.budget_and_what_if(run)
    run.lap("budget and what-if")


def _cash_flow(run: Run) -> None:
    run.cash_flow = run.table.cash_flow(run)
    run.lap("cash flow by period")


def _customer_intervals(run: Run) -> None:
    run.customer_intervals = run.table.customer_intervals(run)
    if run.customer_intervals is not None:
        run.lap("per-customer intervals")


def _at_risk(run: Run) -> None:
    run.at_risk = at_risk_customers(run.table.at_risk_candidates(run), run.by_row or run.model, run.spend,
                                    run.settings, observation_end=run.obs_end, time_unit=run.cfg.time_unit,
                                    log=run.log)
    run.lap("at-risk list")


def _figures(run: Run) -> None:
    """The analysis as the report shows it (its figures from every customer, or a sample)."""
    view = run.table.figures(run, frequency_bins(*run.table.frequencies()))
    run.analysis = Analysis(
        config=run.cfg, transactions=run.log, rfm=view["rfm"], observation_end=run.obs_end,
        calibration_end=run.cal_end, selection=run.selection, scorecard=run.scorecard, backtest_error=run.error,
        model=run.model, spend=run.spend, forecast=view["forecast"], tiers=view["tiers"],
        tier_table=run.tier_table, tier_table_model_only=run.model_only, budget=run.budget, what_if=run.what_if,
        customer_intervals=run.customer_intervals, at_risk=run.at_risk, timings=run.timings,
        scoring=run.table.kind, customers=view["customers"], overview=view["overview"],
        frequency_fit=view["frequency_fit"], max_T=view["max_T"], left_truncation=run.truncation,
        covariate_model=run.by_row, cash_flow=run.cash_flow)
    run.analysis.details.update(run.details)
    run.table.release(run)
    if run.table.kind == "engine":
        run.lap("sample for the figures")


def _since(run: Run) -> None:
    run.analysis.since = _since_last_run(run.cfg, run.log, run.obs_end, **run.table.comparison(run))
    if run.analysis.since.available and len(run.at_risk):
        # the at-risk customers' P(alive) in the earlier run, and its fall in their reasons
        run.at_risk = run.analysis.at_risk = with_last_run(
            run.at_risk, earlier_p_alive(run.analysis.since, run.at_risk.index, like=run.log))
    run.lap("since the last run")


def _attributes(run: Run) -> None:
    if run.cfg.customers_path:
        run.analysis.attributes = customer_attributes(run.cfg, run.table.rfm, run.forecast, run.tiers,
                                                      run.model_cls(), run.backtest_cal, run.selection, run.choice)
        run.lap("customer table")


def _files(run: Run) -> None:
    """Every file of the run (nothing without an output folder)."""
    analysis, cfg = run.analysis, run.cfg
    if cfg.output_dir:
        parts = run.table.files(run)
        extra = {"at_risk_customers": run.at_risk, **_since_tables(analysis.since),
                 **({"cash_flow": run.cash_flow} if run.cash_flow is not None else {}),
                 **_attribute_tables(analysis.attributes),
                 **({"model_selection": run.selection.table} if run.selection is not None else {}), **parts["extra"]}
        save_artifacts(cfg.output_dir, forecast=parts["forecast"], intervals=parts["intervals"], tiers=parts["tiers"],
                       tier_table=run.tier_table, models=parts["models"], config=cfg, extra_tables=extra)
        write_run_record(cfg.output_dir, observation_end=analysis.observation_end,
                         calibration_end=analysis.calibration_end, time_unit=cfg.time_unit, horizon=cfg.horizon,
                         title=cfg.title, model=analysis.model_name, currency=cfg.currency)
    run.lap("write files")


#: the report's analysis, stage by stage, for every customer table (in memory or in the engine)
STAGES: list[Callable[[Run], None]] = [
    _truncation_and_backtest, _covariates, _fit, _forecast_and_tiers, _tier_intervals, _budget_and_what_if,
    _cash_flow, _customer_intervals, _at_risk, _figures, _since, _attributes, _files,
]


def run_analysis(cfg: ReportConfig, transactions: Any = None) -> Analysis:
    """See :func:`_run_analysis`; the report states its time unit in words, so the API's
    reminder that a short horizon on a day table is in days is not repeated here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"horizon=.* is in days")
        return _run_analysis(cfg, transactions)


def _run_analysis(cfg: ReportConfig, transactions: Any = None) -> Analysis:
    """Run the report's whole analysis for validated parameters (:func:`reporting.validate_parameters`).

    With a backtest (``calibration_end`` given or derived; on at most :data:`BACKTEST_CUSTOMERS`
    randomly sampled customers): every purchase model is fitted on the calibration window and
    scored on the holdout (:func:`clvmodels.select_model`); the
    chosen one, with Gamma-Gamma, is scored against the baselines (:func:`clvmodels.evaluate`)
    and its tier errors widen the intervals (:func:`clvmodels.intervals.widen_intervals`). Then the
    chosen model is refitted on all data to the observation end for the forecast. Without a
    backtest the model is BG/NBD and the intervals are the model's own.

    ``cfg.scoring``: "memory" holds the customer table in pandas; "engine" keeps it in the
    engine (:class:`clvmodels.customer_tables.InEngine`: only distinct histories and a sample of
    customers come into memory; no per-customer intervals); "auto" is "engine" above
    :data:`ENGINE_SCORING_ABOVE` customers, and on Spark unless a customer table is given.
    """
    set_engine_memory(cfg.engine_memory or None)  # before the log is read: DuckDB's budget for this run
    with limited_threads(cfg.threads) as threads:  # one budget for DuckDB, BLAS and OpenMP together
        analysis = _analysis_stages(cfg, transactions)
        analysis.details["threads"] = threads
    return analysis


def _analysis_stages(cfg: ReportConfig, transactions: Any) -> Analysis:
    clock = Clock()
    lap = clock.lap
    run = Run(cfg, lap, SAMPLE_CUSTOMERS, engine_above=ENGINE_SCORING_ABOVE, timings=clock.timings)
    source, options = report_source(cfg) if transactions is None else (transactions, {})
    # the log read, validated and summarised per customer (once, where a second pass would cost a parse)
    summary = summarise_log(source, observation_end=cfg.observation_end or None, time_unit=cfg.time_unit,
                            keep=_customer_table_home(cfg, source), engine_above=ENGINE_SCORING_ABOVE, **options)
    run.log = summary.log
    run.obs_end, run.cal_end = resolve_windows(cfg, run.log)
    run.table = InMemory(summary.rfm) if summary.rfm is not None else InEngine(run)
    run.customers = run.table.customers()
    lap("load and RFM")
    return run_stages(run, STAGES).analysis


def _since_last_run(cfg: ReportConfig, log: Any, obs_end: str, forecast: pd.DataFrame | None = None,
                    tiers: pd.Series | None = None, scores: Any = None) -> Any:
    """The comparison with the earlier run ``cfg.previous`` names ("auto": the latest earlier run
    of the same title beside this run's output folder)."""
    choice = (cfg.previous or "none").strip()
    if choice == "none":
        return SinceLastRun(False, "No comparison with an earlier run was asked for (previous 'none').")
    if choice == "auto":
        folder = find_previous_run(Path(cfg.output_dir).parent, cfg.title) if cfg.output_dir else None
        if folder is None:
            return SinceLastRun(False, "This is the first run of this report in its output folder: the next run "
                                       "will show what changed since this one.")
    else:
        folder = Path(choice)
    return compare_runs(folder, log=log, forecast=forecast, tiers=tiers, scores=scores, observation_end=obs_end,
                        currency=cfg.currency)


def _attribute_tables(attributes: Any) -> dict[str, pd.DataFrame]:
    """The customer table's results as files of the run."""
    if attributes is None:
        return {}
    out = {}
    if attributes.effects is not None:
        out["covariate_effects"] = attributes.effects
    if attributes.segments is not None:
        out["segments"] = attributes.segments
    return out


def _since_tables(since: Any) -> dict[str, pd.DataFrame]:
    """The comparison's tables as files of the run (none when there was no comparison)."""
    if not since.available:
        return {}
    out = {"since_last_run_migration": since.migration}
    if len(since.lost_customers):
        out["since_last_run_lost_customers"] = since.lost_customers
    if len(since.accuracy):
        out["since_last_run_accuracy"] = since.accuracy
    return out
