"""BG/NBD: the beta-geometric / negative binomial distribution model of repeat purchasing.

Fader, P. S., Hardie, B. G. S. & Lee, K. L. (2005). "Counting your customers" the easy way: an
alternative to the Pareto/NBD model. *Marketing Science* 24(2), 275-284.

While active, a customer buys as a Poisson process with rate ``lambda ~ Gamma(r, alpha)``;
right after each repeat purchase they drop out with probability ``p ~ Beta(a, b)``. Rates are
per unit of the RFM table's time unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from clvmodels._compress import compress
from clvmodels._validation import check_number, check_rfm
from clvmodels.exceptions import DataValidationError
from clvmodels.models._base import BaseModel, penalized_objective, subsample_weights
from clvmodels.models._special import hyp2f1

__all__ = ["BetaGeoModel", "bgnbd_log_likelihood"]


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


def _terms(params: tuple[float, float, float, float], d: _Data, grad: bool):
    """Per-row log-likelihood (FHL 2005 eq. 6, in logs) and, optionally, its gradient."""
    r, alpha, a, b = params
    xs = d.xs
    pos = xs > 0
    lnB_ab = special.betaln(a, b)
    # A1 = ln Gamma(r+x) - ln Gamma(r) + r ln alpha, per distinct x
    a1 = special.gammaln(r + xs) - special.gammaln(r) + r * np.log(alpha)
    lb2 = special.betaln(a, b + xs) - lnB_ab
    lb3 = np.full_like(xs, -np.inf)
    lb3[pos] = special.betaln(a + 1, b + xs[pos] - 1) - lnB_ab
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
    psi_abx = special.digamma(a + b + xs)
    da2 = psi_ab - psi_abx
    da3 = 1.0 / a + psi_ab - psi_abx
    db2 = special.digamma(b + xs) - psi_abx - special.digamma(b) + psi_ab
    db3 = np.zeros_like(xs)
    db3[pos] = special.digamma(b + xs[pos] - 1) - psi_abx[pos] - special.digamma(b) + psi_ab
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


def _objective(theta: np.ndarray, d: _Data, penalizer: float) -> tuple[float, np.ndarray]:
    def total(params):
        ll, g = _terms(params, d, grad=True)
        return (d.w * ll).sum(), g

    return penalized_objective(total, theta, d.n, penalizer)


class BetaGeoModel(BaseModel):
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
        if weights is not None:
            w = np.asarray(weights, float)
            if w.shape != x.shape or not np.all(np.isfinite(w)) or np.any(w < 0):
                raise DataValidationError(
                    f"weights must be {len(x)} finite non-negative numbers, one per row of rfm."
                )
        else:
            w = None
        d = _prepare(x, tx, T, weights=w)
        if d.n <= 0:
            raise DataValidationError("rfm has no customers with positive weight.")
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
            warm = lambda th: _objective(th, small, penalizer)  # noqa: E731
        self._maximise(lambda th: _objective(th, d, penalizer), starts, d.n, warm)
        ll, _ = _terms(self._p(), d, grad=False)
        self.log_likelihood_ = float((d.w * ll).sum())
        self.n_customers_ = int(round(d.n))
        self.time_unit_ = rfm.attrs.get("time_unit")
        return self

    # ---------------------------------------------------------------- predictions
    def _rows(self, rfm: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self._check_fitted()
        check_rfm(rfm)
        self._check_unit(rfm)
        return (rfm["frequency"].to_numpy(float), rfm["recency"].to_numpy(float),
                rfm["T"].to_numpy(float))

    def _per_customer(self, rfm: pd.DataFrame, t: float | None, term: str, name: str) -> pd.Series:
        """P(alive) per row (cheap, elementwise) times a horizon term that depends on
        (frequency, T) only, evaluated once per distinct pair and joined back."""
        x, tx, T = self._rows(rfm)
        p_alive = self._p_alive(x, tx, T)
        if term == "p_alive":
            return pd.Series(p_alive, index=rfm.index, name=name)
        pairs = compress(x.astype(np.int64), T)
        ux, uT = pairs.columns[0].astype(float), pairs.columns[1]
        fn = {"expected": self._expected_if_alive, "survival": self._survival_if_alive,
              "any": self._any_if_alive}[term]
        values = p_alive * fn(t, ux, uT)[pairs.inverse]
        return pd.Series(values, index=rfm.index, name=name)

    def _log_alive_odds(self, x, tx, T):
        """ln of the second term of P(alive)'s denominator (FHL 2005 eq. 13); -inf when x = 0.

        One logarithm per customer: ln(a/(b+x-1)) comes from a table over whole x.
        """
        r, alpha, a, b = self._p()
        xm = np.maximum(x, 1.0)
        top = float(xm.max()) if xm.size else 1.0
        if top < 1e7:
            table = np.log(a) - np.log(b + np.arange(int(top) + 1, dtype=float) - 1 + (np.arange(int(top) + 1) == 0))
            lead = table[xm.astype(np.int64)]
        else:
            lead = np.log(a) - np.log(b + xm - 1)
        odds = lead + (r + x) * np.log((alpha + T) / (alpha + tx))
        return np.where(x > 0, odds, -np.inf)

    def _p_alive(self, x, tx, T):
        return special.expit(-self._log_alive_odds(x, tx, T))

    def probability_alive(self, rfm: pd.DataFrame) -> pd.Series:
        """P(customer still active at T | x, t_x, T) (FHL 2005, eq. 13; Fader et al. 2008 note).

        ``1 / (1 + 1{x>0} a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x))``, evaluated as a logistic of
        a log-odds so it never overflows.
        """
        return self._per_customer(rfm, None, "p_alive", "p_alive")

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
        k = float(dropout_scale)
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

    def _survival_if_alive(self, t, x, T, dropout_scale: float = 1.0):
        """P(alive at T+t | alive at T, x, T) = 2F1(r+x, a; a+b+x; -k t/(alpha+T)), evaluated
        through Pfaff's transformation as (1+s)^-a 2F1(a, a+b-r; a+b+x; s/(1+s))."""
        r, alpha, a, b = self._p()
        s = float(dropout_scale) * t / (alpha + T)
        return np.exp(-a * np.log1p(s)) * hyp2f1(a, a + b - r, a + b + x, s / (1.0 + s))

    def _any_if_alive(self, t, x, T):
        """P(at least one purchase in (T, T+t] | alive at T) = 1 - ((alpha+T)/(alpha+T+t))^(r+x)."""
        r, alpha, a, b = self._p()
        return -np.expm1(-(r + x) * np.log1p(t / (alpha + T)))

    def expected_purchases(self, rfm: pd.DataFrame, t: float) -> pd.Series:
        """Expected purchases in the next ``t`` time units, given each customer's history.

        FHL 2005 eq. 10: ``E[Y(t) | x, t_x, T] = (a+b+x-1)/(a-1) [1 - ((alpha+T)/(alpha+T+t))^(r+x)
        2F1(r+x, b+x; a+b+x-1; t/(alpha+T+t))] / (1 + 1{x>0} a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x))``.
        """
        t = check_number("t", t, minimum=0.0)
        return self._per_customer(rfm, t, "expected", "expected_purchases")

    def probability_alive_after(self, rfm: pd.DataFrame, t: float) -> pd.Series:
        """P(still active at ``T + t`` | x, t_x, T): survival to the end of a horizon.

        Notes
        -----
        Given alive at ``T`` with rate ``lambda`` and dropout probability ``p``, a customer dies
        only right after a purchase, each with probability ``p``; purchases in ``(T, T+t]`` are
        Poisson(``lambda t``), so ``P(alive at T+t | lambda, p, alive at T) = exp(-lambda p t)``.
        The posterior given alive at ``T`` is ``lambda ~ Gamma(r+x, alpha+T)``,
        ``p ~ Beta(a, b+x)``, independent; integrating out ``lambda`` gives
        ``(1 + p t/(alpha+T))^-(r+x)`` and then ``p``:

        ``P(alive at T+t) = P(alive at T) * 2F1(r+x, a; a+b+x; -t/(alpha+T))``.

        It is evaluated through Pfaff's transformation as
        ``((alpha+T)/(alpha+T+t))^a * 2F1(a, a+b-r; a+b+x; t/(alpha+T+t))``. The churn
        probability by the horizon's end is one minus this. Checked against simulation in the
        tests.
        """
        t = check_number("t", t, minimum=0.0)
        return self._per_customer(rfm, t, "survival", "p_alive_after")

    def probability_any_purchase(self, rfm: pd.DataFrame, t: float) -> pd.Series:
        """P(at least one purchase in the next ``t`` | x, t_x, T).

        ``P(alive) * (1 - ((alpha+T)/(alpha+T+t))^(r+x))``: a customer who is gone buys nothing,
        an active one buys unless the Poisson process is silent for ``t`` (the posterior rate is
        Gamma(r+x, alpha+T)).
        """
        t = check_number("t", t, minimum=0.0)
        return self._per_customer(rfm, t, "any", "p_any_purchase")

    def expected_purchases_new_customer(self, t: float | np.ndarray) -> float | np.ndarray:
        """E[X(t)]: expected repeat purchases of a new customer in ``t`` (FHL 2005, eq. 9)."""
        self._check_fitted()
        tt = np.asarray(t, float)
        if not np.all(np.isfinite(tt)) or np.any(tt < 0):
            raise DataValidationError(f"t must be finite and >= 0, got {t!r}.")
        zero = np.zeros_like(tt)
        out = self._expected_if_alive(tt, zero, zero)  # a new customer is alive
        return float(out) if np.ndim(t) == 0 else out

    def probability_purchases(self, n: int | np.ndarray, t: float) -> float | np.ndarray:
        """P(X(t) = n): probability a new customer makes ``n`` repeat purchases in ``t`` (eq. 8)."""
        from scipy import stats  # heavy import, only here

        r, alpha, a, b = self._p()
        t = check_number("t", t, minimum=0.0)
        nn = np.asarray(n)
        if np.any(nn < 0) or np.any(nn != np.floor(nn)):
            raise DataValidationError(f"n must be whole numbers >= 0, got {n!r}.")
        nn = nn.astype(float)
        lnB_ab = special.betaln(a, b)
        log_q = np.log(alpha) - np.log(alpha + t)
        log_1mq = np.log(t) - np.log(alpha + t) if t > 0 else -np.inf
        with np.errstate(invalid="ignore"):
            term1 = np.exp(
                special.betaln(a, b + nn) - lnB_ab + special.gammaln(r + nn) - special.gammaln(r)
                - special.gammaln(nn + 1) + r * log_q + np.where(nn > 0, nn * log_1mq, 0.0)
            )
            # 1 - sum_{j<n} NB(j; r, q): the chance of at least n events, had the customer not died
            tail = stats.nbinom.sf(nn - 1, r, np.exp(log_q))
            term2 = np.where(
                nn > 0,
                np.exp(special.betaln(a + 1, np.maximum(b + nn - 1, 1e-300)) - lnB_ab) * tail,
                0.0,
            )
        out = term1 + term2
        return float(out) if np.ndim(n) == 0 else out

    def expected_customers_by_frequency(self, rfm: pd.DataFrame, max_frequency: int = 7) -> pd.DataFrame:
        """Observed vs expected number of customers by number of repeat purchases.

        Expected counts sum ``P(X(T_i) = x)`` over customers with each customer's own ``T``
        (the paper's Figure 2 for the calibration period); the last bin is ``max_frequency+``.
        """
        self._check_fitted()
        check_rfm(rfm)
        Ts, counts = np.unique(rfm["T"].to_numpy(float), return_counts=True)
        ks = np.arange(max_frequency)
        expected = np.zeros(max_frequency + 1)
        for Tv, cnt in zip(Ts, counts, strict=True):
            probs = self.probability_purchases(ks, float(Tv))
            expected[:max_frequency] += cnt * probs
            expected[max_frequency] += cnt * (1 - probs.sum())
        freq = rfm["frequency"].to_numpy()
        observed = np.array([(freq == k).sum() for k in ks] + [(freq >= max_frequency).sum()], float)
        labels = [str(k) for k in ks] + [f"{max_frequency}+"]
        return pd.DataFrame({"observed": observed, "expected": expected},
                            index=pd.Index(labels, name="repeat_purchases"))
