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


def _composite_rule(edges, n):
    """Gauss-Legendre nodes and weights on [0, 1], ``n`` per panel between ``edges``."""
    x, w = np.polynomial.legendre.leggauss(n)
    nodes, weights = [], []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        nodes.append(a + (b - a) * (x + 1) / 2)
        weights.append((b - a) / 2 * w)
    return np.concatenate(nodes), np.concatenate(weights)


# panels shrink geometrically toward y -> 0 (u -> infinity), where the integrand's only
# non-smooth behaviour (a power of y close to zero) lives
_Q_NODES, _Q_WEIGHTS = _composite_rule([0.0, 1e-12, 1e-10, 1e-8, 1e-6, 1e-4, 1e-3, 1e-2, 0.1, 1.0], 16)


#: one panel of 32 nodes for a short interval (``y(hi)`` near 1, the integrand smooth in ``y``):
#: the Pareto/NBD dropout term's rows integrated directly (``y(hi) >= 0.9``). On 20,000 random
#: such rows with beta/alpha in [0.1, 10] it agrees with a 53-panel rule of 32 nodes to 1e-13 in
#: ``ln I``, as the nine-panel rule does; with alpha and beta each anywhere in [0.1, 1000] it is
#: closer to that rule than the nine-panel one (99.99% of rows within 5e-5 against 1.4e-2: the integrand's
#: steep end at ``u = lo`` gets 32 nodes, not 16), at 32 nodes instead of 144
SHORT_RULE = _composite_rule([0.0, 1.0], 32)


def power_integral(A, p, B, q, lo, hi, *, moments: bool = False, rule: tuple[np.ndarray, np.ndarray] | None = None):
    """``ln I`` with ``I = int_lo^hi (A+u)^-p (B+u)^-q du``, by Gauss-Legendre quadrature after
    a substitution that makes the integrand nearly flat.

    With ``M = p + q - 1 > 0`` and ``y = ((A+lo)/(A+u))^M`` the integral is exactly
    ``(A+lo)^-M / M * int_{y(hi)}^1 ((B+u)/(A+u))^-q dy``: the power law in ``A+u`` (which
    can be steep, ``p`` grows with a customer's frequency) is absorbed by the substitution, and
    what is left lies between ``1`` and ``(max(A,B)/min(A,B))^q`` whatever ``p`` is. Integrals of
    this form are the Pareto/NBD likelihood's dropout term and its forecasts' any-purchase
    probability; they avoid the Gauss hypergeometric function, whose closed form loses all
    accuracy when ``A`` and ``B`` are close or the first parameter is large.

    With ``moments`` also returns the means of ``ln(A+u)``, ``1/(A+u)``, ``ln(B+u)`` and
    ``1/(B+u)`` under the normalised integrand: the derivatives of ``ln I`` in ``p``, ``A``,
    ``q`` and ``B`` are ``-E[ln(A+u)]``, ``-p E[1/(A+u)]``, ``-E[ln(B+u)]``, ``-q E[1/(B+u)]``.
    ``ln I`` is ``-inf`` where ``lo == hi``. ``rule``: nodes and weights on [0, 1] in ``y``'s
    place (default: nine panels of 16 nodes shrinking toward ``y = 0``, for any interval; see
    :data:`SHORT_RULE`).
    """
    nodes, weights = (_Q_NODES, _Q_WEIGHTS) if rule is None else rule
    A, p, B, q, lo, hi = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (A, p, B, q, lo, hi)))
    M = p + q - 1.0
    log_alo = np.log(A + lo)
    with np.errstate(divide="ignore", under="ignore"):
        # 1 - y(hi) without cancellation, and y(hi) itself
        log_ratio = np.log1p((hi - lo) / (A + lo))
        one_minus = -np.expm1(-M * log_ratio)
        y_hi = np.exp(-M * log_ratio)
    y = y_hi[..., None] + one_minus[..., None] * nodes
    log_au = log_alo[..., None] - np.log(y) / M[..., None]   # ln(A+u) at the nodes
    au = np.exp(log_au)
    bu = au + (B - A)[..., None]                              # B+u
    log_bu = np.log(bu)
    lr = -q[..., None] * (log_bu - log_au)
    top = lr.max(axis=-1, keepdims=True)
    with np.errstate(under="ignore"):
        wts = weights * np.exp(lr - top)
    total = wts.sum(axis=-1)
    with np.errstate(divide="ignore"):
        log_i = (-M * log_alo - np.log(M) + np.log(one_minus) + top[..., 0] + np.log(total))
    if not moments:
        return log_i
    wn = wts / total[..., None]
    return (log_i, (wn * log_au).sum(-1), (wn / au).sum(-1), (wn * log_bu).sum(-1), (wn / bu).sum(-1))


