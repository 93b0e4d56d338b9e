"""Spark: the Ibis backend on the active Spark session (started here in local mode or on a
cluster when there is none), its settings checked before a JVM starts, and :class:`SparkEngine`,
Spark behind the :class:`clvmodels.engine.Engine` protocol. pyspark is an optional dependency:
it is imported only when Spark is used."""

from __future__ import annotations

import datetime
import importlib.util
import os
import re
import socket
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd

from clvmodels.engine._core import engine_error_text, quiet_engine
from clvmodels.engine._paths import spark_literal
from clvmodels.exceptions import DataValidationError, ParameterError

_spark_lock = threading.Lock()
_spark_backend: Any = None


def spark_available() -> bool:
    """Whether pyspark (the ``spark`` extra) is installed."""
    return importlib.util.find_spec("pyspark") is not None


def spark_connection(master: str = "", conf: dict[str, Any] | None = None) -> Any:
    """The Ibis backend on the active Spark session, started here if there is none.

    An already running session (``spark`` in a Databricks or EMR notebook, or one a script
    built) is used as it is and ``master``/``conf`` are ignored. Otherwise a session is built
    with ``master`` (empty: ``$SPARK_MASTER``, else what ``spark-submit`` or
    ``spark-defaults.conf`` set, else ``local[*]``) and ``conf`` (Spark settings, e.g.
    ``{"spark.executor.memory": "8g"}``). A started session logs only errors and shows no
    progress bars.
    """
    global _spark_backend
    if not spark_available():
            raise ParameterError(
            "engine='spark' needs pyspark, which is not installed; install clvmodels[spark] "
            "(pip install 'clvmodels[spark]') or use engine='duckdb'."
        )
    from pyspark.sql import SparkSession

    with _spark_lock:
        session = SparkSession.getActiveSession()
        if session is None:
            builder = SparkSession.builder.appName("clvmodels")
            master = master or os.environ.get("SPARK_MASTER", "")
            if master:
                builder = builder.master(master)
            elif not _master_given_to_spark_submit():
                builder = builder.master("local[*]")
            check_spark_settings(master, conf or {})
            settings = {"spark.ui.showConsoleProgress": "false", **{k: str(v) for k, v in (conf or {}).items()}}
            for key, value in settings.items():
                builder = builder.config(key, value)
            try:
                session = builder.getOrCreate()
            except Exception as exc:  # the JVM refused to start or the master is out of reach
                text = engine_error_text(exc)
                raise ParameterError(
                    f"Spark did not start (master {master or 'local[*]'!r}, settings "
                    f"{ {k: v for k, v in settings.items() if k != 'spark.ui.showConsoleProgress'} }): {text}. "
                    "Check --spark-master (reachable, e.g. spark://host:7077 or local[2]) and the values of "
                    "--spark-conf (e.g. spark.driver.memory=8g), and that Java 17+ is installed.") from None
            session.sparkContext.setLogLevel("ERROR")
        if _spark_backend is None or _spark_backend._session is not session:
            with quiet_engine():
                _spark_backend = ibis.pyspark.connect(session)
        return _spark_backend


def _master_given_to_spark_submit() -> bool:
    """Whether ``spark-submit --master ...`` started this Python process."""
    return "--master" in os.environ.get("PYSPARK_SUBMIT_ARGS", "")


def spark_view(frame: Any, like: Any = None) -> Any:
    """A Spark DataFrame as an Ibis table (through a temporary view with a fresh name) of the
    backend of ``like`` - so the two can be joined - or of :func:`spark_connection`."""
    name = f"clvmodels_{uuid.uuid4().hex}"
    frame.createOrReplaceTempView(name)
    return (spark_connection() if like is None else like._find_backend()).table(name)


def spark_frame(expr: Any) -> Any:
    """The Spark DataFrame of an Ibis expression on the Spark backend (for Spark's own writers
    and caching)."""
    con = expr._find_backend()
    return con._session.sql(con.compile(expr))




_MEMORY_SIZE = re.compile(r"^[0-9]+\s*([kmgtp]b?|b)?$", re.IGNORECASE)
_MEMORY_KEYS = re.compile(r"^spark\.(driver|executor)\.(memory|memoryOverhead)$|^spark\.driver\.maxResultSize$")


