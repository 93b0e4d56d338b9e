"""Special functions with the robustness the models need.

SciPy's ``hyp2f1`` returns inf or NaN for some arguments with a large third parameter and
``z`` close to 1 (for example ``hyp2f1(0.5, 2, 102.5, 0.95)``), exactly the region large
frequencies reach. There the Gauss series converges fast, because its terms carry
``1 / (c)_k``; ``hyp2f1`` below sums it for the elements SciPy could not evaluate.
"""

from __future__ import annotations

import numpy as np
from scipy import special

_MAX_TERMS = 200_000


def hyp2f1(a, b, c, z) -> np.ndarray:
    """Gauss hypergeometric function 2F1(a, b; c; z) for 0 <= z < 1, broadcasting like SciPy."""
    a, b, c, z = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (a, b, c, z)))
    with np.errstate(all="ignore"):
        out = np.array(special.hyp2f1(a, b, c, z), dtype=float)
    bad = ~np.isfinite(out)
    if bad.any():
        out[bad] = _series(a[bad], b[bad], c[bad], z[bad])
    return out


def _series(a: np.ndarray, b: np.ndarray, c: np.ndarray, z: np.ndarray) -> np.ndarray:
    term = np.ones_like(z)
    total = np.ones_like(z)
    active = np.ones(z.shape, dtype=bool)
    for k in range(_MAX_TERMS):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        term[idx] *= (a[idx] + k) * (b[idx] + k) / ((c[idx] + k) * (k + 1.0)) * z[idx]
        total[idx] += term[idx]
        done = np.abs(term[idx]) <= 1e-17 * np.abs(total[idx])
        active[idx[done]] = False
    total[active] = np.nan  # did not converge: report it rather than a wrong number
    return total
