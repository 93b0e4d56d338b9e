"""The subscription report's analysis: a subscription log in, subscribers' churn and value out.

For subscribers, churn is observed (a subscription ends), so the models are contractual: sBG
(Fader & Hardie 2007) and BdW (Fader, Hardie, Liu, Davin & Steenburgh 2018), chosen by a
backtest that holds out the last renewal periods: both are fitted on the log as it was then and
asked which of the subscribers active then would still be active now, scored by the holdout
log-loss (a proper scoring rule for probabilities) with the error in the number of survivors
beside it. The chosen model, refitted on all data, gives each active subscriber's churn by the
horizon, expected renewals, discounted expected residual lifetime and value (:func:`
clvmodels.subscriptions.subscriber_forecast`); the pyramid ranks them by that value.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clvmodels._text import write_csv
from clvmodels._validation import check_number
from clvmodels.datasets import example_subscriptions
from clvmodels.exceptions import DataValidationError, ParameterError
from clvmodels.models.contractual import (
    PERIODS,
    BetaDiscreteWeibullModel,
    ShiftedBetaGeometricModel,
    subscription_periods,
)
from clvmodels.models.registry import load_model
from clvmodels.since import (
    SAME_LOG_SHARE,
    currency_problem,
    failure_words,
    find_previous_run,
    read_record,
    record_problem,
    write_run_record,
)
from clvmodels.stages import Clock, run_stages
from clvmodels.tiers import DEFAULT_SHARES, TIERS, assign_tiers, check_shares

__all__ = ["SubscriptionConfig", "validate_subscription_parameters", "run_subscription_analysis",
           "SubscriptionAnalysis", "SUBSCRIPTION_STAGES", "CANDIDATES", "subscriber_forecast", "subscriber_tier_table"]

CANDIDATES = {"sBG": ShiftedBetaGeometricModel, "BdW": BetaDiscreteWeibullModel}


def subscriber_forecast(model: BetaDiscreteWeibullModel, subscribers: pd.DataFrame, *, horizon: int,
                        discount_rate: float = 0.10, margin: float = 1.0) -> pd.DataFrame:
    """Per subscriber of :func:`subscription_periods`: what a contractual model says of them.

    For an active subscriber who has survived ``n`` periods: ``churn_probability_during_horizon``
    (``1 - S(n+h)/S(n)``), ``expected_renewals`` in the next ``horizon`` periods
    (``sum_{k=1..h} S(n+k)/S(n)``), ``derl`` (:meth:`BetaDiscreteWeibullModel.derl`, per period's
    ``discount_rate``) and ``clv`` = ``margin * amount * derl`` (the value of the payments still to
    come; ``amount`` 1 when the table has none). Subscribers who left get 0 and ``active`` False.
    The ``clv`` column ranks them into tiers with :func:`clvmodels.assign_tiers`.
    """
    if not isinstance(model, BetaDiscreteWeibullModel):
        raise ParameterError(f"model must be a fitted sBG or BdW model, got {type(model).__name__}.")
    model._check_fitted()
    if not isinstance(subscribers, pd.DataFrame) or not {"periods", "churned"} <= set(subscribers.columns):
        raise DataValidationError("subscribers must be the table of subscription_periods (periods, churned).")
    h = int(check_number("horizon", horizon, minimum=1, integer=True))
    margin = check_number("margin", margin, minimum=0.0)
    n = subscribers["periods"].to_numpy(float)
    active = ~subscribers["churned"].to_numpy(bool)
    amount = subscribers["amount"].to_numpy(float) if "amount" in subscribers.columns else np.ones(len(n))
    # per distinct tenure: survival ratios and DERL once
    tenures, inverse = np.unique(n, return_inverse=True)
    ks = np.arange(1, h + 1, dtype=float)
    ratios = model.survival(tenures[:, None] + ks) / model.survival(tenures)[:, None]
    renewals = ratios.sum(axis=1)[inverse]
    churn = (1.0 - ratios[:, -1])[inverse]
    derl = np.atleast_1d(model.derl(tenures, discount_rate))[inverse]
    out = pd.DataFrame({
        "active": active,
        "periods": n.astype(np.int64),
        "churn_probability_during_horizon": np.where(active, churn, 0.0),
        "expected_renewals": np.where(active, renewals, 0.0),
        "derl": np.where(active, derl, 0.0),
        "clv": np.where(active, margin * amount * derl, 0.0),
    }, index=subscribers.index)
    out.attrs.update({"horizon": h, "discount_rate": float(discount_rate), "margin": float(margin),
                      "period": subscribers.attrs.get("period")})
    return out


#: subscribers the at-risk list holds at most (its CSV; the page shows the first 50)
SUBSCRIBERS_AT_RISK = 5000


def subscribers_at_risk(forecast: pd.DataFrame, tiers: pd.Series, *, period: str = "month",
                        tiers_considered: tuple[str, ...] = ("Platinum", "Gold")) -> pd.DataFrame:
    """Active Platinum and Gold subscribers ranked by the **value at stake**: their remaining
    lifetime value (``clv``, the discounted payments still to come) times their chance of
    cancelling within the horizon, each with the reason in words (tenure, chance of cancelling
    against their tier's average). Up to :data:`SUBSCRIBERS_AT_RISK` rows, best first."""
    act = forecast[forecast["active"]]
    tier = tiers.reindex(act.index).astype(str)
    df = act[tier.isin(tiers_considered)].assign(tier=tier)
    if df.empty:
        return pd.DataFrame(columns=["tier", "why", "periods", "churn_probability_during_horizon", "clv",
                                     "value_at_stake"])
    tier_mean = act.groupby(tier)["churn_probability_during_horizon"].mean()
    h = forecast.attrs.get("horizon", "")
    out = pd.DataFrame({
        "tier": df["tier"],
        "why": [f"subscribed for {int(n):,} {period}s; {p:.0%} chance of cancelling in the next {h} {period}s, "
                f"against {tier_mean[t]:.0%} for {t}" for n, p, t in
                zip(df["periods"], df["churn_probability_during_horizon"], df["tier"], strict=True)],
        "periods": df["periods"],
        "churn_probability_during_horizon": df["churn_probability_during_horizon"],
        "clv": df["clv"],
        "value_at_stake": df["clv"] * df["churn_probability_during_horizon"],
    }, index=df.index)
    return out.sort_values(["value_at_stake", "clv"], ascending=False, kind="stable").head(SUBSCRIBERS_AT_RISK)


def subscriber_tier_table(forecast: pd.DataFrame, tiers: pd.Series) -> pd.DataFrame:
    """Per tier (and in total) of active subscribers: how many, their value (total, mean, share),
    expected renewals over the horizon and how many are expected to leave during it."""
    act = forecast[forecast["active"]]
    t = tiers.reindex(act.index).astype(str)
    g = act.groupby(t)
    table = pd.DataFrame({
        "subscribers": g.size(),
        "total_clv": g["clv"].sum(),
        "mean_clv": g["clv"].mean(),
        "expected_renewals": g["expected_renewals"].sum(),
        "expected_to_leave": g["churn_probability_during_horizon"].sum(),
    }).reindex(list(TIERS), fill_value=0.0)
    table.loc["Total"] = [len(act), act["clv"].sum(), act["clv"].mean() if len(act) else 0.0,
                          act["expected_renewals"].sum(), act["churn_probability_during_horizon"].sum()]
    total = float(table.loc["Total", "total_clv"])
    table["share_of_clv"] = table["total_clv"] / total if total else 0.0
    table["share_leaving"] = (table["expected_to_leave"] / table["subscribers"].where(table["subscribers"] > 0)).fillna(0.0)
    table.index.name = "tier"
    return table


@dataclass
class SubscriptionConfig:
    """The subscription report's parameters (the template's parameters cell, checked)."""

    input_path: str = ""
    customer_col: str = "customer_id"
    start_col: str = "start"
    end_col: str = "end"
    amount_col: str = "amount"
    period: str = "month"
    observation_end: str = ""
    horizon: int = 12
    holdout_periods: int = 6
    model: str = "auto"
    discount_rate: float = 0.10
    margin: float = 0.30
    title: str = "Subscriber value"
    currency: str = ""
    tier_shares: dict = field(default_factory=lambda: dict(DEFAULT_SHARES))
    interval_level: float = 0.90
    n_draws: int = 200
    previous: str = "auto"
    output_dir: str = ""

    @property
    def per_period_discount(self) -> float:
        """The annual discount rate turned into one per renewal period (exactly, compounding)."""
        return float((1.0 + self.discount_rate) ** (PERIODS[self.period] / 365.25) - 1.0)


def validate_subscription_parameters(params: dict[str, Any]) -> SubscriptionConfig:
    """A :class:`SubscriptionConfig` from the template's parameters; each bad value named."""
    known = set(SubscriptionConfig.__dataclass_fields__)
    unknown = sorted(set(params) - known)
    if unknown:
        raise ParameterError(f"Unknown parameter(s) {unknown}; the subscription report takes {sorted(known)}.")
    cfg = SubscriptionConfig(**params)
    if cfg.period not in PERIODS:
        raise ParameterError(f"Parameter 'period' must be one of {sorted(PERIODS)}, got {cfg.period!r}.")
    cfg.horizon = int(check_number("horizon", cfg.horizon, minimum=1, maximum=600, integer=True))
    cfg.holdout_periods = int(check_number("holdout_periods", cfg.holdout_periods, minimum=0, maximum=600, integer=True))
    if cfg.model not in ("auto", "sbg", "bdw"):
        raise ParameterError(f"Parameter 'model' must be 'auto', 'sbg' or 'bdw', got {cfg.model!r}.")
    cfg.discount_rate = check_number("discount_rate", cfg.discount_rate, minimum=0.0, maximum=1.0, min_inclusive=False)
    cfg.margin = check_number("margin", cfg.margin, minimum=0.0, maximum=1.0, min_inclusive=False)
    cfg.interval_level = check_number("interval_level", cfg.interval_level, minimum=0.5, maximum=0.999)
    cfg.n_draws = int(check_number("n_draws", cfg.n_draws, minimum=20, maximum=10_000, integer=True))
    cfg.tier_shares = check_shares(cfg.tier_shares)
    for name in ("title", "currency", "customer_col", "start_col", "end_col", "amount_col", "previous"):
        if not isinstance(getattr(cfg, name), str):
            raise ParameterError(f"Parameter {name!r} must be text, got {getattr(cfg, name)!r}.")
    if cfg.observation_end:
        try:
            pd.Timestamp(cfg.observation_end)
        except (ValueError, TypeError):
            raise ParameterError(f"Parameter 'observation_end' must be a date like 2024-12-31, "
                                 f"got {cfg.observation_end!r}.") from None
    if cfg.input_path and not Path(cfg.input_path).exists():
        raise ParameterError(f"Parameter 'input_path': {cfg.input_path!r} does not exist.")
    return cfg


@dataclass
class SubscriptionAnalysis:
    config: SubscriptionConfig
    subscribers: pd.DataFrame
    model: Any
    forecast: pd.DataFrame
    tiers: pd.Series
    tier_table: pd.DataFrame
    backtest: pd.DataFrame | None
    backtest_error: float | None
    retention: pd.DataFrame
    since: dict | None
    observation_end: str
    notes: list[str]
    at_risk: pd.DataFrame | None = None
    """Active Platinum and Gold subscribers most likely to cancel, by value at stake
    (:func:`subscribers_at_risk`)."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per stage of the analysis."""

    @property
    def model_name(self) -> str:
        return self.model._long_name


def load_subscriptions(cfg: SubscriptionConfig) -> pd.DataFrame:
    """The subscription log the parameters name (CSV or Parquet), or the generated example."""
    if not cfg.input_path:
        return example_subscriptions()
    path = Path(cfg.input_path)
    try:
        if path.suffix.lower() in (".parquet", ".pq") or path.is_dir():
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype={cfg.customer_col: str}, keep_default_na=True)
    except Exception as exc:  # noqa: BLE001 - the reader's own words are the useful part
        raise DataValidationError(f"Could not read subscription log '{path}': {type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else ''}. Give a CSV or Parquet file with "
                                  f"one row per subscriber.") from None


