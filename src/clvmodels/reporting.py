"""Parameterised report runs: validate parameters, execute a notebook template with papermill,
export offline HTML without code, and publish everything atomically into ``reports/``."""

from __future__ import annotations

import ast
import contextlib
import datetime as _dt
import io
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from clvmodels._validation import (
    UNIT_NAMES,
    check_choice,
    check_number,
    check_time_unit,
    check_timestamp,
)
from clvmodels.exceptions import DataValidationError, ParameterError, ReportError

__all__ = [
    "ReportConfig",
    "validate_parameters",
    "parameters_from",
    "load_report_transactions",
    "save_artifacts",
    "executive_summary",
    "run_report",
    "template_path",
    "template_parameters",
    "clean_stale_runs",
    "format_tier_table",
    "format_what_if",
    "format_selection",
    "format_scorecard",
    "format_backtest_tiers",
    "format_deciles",
    "format_at_risk",
    "md_escape",
    "report_heading",
    "model_paragraph",
    "backtest_reading",
    "data_overview",
    "DATASETS",
]

DATASETS = ("cdnow-sample", "cdnow-master")
TEMPLATES = {"clv_report": "clv_report.ipynb", "model_validation": "model_validation.ipynb",
             "explore": "explore.ipynb"}


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
    left_truncation: str = "auto"
    previous: str = "auto"

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
        where = " (on Spark)" if self.engine == "spark" else ""
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
    from clvmodels.tiers import DEFAULT_SHARES, _check_shares

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
    from clvmodels.transactions import REFUND_POLICIES

    check_choice("refunds", p["refunds"], REFUND_POLICIES)
    check_choice("forecast_csv", p["forecast_csv"], ("auto", "yes", "no"))
    from clvmodels._engine import ENGINES, spark_available

    check_choice("engine", p["engine"], ENGINES)
    check_choice("scoring", p["scoring"], ("auto", "memory", "engine"))
    check_choice("left_truncation", p["left_truncation"], ("auto", "no"))
    _text("previous", p["previous"])
    if p["previous"] not in ("auto", "none", "") and not (Path(p["previous"]) / "run.json").is_file():
        raise ParameterError(
            f"Parameter 'previous' ({p['previous']!r}) is not a report folder (no run.json in it); give an earlier "
            "report's folder, 'auto' (the latest earlier run of the same title) or 'none' (command line: --previous).")
    if p["engine"] == "spark" and not spark_available():
        raise ParameterError("Parameter 'engine' is 'spark' but pyspark is not installed; "
                             "pip install 'clvmodels[spark]', or use engine 'duckdb'.")
    for name in ("input_table", "spark_master"):
        _text(name, p[name])
    if p["engine"] != "spark" and (p["input_table"] or p["spark_master"] or p["spark_conf"]):
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
    ]
    for name, kw in checks:
        try:
            p[name] = check_number(name, p[name], **kw)
        except ParameterError as exc:
            raise ParameterError(f"Parameter {exc}") from None
    from clvmodels.forecast import check_horizon

    try:
        check_horizon(p["horizon"], p["time_unit"])
    except ParameterError as exc:
        raise ParameterError(f"Parameter {exc}") from None
    from clvmodels.transactions import is_remote

    remote = bool(p["input_path"]) and is_remote(p["input_path"])
    if remote and p["engine"] != "spark":
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
    p["tier_shares"] = _check_shares(p["tier_shares"] or DEFAULT_SHARES)
    if not p["input_path"] and not p["input_table"] and not p["currency"]:
        p["currency"] = "USD"  # the bundled CDNOW data are in US dollars
    return ReportConfig(**p)


def load_report_transactions(cfg: ReportConfig):
    """The transaction log a report runs on: ``input_path``, ``input_table`` (Spark) or the
    bundled CDNOW data, on ``cfg.engine``."""
    from clvmodels.datasets import load_cdnow
    from clvmodels.transactions import load_transactions

    options = dict(date_format=cfg.date_format or None, refunds=cfg.refunds, engine=cfg.engine, **cfg.columns)
    if cfg.engine == "spark":
        from clvmodels._engine import spark_connection

        spark_connection(cfg.spark_master, cfg.spark_conf)
        if cfg.input_table:
            return load_transactions(spark_table(cfg.input_table), **options)
    if cfg.input_path:
        return load_transactions(cfg.input_path, **options)
    return load_transactions(load_cdnow(cfg.dataset.split("-")[1]), engine=cfg.engine)


def spark_table(name: str) -> Any:
    """A table of the Spark catalog (``table``, ``db.table`` or ``catalog.db.table``) as an Ibis
    table; :class:`DataValidationError` naming the tables there when it does not exist."""
    import re

    from clvmodels._engine import spark_connection, spark_view

    part = r"(?:[A-Za-z_][A-Za-z0-9_]*|`[^`]+`)"
    if not isinstance(name, str) or not re.fullmatch(rf"{part}(?:\.{part}){{0,2}}", name.strip()):
        raise DataValidationError(
            f"--table {name!r} is not a table name: give 'table', 'database.table' or 'catalog.database.table' "
            "(letters, digits and _; quote other names in backticks).")
    session = spark_connection()._session
    if not session.catalog.tableExists(name):
        try:
            known = sorted(t.name for t in session.catalog.listTables())[:20]
        except Exception:
            known = []
        raise DataValidationError(
            f"Spark table {name!r} does not exist (current database {session.catalog.currentDatabase()!r}, "
            f"tables there: {known}). Give 'database.table' or a table of that database.")
    return spark_view(session.table(name))


#: customers above which the per-customer forecast is written as a Parquet dataset partitioned
#: by tier (and, with forecast_csv "auto", without the CSV copy)
LARGE_FORECAST = 1_000_000


#: first characters that make a spreadsheet read a cell as a formula (OWASP, "CSV Injection")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _neutral(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def write_csv(table: pd.DataFrame, path: Path) -> Path:
    """Write ``table`` as CSV with every text cell and label that a spreadsheet would run as a
    formula (starting with ``= + - @``, tab or carriage return) prefixed with a single quote, as
    OWASP recommends against CSV injection; numbers are written as they are. Customer ids are
    the text most at risk: an id ``=HYPERLINK(...)`` opens as text, not as a live formula."""
    out = table.copy(deep=False)
    if out.index.dtype == object or isinstance(out.index.dtype, pd.StringDtype):
        out.index = pd.Index([_neutral(v) for v in out.index], name=out.index.name)
    for col in out.columns:
        if out[col].dtype == object or isinstance(out[col].dtype, pd.StringDtype):
            out[col] = out[col].map(_neutral)
    out.to_csv(path)
    return path


