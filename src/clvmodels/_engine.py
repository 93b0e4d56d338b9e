"""The embedded DuckDB connection that runs Ibis expressions by default.

One connection per process, created on first use: in-process, no server, and it streams
Parquet and CSV files without loading them into pandas first.
"""

from __future__ import annotations

import atexit
import contextlib
import re
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import ibis

_lock = threading.Lock()
_connection: Any = None

#: share of the machine's memory the embedded DuckDB may use unless told otherwise (DuckDB's own
#: default is 80%: at 100M transactions the report then peaked at 11.5 GiB, most of it DuckDB's
#: cache; beyond its limit DuckDB spills to a temporary folder instead)
DEFAULT_MEMORY_SHARE = 0.25
#: the environment variable that sets the budget for every process (as :func:`set_engine_memory`)
MEMORY_ENV = "CLVMODELS_ENGINE_MEMORY"
_memory: list[str] = []  # the budget asked for by set_engine_memory (empty: the default)
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib|tb|tib)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 1e3, "kib": 1024, "mb": 1e6, "mib": 1024**2, "gb": 1e9, "gib": 1024**3, "tb": 1e12,
          "tib": 1024**4}


def _machine_memory() -> int:
    """Physical memory in bytes (and the cgroup's limit when a container has a smaller one)."""
    import os

    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):
            text = open(path).read().strip()
            if text.isdigit() and 0 < int(text) < total:
                total = int(text)
    return int(total)


def parse_memory(value: Any, name: str = "engine_memory") -> int:
    """A memory budget in bytes from ``"4GB"``, ``"512MiB"``, ``"25%"`` (of the machine) or a number
    of bytes; at least 256 MB and at most the machine's memory."""
    from clvmodels.exceptions import ParameterError

    text = str(value).strip()
    total = _machine_memory()
    try:
        if text.endswith("%"):
            share = float(text[:-1])
            if not 0 < share <= 100:
                raise ValueError
            size = int(total * share / 100)
        else:
            m = _SIZE.match(text)
            if m is None:
                raise ValueError
            size = int(float(m.group(1)) * _UNITS[(m.group(2) or "b").lower()])
    except ValueError:
        raise ParameterError(
            f"Parameter '{name}' must be a memory size such as '4GB', '512MiB' or a share of the machine such as "
            f"'25%', got {value!r}.") from None
    if not 256e6 <= size <= total:
        raise ParameterError(
            f"Parameter '{name}' must be between 256MB and this machine's memory ({total / 1024**3:.1f} GiB), "
            f"got {value!r} ({size / 1024**3:.2f} GiB).")
    return size


def engine_memory() -> int:
    """The embedded DuckDB's memory budget in bytes: :func:`set_engine_memory`'s, else the
    :data:`MEMORY_ENV` variable's, else :data:`DEFAULT_MEMORY_SHARE` of the machine."""
    import os

    if _memory:
        return parse_memory(_memory[-1])
    if os.environ.get(MEMORY_ENV):
        return parse_memory(os.environ[MEMORY_ENV], MEMORY_ENV)
    return int(_machine_memory() * DEFAULT_MEMORY_SHARE)


def set_engine_memory(limit: Any = None) -> int:
    """Set the embedded DuckDB's memory budget (``"4GB"``, ``"25%"``; None: back to the default),
    now and for the connection created later. Beyond it DuckDB spills intermediate results to a
    temporary folder (under the system's temporary directory) instead of growing. Returns bytes."""
    if limit is None or str(limit).strip() == "":
        _memory.clear()
    else:
        parse_memory(limit)
        _memory[:] = [str(limit)]
    size = engine_memory()
    with _lock:
        if _connection is not None:
            _apply_memory(_connection, size)
    return size


def _apply_memory(con: Any, size: int) -> None:
    con.raw_sql(f"SET memory_limit = '{int(size // 1024**2)}MiB'")


_spill: list[str] = []


def _spill_folder() -> str:
    """A private temporary folder this process's DuckDB spills to (removed at exit)."""
    import shutil
    import tempfile

    if not _spill:
        folder = tempfile.mkdtemp(prefix="clvmodels-duckdb-spill-")
        _spill.append(folder)
        atexit.register(shutil.rmtree, folder, True)
    return _spill[0]


def duckdb_connection() -> Any:
    """Return the process-wide Ibis DuckDB backend (created on first use), with its memory
    budget (:func:`engine_memory`) and a private folder to spill to beyond it."""
    global _connection
    with _lock:
        if _connection is None:
            con = ibis.duckdb.connect()
            # no progress bar: it prints bars into logs and scripts' output. Inside Jupyter without
            # ipywidgets DuckDB refuses to change the setting (and shows no bar there anyway)
            with contextlib.suppress(Exception):
                con.raw_sql("SET enable_progress_bar = false")
            _apply_memory(con, engine_memory())
            with contextlib.suppress(OSError):  # no writable temporary folder: DuckDB's own default
                spill = _spill_folder().replace("'", "''")
                con.raw_sql(f"SET temp_directory = '{spill}'")
            _connection = con
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
    return backend_of(expr).execute(expr)


def backend_of(expr: Any) -> Any:
    """The Ibis backend an expression runs on (the embedded DuckDB for memtables)."""
    try:
        backend = expr._find_backend(use_default=False)
    except Exception:  # memtables have no backend of their own
        backend = None
    return backend if backend is not None else duckdb_connection()


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
            check_spark_settings(master, conf or {})
            settings = {"spark.ui.showConsoleProgress": "false", **{k: str(v) for k, v in (conf or {}).items()}}
            for key, value in settings.items():
                builder = builder.config(key, value)
            try:
                session = builder.getOrCreate()
            except Exception as exc:  # the JVM refused to start or the master is out of reach
                from clvmodels.exceptions import ParameterError

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
    import socket

    from clvmodels.exceptions import ParameterError

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


def engine_error_text(exc: BaseException) -> str:
    """One line saying why an engine call failed: for a Java error raised through Spark, its
    innermost cause ("java.lang.ClassNotFoundException: Class ...S3AFileSystem not found"),
    not the Py4J wrapper ("An error occurred while calling o32.parquet."); with a hint for
    the common causes."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("at ")]
    reason = lines[0]
    if reason.startswith("An error occurred while calling") and len(lines) > 1:
        causes = [ln[len("Caused by:"):].strip() for ln in lines if ln.startswith("Caused by:")]
        reason = causes[-1] if causes else lines[1].lstrip(": ")
        # "java.lang.RuntimeException: java.lang.ClassNotFoundException: ..." -> the inner one
        parts = reason.split(": ")
        while len(parts) > 2 and re.match(r"^[a-z]+(\.[a-zA-Z_$]+)+$", parts[1]):
            parts = parts[1:]
        reason = ": ".join(parts)
    reason = reason.rstrip(".")
    if "S3AFileSystem" in reason or 'scheme "s3' in reason:
        reason += (" (Spark needs the hadoop-aws jars for s3a:// paths: e.g. --spark-conf "
                   "spark.jars.packages=org.apache.hadoop:hadoop-aws:<your Hadoop version>)")
    elif "No FileSystem for scheme" in reason:
        reason += " (this Spark has no connector for that kind of address; add its jars with spark.jars.packages)"
    return reason