def _table(log: pd.DataFrame, cfg: SubscriptionConfig, observation_end: Any) -> pd.DataFrame:
    amount = cfg.amount_col if cfg.amount_col in log.columns else None
    return subscription_periods(log, period=cfg.period, observation_end=observation_end or None,
                                customer_id=cfg.customer_col, start=cfg.start_col, end=cfg.end_col, amount=amount)


def _backtest(log: pd.DataFrame, cfg: SubscriptionConfig, obs_end: pd.Timestamp) -> tuple[pd.DataFrame | None, str]:
    """Each candidate fitted on the log as of ``holdout_periods`` periods earlier, scored on
    whether the subscribers active then were still active at the observation end."""
    h = cfg.holdout_periods
    if h == 0:
        return None, "No backtest was asked for (holdout_periods 0)."
    offset = {"week": pd.DateOffset(weeks=h), "month": pd.DateOffset(months=h),
              "quarter": pd.DateOffset(months=3 * h), "year": pd.DateOffset(years=h)}[cfg.period]
    cal_end = obs_end - offset
    starts = pd.to_datetime(log[cfg.start_col], errors="coerce")
    before = log[starts <= cal_end]
    if len(before) < 100:
        return None, (f"No backtest: only {len(before)} subscriptions began before {cal_end.date()} "
                      f"({h} {cfg.period}s before the end).")
    then = _table(before, cfg, cal_end)
    now = _table(log, cfg, obs_end).reindex(then.index)
    active_then = ~then["churned"]
    if active_then.sum() == 0 or (then["churned"].sum() == 0):
        return None, "No backtest: nobody was active, or nobody had left, by the backtest's date."
    n_then = then.loc[active_then, "periods"].to_numpy(float)
    survived = (~now.loc[active_then, "churned"]).to_numpy(bool)
    rows = {}
    for name, cls in CANDIDATES.items():
        try:
            model = cls().fit(then)
        except Exception as exc:  # noqa: BLE001 - a model that cannot be fitted is a row, not a crash
            rows[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}
            continue
        p = np.clip(model.survival_after(n_then, h), 1e-12, 1 - 1e-12)
        rows[name] = {
            "log_loss": float(-np.mean(np.where(survived, np.log(p), np.log1p(-p)))),
            "predicted_survivors": float(p.sum()),
            "actual_survivors": float(survived.sum()),
            "survivors_pct_error": float(100 * (p.sum() - survived.sum()) / max(survived.sum(), 1)),
            "log_likelihood": float(model.log_likelihood_),
            "bic": float(model.bic),
        }
    table = pd.DataFrame(rows).T
    table.index.name = "model"
    table.attrs.update({"calibration_end": str(cal_end.date()), "subscribers": int(active_then.sum()),
                        "holdout_periods": h})
    return table, ""


