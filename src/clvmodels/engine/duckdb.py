"""The embedded DuckDB: one process-wide connection (created on first use, in-process, no
server, streaming Parquet and CSV without loading them into pandas), its memory budget and the
private folder it spills to beyond it, and :class:`DuckDBEngine`, DuckDB behind the
:class:`clvmodels.engine.Engine` protocol."""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
import re
import shutil
import tempfile
import threading
import uuid
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd

from clvmodels.engine._core import quiet_engine
from clvmodels.engine._paths import literal_paths, parquet_files
from clvmodels.exceptions import ParameterError

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
#: a local CSV up to this size is parsed once into a temporary table of the connection: every later
#: query of the report (the backtests' windows, the baseline's features: a dozen on a small log)
#: then reads DuckDB's own columns instead of parsing and sniffing the text again (measured on a
#: 400-customer log: 0.145 s -> 0.045 s a query). A larger file stays a view, read as it streams:
#: its copy would count against the memory budget.
KEEP_CSV_BYTES = 64 * 1024**2
_UNITS = {"b": 1, "kb": 1e3, "kib": 1024, "mb": 1e6, "mib": 1024**2, "gb": 1e9, "gib": 1024**3, "tb": 1e12,
          "tib": 1024**4}


def _machine_memory() -> int:
    """Physical memory in bytes (and the cgroup's limit when a container has a smaller one)."""
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


_threads: list[int] = []  # the thread budget asked for by set_engine_threads (empty: DuckDB's default)


def set_engine_threads(n: int | None = None) -> None:
    """Set how many threads the embedded DuckDB may use (None: back to its default, the
    machine's cores), now and for the connection created later (:func:`clvmodels.threads.thread_budget`)."""
    _threads.clear()
    if n is not None:
        _threads.append(max(1, int(n)))
    with _lock:
        if _connection is not None:
            _apply_threads(_connection)


def _apply_threads(con: Any) -> None:
    n = _threads[-1] if _threads else os.cpu_count() or 1
    with contextlib.suppress(Exception):
        con.raw_sql(f"SET threads = {int(n)}")


def _apply_memory(con: Any, size: int) -> None:
    con.raw_sql(f"SET memory_limit = '{int(size // 1024**2)}MiB'")


_spill: list[str] = []


def _spill_folder() -> str:
    """A private temporary folder this process's DuckDB spills to (removed at exit). Only its
    name is chosen here: DuckDB creates it when it first spills, so a process that never spills
    - or is ended by a signal, which skips the removal at exit - leaves no empty folder behind."""
    if not _spill:
        folder = os.path.join(tempfile.gettempdir(), f"clvmodels-duckdb-spill-{os.getpid()}-{uuid.uuid4().hex[:12]}")
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
            if _threads:
                _apply_threads(con)
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


@ibis.udf.scalar.builtin
def try_strptime(text: str, fmt: str) -> datetime.datetime:  # DuckDB's own function
    ...


@ibis.udf.scalar.builtin(name="timezone")
def _wall_clock(zone: str, ts: datetime.datetime) -> datetime.datetime:  # DuckDB's timezone()
    ...