def save_artifacts(output_dir: str | Path, *, forecast: pd.DataFrame | None, tiers: pd.Series | None,
                   tier_table: pd.DataFrame, models: Mapping[str, Any], config: ReportConfig,
                   extra_tables: Mapping[str, pd.DataFrame] | None = None,
                   intervals: pd.DataFrame | None = None) -> list[Path]:
    """Write the per-customer forecast (with ``intervals`` when given), the tier table (CSV), the fitted models (JSON), further
    tables (CSV, e.g. the at-risk list) and the parameters into ``output_dir``. Does nothing
    when it is empty.

    The forecast is ``forecast.parquet``: one file up to :data:`LARGE_FORECAST` customers, above
    that a folder partitioned by tier (``forecast.parquet/tier=Gold/...``; ``pandas.read_parquet``
    reads either). ``forecast.csv`` is written when ``config.forecast_csv`` is "yes", or "auto"
    and the table is not large. ``forecast`` None: no per-customer files (an engine wrote them).
    """
    if not output_dir:
        return []
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [] if forecast is None else _save_forecast(out, forecast, tiers, intervals, config)
    write_csv(tier_table, out / "tier_table.csv")
    written.append(out / "tier_table.csv")
    for name, model in models.items():
        written.append(model.save(out / f"{name}.json"))
    for name, extra in (extra_tables or {}).items():
        write_csv(extra, out / f"{name}.csv")
        written.append(out / f"{name}.csv")
    params = out / "parameters.json"
    params.write_text(json.dumps(asdict(config), indent=2, default=str))
    written.append(params)
    return written


def _save_forecast(out: Path, forecast: pd.DataFrame, tiers: Any, intervals: pd.DataFrame | None,
                   config: ReportConfig) -> list[Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    large = len(forecast) > LARGE_FORECAST
    # an Arrow table built from the columns (no pandas copy of the whole forecast); tiers as a
    # dictionary column, not millions of Python strings
    tier_cat = pd.Categorical(tiers, categories=["Platinum", "Gold", "Iron", "Lead"], ordered=True)
    arrays = {forecast.index.name or "customer_id": pa.array(forecast.index.to_numpy())}
    arrays.update({c: pa.array(forecast[c].to_numpy()) for c in forecast.columns})
    if intervals is not None:  # per-customer intervals, indexed like the forecast
        arrays.update({c: pa.array(intervals[c].to_numpy()) for c in intervals.columns})
    arrays["tier"] = pa.DictionaryArray.from_arrays(pa.array(tier_cat.codes, pa.int8()),
                                                    pa.array(list(tier_cat.categories)))
    table = pa.table(arrays)
    written = [out / "forecast.parquet"]
    if large:
        import pyarrow.dataset as ds

        ds.write_dataset(table, str(written[0]), format="parquet", partitioning=["tier"],
                         partitioning_flavor="hive", max_rows_per_file=5_000_000,
                         existing_data_behavior="overwrite_or_ignore")
    else:
        pq.write_table(table, written[0])
    del table, arrays
    if config.forecast_csv == "yes" or (config.forecast_csv == "auto" and not large):
        both = forecast if intervals is None else forecast.join(intervals)
        write_csv(both.assign(tier=tier_cat), out / "forecast.csv")
        written.append(out / "forecast.csv")
    return written


def _money(v: float, currency: str = "") -> str:
    text = f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}"
    return f"{md_escape(currency)} {text}" if currency else text


def _h(text: Any) -> str:
    """Text for HTML, inert (user text never becomes markup)."""
    import html as _html

    return _html.escape(str(text), quote=True)


def _tile(label: str, big: str, small: str) -> str:
    return (f'<div class="tile"><div class="tile-label">{_h(label)}</div><div class="tile-big">{_h(big)}</div>'
            f'<div class="tile-small">{_h(small)}</div></div>')


def first_screen(analysis: Any) -> str:
    """The answer in 30 seconds (HTML): four headline figures in plain words and the customer
    pyramid. Model names and statistical terms stay in the method section."""
    cfg = analysis.config
    cur = cfg.currency
    t = analysis.tier_table
    total, top = t.loc["Total"], t.loc["Platinum"]
    horizon = f"{cfg.horizon:g} {cfg.unit_name}"
    value_small = ""
    if "total_clv_lower" in t.columns:
        value_small = (f"likely between {_money_text(total['total_clv_lower'], cur)} and "
                       f"{_money_text(total['total_clv_upper'], cur)} ({cfg.interval_level:.0%} range)")
    err = analysis.backtest_error
    if err is not None:
        e = err.loc["Total"]
        miss = (f"{e['purchases_pct_error']:+.1f}%", f"purchases, against what customers then did over "
                f"{_holdout_words(analysis)} (revenue {e['revenue_pct_error']:+.1f}%); per tier typically "
                f"{100 * err.attrs['sigma_revenue']:.0f}%")
    else:
        miss = ("not measured", "this run had no backtest: too little history before the forecast date")
    tiles = [
        _tile(f"Value of the customers over the next {horizon}", _money_text(total["total_clv"], cur), value_small),
        _tile(f"Customers expected to leave in the next {horizon}", f"{total['expected_to_leave']:,.0f}",
              f"of the {total['expected_active_now']:,.0f} still active ({total['share_of_active_leaving']:.0%}); "
              f"another {total['expected_gone_now']:,.0f} have probably left already"),
        _tile("Platinum customers' share of that value", f"{top['share_of_clv']:.0%}",
              f"from the top {top['share_of_customers']:.0%} of customers ({int(top['customers']):,})"),
        _tile("How far the last backtest missed", *miss),
    ]
    widths = {"Platinum": 46, "Gold": 62, "Iron": 80, "Lead": 100}
    bands = []
    for tier in ("Platinum", "Gold", "Iron", "Lead"):
        row = t.loc[tier]
        share = "" if pd.isna(row["share_of_clv"]) else f" &middot; {row['share_of_clv']:.0%} of value"
        bands.append(f'<div class="band band-{tier.lower()}" style="width:{widths[tier]}%">'
                     f'<b>{tier}</b> &middot; {int(row["customers"]):,} customers{share}</div>')
    pyramid = ('<div class="pyramid" role="img" aria-label="The customer pyramid: customers per tier and their '
               'share of value">' + "".join(bands) + "</div>")
    return f'<div class="tiles">{"".join(tiles)}</div>{pyramid}'


def _holdout_words(analysis: Any) -> str:
    sc = analysis.scorecard
    if sc is None:
        return "the holdout"
    return f"{sc.info['holdout_length']:g} {UNIT_NAMES[sc.info['time_unit']]}"


def _money_text(v: float, currency: str = "") -> str:
    text = f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}"
    return f"{currency} {text}" if currency else text


