"""BG/BB: the beta-geometric / beta-binomial model for discrete transaction opportunities.

Fader, P. S., Hardie, B. G. S. & Shang, J. (2010). Customer-base analysis in a discrete-time
noncontractual setting. *Marketing Science* 29(6), 1086-1108.

Some businesses give customers a fixed set of occasions to buy: a yearly fund drive, an annual
conference, a weekly event. At each of ``n`` opportunities an active customer transacts with
probability ``p ~ Beta(alpha, beta)``; before each opportunity after the first, an active
customer becomes inactive with probability ``theta ~ Beta(gamma, delta)``. The data per customer
are ``frequency`` x (repeat transactions in opportunities 1..n), ``recency`` t_x (the
opportunity of the last one, 0 if none) and ``n_periods`` n.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from clvmodels._compress import compress
from clvmodels._validation import check_number, raise_bad_rows
from clvmodels.exceptions import DataValidationError
from clvmodels.models._base import BaseModel
from clvmodels.models._fitting import penalized_objective
from clvmodels.models._special import hyp2f1

__all__ = ["BetaGeoBetaBinomModel", "bgbb_log_likelihood"]

BGBB_COLUMNS = ("frequency", "recency", "n_periods")


@dataclass(frozen=True)
class _Data:
    x: np.ndarray
    tx: np.ndarray
    n: np.ndarray
    w: np.ndarray
    total: float


def _check(data: Any, name: str = "data") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not isinstance(data, pd.DataFrame):
        raise DataValidationError(f"{name} must be a DataFrame with columns {list(BGBB_COLUMNS)}.")
    missing = [c for c in BGBB_COLUMNS if c not in data.columns]
    if missing:
        raise DataValidationError(
            f"{name} is missing column(s) {missing}; it has {list(data.columns)}. Build it with "
            "clvmodels.discrete_rfm(transactions, ...)."
        )
    if len(data) == 0:
        raise DataValidationError(f"{name} has no rows (no customers).")
    cols = []
    for c in BGBB_COLUMNS:
        v = pd.to_numeric(data[c], errors="coerce").to_numpy(float)
        bad = ~np.isfinite(v) | (v < 0) | (v != np.floor(v))
        if bad.any():
            raise_bad_rows(c, int(bad.sum()), len(v), data[c][bad].head(5), "are not whole numbers >= 0",
                           "frequency, recency and n_periods count opportunities.")
        cols.append(v)
    x, tx, n = cols
    bad = (x > tx) | (tx > n) | ((x == 0) & (tx > 0)) | ((x > 0) & (tx == 0))
    if bad.any():
        raise_bad_rows("recency", int(bad.sum()), len(x), data["recency"][bad].head(5),
                       "are inconsistent with frequency and n_periods",
                       "Need frequency <= recency <= n_periods, and recency 0 exactly when frequency is 0.")
    return x, tx, n


def _prepare(x, tx, n, weights=None) -> _Data:
    if weights is None:
        c = compress(x.astype(np.int64), tx.astype(np.int64), n.astype(np.int64))
        x, tx, n = (col.astype(float) for col in c.columns)
        w = c.weights
    else:
        w = np.asarray(weights, float)
    return _Data(x, tx, n, w, float(w.sum()))


def _log_terms(params, x, tx, n):
    """Log of each term of the likelihood (FHS 2010, eq. 5), one column per term.

    Column 0: alive through opportunity n; column 1+i (i = 0 .. n-t_x-1): became inactive just
    before opportunity t_x+i+1. Unused columns are -inf. Returns the terms and the beta
    functions' arguments needed for the gradient.
    """
    alpha, beta, gamma, delta = params
    k = int((n - tx).max()) if len(n) else 0
    i = np.arange(k, dtype=float)[None, :]
    lb_ab, lb_gd = special.betaln(alpha, beta), special.betaln(gamma, delta)
    # transaction part B(alpha+x, beta+m-x), m = n (alive) or t_x+i (dead after t_x+i)
    m = np.concatenate([n[:, None], tx[:, None] + i], axis=1)
    # dropout part: B(gamma, delta+n) (alive) or B(gamma+1, delta+t_x+i)
    g_add = np.concatenate([np.zeros((len(n), 1)), np.ones((len(n), k))], axis=1)
    d_add = np.concatenate([n[:, None], tx[:, None] + i], axis=1)
    used = np.concatenate([np.ones((len(n), 1), bool), i < (n - tx)[:, None]], axis=1)
    with np.errstate(invalid="ignore"):
        terms = (special.betaln(alpha + x[:, None], beta + m - x[:, None]) - lb_ab
                 + special.betaln(gamma + g_add, delta + d_add) - lb_gd)
    terms = np.where(used, terms, -np.inf)
    return terms, m, g_add, d_add, used


def _terms(params, d: _Data, grad: bool):
    alpha, beta, gamma, delta = params
    terms, m, g_add, d_add, used = _log_terms(params, d.x, d.tx, d.n)
    ll = special.logsumexp(terms, axis=1)
    if not grad:
        return ll, None
    share = np.where(used, np.exp(terms - ll[:, None]), 0.0)
    x = d.x[:, None]
    ab = special.digamma(alpha + beta + m)
    gd = special.digamma(gamma + g_add + delta + d_add)
    d_alpha = special.digamma(alpha + x) - ab - special.digamma(alpha) + special.digamma(alpha + beta)
    d_beta = special.digamma(beta + m - x) - ab - special.digamma(beta) + special.digamma(alpha + beta)
    d_gamma = special.digamma(gamma + g_add) - gd - special.digamma(gamma) + special.digamma(gamma + delta)
    d_delta = special.digamma(delta + d_add) - gd - special.digamma(delta) + special.digamma(gamma + delta)
    w = d.w[:, None] * share
    g = np.array([np.where(used, w * v, 0.0).sum() for v in (d_alpha, d_beta, d_gamma, d_delta)])
    return ll, g


def bgbb_log_likelihood(params: dict[str, float] | pd.Series, frequency: Any, recency: Any,
                        n_periods: Any) -> np.ndarray:
    """Log-likelihood of each customer under BG/BB (FHS 2010, eq. 5), a pure function."""
    x, tx, n = (np.asarray(v, float) for v in (frequency, recency, n_periods))
    d = _prepare(x, tx, n, weights=np.ones_like(x))
    return _terms(tuple(float(params[k]) for k in ("alpha", "beta", "gamma", "delta")), d, grad=False)[0]


class BetaGeoBetaBinomModel(BaseModel):
    """BG/BB model for discrete transaction opportunities (Fader, Hardie & Shang 2010).

    Parameters
    ----------
    penalizer_coef, tol, max_iter
        As :class:`BetaGeoModel`.

    Attributes
    ----------
    params_ : pandas.Series
        ``alpha``, ``beta`` (transaction probability ``Beta(alpha, beta)``), ``gamma``,
        ``delta`` (dropout probability ``Beta(gamma, delta)``).

    Notes
    -----
    Fitted on a table with ``frequency``, ``recency`` and ``n_periods`` per customer (or per
    distinct pattern with ``weights``), e.g. from :func:`clvmodels.rfm.discrete_rfm`. Predictions follow
    FHS 2010: ``probability_alive`` (eq. 11, active at opportunity n+1), ``expected_purchases``
    over the next opportunities (eq. 13), ``expected_purchases_new_customer`` (eq. 7) and
    ``expected_discounted_residual_purchases`` (DERT, eq. 14).

    Examples
    --------
    >>> from clvmodels.datasets import load_donations
    >>> d = load_donations()
    >>> m = BetaGeoBetaBinomModel().fit(d, weights=d["weights"])
    >>> m.params_.round(3).tolist()
    [1.204, 0.75, 0.657, 2.783]
    """

    _param_names = ("alpha", "beta", "gamma", "delta")
    _long_name = "BG/BB"
    _reference = ("Fader, Hardie & Shang (2010), Customer-base analysis in a discrete-time "
                  "noncontractual setting, Marketing Science 29(6).")

    def fit(self, data: pd.DataFrame, y: Any = None, *, weights: Any = None) -> BetaGeoBetaBinomModel:
        """Fit by maximum likelihood; ``weights`` counts customers per row."""
        self._check_init_params()
        x, tx, n = _check(data)
        if weights is not None:
            d = _prepare(x, tx, n, weights=self._fit_weights(weights, len(x)))
        else:
            d = _prepare(x, tx, n)
        if d.total <= 0:
            raise DataValidationError("data has no customers with positive weight.")
        penalizer = float(self.penalizer_coef)

        def objective(theta):
            def total(params):
                ll, g = _terms(params, d, grad=True)
                return (d.w * ll).sum(), g
            return penalized_objective(total, theta, d.total, penalizer)

        starts = [np.zeros(4), np.log([0.5, 0.5, 0.5, 2.0]), np.log([2.0, 2.0, 0.2, 5.0])]
        self._maximise(objective, starts, d.total)
        ll, _ = _terms(self._p(), d, grad=False)
        self.log_likelihood_ = float((d.w * ll).sum())
        self.n_customers_ = int(round(d.total))
        self.time_unit_ = None
        return self

    def _arrays(self, data):
        self._check_fitted()
        return _check(data)

    def _log_likelihood_rows(self, x, tx, n):
        return special.logsumexp(_log_terms(self._p(), x, tx, n)[0], axis=1)

    def probability_alive(self, data: pd.DataFrame, n_future: int = 1) -> pd.Series:
        """P(active at opportunity n + 1 | x, t_x, n) (FHS 2010, eq. 11); ``n_future`` > 1 is
        :meth:`probability_alive_after` (kept for earlier callers)."""
        return self.probability_alive_after(data, n_future)

    def probability_alive_after(self, data: pd.DataFrame, t: int) -> pd.Series:
        """P(still active at opportunity n + ``t`` | x, t_x, n): one minus it is the churn
        probability by then (the same name and meaning as the continuous-time models', with
        opportunities for time).

        Given the history, surviving ``t`` more dropout coins multiplies the alive term of the
        likelihood by ``B(gamma, delta+n+t) / B(gamma, delta+n)``.
        """
        alpha, beta, gamma, delta = self._p()
        k = check_number("t", t, minimum=1, integer=True)
        x, tx, n = self._arrays(data)
        num = (special.betaln(alpha + x, beta + n - x) - special.betaln(alpha, beta)
               + special.betaln(gamma, delta + n + k) - special.betaln(gamma, delta))
        return pd.Series(np.exp(num - self._log_likelihood_rows(x, tx, n)), index=data.index, name="p_alive")

    def expected_purchases(self, data: pd.DataFrame, t: int) -> pd.Series:
        """Expected transactions in the next ``t`` opportunities (FHS 2010, eq. 13)."""
        alpha, beta, gamma, delta = self._p()
        k = check_number("t", t, minimum=0, integer=True)
        x, tx, n = self._arrays(data)
        if gamma == 1:
            raise DataValidationError("expected_purchases needs gamma != 1 (the closed form divides by gamma - 1).")
        lead = (special.betaln(alpha + x + 1, beta + n - x) - special.betaln(alpha, beta)
                + special.gammaln(gamma + delta) - special.gammaln(1 + delta)
                - self._log_likelihood_rows(x, tx, n))
        # delta/(gamma-1) and the difference below have the same sign, whichever side of 1 gamma is
        g1 = special.gammaln(1 + delta + n) - special.gammaln(gamma + delta + n)
        g2 = special.gammaln(1 + delta + n + k) - special.gammaln(gamma + delta + n + k)
        return pd.Series(np.exp(lead) * delta * (np.exp(g1) - np.exp(g2)) / (gamma - 1), index=data.index, name="expected_purchases")

    def expected_purchases_new_customer(self, t: int | np.ndarray) -> float | np.ndarray:
        """E[X(t)]: expected transactions of a new customer over ``t`` opportunities (eq. 7)."""
        alpha, beta, gamma, delta = self._p()
        nn = np.asarray(t, float)
        out = alpha / (alpha + beta) * delta / (gamma - 1) * (
            1 - np.exp(special.gammaln(gamma + delta) - special.gammaln(1 + delta)
                       + special.gammaln(1 + delta + nn) - special.gammaln(gamma + delta + nn)))
        return float(out) if np.ndim(t) == 0 else out

    def probability_purchases(self, n: int | np.ndarray, t: int) -> float | np.ndarray:
        """P(X(t) = n): a new customer makes ``n`` transactions in ``t`` opportunities (FHS 2010,
        eq. 6) - count first, then the window, as in every model of the package."""
        alpha, beta, gamma, delta = self._p()
        t = check_number("t", t, minimum=0, integer=True)
        out = _bgbb_pmf(np.atleast_1d(np.asarray(n, float)), int(t), alpha, beta, gamma, delta)
        return float(out[0]) if np.ndim(n) == 0 else out

    def conditional_probability_purchases(self, data: pd.DataFrame, n: int, t: int) -> pd.Series:
        """P(exactly ``n`` transactions in the next ``t`` opportunities | x, t_x, n_periods).

        Active at the last opportunity with probability ``B(alpha+x, beta+n-x) B(gamma, delta+n)
        / (B(alpha, beta) B(gamma, delta) L)``; from there the customer is a new one with the
        posterior ``p ~ Beta(alpha+x, beta+n-x)``, ``theta ~ Beta(gamma, delta+n)`` (eq. 6 with
        those); one who is gone makes none."""
        alpha, beta, gamma, delta = self._p()
        k = int(check_number("n", n, minimum=0, integer=True))
        t = int(check_number("t", t, minimum=0, integer=True))
        x, tx, m = self._arrays(data)
        alive = np.exp(special.betaln(alpha + x, beta + m - x) - special.betaln(alpha, beta)
                       + special.betaln(gamma, delta + m) - special.betaln(gamma, delta)
                       - self._log_likelihood_rows(x, tx, m))
        given = _bgbb_pmf(np.full(len(x), float(k)), t, alpha + x, beta + m - x, gamma, delta + m)
        return pd.Series(alive * given + (1 - alive) * (k == 0), index=data.index, name="p_purchases")

    def expected_discounted_residual_purchases(self, data: pd.DataFrame, discount_rate: float) -> pd.Series:
        """DERT per customer at a discount rate per opportunity (FHS 2010, eq. 14)."""
        alpha, beta, gamma, delta = self._p()
        dr = check_number("discount_rate", discount_rate, minimum=0.0, min_inclusive=False)
        x, tx, n = self._arrays(data)
        log = (special.betaln(alpha + x + 1, beta + n - x) - special.betaln(alpha, beta)
               + special.betaln(gamma, delta + n + 1) - special.betaln(gamma, delta) - np.log1p(dr)
               - self._log_likelihood_rows(x, tx, n))
        f = hyp2f1(1.0, delta + n + 1, gamma + delta + n + 1, 1.0 / (1.0 + dr))
        return pd.Series(np.exp(log) * f, index=data.index, name="dert")


def _bgbb_pmf(x: np.ndarray, n: int, alpha, beta, gamma, delta) -> np.ndarray:
    """P(X(n) = x) for a BG/BB customer active at opportunity 0 (FHS 2010, eq. 6); the
    parameters broadcast against ``x`` (e.g. posterior parameters per customer)."""
    x, alpha, beta, gamma, delta = np.broadcast_arrays(*(np.asarray(v, float) for v in (x, alpha, beta, gamma, delta)))
    lb_ab, lb_gd = special.betaln(alpha, beta), special.betaln(gamma, delta)
    with np.errstate(invalid="ignore"):
        out = np.where(x <= n, np.exp(special.betaln(alpha + x, beta + np.maximum(n - x, 0)) - lb_ab
                                      + special.betaln(gamma, delta + n) - lb_gd) * special.comb(n, x), 0.0)
        for i in range(n):
            # inactive just before opportunity i+1, with x transactions in the first i
            ok = x <= i
            out = out + np.where(ok, special.comb(i, x) * np.exp(
                special.betaln(alpha + x, beta + np.maximum(i - x, 0)) - lb_ab
                + special.betaln(gamma + 1, delta + i) - lb_gd), 0.0)
    return out