def _retention_table(subs: pd.DataFrame, model: Any, max_t: int = 36) -> pd.DataFrame:
    """Observed retention by tenure (of those who reached period t-1, the share who renewed at t,
    pooled over cohorts) beside the model's, with how many subscribers each is observed on."""
    n = subs["periods"].to_numpy()
    left = subs["churned"].to_numpy(bool)
    top = int(min(max_t, n.max() if len(n) else 1))
    rows = []
    for t in range(1, top + 1):
        # at risk at renewal t: those who paid period t (left after t or more periods, or active with
        # t or more renewals); renewed: left later than t, or active with t or more renewals
        at_risk = ((left & (n >= t)) | (~left & (n >= t))).sum()
        renewed = ((left & (n > t)) | (~left & (n >= t))).sum()
        if at_risk == 0:
            break
        rows.append({"period": t, "at_risk": int(at_risk), "observed": renewed / at_risk,
                     "model": float(model.retention_rate(t))})
    return pd.DataFrame(rows).set_index("period")


def _intervals(model: Any, subs: pd.DataFrame, forecast: pd.DataFrame, tiers: pd.Series,
               cfg: SubscriptionConfig) -> pd.DataFrame:
    """Per tier: ranges of value, renewals and leavers over parameter draws (the estimates'
    uncertainty), leavers also with the chance of who leaves (binomial around ``forecast``, the
    estimates' forecast; normal approximation)."""
    from scipy import stats

    draws = model.sample_params(cfg.n_draws, seed=0)
    keys = ["total_clv", "expected_renewals", "expected_to_leave"]
    values = {k: np.full((len(draws), len(TIERS) + 1), np.nan) for k in keys}
    for i in range(len(draws)):
        try:
            m = model._with_params(draws.iloc[i])
        except ParameterError:
            continue
        fc = subscriber_forecast(m, subs, horizon=cfg.horizon, discount_rate=cfg.per_period_discount, margin=cfg.margin)
        table = subscriber_tier_table(fc, tiers)
        for k in keys:
            values[k][i] = table[k].reindex([*TIERS, "Total"]).to_numpy(float)
    q = [(1 - cfg.interval_level) / 2, 1 - (1 - cfg.interval_level) / 2]
    out = {}
    active = forecast[forecast["active"]]
    p_leave = active["churn_probability_during_horizon"]
    noise = p_leave.groupby(tiers.reindex(active.index).astype(str)).apply(lambda v: float((v * (1 - v)).sum()))
    noise = noise.reindex(list(TIERS), fill_value=0.0)
    noise.loc["Total"] = float(noise.sum())
    z = float(stats.norm.ppf(q[1]))
    for k in keys:
        lo, hi = np.nanquantile(values[k], q, axis=0)
        if k == "expected_to_leave":
            par_sd = (hi - lo) / (2 * z)
            sd = np.sqrt(par_sd**2 + noise.to_numpy(float))
            mid = np.nanmedian(values[k], axis=0)
            lo, hi = np.maximum(mid - z * sd, 0.0), mid + z * sd
        out[f"{k}_lower"], out[f"{k}_upper"] = lo, hi
    return pd.DataFrame(out, index=pd.Index([*TIERS, "Total"], name="tier"))