#: Gauss nodes per Beta distribution in :func:`beta_average`
_BETA_NODES = 24


def _beta_rule(a: np.ndarray, b: np.ndarray, n: int = _BETA_NODES) -> tuple[np.ndarray, np.ndarray]:
    """Gauss quadrature nodes on (0, 1) and weights summing to one for ``Beta(a, b)``, one row
    per element of ``a``/``b``, by the Golub-Welsch algorithm on the Jacobi polynomials'
    three-term recurrence (weights from the eigenvectors' first components, so nothing
    overflows however large ``a`` and ``b`` are; SciPy's ``roots_jacobi`` normalises its
    weights with ``2^(a+b)`` and returns NaN beyond a few hundred)."""
    from scipy.linalg import eigh_tridiagonal

    al, be = np.asarray(b, float) - 1.0, np.asarray(a, float) - 1.0  # Jacobi alpha, beta on [-1, 1]
    nodes = np.empty((al.size, n))
    weights = np.empty((al.size, n))
    k = np.arange(n, dtype=float)
    for i, (A, B) in enumerate(zip(al.ravel(), be.ravel(), strict=True)):
        s = 2 * k + A + B
        diag = np.where(k == 0, (B - A) / (A + B + 2), (B - A) * (B + A) / np.where(k == 0, 1.0, s * (s + 2)))
        j = k[1:]
        sj = s[1:]
        off = np.sqrt(4 * j * (j + A) * (j + B) * (j + A + B) / (sj**2 * (sj + 1) * (sj - 1)))
        z, vec = eigh_tridiagonal(diag, off)
        nodes[i] = np.clip((1 + z) / 2, 0.0, 1.0)
        weights[i] = vec[0] ** 2
    return nodes, weights / weights.sum(axis=1, keepdims=True)


def _gamma_rule(shape: np.ndarray, n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Gauss quadrature nodes and weights (summing to one) for ``Gamma(shape, 1)``, one row per
    shape, by Golub-Welsch on the generalised Laguerre recurrence (nothing overflows at a large
    shape, unlike normalising SciPy's ``roots_genlaguerre``)."""
    from scipy.linalg import eigh_tridiagonal

    shape = np.asarray(shape, float).ravel()
    nodes = np.empty((shape.size, n))
    weights = np.empty((shape.size, n))
    k = np.arange(n, dtype=float)
    for i, sh in enumerate(shape):
        diag = 2 * k + sh
        off = np.sqrt(k[1:] * (k[1:] + sh - 1))
        z, vec = eigh_tridiagonal(diag, off)
        nodes[i] = z
        weights[i] = vec[0] ** 2
    return nodes, weights / weights.sum(axis=1, keepdims=True)


def beta_average(fn, a: float, b) -> np.ndarray:
    """``E[fn(p)]`` for ``p ~ Beta(a, b)``, elementwise over the array ``b``.

    ``fn`` takes ``p`` with one trailing axis of quadrature nodes (arrays it closes over need a
    trailing ``None``). Exact for polynomials of degree 47 in ``p``; meant for the smooth
    forecasts of the BG/NBD family where ``a`` is large (a concentrated Beta), where their
    closed forms through 2F1 overflow.
    """
    b = np.asarray(b, float)
    ub, inv = np.unique(b.ravel(), return_inverse=True)
    nodes, weights = _beta_rule(np.full_like(ub, a), ub)
    p = nodes[inv].reshape(*b.shape, -1)
    w = weights[inv].reshape(*b.shape, -1)
    return (fn(p) * w).sum(axis=-1)


def beta_means(A: np.ndarray, B: np.ndarray, a: float, b: np.ndarray, rows: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """``E[1/(A+Bp)]`` and ``E[p/(A+Bp)]`` for ``p ~ Beta(a, b)`` (``b`` one per row of ``A``,
    ``B``) by Gauss quadrature: where the dropout Beta is concentrated (``a`` above
    :data:`clvmodels.models.beta_geo.QUADRATURE_ABOVE_A`, a fit near the one-dropout-probability
    limit) the closed forms' 2F1 returns NaN. Rows in blocks, to bound the (rows, nodes, nodes)
    temporaries."""
    ub, inv = np.unique(np.asarray(b, float), return_inverse=True)
    nodes, weights = _beta_rule(np.full_like(ub, a), ub)
    one, with_p = np.empty(A.shape), np.empty(A.shape)
    for s in range(0, A.shape[0], rows):
        p, w = nodes[inv[s:s + rows]][:, None, :], weights[inv[s:s + rows]][:, None, :]
        inv_ab = 1.0 / (A[s:s + rows, :, None] + B[s:s + rows, :, None] * p)
        one[s:s + rows] = (w * inv_ab).sum(-1)
        with_p[s:s + rows] = (w * p * inv_ab).sum(-1)
    return one, with_p