def plain_notes(analysis: Any) -> list[str]:
    """Caveats a manager needs, in plain words (the statistical detail is in the method section)."""
    notes = []
    model = analysis.model
    info = getattr(model, "fit_info_", None) or {}
    for text in info.get("limits", []):
        if "No dropout" in text:
            notes.append("The data show no sign of customers leaving: nearly every customer counts as active.")
        elif "Dropout barely differs" in text or "Dropout rates barely differ" in text:
            notes.append("Customers seem to leave at much the same rate: churn is estimated for the customer base "
                         "as a whole more than for each customer.")
    weak = model.poorly_identified_ if hasattr(model, "poorly_identified_") else []
    if set(weak) & _DROPOUT_PARAMS:
        notes.append("Churn figures are rough: the data say little about how customers leave.")
    elif weak:
        notes.append("Purchase figures are rough: the data say little about how often customers buy.")
    trunc = getattr(analysis, "left_truncation", None)
    if trunc is not None and trunc.detected:
        notes.append(trunc.describe())
    return notes


def executive_summary(analysis: Any) -> str:
    """The sentences under the headline figures (Markdown): the horizon in words, purchases and
    revenue, the acquisition budget, what a purchase is, and plain caveats."""
    cfg = analysis.config
    cur = cfg.currency
    tier_table, budget = analysis.tier_table, analysis.budget
    total = tier_table.loc["Total"]
    trunc = getattr(analysis, "left_truncation", None)
    budget_note = ""
    if trunc is not None and trunc.detected and not trunc.usable_cohort:
        budget_note = " (not reliable here: the log holds no cohort of genuinely new customers)"
    lines = [
        f"**The next {cfg.horizon:g} {cfg.unit_name}** after {analysis.observation_end}, for "
        f"{analysis.customers:,} customers. Value is margin ({cfg.margin:.0%}) on expected spend, discounted at "
        f"{cfg.discount_rate:.0%} a year"
        + (f", net of a cost to serve of {cfg.cost_to_serve:g} per {cfg.unit_name[:-1]} while active"
           if cfg.cost_to_serve else "") + ".",
        "",
        f"* **Expected purchases**: {total['expected_purchases']:,.0f}, worth "
        f"{_money(total['expected_revenue'], cur)} in revenue. A purchase is a customer's buying day: "
        "everything a customer bought on one calendar day counts as one purchase.",
        f"* **Churn**: about {total['expected_gone_now']:,.0f} customers are probably gone already; of the "
        f"{total['expected_active_now']:,.0f} still active, about {total['expected_to_leave']:,.0f} are expected to "
        "leave during the horizon - the ones a retention effort can still reach.",
        f"* **Acquisition budget**: a comparable new customer is worth {_money(budget['budget'], cur)} "
        f"over the horizon (first purchase included) - the most to spend to win one and break even{budget_note}.",
    ]
    notes = plain_notes(analysis)
    if notes:
        lines.append("* **Read with care**: " + " ".join(notes))
    if trunc is not None and trunc.detected:
        lines.append("* **Customers from before the log**: see the note above.")
    return "\n".join(lines)


def assumptions_box(cfg: Any) -> str:
    """The settings behind every value (HTML), each marked when it is a default rather than the
    user's choice."""
    defaults = {f.name: f.default for f in ReportConfig.__dataclass_fields__.values()}
    unit = cfg.unit_name
    rows = [
        ("Horizon", f"{cfg.horizon:g} {unit}", cfg.horizon == defaults["horizon"]),
        ("Margin (share of revenue that is profit)", f"{cfg.margin:.0%}", cfg.margin == defaults["margin"]),
        ("Discount rate", f"{cfg.discount_rate:.0%} a year", cfg.discount_rate == defaults["discount_rate"]),
        ("Cost to serve", f"{cfg.cost_to_serve:g} per {unit[:-1]} while active" if cfg.cost_to_serve else "none",
         cfg.cost_to_serve == defaults["cost_to_serve"]),
        ("Currency", cfg.currency or "not given", cfg.currency_is_default),
        ("Time unit", unit, cfg.time_unit == defaults["time_unit"]),
    ]
    body = "".join(
        f"<tr><th scope=\"row\">{_h(name)}</th><td>{_h(value)}</td><td>"
        + ('<span class="default">default - set it to your own</span>' if is_default else "yours")
        + "</td></tr>" for name, value, is_default in rows)
    return ('<div class="assumptions"><table><caption>Assumptions behind every value</caption>'
            f"<tbody>{body}</tbody></table></div>")


def format_tier_overview(tier_table: pd.DataFrame, *, clv: str = "CLV", money: str = ""):
    """The short tier table of the first screen: customers, value and its share, purchases and churn."""
    t = tier_table
    out = pd.DataFrame({
        "Customers": t["customers"].to_numpy(), f"Value ({clv}){money}": t["total_clv"].to_numpy(),
        "Share of value": t["share_of_clv"].to_numpy(), "Expected purchases": t["expected_purchases"].to_numpy(),
        "Probably gone now": t["expected_gone_now"].to_numpy(),
        "Expected to leave": t["expected_to_leave"].to_numpy(),
    }, index=t.index.astype(str).rename(None))
    out.columns.name = "Tier"
    return _inert(out.style).format({"Customers": "{:,.0f}", f"Value ({clv}){money}": "{:,.0f}",
                                     "Share of value": "{:.0%}", "Expected purchases": "{:,.0f}",
                                     "Probably gone now": "{:,.0f}", "Expected to leave": "{:,.0f}"},
                                    na_rep="", escape="html")


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


def md_escape(text: Any) -> str:
    """User text made inert inside Markdown: HTML escaped (no tags, no scripts) and Markdown's
    own syntax characters backslash-escaped (no links, images or emphasis)."""
    import html as _html

    escaped = _MD_SPECIAL.sub(r"\\\1", _html.escape(str(text), quote=True))
    # a bare address ("https://...", "www.") would be turned into a live link by the Markdown
    # renderer; as character references the colon and the dot read the same but link nothing
    return escaped.replace(":", "&#58;").replace("www\\.", "www&#46;").replace("@", "&#64;")


def report_heading(cfg: ReportConfig) -> str:
    """The report's title and data source (Markdown), with user text escaped."""
    return f"# {md_escape(cfg.title)}\n\nData: {md_escape(cfg.data_label)}."


#: the parameters of each family that carry dropout (churn)
_DROPOUT_PARAMS = {"a", "b", "s", "beta"}


