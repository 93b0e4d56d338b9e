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


def compress(*columns: np.ndarray) -> Compressed:
    """Factorise each column, combine the codes and factorise again (hash based, no sort)."""
    n = len(columns[0])
    key: np.ndarray | None = None
    for col in columns:
        codes, uniques = pd.factorize(np.asarray(col), sort=False)
        if key is None:
            key = codes.astype(np.int64)
        else:
            # re-factorise so the combined key stays below n and can never overflow
            key = pd.factorize(key * len(uniques) + codes, sort=False)[0].astype(np.int64)
    assert key is not None
    inverse = key
    k = int(inverse.max()) + 1 if n else 0
    first = np.empty(k, dtype=np.int64)
    first[inverse[::-1]] = np.arange(n - 1, -1, -1)
    weights = np.bincount(inverse, minlength=k).astype(np.float64)
    return Compressed(tuple(np.asarray(c)[first] for c in columns), weights, inverse)
