"""What every engine shares: running an Ibis expression where its tables live, telling which
backend a table belongs to, quieting Ibis' warnings and turning an engine's error into one line."""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator
from typing import Any


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


def backend_name(table: Any) -> str:
    """The name of the Ibis backend a table lives on ("duckdb" for memtables)."""
    try:
        backend = table._find_backend(use_default=False)
    except Exception:
        return "duckdb"
    return getattr(backend, "name", "duckdb") if backend is not None else "duckdb"


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