def identification_notes(model: Any) -> list[str]:
    """Plain sentences on what the data could not pin down: a fit that ran to a limiting model
    (said as that model), and parameters with standard errors so large that the figures
    resting on them are uncertain (churn, when they are the dropout parameters)."""
    info = getattr(model, "fit_info_", None) or {}
    notes = [str(t) for t in info.get("limits", [])]
    weak = model.poorly_identified_ if hasattr(model, "poorly_identified_") else []
    if weak:
        names = ", ".join(weak)
        what = ("the churn figures rest on them" if set(weak) & _DROPOUT_PARAMS
                else "the purchase-rate figures rest on them")
        notes.append(f"The data pin down {names} only poorly (standard errors larger than the estimates "
                     f"themselves); {what}, so read them as rough.")
    if info.get("flat_ridge"):
        notes.append("The fit ended on a flat ridge of the likelihood: other parameter values fit the data "
                     "equally well.")
    return notes


def model_paragraph(analysis: Any) -> str:
    """Which purchase model the forecast uses, why, and its reference (Markdown)."""
    model = analysis.model
    if analysis.selection is None:
        lead = ("There was no backtest in this run (no calibration window), so the model is BG/NBD and the "
                "intervals do not include the model's own error. ")
    else:
        lead = ""
    text = lead + (f"Purchases and dropout follow the **{model._long_name}** model ({model._reference.rstrip('.')}); "
                   "spend per purchase the Gamma-Gamma model (Fader & Hardie 2013). ")
    if analysis.selection is not None:
        text += analysis.selection.reason + " "
    notes = identification_notes(model)
    if notes:
        text += " ".join(notes) + " "
    return text + "Parameter intervals below are 95% and computed on the log scale."


def backtest_reading(analysis: Any) -> str:
    """The backtest in plain words (Markdown): what was predicted, what happened, which way the
    model erred, and what that means for the forecast."""
    sc, err = analysis.scorecard, analysis.backtest_error
    m = sc.metrics
    name = sc.info.get("model", m.index[0])
    row = m.loc[name]
    t = err.loc["Total"]
    direction = "fewer" if row["aggregate_pct_error"] < 0 else "more"
    lines = [
        f"**How to read this.** The model was fitted to the data up to {md_escape(analysis.calibration_end)} "
        f"and asked to predict the {sc.info['holdout_length']:g} {UNIT_NAMES[sc.info['time_unit']]} "
        f"that followed. It predicted {row['predicted_purchases']:,.0f} purchases; customers made "
        f"{row['actual_purchases']:,.0f}, so it predicted {abs(row['aggregate_pct_error']):.1f}% {direction} "
        f"than happened (revenue: {t['revenue_pct_error']:+.1f}%).",
        f"Customer by customer it was off by {row['mae']:.2f} purchases on average, against "
        f"{m.loc['naive rate', 'mae']:.2f} for a naive rate model"
        + (f" and {m.loc['gradient boosting', 'mae']:.2f} for gradient boosting" if "gradient boosting" in m.index else "")
        + f". Ranking customers by its predictions puts {sc.deciles.query('model == @name and decile == 1')['share_of_actual'].iloc[0]:.0%} "
        "of the actual purchases in the top tenth (the decile table at the end of this section).",
        f"Per tier its revenue was off by a typical {100 * err.attrs['sigma_revenue']:.0f}%; the intervals in this "
        "report are widened by errors of that size, so they are as wide as the model's own track record says "
        "they should be.",
    ]
    if "spearman" in m.columns and "naive rate" in m.index and pd.notna(m.loc["naive rate", "spearman"]):
        mine, naive = float(row["spearman"]), float(m.loc["naive rate", "spearman"])
        if naive >= mine - 0.01:
            lines.append(
                f"**Ranking customers**: a naive rate model (each customer's own past purchase rate) ranks customers "
                f"as well as this model or better (Spearman {naive:.3f} against {mine:.3f}). The model's strength is "
                "in the totals, churn and value per tier; for ordering individual customers, treat its ranking as "
                "no better than their past rate.")
    for note in sc.info.get("notes", []):
        lines.append(f"*{md_escape(note)}*")
    return "\n\n".join(lines)


_METRIC_LABELS = {
    "predicted_purchases": "Predicted purchases", "actual_purchases": "Actual purchases",
    "aggregate_pct_error": "Total error %", "mse": "MSE per customer", "mae": "MAE per customer", "rmse": "RMSE per customer",
    "auc": "AUC (any purchase)", "brier": "Brier score", "gini": "Normalised Gini", "spearman": "Spearman",
    "spend_mae": "Spend MAE (buyers)", "log_likelihood": "Log-likelihood", "bic": "BIC",
    "fit_seconds": "Fit time (s)", "chosen": "Chosen",
}


def _labelled(df: pd.DataFrame, index_label: str) -> pd.DataFrame:
    out = df.rename(columns=_METRIC_LABELS)
    out.index = out.index.astype(str)
    out.index.name = None
    out.columns.name = index_label
    return out


def _inert(styler: Any) -> Any:
    """A Styler whose row and column labels are shown as text: customer ids, currency labels and
    other user text never become markup (pandas' Styler does not escape by default)."""
    return styler.format_index(escape="html", axis=0).format_index(escape="html", axis=1)


def format_selection(selection: Any):
    """The model comparison of the backtest as a formatted table."""
    t = selection.table.drop(columns=[c for c in ("fit_seconds",) if c in selection.table.columns])
    t = _labelled(t, "Model")
    t["Chosen"] = t["Chosen"].map({True: "yes", False: ""})
    return _inert(t.style).set_caption("Purchase models compared on the backtest holdout").format({"MSE per customer": "{:.4f}", "MAE per customer": "{:.3f}", "RMSE per customer": "{:.3f}", "Total error %": "{:+.1f}",
                           "Predicted purchases": "{:,.0f}", "Actual purchases": "{:,.0f}",
                           "Log-likelihood": "{:,.1f}", "BIC": "{:,.1f}"}, na_rep="", escape="html")


def format_scorecard(scorecard: Any):
    """The backtest metrics of the model and the baselines as a formatted table."""
    t = _labelled(scorecard.metrics, "Model")
    fmt = {c: "{:.3f}" for c in t.columns}
    fmt.update({"Predicted purchases": "{:,.0f}", "Actual purchases": "{:,.0f}", "Total error %": "{:+.1f}",
                "Spend MAE (buyers)": "{:,.2f}"})
    return _inert(t.style).set_caption("The chosen model against the baselines on the backtest holdout").format(fmt, na_rep="n/a", escape="html")


