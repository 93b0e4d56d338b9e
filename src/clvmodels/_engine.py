"""The embedded DuckDB connection that runs Ibis expressions by default.

One connection per process, created on first use: in-process, no server, and it streams
Parquet and CSV files without loading them into pandas first.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import ibis

_lock = threading.Lock()
_connection: Any = None


def duckdb_connection() -> Any:
    """Return the process-wide Ibis DuckDB backend (created on first use)."""
    global _connection
    with _lock:
        if _connection is None:
            _connection = ibis.duckdb.connect()
            # no progress bar: it prints bars into logs and scripts' output. Inside Jupyter without
            # ipywidgets DuckDB refuses to change the setting (and shows no bar there anyway)
            with contextlib.suppress(Exception):
                _connection.raw_sql("SET enable_progress_bar = false")
            atexit.register(_close_duckdb)
        return _connection


def _close_duckdb() -> None:
    """Close the embedded DuckDB before the interpreter tears down (its worker threads then stop
    in order; seen once in a while after long queries: an abort at exit)."""
    global _connection
    with _lock:
        con, _connection = _connection, None
    if con is not None:
        try:
            con.disconnect()
        except Exception:
            pass


@contextlib.contextmanager
def quiet_engine() -> Iterator[None]:
    """Silence the deprecation chatter Ibis emits on new pandas/DuckDB releases, only here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ibis(\.|$)")
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"ibis(\.|$)")
        warnings.filterwarnings("ignore", message=r".*future\.infer_string.*")
        # pyspark 4.0 passes copy=False to pandas 3's astype when it returns results
        warnings.filterwarnings("ignore", message=r"The copy keyword is deprecated", module=r"pyspark(\.|$)")
        yield


def execute(expr: Any) -> Any:
    """Execute an Ibis expression on the backend its tables belong to (DuckDB for memtables)."""
    with quiet_engine():
        return _execute(expr)


def _execute(expr: Any) -> Any:
    try:
        backend = expr._find_backend(use_default=False)
    except Exception:  # memtables have no backend of their own
        backend = None
    if backend is None:
        backend = duckdb_connection()
    return backend.execute(expr)


# --------------------------------------------------------------------------------------------
# Spark

ENGINES = ("duckdb", "spark")

_spark_lock = threading.Lock()
_spark_backend: Any = None


def spark_available() -> bool:
    """Whether pyspark (the ``spark`` extra) is installed."""
    import importlib.util

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
        from clvmodels.exceptions import ParameterError

        raise ParameterError(
            "engine='spark' needs pyspark, which is not installed; install clvmodels[spark] "
            "(pip install 'clvmodels[spark]') or use engine='duckdb'."
        )
    import os

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
            settings = {"spark.ui.showConsoleProgress": "false", **{k: str(v) for k, v in (conf or {}).items()}}
            for key, value in settings.items():
                builder = builder.config(key, value)
            try:
                session = builder.getOrCreate()
            except Exception as exc:  # the JVM refused to start or the master is out of reach
                from clvmodels.exceptions import ParameterError

                text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
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
    import os

    return "--master" in os.environ.get("PYSPARK_SUBMIT_ARGS", "")


def spark_view(frame: Any, like: Any = None) -> Any:
    """A Spark DataFrame as an Ibis table (through a temporary view with a fresh name) of the
    backend of ``like`` - so the two can be joined - or of :func:`spark_connection`."""
    import uuid

    name = f"clvmodels_{uuid.uuid4().hex}"
    frame.createOrReplaceTempView(name)
    return (spark_connection() if like is None else like._find_backend()).table(name)


def spark_frame(expr: Any) -> Any:
    """The Spark DataFrame of an Ibis expression on the Spark backend (for Spark's own writers
    and caching)."""
    con = expr._find_backend()
    return con._session.sql(con.compile(expr))


def backend_name(table: Any) -> str:
    """The name of the Ibis backend a table lives on ("duckdb" for memtables)."""
    try:
        backend = table._find_backend(use_default=False)
    except Exception:
        return "duckdb"
    return getattr(backend, "name", "duckdb") if backend is not None else "duckdb"