@dataclass
class SubscriptionRun:
    """The subscription analysis's state as its stages fill it in (:data:`SUBSCRIPTION_STAGES`)."""

    cfg: SubscriptionConfig
    log: pd.DataFrame | None
    clock: Clock = field(default_factory=Clock)
    subs: pd.DataFrame | None = None
    obs_end: pd.Timestamp | None = None
    notes: list[str] = field(default_factory=list)
    backtest: pd.DataFrame | None = None
    chosen: str = "sBG"
    model: Any = None
    forecast: pd.DataFrame | None = None
    tiers: pd.Series | None = None
    tier_table: pd.DataFrame | None = None
    error: float | None = None
    analysis: SubscriptionAnalysis | None = None


def _load(run: SubscriptionRun) -> None:
    run.log = load_subscriptions(run.cfg) if run.log is None else run.log
    run.subs = _table(run.log, run.cfg, run.cfg.observation_end)
    run.obs_end = pd.Timestamp(run.subs.attrs["observation_end"])
    run.clock.lap("load and periods")


def _backtest_and_choice(run: SubscriptionRun) -> None:
    """sBG against BdW on the held-out renewal periods, by log-loss (or the model asked for)."""
    backtest, why = _backtest(run.log, run.cfg, run.obs_end)
    if why:
        run.notes.append(why)
    if run.cfg.model != "auto":
        run.chosen = {"sbg": "sBG", "bdw": "BdW"}[run.cfg.model]
    elif backtest is not None and "log_loss" in backtest and backtest["log_loss"].notna().any():
        run.chosen = str(backtest["log_loss"].astype(float).idxmin())
    if backtest is not None:
        backtest["chosen"] = backtest.index == run.chosen
        if run.chosen in backtest.index and "survivors_pct_error" in backtest:
            run.error = float(backtest.loc[run.chosen, "survivors_pct_error"])
    run.backtest = backtest
    run.clock.lap("backtest and model choice")


