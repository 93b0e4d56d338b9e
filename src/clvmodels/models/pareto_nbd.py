"""Pareto/NBD: Poisson purchasing with exponential lifetimes, heterogeneous in both.

Schmittlein, D. C., Morrison, D. G. & Colombo, R. (1987). Counting your customers: who are they
and what will they do next? *Management Science* 33(1), 1-24.
Fader, P. S. & Hardie, B. G. S. (2005). A note on deriving the Pareto/NBD model and related
expressions. http://brucehardie.com/notes/009/
Fader, P. S., Hardie, B. G. S. & Lee, K. L. (2005). RFM and CLV: using iso-value curves for
customer base analysis. *Journal of Marketing Research* 42(4), 415-430 (DERT).

While active, a customer buys as a Poisson process with rate ``lambda ~ Gamma(r, alpha)``; the
customer's lifetime is exponential with rate ``mu ~ Gamma(s, beta)``, independent of
``lambda``. Unlike BG/NBD, dropout can happen at any time, not only after a purchase.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from clvmodels._compress import compress
from clvmodels._validation import check_number, check_rfm
from clvmodels.exceptions import DataValidationError
from clvmodels.models._fitting import _SHAPE_LOG, penalized_objective, subsample_weights
from clvmodels.models._purchase import PurchaseModel
from clvmodels.models._special import power_integral, short_power_integral

__all__ = ["ParetoNBDModel", "pareto_nbd_log_likelihood"]


@dataclass(frozen=True)
class _Data:
    x: np.ndarray
    tx: np.ndarray
    T: np.ndarray
    w: np.ndarray
    n: float


def _prepare(x, tx, T, weights=None) -> _Data:
    if weights is None:
        c = compress(x, tx, T)
        x, tx, T = c.columns
        w = c.weights
    else:
        w = np.asarray(weights, dtype=float)
    return _Data(np.asarray(x, float), np.asarray(tx, float), np.asarray(T, float), w, float(w.sum()))


#: rows whose dropout integral is computed directly over [t_x, T] rather than as a difference of
#: tails: where the two tails are within about 10% of each other, their difference would lose
#: digits (M ln((alpha+T)/(alpha+t_x)) below this value)
_DIRECT_BELOW = 0.105


def _dropout_integral(params, x, tx, T, moments: bool):
    """``ln int_{t_x}^T (alpha+u)^-(r+x) (beta+u)^-(s+1) du`` per row (and its moments).

    Computed as ``G(x, t_x) - G(x, T)`` with ``G(x, v) = int_v^inf``: G depends on pairs
    ``(x, t_x)`` and ``(x, T)``, of which there are far fewer than distinct rows (1M generated
    customers: 216k rows, 13k and 4k pairs), so the quadrature runs per pair. Rows where the
    difference would cancel are integrated directly over ``[t_x, T]``.
    """
    r, alpha, s, beta = params
    q = s + 1.0
    n = len(x)
    log_i = np.empty(n)
    mom = [np.empty(n) for _ in range(4)] if moments else None
    M = r + s + x
    direct = M * np.log1p((T - tx) / (alpha + tx)) <= _DIRECT_BELOW
    if direct.any():
        # y(T) >= e^-0.105 here: one short panel is enough where the ratio changes little
        out = short_power_integral(alpha, r + x[direct], beta, q, tx[direct], T[direct], moments=moments)
        if moments:
            log_i[direct] = out[0]
            for k in range(4):
                mom[k][direct] = out[k + 1]
        else:
            log_i[direct] = out
    rest = ~direct
    if rest.any():
        xr, txr, Tr = x[rest], tx[rest], T[rest]
        lo_pairs = compress(xr, txr)
        hi_pairs = compress(xr, Tr)

        def tails(pairs):
            px, pu = pairs.columns
            out = power_integral(alpha, r + px, beta, q, pu, np.inf, moments=moments)
            return tuple(o[pairs.inverse] for o in out) if moments else out[pairs.inverse]

        lo, hi = tails(lo_pairs), tails(hi_pairs)
        g_lo, g_hi = (lo[0], hi[0]) if moments else (lo, hi)
        d = g_hi - g_lo  # <= ln 0.9 or so by construction
        with np.errstate(divide="ignore"):
            log_i[rest] = g_lo + np.log(-np.expm1(d))
        if moments:
            # means under the integrand over [t_x, T] from those over the two tails
            w_hi = np.exp(d) / -np.expm1(d)
            for k in range(4):
                mom[k][rest] = (1.0 + w_hi) * lo[k + 1] - w_hi * hi[k + 1]
    return (log_i, *mom) if moments else log_i


def _terms(params: tuple[float, float, float, float], d: _Data, grad: bool):
    """Per-row log-likelihood and, optionally, the weighted gradient.

    FHL 2005 note, eq. 3 with the dropout term as an integral over the dropout time::

        L = G(r+x) alpha^r beta^s / G(r) [ (alpha+T)^-(r+x) (beta+T)^-s
            + s int_{t_x}^T (alpha+u)^-(r+x) (beta+u)^-(s+1) du ]

    (the first term: still alive at T; the second: died at ``u`` between the last purchase
    and T). The integral equals the paper's hypergeometric ``A_0`` term; it is evaluated by
    :func:`_dropout_integral` and the two terms are added in log space.
    """
    r, alpha, s, beta = params
    x, tx, T = d.x, d.tx, d.T
    rx = r + x
    log_alive = -rx * np.log(alpha + T) - s * np.log(beta + T)
    if grad:
        log_i, e_la, e_ia, e_lb, e_ib = _dropout_integral(params, x, tx, T, moments=True)
    else:
        log_i = _dropout_integral(params, x, tx, T, moments=False)
    log_dead = np.log(s) + log_i
    lse = np.logaddexp(log_alive, log_dead)
    ll = special.gammaln(rx) - special.gammaln(r) + r * np.log(alpha) + s * np.log(beta) + lse
    if not grad:
        return ll, None
    s1 = np.exp(log_alive - lse)  # share of the alive term = P(alive)
    s2 = 1.0 - s1
    w = d.w
    with np.errstate(invalid="ignore"):
        # where the dropout term is empty (t_x = T) its moments are NaN and its share is 0
        e_la, e_ia, e_lb, e_ib = (np.where(s2 > 0, v, 0.0) for v in (e_la, e_ia, e_lb, e_ib))
    g_r = (w * (special.digamma(rx) - special.digamma(r) + np.log(alpha)
                - s1 * np.log(alpha + T) - s2 * e_la)).sum()
    g_alpha = (w * (r / alpha - rx * (s1 / (alpha + T) + s2 * e_ia))).sum()
    g_s = (w * (np.log(beta) - s1 * np.log(beta + T) + s2 * (1.0 / s - e_lb))).sum()
    g_beta = (w * (s / beta - s1 * s / (beta + T) - s2 * (s + 1.0) * e_ib)).sum()
    return ll, np.array([g_r, g_alpha, g_s, g_beta])


def pareto_nbd_log_likelihood(
    params: dict[str, float] | pd.Series, frequency: Any, recency: Any, T: Any
) -> np.ndarray:
    """Log-likelihood of each customer under the Pareto/NBD model, a pure function."""
    x = np.asarray(frequency, float)
    d = _prepare(x, np.asarray(recency, float), np.asarray(T, float), weights=np.ones_like(x))
    ll, _ = _terms(tuple(float(params[k]) for k in ("r", "alpha", "s", "beta")), d, grad=False)
    return ll


def _objective(theta: np.ndarray, d: _Data, penalizer: float) -> tuple[float, np.ndarray]:
    def total(params):
        ll, g = _terms(params, d, grad=True)
        return (d.w * ll).sum(), g

    return penalized_objective(total, theta, d.n, penalizer)


def _one_minus_power_over(s: float, log_base: np.ndarray) -> np.ndarray:
    """``(1 - exp(-(s-1) L)) / (s-1)``, which tends to ``L`` as ``s -> 1``."""
    if abs(s - 1.0) < 1e-12:
        return log_base
    return -np.expm1(-(s - 1.0) * log_base) / (s - 1.0)


@functools.lru_cache(maxsize=4)
def _legendre_nodes(k: int = 256) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(k)


def _pnbd_pmf(n, t, r, alpha, s, beta, clock: Any = None) -> np.ndarray:
    """P(X(t) = n) for a Pareto/NBD customer active at 0 (see
    :meth:`ParetoNBDModel.probability_purchases`); ``n`` broadcasts against the other arguments,
    which broadcast together (e.g. posterior parameters per customer).

    ``clock`` maps time on the dropout clock to time on the purchase clock (a calendar model's
    clocks, :mod:`clvmodels.models.seasonal_pareto`); ``t`` is then on the dropout clock. Without
    it both are the calendar."""
    from scipy import stats  # heavy import, only here

    a_of = (lambda v: v) if clock is None else clock
    n = np.asarray(n, float)
    t, r, alpha, s, beta = np.broadcast_arrays(*(np.asarray(v, float) for v in (t, r, alpha, s, beta)))
    alive = np.exp(-s * np.log1p(t / beta)) * stats.nbinom.pmf(n, r, alpha / (alpha + a_of(t)))
    z, wz = _legendre_nodes()
    u = t[..., None] * (z + 1) / 2
    dens = (s / beta)[..., None] * np.exp(-(s + 1)[..., None] * np.log1p(u / beta[..., None])) * wz * t[..., None] / 2
    pmf = stats.nbinom.pmf(n[..., None], r[..., None], alpha[..., None] / (alpha[..., None] + a_of(u)))
    return alive + (pmf * dens).sum(axis=-1)


class ParetoNBDModel(PurchaseModel):
    """Pareto/NBD model of purchase counts and dropout (Schmittlein, Morrison & Colombo 1987).

    Parameters
    ----------
    penalizer_coef : float, default 0
        L2 penalty ``penalizer_coef * (r^2 + alpha^2 + s^2 + beta^2)`` on the mean negative
        log-likelihood.
    tol : float, default 1e-9
    max_iter : int, default 2000

    Attributes
    ----------
    params_ : pandas.Series
        ``r``, ``alpha`` (purchase rate ``Gamma(r, alpha)``), ``s``, ``beta`` (dropout rate
        ``Gamma(s, beta)``).
    log_likelihood_, n_customers_, converged_, time_unit_, covariance_log_
        As :class:`BetaGeoModel`.

    Notes
    -----
    ``P(alive | x, t_x, T)`` is the share of the first term of the likelihood. Given alive at
    ``T`` the posterior is ``lambda ~ Gamma(r+x, alpha+T)``, ``mu ~ Gamma(s, beta+T)``,
    independent, and with every dropout rate scaled by ``k``:

    * survival to ``T+t``: ``(1 + k t/(beta+T))^-s``;
    * expected purchases: ``(r+x)/(alpha+T) (beta+T)/(k(s-1)) [1 - (1 + k t/(beta+T))^-(s-1)]``
      (FHL 2005 note, eq. 22 without its P(alive) factor);
    * any purchase: the first purchase comes before ``t`` and before dropout,
      ``int_0^t (r+x)/(alpha+T) (1+u/(alpha+T))^-(r+x+1) (1+k u/(beta+T))^-s du``, an integral
      of the same form as the likelihood's, by the same quadrature.

    References
    ----------
    Schmittlein, Morrison & Colombo (1987), *Management Science* 33(1); Fader & Hardie (2005),
    A note on deriving the Pareto/NBD model; Fader, Hardie & Lee (2005), *JMR* 42(4).

    Examples
    --------
    >>> import clvmodels
    >>> from clvmodels.datasets import load_cdnow
    >>> rfm = clvmodels.rfm_summary(load_cdnow("sample"), time_unit="W", observation_end="1997-09-30")
    >>> model = clvmodels.ParetoNBDModel().fit(rfm)
    >>> model.params_.round(3).tolist()
    [0.553, 10.578, 0.606, 11.669]
    """

    _param_names = ("r", "alpha", "s", "beta")
    _vanishing = ("s",)
    _limit_pairs = (("r", "alpha"), ("s", "beta"))
    _long_name = "Pareto/NBD"
    _reference = (
        "Schmittlein, Morrison & Colombo (1987), Counting your customers, Management Science "
        "33(1); Fader & Hardie (2005), A note on deriving the Pareto/NBD model."
    )

    def fit(self, rfm: pd.DataFrame, y: Any = None, *, weights: Any = None) -> ParetoNBDModel:
        """Fit by maximum likelihood (see :meth:`BetaGeoModel.fit` for the arguments)."""
        self._check_init_params()
        check_rfm(rfm)
        x = rfm["frequency"].to_numpy(float)
        tx = rfm["recency"].to_numpy(float)
        T = rfm["T"].to_numpy(float)
        w = self._fit_weights(weights, len(x))
        if w is not None:
            keep = w > 0
            d = _prepare(x[keep], tx[keep], T[keep], weights=w[keep])
        else:
            d = _prepare(x, tx, T)
        if d.n <= 0:
            raise DataValidationError("rfm has no customers with positive weight.")
        self._check_informative(d.x, d.T, d.w)
        mean_x = float((d.w * d.x).sum() / d.n)
        mean_T = float((d.w * d.T).sum() / d.n)
        rate0 = max(mean_T / max(mean_x, 1e-3), 1e-3)
        starts = [
            np.log([1.0, rate0, 1.0, mean_T]),
            np.zeros(4),
            np.log([0.5, rate0 * 0.5, 0.5, 2.0 * mean_T]),
        ]
        penalizer = float(self.penalizer_coef)
        warm = None
        ws = subsample_weights(d.w)
        if ws is not None:
            k = ws > 0
            small = _Data(d.x[k], d.tx[k], d.T[k], ws[k], float(ws[k].sum()))
            warm = lambda th: _objective(th, small, penalizer)  # noqa: E731
        self._maximise(lambda th: _objective(th, d, penalizer), starts, d.n, warm)
        ll, _ = _terms(self._p(), d, grad=False)
        self.log_likelihood_ = float((d.w * ll).sum())
        self.n_customers_ = int(round(d.n))
        self.time_unit_ = rfm.attrs.get("time_unit")
        return self

    def _describe_limit(self, first: str, second: str, v1: float, v2: float) -> str:
        if first == "r":
            return (f"Purchase rates barely differ between customers (r and alpha ran to infinity): "
                    f"every active customer buys about {v1 / v2:.3g} times per time unit.")
        if min(v1, v2) > np.exp(_SHAPE_LOG):
            return (f"Dropout rates barely differ between customers (s and beta ran to infinity): "
                    f"every customer's remaining lifetime is exponential with mean {v2 / v1:.3g} time units.")
        if v1 < 1e-4:
            return ("No dropout is detectable in the data (s ran to 0: the dropout rates pile up at "
                    "zero), so nearly every customer counts as active.")
        if v2 > v1:
            return (f"No dropout is detectable in the data (beta ran to infinity): the mean lifetime, "
                    f"{v2 / v1:.3g} time units, lies far beyond the data, so nearly every customer counts as active.")
        return f"Customers leave almost at once (s ran to infinity; mean lifetime {v2 / v1:.3g} time units)."

    # ---------------------------------------------------------------- hooks
    def _p_alive(self, x, tx, T):
        r, alpha, s, beta = self._p()
        x, tx, T = np.broadcast_arrays(*(np.asarray(v, float).ravel() for v in (x, tx, T)))
        rows = compress(x, tx, T)  # evaluated once per distinct history
        ux, utx, uT = rows.columns
        log_alive = -(r + ux) * np.log(alpha + uT) - s * np.log(beta + uT)
        log_dead = np.log(s) + _dropout_integral(self._p(), ux, utx, uT, moments=False)
        return np.exp(log_alive - np.logaddexp(log_alive, log_dead))[rows.inverse]

    def _expected_if_alive(self, t, x, T, dropout_scale: float = 1.0):
        r, alpha, s, beta = self._p()
        k = float(dropout_scale)
        bT = beta + T
        return (r + x) / (alpha + T) * bT / k * _one_minus_power_over(s, np.log1p(k * t / bT))

    def _survival_if_alive(self, t, x, T, dropout_scale: float = 1.0):
        r, alpha, s, beta = self._p()
        return np.exp(-s * np.log1p(float(dropout_scale) * t / (beta + T)))

    def _any_if_alive(self, t, x, T, dropout_scale: float = 1.0):
        r, alpha, s, beta = self._p()
        k = float(dropout_scale)
        t, x, T = np.broadcast_arrays(*(np.asarray(v, float) for v in (t, x, T)))
        aT, bT = alpha + T, (beta + T) / k
        rx = r + x
        with np.errstate(divide="ignore"):
            log_i = power_integral(aT, rx + 1.0, bT, s, 0.0, t)
            out = np.exp(np.log(rx) + rx * np.log(aT) + s * np.log(bT) + log_i)
        return np.where(t > 0, out, 0.0)

    def _new_customer_alive(self) -> float:
        return 1.0

    def _simulate(self, rng: np.random.Generator, x, T, horizon: float, alive) -> np.ndarray:
        """Posterior draw: ``lambda ~ Gamma(r+x, alpha+T)``, ``mu ~ Gamma(s, beta+T)``; the
        customer buys Poisson(``lambda min(tau, horizon)``) with lifetime ``tau ~ Exp(mu)``."""
        r, alpha, s, beta = self._p()
        lam = rng.gamma(r + x, 1.0 / (alpha + T))
        mu = rng.gamma(s, 1.0 / (beta + T))
        tau = rng.exponential(1.0 / np.maximum(mu, 1e-300))
        return np.where(alive, rng.poisson(lam * np.minimum(tau, horizon)), 0)

    # ---------------------------------------------------------------- extras
    def probability_purchases(self, n: int | np.ndarray, t: float) -> float | np.ndarray:
        """P(X(t) = n) for a new customer.

        Alive throughout with probability ``(beta/(beta+t))^s`` and then negative binomial, or
        dead at ``u < t`` (density ``s/beta (beta/(beta+u))^(s+1)``) with a negative binomial
        count over ``u``; the second part is integrated by Gauss-Legendre quadrature on
        ``[0, t]`` (256 nodes, computed once; the integrand is smooth).
        """
        r, alpha, s, beta = self._p()
        t = check_number("t", t, minimum=0.0)
        nn = np.asarray(n)
        if np.any(nn < 0) or np.any(nn != np.floor(nn)):
            raise DataValidationError(f"n must be whole numbers >= 0, got {n!r}.")
        out = _pnbd_pmf(nn.astype(float), t, r, alpha, s, beta)
        return float(out) if np.ndim(n) == 0 else out

    def _pmf_if_alive(self, n: int, t, x, T, tx):
        """Given active at T the posterior is ``lambda ~ Gamma(r+x, alpha+T)``,
        ``mu ~ Gamma(s, beta+T)`` and lifetimes are memoryless: the new-customer distribution
        with those parameters."""
        r, alpha, s, beta = self._p()
        return _pnbd_pmf(float(n), t, r + x, alpha + T, s, beta + T)

    def expected_discounted_residual_purchases(self, rfm: pd.DataFrame, discount_rate: float) -> pd.Series:
        """DERT: discounted expected residual transactions (Fader, Hardie & Lee 2005, JMR eq. 2).

        ``P(alive) (r+x)/(alpha+T) (beta+T)^s delta^(s-1) U(s, s; delta (beta+T))`` with
        ``delta`` the continuously compounded discount rate per time unit and ``U`` the confluent
        hypergeometric function of the second kind. Multiply by margin x spend for residual CLV.
        """
        delta = check_number("discount_rate", discount_rate, minimum=0.0, min_inclusive=False)
        r, alpha, s, beta = self._p()
        x, tx, T = self._rows(rfm)
        bT = beta + T
        given_alive = (r + x) / (alpha + T) * np.exp(
            s * np.log(bT) + (s - 1) * np.log(delta) + np.log(special.hyperu(s, s, delta * bT)))
        return pd.Series(self._p_alive(x, tx, T) * given_alive, index=rfm.index, name="dert")
