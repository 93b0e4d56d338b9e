"""The engines that run the package's queries, behind one small protocol.

An :class:`Engine` reads logs, parses dates, computes and keeps intermediate tables
(materialise), places small driver-side tables beside big ones (upload) and writes and reads
partitioned results; aggregation itself is written once in Ibis and runs wherever the tables
live. Two engines implement it: the embedded DuckDB (:mod:`clvmodels.engine.duckdb`, the
default) and Spark (:mod:`clvmodels.engine.spark`, optional). Code elsewhere asks
:func:`engine_named` or :func:`engine_of` for the engine and calls it; it never tests an
engine's name.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import ibis.expr.types as ir
import pandas as pd

from clvmodels.engine._core import backend_name, engine_error_text, quiet_engine
from clvmodels.engine._paths import is_remote, literal_paths, parquet_files, spark_literal
from clvmodels.engine.duckdb import (
    DEFAULT_MEMORY_SHARE,
    DUCKDB,
    MEMORY_ENV,
    DuckDBEngine,
    duckdb_connection,
    engine_memory,
    parse_memory,
    set_engine_memory,
    set_engine_threads,
)
from clvmodels.engine.spark import (
    SPARK,
    SparkEngine,
    check_spark_settings,
    java_date_pattern,
    spark_available,
    spark_connection,
    spark_frame,
    spark_view,
)
from clvmodels.exceptions import ParameterError

__all__ = [
    "Engine", "ENGINES", "engine_named", "engine_of", "execute", "backend_of", "backend_name", "quiet_engine",
    "engine_error_text", "DuckDBEngine", "SparkEngine", "DUCKDB", "SPARK", "duckdb_connection",
    "engine_memory", "set_engine_memory", "set_engine_threads", "parse_memory", "DEFAULT_MEMORY_SHARE", "MEMORY_ENV",
    "spark_available", "spark_connection", "spark_view", "spark_frame", "check_spark_settings",
    "java_date_pattern", "literal_paths", "parquet_files", "spark_literal", "is_remote",
    "materialise", "keep_table", "kept_table", "release", "upload",
]


class Engine(Protocol):
    """What the package asks of an engine."""

    name: str
    """What users write (``engine="duckdb"``, ``--engine spark``)."""
    backend: str
    """The Ibis backend's name of its tables."""
    label: str
    """How a page names it."""
    reads_remote: bool
    sample_seed: int | None
    replaces_bad_text: bool

    default: bool
    distributed: bool

    def available(self) -> None: ...

    def start(self, master: str = "", conf: dict[str, Any] | None = None) -> Any: ...

    def catalog_table(self, name: str) -> ir.Table: ...

    def read(self, path: Path, *, parquet: bool, csv_options: dict[str, Any] | None = None,
             date_column: str | None = None, id_column: str | None = None) -> ir.Table: ...

    def text_to_timestamp(self, text: ir.Column, date_format: str) -> ir.Column: ...

    def wall_clock(self, ts: ir.Column, zone: str) -> ir.Column: ...

    def to_frame(self, expr: ir.Table) -> pd.DataFrame: ...

    def materialise(self, expr: ir.Table) -> tuple[ir.Table, Any]: ...

    def upload(self, frame: pd.DataFrame, like: ir.Table | None = None) -> ir.Table: ...

    def write_partitioned(self, table: ir.Table, path: Path, by: str) -> None: ...

    def read_parquet(self, path: Path, like: ir.Table | None = None) -> ir.Table: ...


#: the engines by the name users give them
ENGINES: dict[str, Engine] = {"duckdb": DUCKDB, "spark": SPARK}
_BY_BACKEND: dict[str, Engine] = {e.backend: e for e in ENGINES.values()}


def engine_named(name: Any) -> Engine:
    """The engine called ``name`` ("duckdb" or "spark"; an engine passes through)."""
    if isinstance(name, (DuckDBEngine, SparkEngine)):
        return name
    engine = ENGINES.get(name) if isinstance(name, str) else None
    if engine is None:
        engine = _BY_BACKEND.get(name) if isinstance(name, str) else None
    if engine is None:
        raise ParameterError(f"Parameter 'engine' must be one of {list(ENGINES)}, got {name!r}.")
    return engine


def engine_of(table: Any) -> Engine:
    """The engine a table (or expression) lives on; DuckDB for tables of no backend (memtables)."""
    return _BY_BACKEND.get(backend_name(table), DUCKDB)


def backend_of(expr: Any) -> Any:
    """The Ibis backend an expression runs on (the embedded DuckDB for memtables)."""
    try:
        backend = expr._find_backend(use_default=False)
    except Exception:  # memtables have no backend of their own
        backend = None
    return backend if backend is not None else duckdb_connection()


def execute(expr: Any) -> Any:
    """Execute an Ibis expression on the backend its tables belong to (DuckDB for memtables)."""
    with quiet_engine():
        return _execute(expr)


def _execute(expr: Any) -> Any:
    return backend_of(expr).execute(expr)


def materialise(expr: ir.Table) -> tuple[ir.Table, Callable[[], None]]:
    """``expr`` computed once and kept by the engine it runs on (see :meth:`Engine.materialise`)."""
    return engine_of(expr).materialise(expr)


def upload(frame: pd.DataFrame, like: ir.Table) -> ir.Table:
    """A small driver-side table placed on the engine of ``like`` (so the two can be joined)."""
    return engine_of(like).upload(frame, like)


# the one customer table an engine keeps between calls: (weak reference to its log, observation
# end, the table, how to drop it); fitting and scoring one log read it several times
_kept: list[Any] = []


def keep_table(log: Any, end: Any, table: ir.Table, drop: Callable[[], None]) -> None:
    """Remember ``table`` (materialised from ``log`` up to ``end``) for :func:`kept_table`,
    dropping the one kept before."""
    release()
    _kept.append((weakref.ref(log), end, table, drop))


def kept_table(log: Any = None, end: Any = None) -> ir.Table | None:
    """The table kept for ``log`` and ``end`` (None when another or none is kept); with no
    arguments, whatever table is kept."""
    if not _kept:
        return None
    ref, kept_end, table, _ = _kept[0]
    if log is None or (ref() is log and kept_end == end):
        return table
    return None


def release() -> None:
    """Drop the table the engine keeps for the last log fitted or scored."""
    while _kept:
        *_, drop = _kept.pop()
        try:
            with quiet_engine():
                drop()
        except Exception:  # the engine may be gone (Spark stopped); nothing to free then
            pass
