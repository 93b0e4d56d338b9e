"""Paths read literally and the same on every engine: pattern characters neutralised, the
Parquet files a folder stands for chosen as Spark (Hadoop) chooses them, remote addresses told
apart from local paths."""

from __future__ import annotations

import atexit
import re
import tempfile
from pathlib import Path
from typing import Any

from clvmodels.exceptions import DataValidationError

__all__ = ["literal_paths", "parquet_files", "spark_literal", "is_remote"]

#: characters DuckDB (and Hadoop) read as a file-name pattern
_GLOB_CHARS = frozenset("*?[]{}")
_link_dirs: list[Any] = []


def literal_paths(paths: list[Path]) -> list[str]:
    """Paths the engine will read literally: DuckDB reads ``*?[]{}`` in a path as a pattern, so
    ``q[1].parquet`` would read ``q1.parquet``; such files are reached through symbolic links with
    neutral names in a private temporary folder (removed at exit)."""
    if not any(_GLOB_CHARS & set(str(p)) for p in paths):
        return [str(p) for p in paths]
    if not _link_dirs:
        _link_dirs.append(tempfile.TemporaryDirectory(prefix="clvmodels-links-"))
        atexit.register(_link_dirs[0].cleanup)
    folder = Path(tempfile.mkdtemp(dir=_link_dirs[0].name))
    out = []
    for i, p in enumerate(paths):
        # the link keeps the file's suffixes (".csv.gz" tells DuckDB the compression), never a pattern character
        suffix = "".join(c for c in "".join(Path(p).suffixes[-2:]) if c not in _GLOB_CHARS)
        link = folder / f"f{i}{suffix}"
        link.symlink_to(Path(p).resolve())
        out.append(str(link))
    return out


def parquet_files(path: Path) -> list[str]:
    """The Parquet files a path stands for, the same on both engines: the file itself, or every
    file under a folder - whatever its name: Hive writes ``000000_0`` without a suffix and Spark
    reads it - skipping what Spark (Hadoop) skips, every file or folder whose name starts with
    ``_`` or ``.`` (``_SUCCESS``, ``_temporary/`` leftovers of a failed write, hidden ``.crc``
    files); read literally (:func:`literal_paths`). A file in the folder that is not Parquet is
    then an error on both engines, not a file one of them skips."""
    if not path.is_dir():
        return literal_paths([path])
    files = sorted(p for p in path.rglob("*")
                   if p.is_file() and not any(part.startswith(("_", ".")) for part in p.relative_to(path).parts))
    if not files:
        raise DataValidationError(
            f"Folder '{path}' holds no Parquet files (files and folders starting with '_' or '.' are skipped, "
            "as Spark does).")
    return literal_paths(files)


def spark_literal(location: str) -> str:
    """A path for Spark's reader with pattern characters escaped (Hadoop globs them too)."""
    return re.sub(r"([*?\[\]{}\\])", r"\\\1", location)


def is_remote(location: str) -> bool:
    """Whether a location is a URI of another file system (s3a://, hdfs://, abfss://, dbfs:/ ...)."""
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:/", location)) and not location.lower().startswith("file:")