def _fit_and_forecast(run: SubscriptionRun) -> None:
    cfg = run.cfg
    run.model = CANDIDATES[run.chosen]().fit(run.subs)
    run.forecast = subscriber_forecast(run.model, run.subs, horizon=cfg.horizon, discount_rate=cfg.per_period_discount,
                                       margin=cfg.margin)
    run.clock.lap("fit on all data and forecast")


def _tiers_and_intervals(run: SubscriptionRun) -> None:
    active = run.forecast[run.forecast["active"]]
    if len(active) == 0:
        raise DataValidationError("No subscriber is active at the observation end: there is nobody to value.")
    run.tiers = assign_tiers(active, shares=run.cfg.tier_shares)
    run.tier_table = subscriber_tier_table(run.forecast, run.tiers).join(
        _intervals(run.model, run.subs, run.forecast, run.tiers, run.cfg))
    run.clock.lap("tiers and intervals")


def _subscription_result(run: SubscriptionRun) -> None:
    run.analysis = SubscriptionAnalysis(
        config=run.cfg, subscribers=run.subs, model=run.model, forecast=run.forecast, tiers=run.tiers,
        tier_table=run.tier_table, backtest=run.backtest, backtest_error=run.error,
        retention=_retention_table(run.subs, run.model), since=None, observation_end=str(run.obs_end.date()),
        notes=run.notes, timings=run.clock.timings)
    run.analysis.at_risk = subscribers_at_risk(run.forecast, run.tiers, period=run.cfg.period)
    run.clock.lap("retention curve and at-risk list")