def format_backtest_tiers(error: pd.DataFrame):
    """Predicted vs actual purchases and revenue per tier in the backtest."""
    t = error[["predicted_purchases", "actual_purchases", "purchases_pct_error", "predicted_revenue",
               "actual_revenue", "revenue_pct_error"]].rename(columns={
        "predicted_purchases": "Predicted purchases", "actual_purchases": "Actual purchases",
        "purchases_pct_error": "Purchases error %", "predicted_revenue": "Predicted revenue",
        "actual_revenue": "Actual revenue", "revenue_pct_error": "Revenue error %"})
    t.index.name = None
    t.columns.name = "Tier"
    return _inert(t.style).set_caption("Backtest by tier: what the model predicted and what happened").format({"Predicted purchases": "{:,.0f}", "Actual purchases": "{:,.0f}", "Purchases error %": "{:+.1f}",
                           "Predicted revenue": "{:,.0f}", "Actual revenue": "{:,.0f}", "Revenue error %": "{:+.1f}"},
                          na_rep="n/a", escape="html")


def format_deciles(deciles: pd.DataFrame):
    """Decile table: customers in ten groups by predicted purchases, per model."""
    wide = deciles.pivot(index="decile", columns="model", values=["mean_predicted", "mean_actual", "share_of_actual"])
    wide.columns = [f"{m}: " + {"mean_predicted": "predicted", "mean_actual": "actual",
                                "share_of_actual": "share of actual"}[q] for q, m in wide.columns]
    wide.index.name = None
    wide.columns.name = "Decile (1 = highest predicted)"
    return _inert(wide.style).set_caption("Customers in ten equal groups by predicted purchases: mean predicted and actual "
                                  "purchases, and each group's share of all actual purchases").format(
        {c: ("{:.1%}" if "share" in c else "{:.2f}") for c in wide.columns}, escape="html")


def format_at_risk(at_risk: pd.DataFrame, top: int = 50, *, unit: str = "weeks", money: str = ""):
    """The at-risk list as a formatted table, sortable by any column and filterable in the page
    (by the report page's own script; no external one)."""
    since = f"{unit.capitalize()} since last purchase"
    spend = "Spend so far" + money
    t = at_risk.head(top).rename(columns={
        "tier": "Tier", "last_purchase": "Last purchase", "time_since_last_purchase": since,
        "purchases_so_far": "Purchases so far", "spend_so_far": spend, "p_alive": "Chance still active",
        "p_leave_in_horizon_if_active": "Chance of leaving in the horizon", "clv": "Expected value" + money,
        "value_if_retained": "Value if retained" + money, "value_at_stake": "Value at stake" + money})
    t.index = t.index.astype(str)
    t.columns.name = "Customer"
    t.index.name = None
    fmt = {since: "{:,.1f}", "Purchases so far": "{:,.0f}", spend: "{:,.2f}", "Chance still active": "{:.0%}",
           "Chance of leaving in the horizon": "{:.0%}", "Expected value" + money: "{:,.2f}",
           "Value if retained" + money: "{:,.2f}", "Value at stake" + money: "{:,.2f}"}
    styler = _inert(t.style).format({k: v for k, v in fmt.items() if k in t.columns}, escape="html")
    return styler.set_table_attributes('class="sortable filterable"')


def md_since(since: Any) -> str:
    """The since-the-last-run section's text (Markdown)."""
    if since is None:
        return "No comparison with an earlier run."
    return since.summary()


def format_migration(migration: pd.DataFrame):
    """Customers by tier then (rows) and tier now (columns)."""
    t = migration.copy()
    t.index = [str(i) for i in t.index]
    t.columns = [str(c) for c in t.columns]
    t.index.name, t.columns.name = None, "Tier then / now"
    return _inert(t.style).set_caption("Tier migration: customers by their tier in the earlier run (rows) and now "
                                       "(columns); 'new' = first seen since").format("{:,.0f}", escape="html")


def format_since_accuracy(accuracy: pd.DataFrame):
    """The earlier run's forecast for the elapsed period against what happened, per earlier tier."""
    t = accuracy.rename(columns={"predicted_purchases": "Predicted purchases", "actual_purchases": "Actual purchases",
                                 "purchases_pct_error": "Purchases error %", "predicted_revenue": "Predicted revenue",
                                 "actual_revenue": "Actual revenue", "revenue_pct_error": "Revenue error %"})
    t.index = [str(i) for i in t.index]
    t.index.name, t.columns.name = None, "Tier then"
    return _inert(t.style).set_caption("The earlier run's forecast for the time since, against what happened").format(
        {"Predicted purchases": "{:,.0f}", "Actual purchases": "{:,.0f}", "Purchases error %": "{:+.1f}",
         "Predicted revenue": "{:,.0f}", "Actual revenue": "{:,.0f}", "Revenue error %": "{:+.1f}"}, escape="html")


def format_tier_table(tier_table: pd.DataFrame, level: float = 0.90, *, clv: str = "CLV", money: str = ""):
    """The tier table as a readable, formatted table for the report (a pandas Styler).

    ``clv`` names the value with its horizon (e.g. "52-week CLV"), ``money`` labels amounts
    (e.g. " (USD)").
    """
    t = tier_table.copy()
    total, mean = f"Total {clv}{money}", f"Mean {clv}{money}"
    revenue = f"Expected revenue{money}"
    cols = {
        "customers": "Customers", "share_of_customers": "Share of customers",
        "total_clv": total, "share_of_clv": "Share of value", "mean_clv": mean,
        "expected_purchases": "Expected purchases", "expected_revenue": revenue,
        "mean_churn_probability": "Gone now (mean P)", "mean_churn_by_horizon": "Gone by horizon end (mean P)",
        "expected_gone_now": "Probably gone now", "expected_to_leave": "Expected to leave in horizon",
        "share_of_active_leaving": "Of the active, leaving",
    }
    out = pd.DataFrame(index=t.index.astype(str).rename(None))
    out.columns.name = "Tier"
    for key, label in cols.items():
        out[label] = t[key].to_numpy()
    pct = f"{level:.0%}"
    if "total_clv_lower" in t.columns:
        for label, col in ((f"Total {clv} {pct} interval", "total_clv"), (f"Purchases {pct} interval", "expected_purchases"),
                           (f"Revenue {pct} interval", "expected_revenue")):
            out[label] = [f"{lo:,.0f} to {hi:,.0f}" for lo, hi in zip(t[f"{col}_lower"], t[f"{col}_upper"], strict=True)]
    fmt = {"Customers": "{:,.0f}", "Share of customers": "{:.1%}", total: "{:,.0f}", "Share of value": "{:.1%}",
           mean: "{:,.2f}", "Expected purchases": "{:,.0f}", revenue: "{:,.0f}",
           "Gone now (mean P)": "{:.1%}", "Gone by horizon end (mean P)": "{:.1%}",
           "Probably gone now": "{:,.0f}", "Expected to leave in horizon": "{:,.0f}", "Of the active, leaving": "{:.1%}"}
    return _inert(out.style).format(fmt, escape="html")