class DuckDBEngine:
    """The embedded DuckDB behind the :class:`clvmodels.engine.Engine` protocol (the default)."""

    name = "duckdb"
    backend = "duckdb"
    label = "DuckDB"
    #: reads remote addresses (s3a://, hdfs://): no, those need a cluster's file systems
    reads_remote = False
    #: Ibis cannot seed Spark's sampling; DuckDB's is seeded so a run repeats
    sample_seed: int | None = 0
    #: DuckDB refuses a CSV that is not valid UTF-8 (Spark decodes bad bytes as U+FFFD)
    replaces_bad_text = False

    #: the default engine (reports name an engine only when it is not this one)
    default = True
    #: runs on a cluster: a report keeps the customer table in the engine by default
    distributed = False

    def available(self) -> None:
        """Nothing to check: DuckDB is a dependency of the package."""

    def start(self, master: str = "", conf: dict[str, Any] | None = None) -> Any:
        """The connection (cluster settings do not apply to an embedded engine)."""
        return duckdb_connection()

    def catalog_table(self, name: str) -> ir.Table:
        raise ParameterError(f"Reading the table {name!r} of a catalog needs engine 'spark' (command line: "
                             "--engine spark --table NAME); give DuckDB a file with --input.")

    def read(self, path: Path, *, parquet: bool, csv_options: dict[str, Any] | None = None,
             date_column: str | None = None, id_column: str | None = None) -> ir.Table:
        """A local CSV or Parquet file, or a folder of Parquet files, read literally."""
        con = duckdb_connection()
        with quiet_engine():
            if parquet:
                files = parquet_files(path)
                return con.read_parquet(files[0] if len(files) == 1 and not path.is_dir() else files)
            where = literal_paths([path])[0]
            table = con.read_csv(where, **(csv_options or {}))
            # the CSV sniffer guesses types from a sample: a date format per file (01/02/2024 could
            # be 1 Feb in one file and 2 Jan in the next) and numbers for ids (007 and 7 would be
            # one customer); both are read as text: ids exactly as written, dates parsed one way
            as_text = [c for c in (date_column, id_column) if c and c in table.columns
                       and not table[c].type().is_string()]
            if as_text:
                types = {**dict((csv_options or {}).get("types") or {}), **{c: "VARCHAR" for c in as_text}}
                table = con.read_csv(where, **{**(csv_options or {}), "types": types})
            if path.is_file() and path.stat().st_size <= KEEP_CSV_BYTES:
                # a file DuckDB cannot parse stays a view: the validation pass reports it in the
                # words both engines use
                with contextlib.suppress(Exception):
                    table = _kept(con, table)
            return table

    def to_frame(self, expr: ir.Table) -> pd.DataFrame:
        """A result as pandas straight from Arrow, one block per column (Ibis' conversion stacks
        the numeric columns into one block: a copy that took a third of the RFM table's time at
        3.6M customers); ids, counts and floats convert alike either way."""
        try:
            backend = expr._find_backend(use_default=False)
        except Exception:  # memtables have no backend of their own: the embedded DuckDB runs them
            backend = None
        with quiet_engine():
            table = (backend or duckdb_connection()).to_pyarrow(expr)
        return table.to_pandas(split_blocks=True, self_destruct=True)

    def from_arrow(self, frame: Any) -> ir.Table:
        """A pandas DataFrame or Arrow table (columns Arrow converts) as a table of this engine."""
        with quiet_engine():
            return ibis.memtable(frame)

    def text_to_timestamp(self, text: ir.Column, date_format: str) -> ir.Column:
        """Text parsed by one ``strptime`` format (null where it does not match)."""
        return try_strptime(text, date_format)

    def wall_clock(self, ts: ir.Column, zone: str) -> ir.Column:
        """UTC timestamps on the wall clock of a named time zone."""
        return _wall_clock(zone, ts)

    def materialise(self, expr: ir.Table) -> tuple[ir.Table, Callable[[], None]]:
        """``expr`` computed once into a temporary table (spilled to disk beyond the memory
        budget); returns it and the function that drops it."""
        con = duckdb_connection()
        name = f"clvmodels_customers_{uuid.uuid4().hex}"
        with quiet_engine():
            table = con.create_table(name, expr, temp=True)
        return table, lambda: con.drop_table(name, force=True)

    def upload(self, frame: pd.DataFrame, like: ir.Table | None = None) -> ir.Table:
        """A small driver-side table placed beside ``like``."""
        return self.from_arrow(frame)

    def write_partitioned(self, table: ir.Table, path: Path, by: str) -> None:
        with quiet_engine():
            duckdb_connection().to_parquet(table, str(path), partition_by=by)

    def read_parquet(self, path: Path, like: ir.Table | None = None) -> ir.Table:
        """A Parquet file, or a folder written by :meth:`write_partitioned` (its partition
        column read back from the folder names), read literally."""
        place = literal_paths([path])[0]  # brackets in a folder name are not a pattern
        with quiet_engine():
            if path.is_dir():
                return duckdb_connection().read_parquet(str(Path(place) / "**" / "*.parquet"), hive_partitioning=True)
            return duckdb_connection().read_parquet(place, hive_partitioning=False)


def _kept(con: Any, table: ir.Table) -> ir.Table:
    """``table`` parsed once into a temporary table of the connection, dropped once no expression
    refers to it any more (the table's operation node is what every expression built on it holds):
    at the next call, not from the garbage collector, which may run while the connection is busy."""
    while _unused:
        with contextlib.suppress(Exception):
            con.drop_table(_unused.pop(), force=True)
    name = f"clvmodels_log_{uuid.uuid4().hex}"
    kept = con.create_table(name, table, temp=True)
    weakref.finalize(kept.op(), _unused.append, name)
    return kept


#: temporary copies of logs no expression refers to any more (dropped by the next :func:`_kept`)
_unused: list[str] = []


DUCKDB = DuckDBEngine()