def _subscription_since(run: SubscriptionRun) -> None:
    run.analysis.since = _since_last_run(run.cfg, run.analysis)
    run.clock.lap("since the last run")


def _subscription_files(run: SubscriptionRun) -> None:
    if run.cfg.output_dir:
        _save(run.cfg, run.analysis)
    run.clock.lap("write files")


#: the subscription report's analysis, stage by stage (run by :func:`clvmodels.stages.run_stages`,
#: as the transaction report's :data:`clvmodels.pipeline.STAGES`)
SUBSCRIPTION_STAGES = [_load, _backtest_and_choice, _fit_and_forecast, _tiers_and_intervals, _subscription_result,
                       _subscription_since, _subscription_files]


def run_subscription_analysis(cfg: SubscriptionConfig, log: pd.DataFrame | None = None) -> SubscriptionAnalysis:
    """The whole subscription analysis (see the module docstring), stage by stage
    (:data:`SUBSCRIPTION_STAGES`); writes the run's files into ``cfg.output_dir`` when it is set."""
    return run_stages(SubscriptionRun(cfg, log), SUBSCRIPTION_STAGES).analysis


def _since_last_run(cfg: SubscriptionConfig, analysis: SubscriptionAnalysis) -> dict | None:
    """Against the latest earlier run of this title (or ``previous``): tier moves, Platinum and
    Gold subscribers who left since, the earlier run's expected leavers for the elapsed periods
    against who left, and the change in value."""
    choice = (cfg.previous or "none").strip()
    if choice == "none":
        return {"available": False, "reason": "No comparison with an earlier run was asked for (previous 'none')."}
    folder = (find_previous_run(Path(cfg.output_dir).parent, cfg.title) if cfg.output_dir else None) \
        if choice == "auto" else Path(choice)
    if folder is None:
        return {"available": False, "reason": "This is the first run of this report in its output folder: the "
                                              "next run will show what changed since this one."}
    record = read_record(folder)
    if record is None:
        return {"available": False, "reason": f"The earlier run '{folder.name}' has no readable run.json; no comparison."}
    problem = record_problem(record, tuple(PERIODS)) or currency_problem(record, cfg.currency)
    if problem:
        return {"available": False, "reason": f"The run in '{folder.name}' could not be compared: {problem}."}
    if str(pd.Timestamp(str(record["observation_end"])).date()) >= analysis.observation_end:
        return {"available": False, "reason": f"The earlier run '{folder.name}' is not from before this one."}
    try:
        return _compare_subscribers(folder, record, analysis)
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign earlier run is a note, never the report's end
        return {"available": False, "reason": f"The run in '{folder.name}' could not be compared: "
                                              f"{failure_words(exc)}."}