def check_spark_settings(master: str, conf: dict[str, Any], *, timeout: float = 5.0) -> None:
    """Refuse in one line, before a JVM starts, what would fail slowly or obscurely inside Spark.

    * a memory setting that is not a size (``spark.driver.memory=abc``: the JVM would exit with
      "Could not create the Java Virtual Machine");
    * a ``spark://host:port`` master where nothing answers (Spark would retry for over a
      minute, then fail with pages of Java stack): the port is tried with a ``timeout``-second
      TCP connection, each host of a ``spark://h1:7077,h2:7077`` list in turn.
    """
    for key, value in conf.items():
        if _MEMORY_KEYS.match(str(key)) and not _MEMORY_SIZE.match(str(value).strip()):
            raise ParameterError(
                f"--spark-conf {key}={value!r} is not a memory size; give a number with a unit, "
                f"e.g. {key}=8g (k, m, g, t).")
    if not master.startswith("spark://"):
        return
    failures = []
    for address in master[len("spark://"):].split(","):
        host, sep, port = address.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ParameterError(f"--spark-master {master!r}: {address!r} is not host:port; "
                                 "give e.g. spark://host:7077.")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                return
        except OSError as exc:
            failures.append(f"{host}:{port} ({exc.strerror or type(exc).__name__})")
    raise ParameterError(
        f"--spark-master {master!r}: nothing answers at {', '.join(failures)}. Start the Spark master there, "
        "check the host name and port (the master's web page shows its spark:// address), or use "
        "local[2] to run on this machine.")


@ibis.udf.scalar.builtin
def try_to_timestamp(text: str, fmt: str) -> datetime.datetime:  # Spark's (null when no match)
    ...


@ibis.udf.scalar.builtin
def from_utc_timestamp(ts: datetime.datetime, zone: str) -> datetime.datetime:  # Spark's
    ...


# strptime directives and the Java DateTimeFormatter letters Spark parses them with: the short
# form where a separator follows (1 or 2 digits, as strptime accepts), the fixed width where
# another field follows directly (yyyyMMdd)
_JAVA_FIELDS = {
    "Y": ("yyyy", "yyyy"), "y": ("yy", "yy"), "m": ("M", "MM"), "d": ("d", "dd"),
    "H": ("H", "HH"), "I": ("h", "hh"), "M": ("m", "mm"), "S": ("s", "ss"),
    "f": ("SSSSSS", "SSSSSS"), "b": ("MMM", "MMM"), "B": ("MMMM", "MMMM"), "p": ("a", "a"),
    "j": ("D", "DDD"), "a": ("E", "E"), "A": ("EEEE", "EEEE"), "z": ("XX", "XX"),
}


def java_date_pattern(date_format: str) -> str:
    """The Spark (Java ``DateTimeFormatter``) pattern that parses what a ``strptime`` format does.

    >>> java_date_pattern("%d/%m/%Y"), java_date_pattern("%Y%m%d"), java_date_pattern("%Y-%m-%dT%H:%M")
    ('d/M/yyyy', 'yyyyMMdd', "yyyy-M-d'T'H:m")
    """
    out: list[str] = []
    literal: list[str] = []

    def flush() -> None:
        if not literal:
            return
        text = "".join(literal).replace("'", "''")
        # letters and brackets are pattern symbols in Java: quote any run of text that has one
        out.append(f"'{text}'" if any(c.isalpha() or c in "#{}[]" for c in text) else text)
        literal.clear()

    i = 0
    while i < len(date_format):
        c = date_format[i]
        if c != "%":
            literal.append(c)
            i += 1
            continue
        code = date_format[i + 1:i + 2]
        if code == "%":
            literal.append("%")
            i += 2
            continue
        if code not in _JAVA_FIELDS:
            raise DataValidationError(
                f"date_format {date_format!r}: the directive '%{code}' cannot be translated for "
                f"Spark; supported there: {', '.join('%' + k for k in _JAVA_FIELDS)} and literal text."
            )
        # a field that touches another field directly must have its full width (yyyyMMdd)
        fixed = (not literal and i > 0) or (
            date_format[i + 2:i + 3] == "%" and date_format[i + 3:i + 4] != "%")
        flush()
        out.append(_JAVA_FIELDS[code][1 if fixed else 0])
        i += 2
    flush()
    return "".join(out)


