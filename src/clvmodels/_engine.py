"""The embedded DuckDB connection that runs Ibis expressions by default.

One connection per process, created on first use: in-process, no server, and it streams
Parquet and CSV files without loading them into pandas first.
"""

from __future__ import annotations

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
        return _connection


@contextlib.contextmanager
def quiet_engine() -> Iterator[None]:
    """Silence the deprecation chatter Ibis emits on new pandas/DuckDB releases, only here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ibis(\.|$)")
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"ibis(\.|$)")
        warnings.filterwarnings("ignore", message=r".*future\.infer_string.*")
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