def format_what_if(what_if: pd.DataFrame):
    """The retention what-if as a formatted table."""
    out = pd.DataFrame(index=what_if.index.astype(str).rename(None), data={
        "CLV now": what_if["clv"].to_numpy(), "CLV if dropout fell": what_if["clv_what_if"].to_numpy(),
        "Change": what_if["change"].to_numpy(), "Change %": what_if["change_pct"].to_numpy() / 100,
        "Purchases now": what_if["expected_purchases"].to_numpy(),
        "Purchases if dropout fell": what_if["expected_purchases_what_if"].to_numpy(),
    })
    out.columns.name = "Tier"
    return _inert(out.style).format({"CLV now": "{:,.0f}", "CLV if dropout fell": "{:,.0f}", "Change": "{:+,.0f}",
                             "Change %": "{:+.2%}", "Purchases now": "{:,.0f}", "Purchases if dropout fell": "{:,.0f}"}, escape="html")


def data_overview(rfm: pd.DataFrame) -> pd.DataFrame:
    """A few facts about the customer base in the RFM table."""
    repeat = rfm["frequency"] > 0
    return overview_table(rfm.attrs.get("time_unit", ""), rfm.attrs.get("observation_end", "n/a"), len(rfm),
                          int(repeat.sum()), int(rfm["frequency"].sum()), float(rfm["T"].mean()),
                          float(rfm["frequency"].mean()),
                          float(rfm.loc[repeat, "monetary_value"].mean()) if repeat.any() else None)


def scoring_note(analysis: Any) -> str:
    """One sentence (Markdown) when the customer table stayed in the engine; empty otherwise."""
    if getattr(analysis, "scoring", "memory") != "engine":
        return ""
    where = "Spark" if analysis.config.engine == "spark" else "DuckDB"
    shown = (f"figures of individual customers show a random sample of {len(analysis.rfm):,}"
             if len(analysis.rfm) < analysis.customers else "figures of individual customers show all of them")
    return (f"The {analysis.customers:,} customers were scored inside {where} (the customer table never came "
            f"into this process): the tables above and below cover everyone; {shown}. The per-customer "
            "forecast is in `forecast.parquet/` beside this report, without per-customer intervals.")


def overview_table(time_unit: str, observation_end: str, customers: int, repeat_buyers: int,
                   repeat_purchases: int, mean_T: float, mean_frequency: float,
                   mean_spend: float | None) -> pd.DataFrame:
    """The data overview's table from its numbers (in memory or aggregated by an engine)."""
    unit = UNIT_NAMES.get(time_unit, "time units")
    facts = {
        "Customers": f"{customers:,}",
        "Observation ends": observation_end,
        "Repeat buyers": f"{repeat_buyers:,} ({repeat_buyers / customers:.0%})",
        "Repeat purchases": f"{repeat_purchases:,}",
        f"Mean time observed ({unit})": f"{mean_T:.1f}",
        "Mean repeat purchases per customer": f"{mean_frequency:.2f}",
        "Mean spend per repeat purchase (repeat buyers)": f"{mean_spend:,.2f}" if mean_spend is not None else "n/a",
    }
    out = pd.DataFrame({"Value": list(facts.values())}, index=pd.Index(list(facts), name=None))
    out.columns.name = "Fact"
    return out


# ------------------------------------------------------------------ running templates
def template_path(name_or_path: str | os.PathLike | None) -> Path:
    """A template by name (``clv_report``, ``model_validation``, ``explore``) or by path.

    Names resolve only to the templates installed with clvmodels, never to a file of the same
    name in the current folder: a stray ``notebooks/clv_report.ipynb`` is not run in place of
    the real one. A path runs that notebook's code as it is - only pass templates you trust.
    """
    if name_or_path is None:
        name_or_path = "clv_report"
    if str(name_or_path) in TEMPLATES:
        candidate = Path(str(resources.files("clvmodels") / "templates" / TEMPLATES[str(name_or_path)]))
        if candidate.exists():
            return candidate
        raise ReportError(f"The installed template {name_or_path!r} is missing ({candidate}); reinstall clvmodels.")
    path = Path(name_or_path)
    if not path.exists():
        raise ParameterError(
            f"Template {str(path)!r} does not exist; give one of {sorted(TEMPLATES)} or the path of a notebook."
        )
    return path


def _template_defaults(path: Path) -> dict[str, Any]:
    import papermill as pm

    declared = pm.inspect_notebook(str(path))
    defaults = {}
    for name, info in declared.items():
        try:
            defaults[name] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            defaults[name] = info["default"]
    return defaults


def template_parameters(template: str | os.PathLike | None = None) -> dict[str, Any]:
    """The parameters a template declares, with their default values."""
    return _template_defaults(template_path(template))


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
    return s[:60] or "report"


_STYLE = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; color: #1f2d3d;
       max-width: 1100px; margin: 2em auto; padding: 0 1.5em; line-height: 1.45; }
