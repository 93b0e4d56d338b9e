"""The whole analysis behind a report, as one function: used by the notebook templates, the
command line and scripts alike, so the steps and their order are defined once.

load -> RFM -> backtest and model choice -> refit on all data -> forecast -> tiers ->
intervals (widened by the backtest's error) -> budget, what-if, at-risk list -> files.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import ibis.expr.types as ir
import numpy as np
import pandas as pd

from clvmodels._validation import DAYS_PER_UNIT
from clvmodels.cohorts import MIN_COHORT, LeftTruncation, detect_left_truncation
from clvmodels.engine import engine_named, engine_of
from clvmodels.exceptions import DataValidationError
from clvmodels.reporting import ReportConfig, overview_table, report_source, save_artifacts

__all__ = ["Analysis", "run_analysis", "resolve_windows", "at_risk_customers", "frequency_bins", "BACKTEST_CUSTOMERS",
           "ENGINE_SCORING_ABOVE", "SAMPLE_CUSTOMERS"]

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
    covariate_model: Any = None
    """The forecasts' covariate model per covariate row (:class:`clvmodels.covariate_forecast.ByCovariateRow`)
    when the backtest chose the customer table's covariates; ``model`` is then the plain model of the
    most common row (for the figures of one customer)."""

    def __post_init__(self) -> None:
        from clvmodels.reporting import data_overview

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
    from clvmodels._validation import check_timestamp
    from clvmodels.transactions import date_range

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


#: P(alive) at or above which a customer counts as still likely active: the at-risk list is of
#: customers a retention effort can still reach, not of those who are probably gone already
AT_RISK_MIN_P_ALIVE = 0.5
#: customers pre-selected (by expected value lost in the horizon) before the exact ranking
AT_RISK_CANDIDATES = 500


def at_risk_customers(candidates: pd.DataFrame, model: Any, spend: Any, settings: dict[str, Any], *,
                      observation_end: str, time_unit: str, log: Any = None, top: int = 50,
                      tiers_considered: tuple[str, ...] = ("Platinum", "Gold")) -> pd.DataFrame:
    """Valuable customers who are probably still active but may leave during the horizon.

    ``candidates``: per customer ``frequency, recency, T, monetary_value``, the forecast columns
    and ``tier``. Kept: the tiers considered with P(alive) >= :data:`AT_RISK_MIN_P_ALIVE`.
    Ranked by the **value at stake**: the value the customer brings over the horizon if retained
    (active now and not dropping out during the horizon: the forecast with dropout switched off,
    divided by P(alive)) minus the expected value (CLV). Every figure is what its label says and
    at most what it is compared with: value at stake <= value if retained.

    Returns up to ``top`` rows, indexed by customer: tier, last purchase date, time since it (in
    the time unit), purchases so far, spend so far (from ``log`` when given, else the repeat
    purchases' spend), chance still active, chance of leaving during the horizon if active now,
    expected value (CLV), value if retained, value at stake.
    """
    from clvmodels.forecast import forecast

    df = candidates[candidates["tier"].astype(str).isin(tiers_considered)
                    & (candidates["p_alive"] >= AT_RISK_MIN_P_ALIVE)]
    if df.empty:
        return _empty_at_risk()
    # pre-selection by the expected value lost in the horizon, then the exact figures
    approx = df["churn_probability_during_horizon"] / df["p_alive"] * df["clv"]
    df = df.loc[approx.sort_values(ascending=False, kind="stable").index[:AT_RISK_CANDIDATES]]
    rfm = df[["frequency", "recency", "T", "monetary_value"]].copy()
    rfm.attrs["time_unit"] = time_unit
    kept = (model.forecast(spend, rfm, dropout_scale=1e-9, **settings) if hasattr(model, "parts") else
            forecast(model, spend, rfm, dropout_scale=1e-9, **settings))
    if_retained = kept["clv"] / df["p_alive"]
    stake = if_retained - df["clv"]
    since = df["T"] - df["recency"]
    days = DAYS_PER_UNIT[time_unit]
    last = pd.Timestamp(observation_end) - pd.to_timedelta(np.round(since.to_numpy() * days), unit="D")
    out = pd.DataFrame({
        "tier": df["tier"].astype(str),
        "last_purchase": pd.DatetimeIndex(last).date,
        "time_since_last_purchase": since,
        "purchases_so_far": df["frequency"] + 1,
        "spend_so_far": df["frequency"] * df["monetary_value"],
        "p_alive": df["p_alive"],
        "p_leave_in_horizon_if_active": df["churn_probability_during_horizon"] / df["p_alive"],
        "clv": df["clv"],
        "value_if_retained": if_retained,
        "value_at_stake": stake,
    }, index=df.index)
    out = out.sort_values(["value_at_stake", "clv"], ascending=False, kind="stable").head(int(top))
    if log is not None and len(out):
        out["spend_so_far"] = _spend_so_far(log, out.index, observation_end).reindex(out.index).fillna(
            out["spend_so_far"]).to_numpy()
    out.attrs.update({"time_unit": time_unit, "spend_so_far": "all purchases" if log is not None else
                      "repeat purchases"})
    return out


def _empty_at_risk() -> pd.DataFrame:
    cols = ["tier", "last_purchase", "time_since_last_purchase", "purchases_so_far", "spend_so_far", "p_alive",
            "p_leave_in_horizon_if_active", "clv", "value_if_retained", "value_at_stake"]
    return pd.DataFrame(columns=cols)


def _spend_so_far(log: Any, ids: pd.Index, observation_end: str) -> pd.Series:
    """Total spend of a few customers up to the observation end, asked of the log's engine."""
    import ibis

    from clvmodels.engine import execute

    wanted = [v.item() if hasattr(v, "item") else v for v in ids]
    t = log.filter(log.customer_id.isin(wanted) & (log.date <= ibis.date(str(observation_end))))
    got = execute(t.group_by("customer_id").aggregate(spend=t.amount.sum()))
    return got.set_index("customer_id")["spend"]


def _backtest(cfg: ReportConfig, log: Any, obs_end: str, cal_end: str | None, customers: int,
              sample: Any, lap: Any, cohort_below_T: float | None = None,
              details: dict[str, float] | None = None) -> tuple[Any, Any, Any, Any, Any]:
    """Model choice, scorecard, tier errors, a factory of the chosen model and the calibration
    table the choice was made on (BG/NBD and no backtest when there is none); ``sample(n)``
    returns the log of a random ``n`` customers.
    ``cohort_below_T``: the models learn from the customers whose age at the observation end is
    below this (a left-truncated log's real cohort); the model choice then uses only them (their
    age at the end is their age at the calibration end plus the holdout)."""
    import clvmodels
    from clvmodels.intervals import backtest_error

    if cal_end is None:
        return None, None, None, clvmodels.BetaGeoModel, None
    # the backtest compares models and measures their error on a large random sample of
    # customers, not everyone: at 36M customers it saves most of its time and memory
    backtest_log = sample(BACKTEST_CUSTOMERS) if customers > BACKTEST_CUSTOMERS else log
    # a season needs a year of calibration history; the calendar describes every customer, so
    # not when the model learns from a left-truncated log's cohort alone
    events = None
    if cfg.events_path:
        from clvmodels.models.seasonal import read_events

        events = read_events(cfg.events_path)
    calendar = cohort_below_T is None and (events is not None or _spans_a_year(log, cal_end))
    started = time.perf_counter()
    cal = clvmodels.calibration_holdout(backtest_log, calibration_end=cal_end, observation_end=obs_end,
                                        time_unit=cfg.time_unit, regularity=True, calendar=calendar)
    if details is not None:
        details["backtest: model choice: calibration table"] = time.perf_counter() - started
    choose_on = cal
    if cohort_below_T is not None:
        in_cohort = cal[(cal["T"] + cal["duration_holdout"]).to_numpy() < cohort_below_T - 1e-9]
        if len(in_cohort) >= MIN_COHORT and float(in_cohort["frequency_holdout"].sum()) > 0:
            choose_on = in_cohort
            choose_on.attrs.update(cal.attrs)
    selection = clvmodels.select_model(choose_on, events=events)
    lap("backtest: model choice")
    scorecard = clvmodels.evaluate(cal, selection.calibration_model, clvmodels.GammaGammaModel().fit(cal),
                                   transactions=backtest_log, tier_shares=cfg.tier_shares)
    if backtest_log is not log:
        scorecard.info["notes"].append(
            f"The backtest used a random sample of about {BACKTEST_CUSTOMERS:,} of {customers:,} customers.")
    if events is not None and not calendar:
        scorecard.info["notes"].append(
            "The events table was not used: the models learn from the log's cohort of new customers (left "
            "truncation), and the calendar of purchases the events are fitted on describes every customer.")
    error = backtest_error(scorecard)
    lap("backtest: scorecard and baselines")
    return selection, scorecard, error, selection.new_model, choose_on


def _spans_a_year(log: Any, end: str) -> bool:
    """At least a season's history (:data:`clvmodels.models.seasonal.MIN_SPAN_DAYS`) before ``end``."""
    from clvmodels.models.seasonal import MIN_SPAN_DAYS
    from clvmodels.transactions import date_range

    return (pd.Timestamp(end) - date_range(log)[0]).days >= MIN_SPAN_DAYS


def _with_calendar(model_cls: Any, table: pd.DataFrame, log: Any, obs_end: str) -> pd.DataFrame:
    """``table`` with its purchase calendar when the chosen model needs one (a seasonal model)."""
    from clvmodels.models.seasonal import _CalendarClock
    from clvmodels.rfm import purchase_calendar

    if isinstance(model_cls(), _CalendarClock):  # a class, or the selection's factory of the chosen model
        table.attrs["purchase_calendar"] = purchase_calendar(log, observation_end=obs_end)
    return table


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


def _engine_analysis(cfg: ReportConfig, log: Any, obs_end: str, cal_end: str | None,
                     timings: dict[str, float], lap: Any) -> Analysis:
    """The analysis with the customer table kept in the engine (DuckDB or Spark): models fitted
    on distinct histories, every customer scored and tiered by the engine into
    ``output_dir/forecast.parquet``, tier intervals and what-if from engine-side groups; in
    memory only distinct rows and a random sample of customers for the figures. Per-customer
    intervals are not computed on this path."""
    import shutil
    import tempfile
    import weakref
    from pathlib import Path

    import clvmodels
    from clvmodels import scoring
    from clvmodels.forecast import FORECAST_COLUMNS, forecast_settings
    from clvmodels.intervals import grouped_tier_intervals, widen_intervals
    from clvmodels.tiers import TIERS, grouped_what_if

    if cfg.customers_path:
        from clvmodels.exceptions import ParameterError

        raise ParameterError("A customer table (customers_path, --customers) is used with the customer table in "
                             "memory; this log is scored in the engine (more than "
                             f"{ENGINE_SCORING_ABOVE:,} customers). Leave the customer table out, or use "
                             "scoring 'memory' on a machine that holds the customers.")
    stats = scoring.compressed_rfm(log, time_unit=cfg.time_unit, observation_end=obs_end)
    lap("load and RFM")
    n = stats.customers
    rows = stats.purchases
    trunc = _truncation(cfg, rows["T"].to_numpy(float), rows["weight"].to_numpy(float))
    sample = lambda k: scoring.sample_log(log, k / n)  # noqa: E731
    details: dict[str, float] = {}
    selection, scorecard, error, model_cls, _ = _backtest(cfg, log, obs_end, cal_end, n, sample, lap,
                                                          trunc.cutoff_T if trunc.usable_cohort else None, details)
    _with_calendar(model_cls, stats.purchases, log, obs_end)
    # a left-truncated log: the dynamics of its real cohort, the customers first seen after the pile-up
    model, spend = stats.fit(model_cls(), clvmodels.GammaGammaModel(),
                             below_T=trunc.cutoff_T if trunc.usable_cohort else None)
    lap("fit on all data")
    settings = dict(horizon=cfg.horizon, discount_rate=cfg.discount_rate, margin=cfg.margin,
                    cost_to_serve=cfg.cost_to_serve)
    scratch = None
    if cfg.output_dir:
        out = Path(cfg.output_dir)
        out.mkdir(parents=True, exist_ok=True)
    else:
        out = scratch = Path(tempfile.mkdtemp(prefix="clvmodels-scores-"))
    result = scoring.score_customers(model, spend, log, out / "forecast.parquet", tier_shares=cfg.tier_shares,
                                     observation_end=obs_end, time_unit=cfg.time_unit, **settings)
    scores = scoring.read_scores(out / "forecast.parquet", like=log)
    lap("forecast and tiers")
    details.update({f"forecast and tiers: {k}": v for k, v in result.seconds.items()})
    s = forecast_settings(model, None, cfg.horizon, cfg.discount_rate, cfg.margin, cfg.cost_to_serve, cfg.time_unit)
    started = time.perf_counter()
    groups = scoring.engine_tier_groups(scores, max_simulated=SAMPLE_CUSTOMERS)
    details["tier intervals: groups from the engine"] = time.perf_counter() - started
    intervals = grouped_tier_intervals(model, spend, groups, s, level=cfg.interval_level, n_draws=cfg.n_draws)
    model_only = result.tier_table.join(intervals, how="left")
    model_only.attrs.update({**s.as_dict(), "description": s.describe()})
    tier_table = model_only if error is None else widen_intervals(model_only, error, level=cfg.interval_level)
    lap("tier intervals")
    budget = clvmodels.acquisition_budget(model, spend, **settings)
    what_if = grouped_what_if(model, spend, groups, s, cfg.dropout_reduction)
    lap("budget and what-if")
    at_risk = at_risk_customers(scoring.at_risk_candidates(scores, AT_RISK_MIN_P_ALIVE, AT_RISK_CANDIDATES),
                                model, spend, settings, observation_end=obs_end, time_unit=cfg.time_unit, log=log)
    figures = scoring.sample_scores(scores, SAMPLE_CUSTOMERS / n)
    rfm = figures[["frequency", "recency", "T", "monetary_value"]].copy()
    rfm.attrs.update({"time_unit": cfg.time_unit, "observation_end": obs_end})
    fc = figures[list(FORECAST_COLUMNS)]
    tiers = figures["tier"].astype(pd.CategoricalDtype(list(TIERS), ordered=True)).rename("tier")
    overview = overview_table(cfg.time_unit, obs_end, **scoring.engine_overview(scores))
    w = stats.purchases["weight"].to_numpy(float)
    freq_fit = model.expected_customers_by_frequency(
        stats.purchases, max_frequency=frequency_bins(stats.purchases["frequency"].to_numpy(float), w), weights=w)
    analysis = Analysis(cfg, log, rfm, obs_end, cal_end, selection, scorecard, error, model, spend, fc, tiers,
                        tier_table, model_only, budget, what_if, None, at_risk, timings, scoring="engine",
                        customers=n, overview=overview, frequency_fit=freq_fit,
                        max_T=float(stats.purchases["T"].max()), left_truncation=trunc)
    analysis.details.update(details)
    scoring.release()  # the engine's customer table: the scores are written, it is not needed again
    lap("sample for the figures")
    analysis.since = _since_last_run(cfg, log, obs_end, scores=scores)
    if scratch is not None:
        weakref.finalize(analysis, shutil.rmtree, scratch, True)
    else:
        from clvmodels.reporting import save_artifacts

        save_artifacts(out, forecast=None, tiers=None, tier_table=tier_table,
                       models={"purchase_model": model, "gamma_gamma": spend}, config=cfg,
                       extra_tables={"at_risk_customers": at_risk, **_since_tables(analysis.since),
                                     **({"model_selection": selection.table} if selection is not None else {})})
        _record_run(cfg, analysis)
    lap("write files")
    return analysis


def run_analysis(cfg: ReportConfig, transactions: Any = None) -> Analysis:
    """See :func:`_run_analysis`; the report states its time unit in words, so the API's
    reminder that a short horizon on a day table is in days is not repeated here."""
    import warnings

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
    engine (see :func:`_engine_analysis`: only distinct histories and a sample of customers come
    into memory); "auto" is "engine" above :data:`ENGINE_SCORING_ABOVE` customers, and on Spark unless a
    customer table is given.
    """
    import clvmodels
    from clvmodels.engine import set_engine_memory
    from clvmodels.intervals import widen_intervals

    set_engine_memory(cfg.engine_memory or None)  # before the log is read: DuckDB's budget for this run
    timings: dict[str, float] = {}
    clock = [time.perf_counter()]

    def lap(stage: str) -> None:
        now = time.perf_counter()
        timings[stage] = now - clock[0]
        clock[0] = now

    from clvmodels.rfm import summarise_log

    source, options = report_source(cfg) if transactions is None else (transactions, {})
    # the log read, validated and summarised per customer (once, where a second pass would cost a parse)
    summary = summarise_log(source, observation_end=cfg.observation_end or None, time_unit=cfg.time_unit,
                            keep=_customer_table_home(cfg, source), engine_above=ENGINE_SCORING_ABOVE, **options)
    log = summary.log
    obs_end, cal_end = resolve_windows(cfg, log)
    if summary.rfm is None:
        return _engine_analysis(cfg, log, obs_end, cal_end, timings, lap)
    rfm = summary.rfm
    lap("load and RFM")

    def sample(n_wanted: int) -> Any:
        from clvmodels.evaluate import _restrict_log

        rng = np.random.default_rng(0)
        ids = rfm.index[np.sort(rng.choice(len(rfm), n_wanted, replace=False))]
        return _restrict_log(log, ids, None)

    trunc = _truncation(cfg, rfm["T"].to_numpy(float))
    cohort = rfm.index[rfm["T"].to_numpy() < trunc.cutoff_T] if trunc.usable_cohort else None
    details: dict[str, float] = {}
    selection, scorecard, error, model_cls, backtest_cal = _backtest(
        cfg, log, obs_end, cal_end, len(rfm), sample, lap, trunc.cutoff_T if cohort is not None else None, details)
    # the customer table: do its covariates forecast the backtest's holdout better than the chosen
    # model? (scored on the customers the model choice was scored on)
    choice = None
    if cfg.customers_path:
        from clvmodels.attributes import choose_covariates

        choice = choose_covariates(cfg, rfm, model_cls, backtest_cal, selection)
        lap("customer table: covariates in the backtest")
    fit_rows = rfm if cohort is None else rfm.loc[cohort]
    by_row = None
    if choice is not None and choice.use:
        from clvmodels.covariate_forecast import ByCovariateRow

        # a left-truncated log: the purchase and dropout dynamics of its real cohort, applied to all
        cov_model = choice.model(cfg.covariates).fit(fit_rows, choice.table.loc[fit_rows.index])
        by_row = ByCovariateRow.build(cov_model, rfm, choice.table)
        model = by_row.reference_model
    else:
        model = model_cls().fit(_with_calendar(model_cls, rfm, log, obs_end) if cohort is None else fit_rows)
    spend = clvmodels.GammaGammaModel().fit(rfm)
    lap("fit on all data")
    settings = dict(horizon=cfg.horizon, discount_rate=cfg.discount_rate, margin=cfg.margin,
                    cost_to_serve=cfg.cost_to_serve)
    fc = by_row.forecast(spend, rfm, **settings) if by_row else clvmodels.forecast(model, spend, rfm, **settings)
    tiers = clvmodels.assign_tiers(fc, shares=cfg.tier_shares)
    lap("forecast and tiers")
    iv = dict(level=cfg.interval_level, n_draws=cfg.n_draws, **settings)
    intervals = (by_row.tier_intervals(spend, rfm, tiers, **iv) if by_row else
                 clvmodels.tier_intervals(model, spend, rfm, tiers, **iv))
    model_only = clvmodels.tier_summary(fc, tiers, intervals=intervals)
    tier_table = model_only if error is None else widen_intervals(model_only, error, level=cfg.interval_level)
    lap("tier intervals")
    wi = dict(dropout_reduction=cfg.dropout_reduction, **settings)
    if by_row:
        budget = by_row.acquisition_budget(spend, **settings)
        what_if = by_row.retention_what_if(spend, rfm, tiers, **wi)
    else:
        budget = clvmodels.acquisition_budget(model, spend, **settings)
        what_if = clvmodels.retention_what_if(model, spend, rfm, tiers, **wi)
    lap("budget and what-if")
    # predictive intervals (what each customer may do), 4 simulated futures per parameter draw
    pi = dict(level=cfg.interval_level, n_sims=4 * cfg.n_draws, n_param_draws=min(cfg.n_draws, 20), **settings)
    customer_intervals = (by_row.forecast_intervals(spend, rfm, **pi) if by_row else
                          clvmodels.forecast_intervals(model, spend, rfm, **pi))
    lap("per-customer intervals")
    at_risk = at_risk_customers(rfm.join(fc).assign(tier=tiers), by_row or model, spend, settings,
                                observation_end=obs_end, time_unit=cfg.time_unit, log=log)
    freq_fit = (by_row.expected_customers_by_frequency(rfm, frequency_bins(rfm["frequency"].to_numpy(float)))
                if by_row else None)
    analysis = Analysis(cfg, log, rfm, obs_end, cal_end, selection, scorecard, error, model, spend, fc,
                        tiers, tier_table, model_only, budget, what_if, customer_intervals, at_risk, timings,
                        left_truncation=trunc, frequency_fit=freq_fit, covariate_model=by_row)
    analysis.details.update(details)
    analysis.since = _since_last_run(cfg, log, obs_end, fc, tiers)
    if cfg.customers_path:
        from clvmodels.attributes import customer_attributes

        analysis.attributes = customer_attributes(cfg, rfm, fc, tiers, model_cls(), backtest_cal, selection, choice)
        lap("customer table")
    extra = {"at_risk_customers": at_risk, **_since_tables(analysis.since), **_attribute_tables(analysis.attributes),
             **({"model_selection": selection.table} if selection is not None else {})}
    # with covariates each customer has their row's parameters: no single purchase model file to
    # score with (the coefficients are in covariate_parameters.csv)
    models = {"gamma_gamma": spend} if by_row else {"purchase_model": model, "gamma_gamma": spend}
    if by_row:
        extra["covariate_parameters"] = by_row.model.summary
    save_artifacts(cfg.output_dir, forecast=fc, intervals=customer_intervals, tiers=tiers, tier_table=tier_table,
                   models=models, config=cfg, extra_tables=extra)
    _record_run(cfg, analysis)
    lap("write files")
    return analysis


def _since_last_run(cfg: ReportConfig, log: Any, obs_end: str, fc: pd.DataFrame | None = None,
                    tiers: pd.Series | None = None, scores: Any = None) -> Any:
    """The comparison with the earlier run ``cfg.previous`` names ("auto": the latest earlier run
    of the same title beside this run's output folder)."""
    from pathlib import Path

    from clvmodels.since import SinceLastRun, compare_runs, find_previous_run

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
    return compare_runs(folder, log=log, forecast=fc, tiers=tiers, scores=scores, observation_end=obs_end,
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
    return {"since_last_run_migration": since.migration, "since_last_run_accuracy": since.accuracy}


def _record_run(cfg: ReportConfig, analysis: Analysis) -> None:
    if cfg.output_dir:
        from clvmodels.since import write_run_record

        write_run_record(cfg.output_dir, observation_end=analysis.observation_end,
                         calibration_end=analysis.calibration_end, time_unit=cfg.time_unit, horizon=cfg.horizon,
                         title=cfg.title, model=analysis.model_name, currency=cfg.currency)
