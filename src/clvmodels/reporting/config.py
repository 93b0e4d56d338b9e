"""The report's parameters: what a run may be asked, checked in one place, and the log it
reads. Below both the pipeline and the notebook runner, so neither imports the other for them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clvmodels._validation import (
    UNIT_NAMES,
    check_choice,
    check_number,
    check_time_unit,
    check_timestamp,
)
from clvmodels.datasets import load_cdnow
from clvmodels.engine import ENGINES, SPARK, engine_named, execute, parse_memory
from clvmodels.exceptions import DataValidationError, ParameterError
from clvmodels.forecast import check_horizon
from clvmodels.tiers import DEFAULT_SHARES, check_shares
from clvmodels.transactions import REFUND_POLICIES, is_remote, load_transactions, open_checked

DATASETS = ("cdnow-sample", "cdnow-master")
TEMPLATES = {"clv_report": "clv_report.ipynb", "model_validation": "model_validation.ipynb",
             "explore": "explore.ipynb", "subscription_report": "subscription_report.ipynb"}


@dataclass(frozen=True)
class ReportConfig:
    """The validated parameters of a report run (see the template's parameters cell)."""

    input_path: str = ""
    dataset: str = "cdnow-sample"
    customer_col: str = "customer_id"
    date_col: str = "date"
    amount_col: str = "amount"
    date_format: str = ""
    time_unit: str = "W"
    observation_end: str = ""
    calibration_end: str = ""
    horizon: float = 52.0
    discount_rate: float = 0.10
    margin: float = 0.30
    cost_to_serve: float = 0.0
    tier_shares: dict[str, float] = field(default_factory=dict)
    dropout_reduction: float = 0.10
    interval_level: float = 0.90
    n_draws: int = 100
    at_risk_top: int = 50
    title: str = "Customer lifetime value report"
    output_dir: str = ""
    refunds: str = "error"
    currency: str = ""
    forecast_csv: str = "auto"
    engine: str = "duckdb"
    input_table: str = ""
    spark_master: str = ""
    spark_conf: dict[str, Any] = field(default_factory=dict)
    scoring: str = "auto"
    engine_memory: str = ""
    threads: int = 0
    baseline: str = "yes"
    left_truncation: str = "auto"
    previous: str = "auto"
    customers_path: str = ""
    covariates: list[str] = field(default_factory=list)
    use_covariates: str = "auto"
    segment_col: str = ""
    events_path: str = ""

    @property
    def unit_name(self) -> str:
        return UNIT_NAMES[self.time_unit]

    @property
    def clv_label(self) -> str:
        """CLV named with its horizon, e.g. "52-week CLV"."""
        return f"{self.horizon:g}-{self.unit_name[:-1]} CLV"

    @property
    def currency_is_default(self) -> bool:
        """Whether the currency was not given (the bundled CDNOW data are in US dollars)."""
        return not self.currency or (not self.input_path and not self.input_table and self.currency == "USD")

    @property
    def money_label(self) -> str:
        return f" ({self.currency})" if self.currency else ""

    @property
    def columns(self) -> dict[str, str]:
        return {"customer_id": self.customer_col, "date": self.date_col, "amount": self.amount_col}

    @property
    def data_label(self) -> str:
        eng = engine_named(self.engine)
        where = "" if eng.default else f" (on {eng.label})"
        if self.input_table:
            return f"Spark table {self.input_table}"
        return (self.input_path or f"bundled {self.dataset} data") + where


def _text(name: str, value: Any, *, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise ParameterError(f"Parameter {name!r} must be text, got {value!r} ({type(value).__name__}).")
    if not allow_empty and not value.strip():
        raise ParameterError(f"Parameter {name!r} must not be empty.")
    return value


def parameters_from(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The report parameters found in ``namespace`` (a template's ``globals()``), by the names
    :class:`ReportConfig` declares: the one list of parameters, kept in one place."""
    return {name: namespace[name] for name in ReportConfig.__dataclass_fields__ if name in namespace}


def validate_parameters(params: Mapping[str, Any]) -> ReportConfig:
    """Check every report parameter; raise :class:`ParameterError` naming the first bad one.

    Unknown names are refused with the list of known ones.
    """

    known = {f for f in ReportConfig.__dataclass_fields__}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ParameterError(f"Unknown report parameter(s) {unknown}; known parameters: {sorted(known)}.")
    p = {**asdict(ReportConfig()), **dict(params)}
    for name in ("input_path", "date_format", "observation_end", "calibration_end", "output_dir"):
        _text(name, p[name])
    for name in ("customer_col", "date_col", "amount_col", "title"):
        _text(name, p[name], allow_empty=False)
    _text("currency", p["currency"])
    if len(p["currency"]) > 12:
        raise ParameterError(f"Parameter 'currency' is a label such as 'USD' or 'EUR' (at most 12 characters), got {p['currency']!r}.")

    check_choice("refunds", p["refunds"], REFUND_POLICIES)
    check_choice("forecast_csv", p["forecast_csv"], ("auto", "yes", "no"))

    check_choice("engine", p["engine"], ENGINES)
    check_choice("scoring", p["scoring"], ("auto", "memory", "engine"))
    if str(p["engine_memory"]).strip():

        parse_memory(p["engine_memory"])
    check_choice("left_truncation", p["left_truncation"], ("auto", "no"))
    check_choice("baseline", p["baseline"], ("yes", "no"))
    _text("previous", p["previous"])
    if p["previous"] not in ("auto", "none", "") and not (Path(p["previous"]) / "run.json").is_file():
        raise ParameterError(
            f"Parameter 'previous' ({p['previous']!r}) is not a report folder (no run.json in it); give an earlier "
            "report's folder, 'auto' (the latest earlier run of the same title) or 'none' (command line: --previous).")
    eng = engine_named(p["engine"])
    eng.available()
    for name in ("input_table", "spark_master", "customers_path", "segment_col"):
        _text(name, p[name])
    if not isinstance(p["covariates"], list) or not all(isinstance(c, str) and c for c in p["covariates"]):
        raise ParameterError(f"Parameter 'covariates' is a list of column names of the customer table, e.g. "
                             f"[channel, region]; got {p['covariates']!r}.")
    check_choice("use_covariates", p["use_covariates"], ("auto", "yes", "no"))
    if p["use_covariates"] == "yes" and not p["covariates"]:
        raise ParameterError("Parameter 'use_covariates' is 'yes' but no covariates are named: give them with "
                             "covariates, e.g. [channel].")
    if (p["covariates"] or p["segment_col"]) and not p["customers_path"]:
        raise ParameterError("Parameters 'covariates' and 'segment_col' name columns of the customer table: give it "
                             "with customers_path (command line: --customers customers.csv).")
    if p["customers_path"] and not Path(p["customers_path"]).exists():
        raise ParameterError(f"Parameter 'customers_path': {p['customers_path']!r} does not exist "
                             "(command line: --customers).")
    _text("events_path", p["events_path"])
    if p["events_path"] and not Path(p["events_path"]).exists():
        raise ParameterError(f"Parameter 'events_path': {p['events_path']!r} does not exist (command line: --events).")
    if p["customers_path"] and p["scoring"] == "engine":
        raise ParameterError("A customer table (customers_path) is used with the customer table in memory; "
                             "set scoring to 'memory' or 'auto'.")
    if not eng.distributed and (p["input_table"] or p["spark_master"] or p["spark_conf"]):
        given = [n for n in ("input_table", "spark_master", "spark_conf") if p[n]]
        raise ParameterError(f"Parameter(s) {given} need engine='spark' (got engine={p['engine']!r}).")
    if p["input_table"] and p["input_path"]:
        raise ParameterError(
            f"Give input_path ({p['input_path']!r}) or input_table ({p['input_table']!r}), not both.")
    if not isinstance(p["spark_conf"], dict) or not all(
            isinstance(k, str) and isinstance(v, (str, int, float, bool)) for k, v in p["spark_conf"].items()):
        raise ParameterError(
            "Parameter 'spark_conf' is a mapping of Spark settings to values, e.g. "
            f"{{'spark.executor.memory': '8g'}}; got {p['spark_conf']!r}.")
    check_choice("dataset", p["dataset"], DATASETS)
    try:
        check_time_unit(p["time_unit"])
    except ParameterError as exc:
        raise ParameterError(f"Parameter 'time_unit': {exc}") from None
    checks: list[tuple[str, dict[str, Any]]] = [
        ("horizon", {"minimum": 0.0, "min_inclusive": False}),
        ("discount_rate", {"minimum": 0.0, "maximum": 10.0}),
        ("margin", {"minimum": 0.0, "min_inclusive": False, "maximum": 1.0}),
        ("cost_to_serve", {"minimum": 0.0}),
        ("dropout_reduction", {"minimum": 0.0, "maximum": 1.0, "max_inclusive": False}),
        ("interval_level", {"minimum": 0.0, "maximum": 1.0, "min_inclusive": False, "max_inclusive": False}),
        ("n_draws", {"minimum": 10, "maximum": 100_000, "integer": True}),
        ("threads", {"minimum": 0, "maximum": 1024, "integer": True}),
        ("at_risk_top", {"minimum": 0, "maximum": 5000, "integer": True}),
    ]
    for name, kw in checks:
        try:
            p[name] = check_number(name, p[name], **kw)
        except ParameterError as exc:
            raise ParameterError(f"Parameter {exc}") from None

    try:
        check_horizon(p["horizon"], p["time_unit"])
    except ParameterError as exc:
        raise ParameterError(f"Parameter {exc}") from None

    remote = bool(p["input_path"]) and is_remote(p["input_path"])
    if remote and not eng.reads_remote:
        raise ParameterError(f"Parameter 'input_path' ({p['input_path']!r}) is a remote address; it needs engine 'spark'.")
    if p["input_path"] and not remote and not Path(p["input_path"]).exists():
        raise ParameterError(f"Parameter 'input_path': file {p['input_path']!r} does not exist.")
    obs = check_timestamp("observation_end", p["observation_end"]) if p["observation_end"] else None
    if p["calibration_end"] and p["calibration_end"].strip().lower() != "none":
        cal = check_timestamp("calibration_end", p["calibration_end"])
        if obs is not None and cal >= obs:
            raise ParameterError(
                f"Parameter 'calibration_end' ({cal.date()}) must be before observation_end ({obs.date()})."
            )
    p["tier_shares"] = check_shares(p["tier_shares"] or DEFAULT_SHARES)
    if not p["input_path"] and not p["input_table"] and not p["currency"]:
        p["currency"] = "USD"  # the bundled CDNOW data are in US dollars
    return ReportConfig(**p)


def report_source(cfg: ReportConfig) -> tuple[Any, dict[str, Any]]:
    """The transaction log a report runs on and how to read it (the options of
    :func:`clvmodels.load_transactions`): ``input_path``, ``input_table`` (Spark) or the bundled
    CDNOW data, on ``cfg.engine``."""

    options = dict(date_format=cfg.date_format or None, refunds=cfg.refunds, engine=cfg.engine, **cfg.columns)
    eng = engine_named(cfg.engine)
    eng.start(cfg.spark_master, cfg.spark_conf)
    if cfg.input_table:
        return eng.catalog_table(cfg.input_table), options
    if cfg.input_path:
        return cfg.input_path, options
    return load_cdnow(cfg.dataset.split("-")[1]), {"engine": cfg.engine}


def load_report_transactions(cfg: ReportConfig):
    """The transaction log a report runs on, loaded and validated (see :func:`report_source`)."""

    source, options = report_source(cfg)
    return load_transactions(source, **options)


#: rows of a local log read in the command's own process before the report's kernel starts
PREFLIGHT_ROWS = 10_000


def preflight_input(cfg: ReportConfig) -> None:
    """Check a local log's columns and its first :data:`PREFLIGHT_ROWS` rows in this process,
    before a notebook kernel starts (seconds on a busy machine): a missing column, a date format
    that does not parse, text where amounts should be raise here with the same message the report
    would give. A problem in the first rows is then counted over the whole log (one pass, only
    when there is a problem), so the message's numbers are the log's. Spark logs, catalog tables
    and remote paths are left to the report (their reading is the engine's)."""
    if not cfg.input_path or cfg.input_table or cfg.engine != "duckdb" or is_remote(cfg.input_path):
        return
    options = dict(date_format=cfg.date_format or None, refunds=cfg.refunds, **cfg.columns)
    checked = open_checked(cfg.input_path, **options)  # the columns, their types, the date format's kind
    try:
        head = execute(checked.raw.limit(PREFLIGHT_ROWS))
    except Exception as exc:  # noqa: BLE001 - a file the engine cannot read: the report's own message
        raise checked.read_error(exc) from None
    if len(head) == 0:
        load_transactions(cfg.input_path, **options)  # the log's own message (empty, ...)
        return
    named = {k: v for k, v in options.items() if k in ("customer_id", "date", "amount")}
    try:
        load_transactions(head, date_format=options["date_format"], refunds=options["refunds"], **named)
    except DataValidationError:
        # counted over the whole log: the report's own message; none there means the first rows
        # only looked bad on their way to memory, and the report reads the log as it is
        load_transactions(cfg.input_path, **options)


def spark_table(name: str) -> Any:
    """A table of the Spark catalog as an Ibis table (:meth:`clvmodels.engine.SparkEngine.catalog_table`)."""
    return SPARK.catalog_table(name)


