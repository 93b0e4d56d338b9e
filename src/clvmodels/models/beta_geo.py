"""BG/NBD: the beta-geometric / negative binomial distribution model of repeat purchasing.

Fader, P. S., Hardie, B. G. S. & Lee, K. L. (2005). "Counting your customers" the easy way: an
alternative to the Pareto/NBD model. *Marketing Science* 24(2), 275-284.

While active, a customer buys as a Poisson process with rate ``lambda ~ Gamma(r, alpha)``;
right after each repeat purchase they drop out with probability ``p ~ Beta(a, b)``. Rates are
per unit of the RFM table's time unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy import special

from clvmodels._compress import compress
from clvmodels._validation import check_number, check_rfm
from clvmodels.exceptions import DataValidationError
from clvmodels.models._fitting import _SHAPE_LOG, penalized_objective, subsample_weights
from clvmodels.models._purchase import PurchaseModel
from clvmodels.models._special import beta_average, hyp2f1

__all__ = ["BetaGeoModel", "bgnbd_log_likelihood"]

#: ``a`` above which the forecasts average over the posterior Beta of the dropout probability by
#: quadrature instead of the closed forms: the Gauss hypergeometric function in those overflows
#: for large ``a`` (at a = 1,000 already), which is where a fit goes when dropout barely varies
#: between customers (a, b -> infinity: one dropout probability a/(a+b) for everyone)
QUADRATURE_ABOVE_A = 30.0


@dataclass(frozen=True)
class _Data:
    """Distinct (x, t_x, T) rows with weights, and each column factorised once more.

    Terms that depend on one column only (gamma and beta functions of x, logs of alpha + T)
    are evaluated on that column's few distinct values and gathered.
    """

    x: np.ndarray
    w: np.ndarray
    xs: np.ndarray
    ix: np.ndarray
    Ts: np.ndarray
    iT: np.ndarray
    txs: np.ndarray
    itx: np.ndarray
    n: float


def _prepare(x: np.ndarray, tx: np.ndarray, T: np.ndarray, weights: np.ndarray | None = None) -> _Data:
    if weights is None:
        c = compress(x, tx, T)
        ux, utx, uT = c.columns
        w = c.weights
    else:
        ux, utx, uT, w = x, tx, T, np.asarray(weights, dtype=float)
    ix, xs = pd.factorize(ux, sort=False)
    iT, Ts = pd.factorize(uT, sort=False)
    itx, txs = pd.factorize(utx, sort=False)
    return _Data(ux.astype(float), w, np.asarray(xs, float), ix, np.asarray(Ts, float), iT,
                 np.asarray(txs, float), itx, float(w.sum()))


def _terms(params: tuple[float, float, float, float], d: _Data, grad: bool, shift: int = 0):
    """Per-row log-likelihood (FHL 2005 eq. 6, in logs) and, optionally, its gradient.

    ``shift = 1`` gives MBG/NBD (Batislam et al. 2007, eq. 3): a customer may also drop out
    right after the first purchase, so every customer has survived ``x + 1`` coin flips and
    the beta functions become ``B(a, b+x+1)`` and ``B(a+1, b+x)`` (the second term for every x).
    """
    r, alpha, a, b = params
    xs = d.xs
    pos = (xs > 0) | (shift > 0)
    lnB_ab = special.betaln(a, b)
    # A1 = ln Gamma(r+x) - ln Gamma(r) + r ln alpha, per distinct x
    a1 = special.gammaln(r + xs) - special.gammaln(r) + r * np.log(alpha)
    bx = b + xs + shift  # second parameter of the posterior of p given alive
    lb2 = special.betaln(a, bx) - lnB_ab
    lb3 = np.full_like(xs, -np.inf)
    lb3[pos] = special.betaln(a + 1, bx[pos] - 1) - lnB_ab
    lT = np.log(alpha + d.Ts)
    ltx = np.log(alpha + d.txs)
    rx = r + d.x
    A2 = lb2[d.ix] - rx * lT[d.iT]
    # ln(e^A2 + e^A3) = A2 + ln(1 + e^(A3-A2)), one exponential per row; A3 = -inf when x = 0
    diff = lb3[d.ix] - rx * ltx[d.itx]
    diff -= A2
    e = np.exp(-np.abs(diff))
    ll = a1[d.ix] + A2 + np.maximum(diff, 0.0) + np.log1p(e)
    if not grad:
        return ll, None
    # shares of the two terms: s3 = e^A3 / (e^A2 + e^A3)
    s3 = np.where(diff > 0, 1.0, e) / (1.0 + e)
    s2 = 1.0 - s3
    psi_r = special.digamma(r)
    psi_ab = special.digamma(a + b)
    psi_abx = special.digamma(a + bx)
    da2 = psi_ab - psi_abx
    da3 = 1.0 / a + psi_ab - psi_abx
    db2 = special.digamma(bx) - psi_abx - special.digamma(b) + psi_ab
    db3 = np.zeros_like(xs)
    db3[pos] = special.digamma(bx[pos] - 1) - psi_abx[pos] - special.digamma(b) + psi_ab
    w = d.w
    ws2, ws3 = w * s2, w * s3
    nx = len(xs)
    # sums over rows grouped by distinct x with bincount (no BLAS inside the optimiser loop)
    W_x = np.bincount(d.ix, weights=w, minlength=nx)
    S2_x = np.bincount(d.ix, weights=ws2, minlength=nx)
    S3_x = np.bincount(d.ix, weights=ws3, minlength=nx)
    g_r = (W_x * (special.digamma(r + xs) - psi_r + np.log(alpha))).sum() - (
        ws2 * lT[d.iT] + ws3 * ltx[d.itx]
    ).sum()
    g_alpha = r * d.n / alpha - (rx * (ws2 / (alpha + d.Ts)[d.iT] + ws3 / (alpha + d.txs)[d.itx])).sum()
    g_a = (S2_x * da2 + S3_x * da3).sum()
    g_b = (S2_x * db2 + S3_x * db3).sum()
    return ll, np.array([g_r, g_alpha, g_a, g_b])


def bgnbd_log_likelihood(
    params: dict[str, float] | pd.Series, frequency: Any, recency: Any, T: Any
) -> np.ndarray:
    """Log-likelihood of each customer under BG/NBD (FHL 2005, eq. 6), a pure function.

    ``ln L = ln G(r+x) - ln G(r) + r ln alpha + ln[ B(a, b+x)/B(a,b) (alpha+T)^-(r+x)
    + 1{x>0} B(a+1, b+x-1)/B(a,b) (alpha+t_x)^-(r+x) ]``, evaluated in log space.
    """
    x = np.asarray(frequency, float)
    d = _prepare(x, np.asarray(recency, float), np.asarray(T, float), weights=np.ones_like(x))
    ll, _ = _terms(tuple(float(params[k]) for k in ("r", "alpha", "a", "b")), d, grad=False)
    return ll


def _objective(theta: np.ndarray, d: _Data, penalizer: float, shift: int = 0) -> tuple[float, np.ndarray]:
    def total(params):
        ll, g = _terms(params, d, grad=True, shift=shift)
        return (d.w * ll).sum(), g

    return penalized_objective(total, theta, d.n, penalizer)


def _eq10(r, alpha, a, b, t, x, T, k):
    """E[purchases in (T, T+t] | alive] for posterior Beta(a, b+x) (b already shifted)."""
    s = k * t / (alpha + T)
    w = s / (1.0 + s)
    f = hyp2f1(a + b - 1 - r, a - 1, a + b + x - 1, w)
    u = -(a - 1) * np.log1p(s)
    # 1 - exp(u) f through expm1 when f > 0 (no cancellation near 1); f < 0 only happens
    # when a + b + x - 1 < 0, where there is no cancellation to guard against
    positive = f > 0
    bracket = np.where(
        positive, -np.expm1(u + np.log(np.where(positive, f, 1.0))), 1.0 - np.exp(u) * f
    )
    return (a + b + x - 1) / ((a - 1) * k) * bracket


def _bg_pmf(n: np.ndarray, t: np.ndarray, r, alpha, a, b) -> np.ndarray:
    """P(X(t) = n) for a BG/NBD customer active at 0 with rate ``Gamma(r, alpha)`` and dropout
    ``Beta(a, b)`` (FHL 2005, eq. 8); every argument broadcasts (e.g. posterior parameters per
    customer)."""
    from scipy import stats  # heavy import, only here

    n, t, r, alpha, a, b = np.broadcast_arrays(*(np.asarray(v, float) for v in (n, t, r, alpha, a, b)))
    lnB_ab = special.betaln(a, b)
    log_q = np.log(alpha) - np.log(alpha + t)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_1mq = np.where(t > 0, np.log(t) - np.log(alpha + t), -np.inf)
        term1 = np.exp(special.betaln(a, b + n) - lnB_ab + special.gammaln(r + n) - special.gammaln(r)
                       - special.gammaln(n + 1) + r * log_q + np.where(n > 0, n * log_1mq, 0.0))
        # 1 - sum_{j<n} NB(j; r, q): the chance of at least n events, had the customer not died
        tail = stats.nbinom.sf(n - 1, r, np.exp(log_q))
        term2 = np.where(n > 0, np.exp(special.betaln(a + 1, np.maximum(b + n - 1, 1e-300)) - lnB_ab) * tail, 0.0)
    return term1 + term2


class BetaGeoModel(PurchaseModel):
    """BG/NBD model of purchase counts and dropout (Fader, Hardie & Lee 2005).

    Parameters
    ----------
    penalizer_coef : float, default 0
        L2 penalty ``penalizer_coef * (r^2 + alpha^2 + a^2 + b^2)`` added to the mean negative
        log-likelihood (as lifetimes' ``penalizer_coef``); keeps estimates finite on small or
        degenerate data.
    tol : float, default 1e-9
        Gradient tolerance of the optimiser (on the mean log-likelihood, log-parameters).
    max_iter : int, default 2000

    Attributes
    ----------
    params_ : pandas.Series
        ``r``, ``alpha``, ``a``, ``b``.
    log_likelihood_ : float
        Maximised log-likelihood (sum over customers, without the penalty).
    n_customers_ : int
    converged_ : bool
    time_unit_ : {"D", "W"} or None
        Taken from the RFM table's ``attrs``.
    covariance_log_ : ndarray
        Covariance of the log-parameters (inverse observed information).

    Notes
    -----
    Fitted by maximum likelihood on the log-parameters with an analytic gradient, on
    compressed sufficient statistics: identical ``(frequency, recency, T)`` rows are one row
    with a weight, and the gamma/beta terms are evaluated once per distinct ``frequency``.

    References
    ----------
    Fader, P. S., Hardie, B. G. S. & Lee, K. L. (2005). "Counting your customers" the easy way.
    *Marketing Science* 24(2), 275-284.

    Examples
    --------
    >>> import clvmodels
    >>> from clvmodels.datasets import load_cdnow
    >>> rfm = clvmodels.rfm_summary(load_cdnow("sample"), time_unit="W", observation_end="1997-09-30")
    >>> model = clvmodels.BetaGeoModel().fit(rfm)
    >>> model.params_.round(3).tolist()
    [0.243, 4.414, 0.793, 2.426]
    """

    _param_names = ("r", "alpha", "a", "b")
    _vanishing = ("a",)
    _limit_pairs = (("r", "alpha"), ("a", "b"))
    #: coin flips survived beyond the x after repeat purchases (1 in MBG/NBD: also one at the first purchase)
    _shift: ClassVar[int] = 0
    _long_name = "BG/NBD"
    _reference = "Fader, Hardie & Lee (2005), Counting your customers the easy way, Marketing Science 24(2)."

    def fit(self, rfm: pd.DataFrame, y: Any = None, *, weights: Any = None) -> BetaGeoModel:
        """Fit by maximum likelihood.

        Parameters
        ----------
        rfm : DataFrame
            ``frequency``, ``recency``, ``T`` per customer (from :func:`clvmodels.rfm_summary`),
            or already-compressed rows with ``weights``.
        weights : array-like, optional
            Number of customers each row stands for.

        Returns
        -------
        self

        Raises
        ------
        DataValidationError
            Missing or inconsistent RFM columns.
        ConvergenceError
            Every optimisation strategy failed (the message says what was tried and what to do).
        """
        self._check_init_params()
        check_rfm(rfm)
        x = rfm["frequency"].to_numpy(float)
        tx = rfm["recency"].to_numpy(float)
        T = rfm["T"].to_numpy(float)
        d = _prepare(x, tx, T, weights=self._fit_weights(weights, len(x)))
        if d.n <= 0:
            raise DataValidationError("rfm has no customers with positive weight.")
        self._check_informative(d.x, d.Ts[d.iT], d.w)
        mean_x = float((d.w * d.x).sum() / d.n)
        mean_T = float((d.w * d.Ts[d.iT]).sum() / d.n)
        # r/alpha is the mean purchase rate: start there with r = 1 and a = b = 1
        alpha0 = max(mean_T / max(mean_x, 1e-3), 1e-3)
        starts = [
            np.log([1.0, alpha0, 1.0, 1.0]),
            np.zeros(4),
            np.log([0.1, alpha0 * 0.1, 0.5, 5.0]),
        ]
        penalizer = float(self.penalizer_coef)
        warm = None
        ws = subsample_weights(d.w)
        if ws is not None:
            k = ws > 0
            small = _prepare(d.x[k], d.txs[d.itx][k], d.Ts[d.iT][k], weights=ws[k])
            warm = lambda th: _objective(th, small, penalizer, self._shift)  # noqa: E731
        self._maximise(lambda th: _objective(th, d, penalizer, self._shift), starts, d.n, warm)
        ll, _ = _terms(self._p(), d, grad=False, shift=self._shift)
        self.log_likelihood_ = float((d.w * ll).sum())
        self.n_customers_ = int(round(d.n))
        self.time_unit_ = rfm.attrs.get("time_unit")
        return self

    def _describe_limit(self, first: str, second: str, v1: float, v2: float) -> str:
        if first == "r":
            return (f"Purchase rates barely differ between customers (r and alpha ran to infinity): "
                    f"every active customer buys about {v1 / v2:.3g} times per time unit.")
        p = v1 / (v1 + v2)
        if min(v1, v2) > np.exp(_SHAPE_LOG):
            return (f"Dropout barely differs between customers (a and b ran to infinity): every "
                    f"customer leaves after a purchase with the same probability, {p:.3g}.")
        if v1 < 1e-4:
            return (f"No dropout is detectable in the data (a ran to 0): the chance of leaving after a "
                    f"purchase is about {p:.2g}, so nearly every customer counts as active.")
        if v2 > v1:
            return (f"No dropout is detectable in the data (b ran to infinity): the chance of leaving "
                    f"after a purchase is about {p:.2g}, so nearly every customer counts as active.")
        return (f"Nearly every customer leaves after their next purchase (a ran to infinity; "
                f"dropout probability {p:.3g}).")

    # ---------------------------------------------------------------- predictions
    def _log_alive_odds(self, x, tx, T):
        """ln of the second term of P(alive)'s denominator (FHL 2005 eq. 13); -inf when x = 0.

        One logarithm per customer: ln(a/(b+x-1)) comes from a table over whole x.
        """
        r, alpha, a, b = self._p()
        b = b + self._shift
        xm = np.maximum(x, 1.0 - self._shift)
        top = float(xm.max()) if xm.size else 1.0
        if top < 1e7:
            grid = np.arange(int(top) + 1, dtype=float)
            table = np.log(a) - np.log(b + grid - 1 + ((grid + self._shift) == 0))
            lead = table[xm.astype(np.int64)]
        else:
            lead = np.log(a) - np.log(b + xm - 1)
        odds = lead + (r + x) * np.log((alpha + T) / (alpha + tx))
        return np.where((x > 0) | (self._shift > 0), odds, -np.inf)

    def _p_alive(self, x, tx, T):
        return special.expit(-self._log_alive_odds(x, tx, T))

    def _expected_if_alive(self, t, x, T, dropout_scale: float = 1.0):
        """E[purchases in (T, T+t] | alive at T, x, T]; ``dropout_scale`` multiplies every
        customer's dropout probability from T on (1 = the model as fitted).

        Given alive with (lambda, p), E = (1 - exp(-lambda k p t)) / (k p) for dropout k p.
        Integrating over the posterior lambda ~ Gamma(r+x, alpha+T), p ~ Beta(a, b+x) gives
        (a+b+x-1)/((a-1) k) [1 - 2F1(r+x, a-1; a+b+x-1; -s)] with s = k t/(alpha+T); for k = 1
        this is FHL 2005 eq. 10 without its P(alive) factor. Pfaff's then Euler's transformation
        turn the 2F1 into (1+s)^-(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; s/(1+s)), whose parameters do
        not grow with x and whose argument lies in [0, 1): no overflow at large frequency.
        """
        r, alpha, a, b = self._p()
        b = b + self._shift
        k = float(dropout_scale)
        if a > QUADRATURE_ABOVE_A:
            # given p: E = (1 - (1 + k p t/(alpha+T))^-(r+x)) / (k p), averaged over Beta(a, b+x)
            t, x, T = np.broadcast_arrays(*(np.asarray(v, float) for v in (t, x, T)))
            c = (k * t / (alpha + T))[..., None]

            def given_p(p):
                return -np.expm1(-(r + x[..., None]) * np.log1p(c * p)) / (k * p)

            return beta_average(given_p, a, b + x)
        if abs(a - 1.0) < 1e-6:
            # a = 1 is a removable 0/0: the average of both sides is exact to ~1e-12
            return 0.5 * (_eq10(r, alpha, 1.0 - 1e-6, b, t, x, T, k) + _eq10(r, alpha, 1.0 + 1e-6, b, t, x, T, k))
        return _eq10(r, alpha, a, b, t, x, T, k)

    def _survival_if_alive(self, t, x, T, dropout_scale: float = 1.0):
        """P(alive at T+t | alive at T, x, T) = 2F1(r+x, a; a+b+x; -k t/(alpha+T)), evaluated
        through Pfaff's transformation as (1+s)^-a 2F1(a, a+b-r; a+b+x; s/(1+s))."""
        r, alpha, a, b = self._p()
        b = b + self._shift
        s = float(dropout_scale) * t / (alpha + T)
        if a > QUADRATURE_ABOVE_A:
            # given p: (1 + k p t/(alpha+T))^-(r+x), averaged over Beta(a, b+x)
            s, x = np.broadcast_arrays(np.asarray(s, float), np.asarray(x, float))
            return beta_average(lambda p: np.exp(-(r + x[..., None]) * np.log1p(s[..., None] * p)), a, b + x)
        return np.exp(-a * np.log1p(s)) * hyp2f1(a, a + b - r, a + b + x, s / (1.0 + s))

    def _any_if_alive(self, t, x, T, dropout_scale: float = 1.0):
        """P(at least one purchase in (T, T+t] | alive at T) = 1 - ((alpha+T)/(alpha+T+t))^(r+x)."""
        r, alpha, a, b = self._p()
        return -np.expm1(-(r + x) * np.log1p(t / (alpha + T)))

    def _new_customer_alive(self) -> float:
        """P(a customer is active right after the first purchase): 1 in BG/NBD."""
        return 1.0

    def _simulate(self, rng: np.random.Generator, x, T, horizon: float, alive) -> np.ndarray:
        """One draw of each customer's purchases in the next ``horizon`` from the posterior:
        rate ``Gamma(r+x, alpha+T)``, dropout ``Beta(a, b+x)`` given active; purchases are the
        smaller of a Poisson count and the geometric number of purchases until dropout."""
        r, alpha, a, b = self._p()
        lam = rng.gamma(r + x, 1.0 / (alpha + T))
        drop = rng.beta(a, b + self._shift + x)
        n_poisson = rng.poisson(lam * horizon)
        n_until = rng.geometric(np.clip(drop, 1e-12, 1.0))
        return np.where(alive, np.minimum(n_poisson, n_until), 0)

    def probability_purchases(self, n: int | np.ndarray, t: float) -> float | np.ndarray:
        """P(X(t) = n): probability a new customer makes ``n`` repeat purchases in ``t`` (eq. 8)."""
        r, alpha, a, b = self._p()
        t = check_number("t", t, minimum=0.0)
        nn = np.asarray(n)
        if np.any(nn < 0) or np.any(nn != np.floor(nn)):
            raise DataValidationError(f"n must be whole numbers >= 0, got {n!r}.")
        out = _bg_pmf(nn.astype(float), t, r, alpha, a, b)
        return float(out) if np.ndim(n) == 0 else out

    def _pmf_if_alive(self, n: int, t, x, T, tx):
        """Given active at T the posterior is ``Gamma(r+x, alpha+T)``, ``Beta(a, b+x)`` (MBG/NBD:
        ``b+x+1``) and the next coin comes after the next purchase: eq. 8 with those parameters."""
        r, alpha, a, b = self._p()
        return _bg_pmf(float(n), t, r + x, alpha + T, a, b + x + self._shift)