h1 { border-bottom: 3px solid #1f2d3d; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ccd; padding-bottom: .15em; }
table { border-collapse: collapse; margin: .8em 0; font-size: 13px; }
th, td { border-bottom: 1px solid #dde; padding: 4px 10px; text-align: right; }
th { background: #f3f5f8; white-space: nowrap; }
td { white-space: nowrap; }
img { max-width: 100%; height: auto; }
/* wide tables scroll in their own box instead of widening the page */
.jp-OutputArea-output, .output_html { overflow-x: auto; max-width: 100%; }
table.sortable th { cursor: pointer; }
table.sortable th[aria-sort=ascending]::after { content: " \\25B2"; }
table.sortable th[aria-sort=descending]::after { content: " \\25BC"; }
.tiles { display: flex; flex-wrap: wrap; gap: 12px; margin: 1em 0; }
.tile { flex: 1 1 220px; border: 1px solid #d8dee8; border-radius: 8px; padding: 12px 16px; background: #f8fafc; }
.tile-label { font-size: 13px; color: #4a5568; }
.tile-big { font-size: 28px; font-weight: 600; margin: .15em 0; white-space: nowrap; }
.tile-small { font-size: 13px; color: #4a5568; }
.pyramid { margin: 1.2em auto; max-width: 720px; }
.pyramid .band { margin: 4px auto; padding: 7px 6px; text-align: center; color: #fff; border-radius: 4px;
                 font-size: 14px; box-sizing: border-box; }
.band-platinum { background: #7f8c8d; } .band-gold { background: #c9a100; }
.band-iron { background: #5d6d7e; } .band-lead { background: #2c3e50; }
.assumptions table { font-size: 13px; } .assumptions caption { text-align: left; font-weight: 600; }
.assumptions th { text-align: left; background: none; } .assumptions td { text-align: left; }
.default { color: #9a5b00; font-style: italic; }
input.table-filter { margin: .4em 0; padding: 4px 8px; font-size: 14px; width: 18em; max-width: 90%; }
@media (max-width: 640px) {
  body { margin: 1em auto; padding: 0 .7em; font-size: 15px; }
  table { font-size: 12px; }
  th, td { padding: 3px 6px; }
}
@media print {
  body { max-width: none; margin: 0; }
  .jp-OutputArea-output, .output_html { overflow: visible; }
  table { font-size: 10px; page-break-inside: auto; }
  tr, img { page-break-inside: avoid; }
  input.table-filter { display: none; }
}
.jp-OutputArea-output pre, pre { background: #f7f7f9; padding: .5em; overflow-x: auto; }
.jp-InputPrompt, .jp-OutputPrompt { display: none; }
footer { margin-top: 3em; color: #778; font-size: 12px; }
"""


#: the page's own script (inline, no external resource): tables marked "sortable" sort by a
#: click on a column heading, tables marked "filterable" get a box that hides rows without the
#: typed text; it reads cell text only and never inserts markup
_SCRIPT = """
(function () {
  function value(cell) {
    var t = cell.textContent.trim();
    var n = parseFloat(t.replace(/[^0-9.eE+-]/g, ''));
    return /^[^0-9-]*-?[0-9][0-9,]*(\\.[0-9]+)?%?$/.test(t.replace(/\\s/g, '')) && !isNaN(n) ? n : t.toLowerCase();
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    var heads = table.querySelectorAll('thead tr:last-child th');
    heads.forEach(function (th, col) {
      th.addEventListener('click', function () {
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var asc = th.getAttribute('aria-sort') !== 'ascending';
        heads.forEach(function (h) { h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
        rows.sort(function (a, b) {
          var x = value(a.cells[col]), y = value(b.cells[col]);
          if (typeof x === typeof y) { return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1); }
          return typeof x === 'number' ? -1 : 1;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  document.querySelectorAll('table.filterable').forEach(function (table) {
    var box = document.createElement('input');
    box.type = 'search';
    box.className = 'table-filter';
    box.placeholder = 'Filter rows (customer, tier ...)';
    box.setAttribute('aria-label', 'Filter the rows of the table below');
    box.addEventListener('input', function () {
      var q = box.value.toLowerCase();
      Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
        r.style.display = r.textContent.toLowerCase().indexOf(q) >= 0 ? '' : 'none';
      });
    });
    table.parentNode.insertBefore(box, table);
  });
})();
"""


def _export_html(notebook_path: Path, html_path: Path, title: str = "Report") -> None:
    """Export without code and without any external resource: nbconvert's ``basic`` template
    (body only; the full templates load require.js, MathJax and mermaid from CDNs) inside our
    own page with inline CSS; figures are already base64 PNG in the notebook."""
    import html as _html

    import nbformat
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    from clvmodels import __version__

    c = Config()
    c.TagRemovePreprocessor.enabled = True
    c.TagRemovePreprocessor.remove_cell_tags = {"hide", "parameters", "injected-parameters"}
    c.HTMLExporter.exclude_input = True
    c.HTMLExporter.exclude_input_prompt = True
    c.HTMLExporter.exclude_output_prompt = True
    c.HTMLExporter.anchor_link_text = ""  # no pilcrow after every heading
    exporter = HTMLExporter(config=c, template_name="basic")
    nb = nbformat.read(str(notebook_path), as_version=4)
    body, _ = exporter.from_notebook_node(nb)
    body = _strip_external(body)
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{_html.escape(title)}</title><style>{_STYLE}</style></head><body>\n{body}\n"
        f"<footer>Generated {stamp} by clvmodels {__version__}.</footer><script>{_SCRIPT}</script></body></html>\n"
    )
    html_path.write_text(page, encoding="utf-8")


_EXTERNAL = re.compile(
    r"<script[^>]*\ssrc=[\"']https?://[^>]*>\s*</script>|<link[^>]*\shref=[\"']https?://[^>]*>", re.I
)


def _strip_external(body: str) -> str:
    """Drop any script or stylesheet loaded from the network, so the file opens offline."""
    return _EXTERNAL.sub("", body)


def _cell_errors(nb: Any) -> list[str]:
    errors = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                errors.append(f"{out.get('ename')}: {out.get('evalue')}")
    return errors


def run_report(
    template: str | os.PathLike | None = None,
    parameters: Mapping[str, Any] | None = None,
    output_dir: str | os.PathLike = "reports",
    *,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Run a report template and publish it as a new folder under ``output_dir``.

    Parameters are validated before any work (unknown names and bad values raise
    :class:`ParameterError`). The notebook runs with papermill in a temporary folder inside
    ``output_dir``; on success the HTML export (no code, figures embedded, no external URLs),
    the executed notebook, the forecast, tier table, models and parameters are moved into place
    with one rename, so a folder that exists is complete. On failure nothing that looks finished
    is left: the executed notebook is kept in a ``*-FAILED`` folder for debugging and
    :class:`ReportError` carries the failing cell's error.

    Returns
    -------
    Path
        The new report folder (``<slug of title>-<timestamp>``); the HTML is ``report.html``.
    """
    import nbformat
    import papermill as pm

    from clvmodels.transactions import is_remote

    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    path = template_path(template)
    defaults = _template_defaults(path)
    given = dict(parameters or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ParameterError(f"Unknown parameter(s) {unknown} for template {path.name}; it takes {sorted(defaults)}.")
    merged = {**defaults, **given}
    if set(merged) <= set(ReportConfig.__dataclass_fields__):
        title = validate_parameters(merged).title
    else:
        title = str(merged.get("title", path.stem))
    root = Path(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    removed = clean_stale_runs(root)
    if removed:
        say(f"[clvmodels] removed {len(removed)} unfinished run folder(s) of processes that no longer exist")
    name = f"{_slug(title)}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    work = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=root))
    (work / _OWNER_FILE).write_text(owner_record())
    executed = work / "report.ipynb"
    run_params = dict(given)
    if "output_dir" in defaults:
        run_params["output_dir"] = str(work.resolve())
    # the kernel runs in the run's own folder, not the caller's: IPython puts its working folder
    # first on sys.path, so a clvmodels.py (or pandas.py ...) lying in the caller's folder would
    # be imported and run by the report; relative input paths are made absolute for it
    given_input = str(run_params.get("input_path") or "")
    if given_input and not is_remote(given_input) and not Path(given_input).is_absolute():
        run_params["input_path"] = str(Path.cwd() / given_input)
    say(f"[clvmodels] running {path.name} into {root}")
    failure: str | None = None
    try:
        try:
            with _child_stderr_to(work / "kernel.log"):
                pm.execute_notebook(str(path), str(executed), parameters=run_params, progress_bar=progress,
                                    cwd=str(work.resolve()), kernel_name="python3")
        except pm.PapermillExecutionError as exc:
            failure = f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
        except Exception as exc:  # kernel died, template unreadable, disk full ...
            failure = f"{type(exc).__name__}: {exc}"
        if failure is None:
            # papermill can return normally with errors recorded in the notebook; trust the outputs
            try:
                errors = _cell_errors(nbformat.read(str(executed), as_version=4)) if executed.exists() else ["no executed notebook"]
            except Exception as exc:
                errors = [f"executed notebook unreadable: {type(exc).__name__}: {exc}"]
            if errors:
                failure = errors[0]
        if failure is None:
            try:
                say("[clvmodels] exporting HTML")
                _export_html(executed, work / "report.html", title)
                if not (work / "parameters.json").exists():
                    (work / "parameters.json").write_text(json.dumps(merged, indent=2, default=str))
            except Exception as exc:
                failure = f"HTML export failed: {type(exc).__name__}: {exc}"
    except KeyboardInterrupt:
        failure = "interrupted (Ctrl-C or SIGINT) before the report was finished"
    if failure is not None:
        failed = _keep_failed(work, root, name, failure)
        where = f"Executed notebook kept for debugging: {failed / 'report.ipynb'}" if failed else (
            "The unfinished run could not be kept (the disk may be full); nothing was published.")
        raise ReportError(f"Report {path.name} failed: {failure}\n{where}")
    (work / _OWNER_FILE).unlink(missing_ok=True)
    final = _publish(work, root, name)
    say(f"[clvmodels] report written: {final / 'report.html'}")
    return final


_OWNER_FILE = ".clvmodels-run-owner"
_OWNER_FORMAT = "clvmodels-run-owner/1"


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _process_start(pid: int) -> str:
    """The start time of process ``pid`` (clock ticks since boot, from /proc), so a reused pid
    is not mistaken for the run's owner; "" where /proc does not say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def owner_record() -> str:
    """Who owns a run folder: host, pid namespace, pid and its start time (JSON)."""
    import socket

    pid = os.getpid()
    return json.dumps({"format": _OWNER_FORMAT, "host": socket.gethostname(), "pid_namespace": _pid_namespace(),
                       "pid": pid, "start": _process_start(pid)})


def _owner_gone(marker: Path) -> bool:
    """Whether the run recorded in ``marker`` provably ended: written by this project, on this
    host and in this pid namespace, and its process no longer exists (or the pid now belongs to
    a process that started at another time). Anything else - another host or container sharing
    the folder, a marker we cannot read - counts as alive."""
    import socket

    try:
        if marker.is_symlink():
            return False
        rec = json.loads(marker.read_text())
        if not isinstance(rec, dict) or rec.get("format") != _OWNER_FORMAT:
            return False
        if rec.get("host") != socket.gethostname() or rec.get("pid_namespace") != _pid_namespace():
            return False
        pid = int(rec["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if not _pid_alive(pid):
        return True
    started = str(rec.get("start") or "")
    return bool(started) and _process_start(pid) not in ("", started)


@contextlib.contextmanager
def _child_stderr_to(path: Path):
    """Send what child processes (the Jupyter kernel) write to stderr into ``path``.

    The kernel inherits file descriptor 2: its start-up warnings and, on Ctrl-C, its own
    KeyboardInterrupt traceback would otherwise land on the user's terminal. This process's
    messages and the progress bar still reach the terminal through a duplicate of the old fd 2.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (embedded interpreters)
        yield
        return
    log = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    old = sys.stderr
    real = getattr(old, "fileno", None)
    try:
        uses_fd2 = real is not None and real() == 2
    except (OSError, ValueError, io.UnsupportedOperation):
        uses_fd2 = False
    try:
        os.dup2(log, 2)
        if uses_fd2:
            sys.stderr = open(saved, "w", buffering=1, closefd=False, encoding=getattr(old, "encoding", None) or "utf-8")
        yield
    finally:
        if uses_fd2:
            try:
                sys.stderr.flush()
            finally:
                sys.stderr = old
        os.dup2(saved, 2)
        os.close(saved)
        os.close(log)


def _readable(folder: Path) -> None:
    """Report folders are made by mkdtemp with mode 0700; give them the usual permissions
    (what the umask allows for a new folder), so others who may read reports/ can open them."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for f in folder.iterdir():
        if f.is_file():
            f.chmod(0o666 & ~umask)


def _publish(work: Path, root: Path, name: str) -> Path:
    """Move the finished run to ``root/name`` (or ``name-2``, ``name-3`` ... when taken, e.g. by a
    run with the same title finishing in the same second): one rename, never over another run."""
    _readable(work)
    for i in range(1, 10_000):
        final = root / (name if i == 1 else f"{name}-{i}")
        # lexists: a name taken by anything, a dangling symbolic link included, is taken
        if os.path.lexists(final) or os.path.lexists(root / f"{final.name}-FAILED"):
            continue
        try:
            os.rename(work, final)  # fails if another run took the name in between
            return final
        except OSError:
            if not os.path.lexists(final):
                raise
    raise ReportError(f"No free report folder name for {name!r} in {root}.")


def _keep_failed(work: Path, root: Path, name: str, failure: str) -> Path | None:
    """Keep an unfinished run as ``name-FAILED`` with FAILED.txt; never raises (it runs when the
    disk may be full), returns None when even that was impossible and removes the temp folder."""
    import shutil

    try:
        (work / _OWNER_FILE).unlink(missing_ok=True)
        (work / "FAILED.txt").write_text(f"This report run failed and is incomplete.\n{failure}\n")
    except OSError:
        pass
    for i in range(1, 10_000):
        failed = root / (f"{name}-FAILED" if i == 1 else f"{name}-{i}-FAILED")
        if os.path.lexists(failed):
            continue
        try:
            os.rename(work, failed)
            return failed
        except OSError:
            if os.path.lexists(failed):
                continue
            break
    shutil.rmtree(work, ignore_errors=True)
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_runs(root: str | os.PathLike) -> list[Path]:
    """Remove the hidden ``.*.tmp`` run folders under ``root`` that this project made and whose
    run provably ended (killed with SIGKILL or by a power cut): each carries an owner record
    (host, pid namespace, pid and its start time) and is removed only when that process is gone
    on this host and namespace. Folders without the record (a user's own ``.notes.tmp``), of
    another host or container, or symbolic links are never touched."""
    import shutil

    removed = []
    for folder in Path(root).glob(".*.tmp"):
        if folder.is_symlink() or not folder.is_dir():
            continue
        if not _owner_gone(folder / _OWNER_FILE):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


