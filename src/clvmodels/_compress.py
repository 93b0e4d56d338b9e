"""Compressed sufficient statistics: collapse identical rows into one row with a weight.

Fitting and scoring cost then grows with the number of distinct rows, not customers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Compressed:
    """Distinct rows of some columns, how often each occurs, and the map back to the rows."""

    columns: tuple[np.ndarray, ...]
    """The distinct rows, one array per input column."""
    weights: np.ndarray
    """How many input rows each distinct row stands for (float64)."""
    inverse: np.ndarray
    """For each input row, the index of its distinct row: ``values[inverse]`` expands."""


def _codes(col: np.ndarray) -> tuple[np.ndarray, int]:
    """Integer codes of a column and how many there can be; small whole numbers are their own
    codes (no hashing), anything else is factorised."""
    col = np.asarray(col)
    if col.dtype.kind in "iu" and col.size:
        lo, hi = int(col.min()), int(col.max())
        if hi - lo < max(4 * col.size, 1024):
            return (col - lo).astype(np.int64), hi - lo + 1
    codes, uniques = pd.factorize(col, sort=False)
    return codes.astype(np.int64), len(uniques)


def _dense_inverse(key: np.ndarray, span: int) -> np.ndarray:
    """Renumber keys in [0, span) to 0..k-1 without hashing (span is small)."""
    used = np.zeros(span, dtype=bool)
    used[key] = True
    remap = np.cumsum(used) - 1
    return remap[key]


def compress(*columns: np.ndarray) -> Compressed:
    """Factorise each column, combine the codes and number the distinct combinations."""
    n = len(columns[0])
    key: np.ndarray | None = None
    span = 1
    for col in columns:
        codes, size = _codes(col)
        if key is None:
            key, span = codes, size
            continue
        if span * size >= 2**62:
            # re-factorise so the combined key stays below n and can never overflow
            key = pd.factorize(key, sort=False)[0].astype(np.int64)
            span = int(key.max()) + 1 if n else 1
        key = key * size + codes
        span *= size
    assert key is not None
    if span <= max(8 * n, 1 << 20):
        inverse = _dense_inverse(key, span)
    else:
        inverse = pd.factorize(key, sort=False)[0].astype(np.int64)
    k = int(inverse.max()) + 1 if n else 0
    first = np.empty(k, dtype=np.int64)
    first[inverse[::-1]] = np.arange(n - 1, -1, -1)
    weights = np.bincount(inverse, minlength=k).astype(np.float64)
    return Compressed(tuple(np.asarray(c)[first] for c in columns), weights, inverse)
