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
_Q_EDGES = [0.0, 1e-12, 1e-10, 1e-8, 1e-6, 1e-4, 1e-3, 1e-2, 0.1, 1.0]
_Q_NODES, _Q_WEIGHTS = _composite_rule(_Q_EDGES, 16)


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
    place, used for every row (see :data:`SHORT_RULE`). By default nine panels of 16 nodes
    shrinking toward ``y = 0`` where they are exact - the ratio nearly flat, ``A`` and ``B`` of
    one order and ``q`` moderate (:data:`_RULE_16`) - and elsewhere adaptive panels in
    ``ln(A+u)`` (:func:`_adaptive_in_w`): with ``B`` far from ``A`` or ``q`` large the ratio turns
    from its value at ``lo`` to 1 within a narrow stretch of ``u`` (with ``B`` much below
    ``A + lo`` it peaks at ``u = lo``), and with ``M`` small ``y^(1/M)`` is steep near ``y = 1``;
    the nine panels missed by up to 11 in ``ln I`` there.
    """
    A, p, B, q, lo, hi = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (A, p, B, q, lo, hi)))
    if rule is None:
        return _power_integral_checked(A, p, B, q, lo, hi, moments)
    nodes, weights = rule
    M = p + q - 1.0
    log_alo = np.log(A + lo)
    c = (B - A) / (A + lo)   # (B+u)/(A+u) = 1 + c z with z = (A+lo)/(A+u) = y^(1/M)
    with np.errstate(divide="ignore", under="ignore"):
        # 1 - y(hi) without cancellation, and y(hi) itself
        log_ratio = np.log1p((hi - lo) / (A + lo))
        one_minus = -np.expm1(-M * log_ratio)
        y_hi = np.exp(-M * log_ratio)
    if np.any(y_hi):
        log_y = np.log(y_hi[..., None] + one_minus[..., None] * nodes)
    else:   # every interval runs to u = infinity: y is the nodes themselves
        log_y = np.log(nodes)
    log_z = log_y / M[..., None]                             # ln((A+lo)/(A+u)) at the nodes, <= 0
    with np.errstate(under="ignore"):
        z = np.exp(log_z)                                    # underflows to 0 far out, harmlessly
    cz = c[..., None] * z
    log1p_cz = np.log1p(cz)                                  # ln((B+u)/(A+u)), never inf - inf
    lr = -q[..., None] * log1p_cz
    # lr is monotone in u: its largest value is at the first or the last node
    top = np.maximum(lr[..., 0], lr[..., -1])
    with np.errstate(under="ignore"):
        wts = weights * np.exp(lr - top[..., None])
    total = wts.sum(axis=-1)
    with np.errstate(divide="ignore"):
        log_i = (-M * log_alo - np.log(M) + np.log(one_minus) + top + np.log(total))
    if not moments:
        return log_i

    def mean(v):
        return np.einsum("...n,...n->...", wts, v) / total

    e_log_au = log_alo - mean(log_z)
    e_inv_au = mean(z) / (A + lo)
    return (log_i, e_log_au, e_inv_au, e_log_au + mean(log1p_cz), mean(z / (1.0 + cz)) / (A + lo))


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


#: :func:`power_integral`'s default: the nine panels with 16 nodes where ``V``, the change of
#: ``q ln((B+u)/(A+u))`` from ``u = lo`` on, is at most 1 and ``M >= 0.3``; with 24 nodes where
#: ``V <= 2`` and ``M >= 0.5`` or ``V <= 3`` and ``M >= 1``; elsewhere :func:`_adaptive_in_w`.
#: Measured against the closed form (``I = (A+lo)^-M / M 2F1(q, M; M+1; -c)``, c = (B-A)/(A+lo),
#: in 30-digit arithmetic; M from 0.1 to 1000, s/M from 0.001 to 0.999): both within 1.5e-10 in
#: ``ln I`` where used (16 nodes: 3e-7 at V = 3 and M = 1, 1e-4 at V = 2 and M = 0.1; 24 nodes:
#: 2e-6 at V = 2 and M = 0.1); beyond, the fixed rules missed by up to 11 on random tails with
#: B/A in [1e-3, 1e3] and s up to 100 (``tests/models/test_pareto_nbd.py``)
_RULE_16 = (_Q_NODES, _Q_WEIGHTS)
_RULE_24 = _composite_rule(_Q_EDGES, 24)


#: :func:`_adaptive_in_w`: tolerance on its error estimates (relative), Gauss nodes per half
#: panel, most panels a row adds (a row stops there; not reached on 3,000 random rows with
#: B/A in [1e-5, 1e5], s up to 1e4 and x up to 200: the same values with 3,000 panels) and
#: panels split at once
_ADAPTIVE_TOL = 1e-10
_ADAPTIVE_NODES = np.polynomial.legendre.leggauss(8)
_ADAPTIVE_PANELS = 160
_ADAPTIVE_SPLITS = 4


def _power_integral_checked(A, p, B, q, lo, hi, moments):
    """:func:`power_integral` with its default rule: per row the fixed rule that is exact there,
    else :func:`_adaptive_in_w` (see :data:`_RULE_16`)."""
    M = p + q - 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        V = q * np.abs(np.log((B + lo) / (A + lo)))
    use16 = (M >= 0.3) & (V <= 1.0)
    if use16.all():
        return power_integral(A, p, B, q, lo, hi, moments=moments, rule=_RULE_16)
    use24 = ~use16 & (((M >= 0.5) & (V <= 2.0)) | ((M >= 1.0) & (V <= 3.0)))
    return _by_rows(A, p, B, q, lo, hi, moments, ((use16, _RULE_16), (use24, _RULE_24)))


def short_power_integral(A, p, B, q, lo, hi, *, moments: bool = False):
    """:func:`power_integral` over short intervals (``y(hi) >= 0.9``): :data:`SHORT_RULE` where
    ``q ln((B+u)/(A+u))`` changes by at most 2 between ``lo`` and ``hi``, adaptive panels
    elsewhere. On 20,000 random such rows (A, B in [0.1, 1000], s up to 1000) the one panel was
    within 1.7e-11 of the adaptive rule up to that change and missed by up to 0.05 beyond it."""
    A, p, B, q, lo, hi = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (A, p, B, q, lo, hi)))
    with np.errstate(divide="ignore", invalid="ignore"):
        change = q * np.abs(np.log((B + lo) / (A + lo)) - np.log((B + hi) / (A + hi)))
    ok = change <= 2.0
    if ok.all():
        return power_integral(A, p, B, q, lo, hi, moments=moments, rule=SHORT_RULE)
    return _by_rows(A, p, B, q, lo, hi, moments, ((ok, SHORT_RULE),))


def _by_rows(A, p, B, q, lo, hi, moments, choices):
    """:func:`power_integral` with each ``(rows, rule)`` of ``choices``, the other rows by
    :func:`_adaptive_in_w`."""
    M = p + q - 1.0
    n_out = 5 if moments else 1
    out = [np.empty(A.shape) for _ in range(n_out)]
    done = np.zeros(A.shape, dtype=bool)
    for use, rule in choices:
        if use.any():
            got = power_integral(A[use], p[use], B[use], q[use], lo[use], hi[use], moments=moments, rule=rule)
            for k, o in enumerate(got if moments else (got,)):
                out[k][use] = o
        done |= use
    slow = ~done
    if slow.any():
        alo = A[slow] + lo[slow]
        with np.errstate(divide="ignore"):
            w_hi = np.log1p((hi[slow] - lo[slow]) / alo)
        got = _adaptive_in_w(M[slow], (B[slow] - A[slow]) / alo, (B[slow] + lo[slow]) / alo, q[slow], alo, w_hi)
        for k in range(n_out):
            out[k][slow] = got[k]
    return tuple(out) if moments else out[0]


def _adaptive_in_w(M, c, one_c, q, alo, w_hi):
    """:func:`power_integral` in ``w = ln((A+u)/(A+lo))`` from 0 to ``w_hi`` (1-d arrays; ln I and
    the four moments), where it reads ``(A+lo)^-M int e^(-M w) (1 + c e^(-w))^-q dw`` with
    ``c = (B-A)/(A+lo)``; ``one_c`` is ``1 + c`` from the inputs, ``(B+lo)/(A+lo)``, without
    cancellation. Adaptive Gauss-Legendre panels (the panels whose two halves disagree most with
    the whole are halved until those differences add up to 1e-10 of the integral; the halves are
    then good to about 1e-14) up to where ``q |c| e^-w < e^-40``; beyond, the ratio is 1 to
    double precision and the rest is in closed form."""
    R = M.size
    log_alo = np.log(alo)
    with np.errstate(divide="ignore", invalid="ignore"):
        # the integrand's mode: 0 unless it first rises (c > 0 and q c / (1+c) > M)
        rises = (c > 0) & (q * c / (1.0 + c) > M)
        w_mode = np.where(rises, np.log(np.where(rises, c * (q - M) / M, 1.0)), 0.0)
        qc = q * np.abs(c)
        # beyond w_end, q |c| e^-w < e^-40: the ratio is 1 to double precision
        w_end = np.minimum(np.maximum(np.where(qc > 0, np.log(qc) + 40.0, 0.0), w_mode + 1.0), w_hi)
        w_mode = np.minimum(w_mode, w_hi)   # the largest value on [0, w_hi]
        # where the integral starts to fall: its slope at 0 (at the mode: 0), and with c < 0 the
        # distance to the pole at w = ln(-c)
        slope0 = np.abs(q * c / (1.0 + c) - M)
        scale = np.where(rises, 1.0, np.minimum(1.0, 1.0 / np.maximum(slope0, 1e-300)))
        pole = np.where(c < 0, -np.log1p(np.where(c < 0, -one_c, -0.5)), np.inf)
        scale = np.maximum(np.minimum(scale, pole), 1e-14)
    neg = c < 0

    def log_ratio(i, w):
        """ln(1 + c e^-w); for c < 0 as ln((1+c) + |c| (1 - e^-w)), exact however close c is to -1"""
        cc = c[i, None]
        near = np.where(neg[i, None], one_c[i, None], 1.0) + np.minimum(cc, 0.0) * np.expm1(-w)
        return np.where(neg[i, None], np.log(near), np.log1p(np.maximum(cc, 0.0) * np.exp(-w)))

    rows = np.arange(R)
    ref = -M * w_mode - q * log_ratio(rows, w_mode[:, None])[:, 0]
    x, wt = _ADAPTIVE_NODES

    def gauss(i, a, b):
        """Gauss-Legendre on [a, b] for rows i: the integrand (over its mode's value) and its
        products with w, e^-w, ln(1+ce^-w) and e^-w/(1+ce^-w); shape (5, len(i))"""
        half = (b - a) / 2.0
        w = (a + b)[:, None] / 2.0 + half[:, None] * x
        ez = np.exp(-w)
        l1 = log_ratio(i, w)
        with np.errstate(under="ignore"):
            f = np.exp(-M[i, None] * w - q[i, None] * l1 - ref[i, None]) * wt
        return np.stack([f, f * w, f * ez, f * l1, f * ez * np.exp(-l1)]).sum(-1) * half

    def halves(i, a, b):
        """Gauss-Legendre on the two halves of [a, b] (shape (5, len(i), 2))"""
        m = (a + b) / 2.0
        return np.stack([gauss(i, a, m), gauss(i, m, b)], axis=-1)

    # first panels: doubling from a quarter of the smallest scale at w = 0 up to w_end
    with np.errstate(divide="ignore"):
        doublings = int(np.clip(np.ceil(np.log2(np.max(w_end / scale) * 4.0)), 1, 48)) if R else 1
    edges = np.minimum(scale[:, None] / 4.0 * 2.0 ** np.arange(doublings), w_end[:, None])
    edges = np.concatenate([np.zeros((R, 1)), edges, w_end[:, None]], axis=1)
    n0 = edges.shape[1] - 1
    P = n0 + _ADAPTIVE_PANELS
    a, b = np.zeros((R, P)), np.zeros((R, P))
    H, E = np.zeros((5, R, P, 2)), np.zeros((R, P))      # each panel's halves; error estimate
    a[:, :n0], b[:, :n0] = edges[:, :-1], edges[:, 1:]
    for j in range(n0):
        H[:, :, j] = halves(rows, a[:, j], b[:, j])
        E[:, j] = np.abs(H[0, :, j].sum(-1) - gauss(rows, a[:, j], b[:, j])[0])
    # split the panels with the largest estimates (|two halves - one panel|, which for Gauss
    # rules is far above the error of the halves) until they add up to the tolerance; a child's
    # one-panel value is its parent's half, so a split costs four 8-node rules
    count = np.full(R, n0)
    active = rows
    while active.size:
        keep = (E[active].sum(-1) > _ADAPTIVE_TOL * H[0, active].sum((-1, -2))) & (count[active] + _ADAPTIVE_SPLITS <= P)
        active = active[keep]
        if not active.size:
            break
        j = np.argpartition(-E[active], _ADAPTIVE_SPLITS - 1, axis=-1)[:, :_ADAPTIVE_SPLITS]   # (n, k)
        ii = np.repeat(active, _ADAPTIVE_SPLITS)
        jj = j.ravel()
        lo_, hi_ = a[ii, jj], b[ii, jj]
        mid = (lo_ + hi_) / 2.0
        coarse = H[0, ii, jj]                                       # (n*k, 2)
        new = (count[active][:, None] + np.arange(_ADAPTIVE_SPLITS)).ravel()
        for half, slot, (u, v) in ((0, jj, (lo_, mid)), (1, new, (mid, hi_))):
            h = halves(ii, u, v)
            a[ii, slot], b[ii, slot] = u, v
            H[:, ii, slot] = h
            E[ii, slot] = np.abs(h[0].sum(-1) - coarse[:, half])
        count[active] += _ADAPTIVE_SPLITS
    head = H.sum((-1, -2))                                 # (5, R)
    # from w_end to w_hi: int e^(-M w) (1, w, e^-w, c e^-w, e^-w) dw in closed form
    with np.errstate(under="ignore", over="ignore", invalid="ignore"):
        span = w_hi - w_end                                # inf for tails, 0 where w_end = w_hi
        # e^(-M w_end) over the mode's value (at most about 1 where the rest is not empty)
        e0 = np.where(span > 0, np.exp(-M * w_end - ref), 0.0)
        e1 = np.where(span > 0, np.exp(-(M + 1.0) * w_end - ref), 0.0)
        far = e0 * -np.expm1(-M * span) / M
        far_w = e0 * (w_end / M + 1.0 / M**2) - np.where(
            np.isinf(span), 0.0, e0 * np.exp(-M * span) * (w_hi / M + 1.0 / M**2))
        far1 = e1 * -np.expm1(-(M + 1.0) * span) / (M + 1.0)
    tot = head + np.stack([far, far_w, far1, c * far1, far1])
    with np.errstate(divide="ignore", invalid="ignore"):   # lo == hi: ln I = -inf
        log_i = -M * log_alo + ref + np.log(tot[0])
        return (log_i, log_alo + tot[1] / tot[0], tot[2] / tot[0] / alo,
                log_alo + (tot[1] + tot[3]) / tot[0], tot[4] / tot[0] / alo)