class SparkEngine:
    """Spark behind the :class:`clvmodels.engine.Engine` protocol (pyspark imported on first use)."""

    name = "spark"
    backend = "pyspark"
    label = "Spark"
    reads_remote = True
    sample_seed: int | None = None
    replaces_bad_text = True

    default = False
    distributed = True

    def available(self) -> None:
        """ParameterError when pyspark (the ``spark`` extra) is not installed."""
        if not spark_available():
            raise ParameterError("Parameter 'engine' is 'spark' but pyspark is not installed; "
                                 "pip install 'clvmodels[spark]', or use engine 'duckdb'.")

    def start(self, master: str = "", conf: dict[str, Any] | None = None) -> Any:
        """The session (see :func:`spark_connection`)."""
        return spark_connection(master, conf)

    def catalog_table(self, name: str) -> ir.Table:
        """A table of the Spark catalog (``table``, ``db.table`` or ``catalog.db.table``) as an
        Ibis table; :class:`DataValidationError` naming the tables there when it does not exist."""
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

    def read(self, path: Path | str, *, parquet: bool, csv_options: dict[str, Any] | None = None,
             date_column: str | None = None, id_column: str | None = None) -> ir.Table:
        """A file or folder read by Spark (on the cluster's workers), as an Ibis table: dates and
        ids of a CSV as text (parsed one explicit way, never guessed; 007 is not 7), as on DuckDB."""
        with quiet_engine():
            session = spark_connection()._session
            where = spark_literal(str(path))
            if parquet:
                return spark_view(session.read.parquet(where))
            options = {"header": True, "inferSchema": True, **(csv_options or {})}
            frame = session.read.csv(where, **options)
            text = {c for c in (date_column, id_column)
                    if c in frame.columns and frame.schema[c].dataType.typeName() != "string"}
            if text:
                from pyspark.sql.types import (  # optional dependency
                    StringType,
                    StructField,
                    StructType,
                )

                schema = StructType([StructField(f.name, StringType(), True) if f.name in text else f
                                     for f in frame.schema.fields])
                options.pop("inferSchema")
                frame = session.read.schema(schema).csv(where, **options)
            return spark_view(frame)

    def to_frame(self, expr: ir.Table) -> pd.DataFrame:
        """A result as pandas (collected by Spark)."""
        with quiet_engine():
            return expr._find_backend().execute(expr)

    def from_arrow(self, frame: Any, like: ir.Table | None = None) -> ir.Table:
        """A pandas DataFrame or Arrow table handed to the Spark session."""
        with quiet_engine():  # the same column conversions as for DuckDB
            arrow = ibis.memtable(frame).to_pyarrow() if isinstance(frame, pd.DataFrame) else frame
        session = (spark_connection() if like is None else like._find_backend())._session
        with quiet_engine():
            return spark_view(session.createDataFrame(arrow), like=like)

    def text_to_timestamp(self, text: ir.Column, date_format: str) -> ir.Column:
        return try_to_timestamp(text, java_date_pattern(date_format))

    def wall_clock(self, ts: ir.Column, zone: str) -> ir.Column:
        return from_utc_timestamp(ts, zone)

    def materialise(self, expr: ir.Table) -> tuple[ir.Table, Callable[[], None]]:
        """``expr`` computed once and persisted by Spark; returns it and its drop."""
        with quiet_engine():
            frame = spark_frame(expr).persist()
            view = spark_view(frame, like=expr)

        def drop() -> None:
            frame.unpersist()
            frame.sparkSession.catalog.dropTempView(view.get_name())

        return view, drop

    def upload(self, frame: pd.DataFrame, like: ir.Table | None = None) -> ir.Table:
        return self.from_arrow(frame, like=like)

    def write_partitioned(self, table: ir.Table, path: Path, by: str) -> None:
        with quiet_engine():
            spark_frame(table).write.partitionBy(by).parquet(str(path))

    def read_parquet(self, path: Path, like: ir.Table | None = None) -> ir.Table:
        session = (spark_connection() if like is None else like._find_backend())._session
        with quiet_engine():
            return spark_view(session.read.parquet(spark_literal(str(path))), like=like)


SPARK = SparkEngine()