def _compare_subscribers(folder: Path, record: dict[str, Any], analysis: SubscriptionAnalysis) -> dict:
    then = pd.read_parquet(folder / "forecast.parquet")
    earlier = load_model(folder / "subscription_model.json")
    if not isinstance(earlier, BetaDiscreteWeibullModel):
        raise DataValidationError("its subscription_model.json holds another kind of model")
    needed = ["customer_id", "active", "tier", "periods", "clv"]
    missing = [c for c in needed if c not in then.columns]
    if missing:
        raise DataValidationError(f"its forecast.parquet has no column {missing[0]!r}")
    then["active"] = then["active"].astype(bool)
    then["periods"] = pd.to_numeric(then["periods"], errors="raise")
    then["clv"] = pd.to_numeric(then["clv"], errors="raise")
    ids = analysis.subscribers.index.astype(str)
    shared = then["customer_id"].astype(str).isin(ids).sum()
    if shared < SAME_LOG_SHARE * len(then):
        raise DataValidationError(f"it is of another subscription log: {int(shared):,} of its {len(then):,} "
                                  "subscribers are in this one")
    then = then.set_index("customer_id")  # as _save writes it
    then.index = then.index.astype(str)
    now_tier = analysis.tiers.astype(str)
    now_tier.index = now_tier.index.astype(str)
    was_active = then[then["active"]]
    both = pd.DataFrame({"then": was_active["tier"].astype(str)}).join(now_tier.rename("now"), how="outer")
    both["then"] = both["then"].fillna("new")
    both["now"] = both["now"].fillna("left")
    migration = pd.crosstab(both["then"], both["now"]).reindex(index=[*TIERS, "new"], columns=[*TIERS, "left"],
                                                              fill_value=0)
    subs = analysis.subscribers.copy()
    subs.index = subs.index.astype(str)
    left_now = subs["churned"].reindex(was_active.index).fillna(False).astype(bool)
    valuable = was_active["tier"].astype(str).isin(["Platinum", "Gold"])
    lost = was_active[valuable & left_now]
    # the earlier model's expected leavers for the periods elapsed, against who left
    n_then = was_active["periods"].to_numpy(float)
    n_now = subs["periods"].reindex(was_active.index).to_numpy(float)
    # periods elapsed: renewals the still-active subscribers have made since (the same for all of
    # them up to where the dates fall within a period)
    gap = np.where(left_now.to_numpy(), np.nan, n_now - n_then)
    elapsed = int(np.nanmedian(gap)) if np.isfinite(gap).any() else 0
    predicted = float((1 - earlier.survival_after(n_then, max(elapsed, 0))).sum()) if elapsed > 0 else 0.0
    return {
        "available": True, "previous": folder.name, "previous_end": str(record.get("observation_end")),
        "elapsed": elapsed, "migration": migration,
        "lost": {"customers": int(len(lost)), "value": float(lost["clv"].sum())},
        "predicted_leavers": predicted, "actual_leavers": int(left_now.sum()),
        "value_then": float(was_active["clv"].sum()), "value_now": float(analysis.forecast["clv"].sum()),
    }


def _save(cfg: SubscriptionConfig, analysis: SubscriptionAnalysis) -> None:
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    fc = analysis.forecast.join(analysis.subscribers[["cohort"]]).assign(
        tier=analysis.tiers.reindex(analysis.forecast.index).astype("object").fillna("left").astype(str))
    fc.reset_index().to_parquet(out / "forecast.parquet")
    write_csv(fc, out / "forecast.csv")
    write_csv(analysis.tier_table, out / "tier_table.csv")
    if analysis.at_risk is not None:
        write_csv(analysis.at_risk, out / "subscribers_at_risk.csv")
    if analysis.backtest is not None:
        write_csv(analysis.backtest, out / "backtest.csv")
    analysis.model.save(out / "subscription_model.json")
    (out / "parameters.json").write_text(json.dumps(asdict(cfg), indent=2, default=str))
    write_run_record(out, observation_end=analysis.observation_end, calibration_end=None, time_unit=cfg.period,
                     horizon=cfg.horizon, title=cfg.title, model=analysis.model_name, currency=cfg.currency)
