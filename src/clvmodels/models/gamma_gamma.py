"""Gamma-Gamma model of spend per purchase.

Fader, P. S. & Hardie, B. G. S. (2013). The Gamma-Gamma model of monetary value.
http://brucehardie.com/notes/025/ (building on Colombo & Jiang 1999).

Each purchase of a customer is worth ``z ~ Gamma(p, nu)``; across customers
``nu ~ Gamma(q, v)``. The mean of ``x`` purchases, ``zbar``, is then ``Gamma(p x, nu x)``.
Spend is assumed independent of the purchase process.
"""

from __future__ import annotations

import datetime as _dt
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

from clvmodels._compress import compress
from clvmodels._validation import check_rfm
from clvmodels.exceptions import (
    ConvergenceError,
    DataValidationError,
    ModelAssumptionWarning,
    ModelError,
)
from clvmodels.models._base import BaseModel
from clvmodels.models._fitting import penalized_objective, subsample_weights

__all__ = ["GammaGammaModel", "gamma_gamma_log_likelihood", "conditional_spend", "CORRELATION_WARNING_THRESHOLD"]

#: |Pearson correlation| between frequency and mean spend above which we warn
CORRELATION_WARNING_THRESHOLD = 0.3


@dataclass(frozen=True)
class _Data:
    """Repeat buyers' (x, zbar) with weights; terms in x alone are evaluated per distinct x."""

    x: np.ndarray
    m: np.ndarray
    w: np.ndarray
    xs: np.ndarray
    ix: np.ndarray
    W_x: np.ndarray
    sum_w_log_m: float
    sum_wx_log_m: float
    n: float


def _terms(params: tuple[float, float, float], d: _Data, grad: bool):
    """Per-row log-likelihood (Fader & Hardie 2013, eq. 4, in logs), or with ``grad`` the
    weighted total and its gradient.

    ``ln f(zbar | x) = ln G(px+q) - ln G(px) - ln G(q) + q ln v + (px-1) ln zbar + px ln x
    - (px+q) ln(v + x zbar)``. Only the last term needs a logarithm per row; the gamma
    functions depend on x alone and the ``ln zbar`` sums do not depend on the parameters.
    """
    p, q, v = params
    xs = d.xs
    pxs = p * xs
    lg_x = special.gammaln(pxs + q) - special.gammaln(pxs) - special.gammaln(q) + q * np.log(v) + pxs * np.log(xs)
    px = p * d.x
    vxm = v + d.x * d.m
    log_vxm = np.log(vxm)
    if not grad:
        return lg_x[d.ix] + (px - 1) * np.log(d.m) - (px + q) * log_vxm, None
    w = d.w
    wx_log_vxm = (w * d.x * log_vxm).sum()
    w_log_vxm = (w * log_vxm).sum()
    # weighted total without a per-row ln(zbar): its sums were taken once in _prepare
    total = (d.W_x * lg_x).sum() + p * d.sum_wx_log_m - d.sum_w_log_m - p * wx_log_vxm - q * w_log_vxm
    psi_x = special.digamma(pxs + q)
    g_p = (d.W_x * xs * (psi_x - special.digamma(pxs) + np.log(xs))).sum() + d.sum_wx_log_m - wx_log_vxm
    g_q = (d.W_x * psi_x).sum() - d.n * special.digamma(q) + d.n * np.log(v) - w_log_vxm
    g_v = d.n * q / v - (w * (px + q) / vxm).sum()
    return total, np.array([g_p, g_q, g_v])


def _prepare(x: np.ndarray, m: np.ndarray, weights: np.ndarray | None = None) -> _Data:
    x = np.asarray(x, float)
    m = np.asarray(m, float)
    w = np.ones_like(x) if weights is None else np.asarray(weights, float)
    ix, xs = pd.factorize(x, sort=False)
    xs = np.asarray(xs, float)
    log_m = np.log(m)
    return _Data(x, m, w, xs, ix, np.bincount(ix, weights=w, minlength=len(xs)),
                 float((w * log_m).sum()), float((w * x * log_m).sum()), float(w.sum()))


def conditional_spend(p: Any, q: Any, v: Any, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """E[spend per purchase | x, zbar] (Fader & Hardie 2013, eq. 5), broadcasting over the
    parameters (e.g. a column of parameter draws against a row of customers).

    ``p (v + x zbar) / (p x + q - 1)``: a weighted mean of the population mean ``p v / (q - 1)``
    and the customer's own mean; customers without a repeat purchase or with zero spend get the
    population mean.
    """
    valid = (x > 0) & (m > 0)
    return np.where(valid, p * (v + x * m) / (p * x + q - 1), p * v / (q - 1))


def gamma_gamma_log_likelihood(params: dict[str, float] | pd.Series, frequency: Any, monetary_value: Any) -> np.ndarray:
    """Log-likelihood of each repeat buyer's mean spend under Gamma-Gamma (pure function)."""
    x = np.asarray(frequency, float)
    d = _prepare(x, np.asarray(monetary_value, float), np.ones_like(x))
    ll, _ = _terms(tuple(float(params[k]) for k in ("p", "q", "v")), d, grad=False)
    return ll


def _objective(theta: np.ndarray, d: _Data, penalizer: float) -> tuple[float, np.ndarray]:
    return penalized_objective(lambda params: _terms(params, d, grad=True), theta, d.n, penalizer)


#: coefficient of variation of repeat buyers' mean spend below which a Gamma-Gamma fit that cannot
#: converge is taken at its constant-spend limit (a log of counts merges same-day purchases into
#: 1, 2, ...: 0.05 on such a generated log; CDNOW's is 0.83); above it the failure is reported
CONSTANT_SPEND_CV = 0.25
#: the shape of a purchase's value at the constant-spend limit (large: no spread)
CONSTANT_P = 1e6


def _spend_spread(d: Any) -> float:
    """Coefficient of variation of the repeat buyers' mean spend (weighted by customers)."""
    mean = float((d.w * d.m).sum() / d.n)
    var = float((d.w * (d.m - mean) ** 2).sum() / d.n)
    return float(np.sqrt(var) / mean) if mean > 0 else float("inf")


class GammaGammaModel(BaseModel):
    """Gamma-Gamma model of the value of a customer's purchases (Fader & Hardie 2013).

    Parameters
    ----------
    penalizer_coef : float, default 0
        L2 penalty on ``p, q, v`` added to the mean negative log-likelihood.
    tol, max_iter :
        Optimiser settings.

    Attributes
    ----------
    params_ : pandas.Series
        ``p``, ``q``, ``v``.
    log_likelihood_, n_customers_, converged_, covariance_log_, time_unit_ :
        As for :class:`BetaGeoModel`; ``n_customers_`` counts the repeat buyers fitted.
    n_excluded_ : int
        Customers left out of the fit (no repeat purchase, or zero mean spend).
    frequency_spend_correlation_ : float
        Pearson correlation of frequency and mean spend among the fitted customers.

    Notes
    -----
    Only repeat buyers with positive mean spend carry information: ``monetary_value`` is the
    mean of the repeat purchases. Everyone else is excluded from fitting, and
    :meth:`expected_spend` gives them the population mean ``p v / (q - 1)``. The model assumes
    spend is independent of purchase frequency; a correlation stronger than
    ``CORRELATION_WARNING_THRESHOLD`` (0.3) in absolute value raises a
    :class:`ModelAssumptionWarning`. ``q <= 1`` leaves the mean spend undefined and is an
    error.

    References
    ----------
    Fader, P. S. & Hardie, B. G. S. (2013). The Gamma-Gamma model of monetary value.
    """

    _param_names = ("p", "q", "v")
    #: q and v running to infinity together (v/q kept) is the model whose spend rate nu is the
    #: same for every customer: purchases' values all follow one Gamma(p, nu) distribution
    _limit_pairs = (("q", "v"),)
    _long_name = "Gamma-Gamma spend model"
    _reference = "Fader & Hardie (2013), The Gamma-Gamma model of monetary value, brucehardie.com/notes/025."

    def _after_params_set(self) -> None:
        q = float(self.params_["q"])
        if q <= 1:
            raise ModelError(
                f"Gamma-Gamma q = {q:.4g} <= 1: the mean spend p*v/(q-1) is undefined (spend is "
                "too heavy-tailed for this model). Check monetary_value for extreme outliers or "
                "use a penalizer_coef."
            )

    def fit(self, rfm: pd.DataFrame, y: Any = None, *, weights: Any = None) -> GammaGammaModel:
        """Fit by maximum likelihood on the repeat buyers with positive spend.

        Parameters
        ----------
        rfm : DataFrame
            ``frequency`` and ``monetary_value`` per customer (``recency`` and ``T`` are not
            used but checked when present).
        weights : array-like, optional
            Number of customers each row stands for.

        Returns
        -------
        self

        Raises
        ------
        DataValidationError
            Missing columns, or no repeat buyer with positive spend.
        ModelError
            The estimate of ``q`` is at most 1.
        ConvergenceError
            Every optimisation strategy failed.
        """
        self._check_init_params()
        if not isinstance(rfm, pd.DataFrame) or not {"frequency", "monetary_value"} <= set(rfm.columns):
            cols = list(rfm.columns) if isinstance(rfm, pd.DataFrame) else type(rfm).__name__
            raise DataValidationError(
                f"GammaGammaModel.fit needs a DataFrame with columns 'frequency' and "
                f"'monetary_value'; got {cols}."
            )
        if {"recency", "T"} <= set(rfm.columns):
            check_rfm(rfm, monetary=True)
        x = rfm["frequency"].to_numpy(float)
        m = rfm["monetary_value"].to_numpy(float)
        bad = ~np.isfinite(m) | (m < 0)
        if bad.any():
            raise DataValidationError(
                f"Column 'monetary_value': {int(bad.sum())} of {len(m)} rows are negative, missing "
                f"or infinite (examples: {m[bad][:5].tolist()}). Mean spend must be >= 0."
            )
        keep = (x > 0) & (m > 0)
        w = self._fit_weights(weights, len(x))
        w = np.ones_like(x) if w is None else w
        if not keep.any():
            raise DataValidationError(
                "No repeat buyer with positive spend (frequency > 0 and monetary_value > 0): "
                "the Gamma-Gamma model has nothing to learn from."
            )
        xk, mk, wk = x[keep], m[keep], w[keep]
        corr = float(np.corrcoef(xk, mk)[0, 1]) if keep.sum() > 2 and np.std(mk) > 0 and np.std(xk) > 0 else 0.0
        self.frequency_spend_correlation_ = corr
        if abs(corr) > CORRELATION_WARNING_THRESHOLD:
            warnings.warn(
                f"Frequency and mean spend are correlated (Pearson r = {corr:.2f}); the "
                "Gamma-Gamma model assumes they are independent, so expected spend may be biased.",
                ModelAssumptionWarning,
                stacklevel=2,
            )
        d = _prepare(xk, mk, wk)
        mean_m = float((d.w * d.m).sum() / d.n)
        # start from p = 1, q = 2 and v matching the observed mean: mean = p v / (q - 1)
        starts = [np.log([1.0, 2.0, mean_m]), np.zeros(3), np.log([5.0, 5.0, 4 * mean_m / 5])]
        penalizer = float(self.penalizer_coef)
        warm = None
        ws = subsample_weights(d.w)
        if ws is not None:
            k = ws > 0
            small = _prepare(d.x[k], d.m[k], ws[k])
            warm = lambda th: _objective(th, small, penalizer)  # noqa: E731
        try:
            self._maximise(lambda th: _objective(th, d, penalizer), starts, d.n, warm)
        except ConvergenceError:
            spread = _spend_spread(d)
            if spread >= CONSTANT_SPEND_CV:
                raise
            self._constant(d, spread)  # a log of counts or one price: spend is the constant it is
        try:
            self._after_params_set()
        except ModelError:
            self._forget()  # no usable parameters: forecasts must not go on with them
            raise
        ll, _ = _terms(self._p(), d, grad=False)
        self.log_likelihood_ = float((d.w * ll).sum())
        self.n_customers_ = int(round(d.n))
        self.n_excluded_ = int(round(w[~keep].sum()))
        self.time_unit_ = rfm.attrs.get("time_unit")
        return self

    def _constant(self, d: Any, spread: float) -> None:
        """Place the model at its constant-spend limit: every purchase worth the repeat buyers'
        mean spend per purchase ``c``, for every customer. Gamma-Gamma's conditional spend is
        ``((q - 1) c + p x zbar) / (p x + q - 1)`` with ``v = (q - 1) c / p``: with ``q`` a million
        times ``p`` times the most purchases it is ``c`` to 1e-6, and a large ``p`` leaves no
        randomness in the value of a purchase. Nothing is estimated (no standard errors)."""
        c = float((d.w * d.x * d.m).sum() / (d.w * d.x).sum())
        p = CONSTANT_P
        q = 1e6 * p * max(float(d.x.max()), 1.0)
        self.params_ = pd.Series({"p": p, "q": q, "v": (q - 1) * c / p}, name="estimate")
        self.converged_ = True
        self.covariance_log_ = np.zeros((3, 3))
        self.fit_info_ = {
            "source": "constant spend", "constant_spend": c, "spend_spread": spread, "at_limit": ["p", "q", "v"],
            "limits": [f"Spend per purchase barely varies (coefficient of variation {spread:.2f} across repeat "
                       f"buyers), too little for Gamma-Gamma to tell customers apart: spend is taken as constant, "
                       f"{c:,.4g} per purchase for every customer."],
            "fitted_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }

    def _describe_limit(self, first: str, second: str, v1: float, v2: float) -> str:
        return ("Spend barely differs between customers (q and v ran to infinity): every customer's purchases "
                "follow the same distribution of value, so their own past spend does not change their forecast "
                "(each is forecast to spend the population's mean per purchase).")

    @property
    def constant_spend(self) -> float | None:
        """The spend per purchase when the model is at its constant-spend limit (a log without
        price variation), else None."""
        self._check_fitted()
        return (self.fit_info_ or {}).get("constant_spend")

    @property
    def mean_spend(self) -> float:
        """Population mean spend per purchase, ``E[z] = p v / (q - 1)``."""
        p, q, v = self._p()
        return p * v / (q - 1)

    def _expected(self, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        return conditional_spend(*self._p(), x, m)

    def expected_spend(self, rfm: pd.DataFrame) -> pd.Series:
        """Conditional expected spend per purchase, ``E[Z | x, zbar] = p (v + x zbar) / (p x + q - 1)``.

        Customers without a repeat purchase, or whose mean repeat spend is 0, get the
        population mean :attr:`mean_spend`.
        """
        self._check_fitted()
        if not isinstance(rfm, pd.DataFrame) or not {"frequency", "monetary_value"} <= set(rfm.columns):
            raise DataValidationError("expected_spend needs 'frequency' and 'monetary_value' columns.")
        x = rfm["frequency"].to_numpy(float)
        m = rfm["monetary_value"].to_numpy(float)
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(m))):
            raise DataValidationError("frequency and monetary_value must be finite numbers.")
        c = compress(x, m)
        vals = self._expected(*c.columns)
        return pd.Series(vals[c.inverse], index=rfm.index, name="expected_spend")


def spend_frequency_check(rfm: pd.DataFrame) -> dict[str, Any]:
    """Gamma-Gamma assumes a customer's spend per purchase does not depend on how often they buy;
    this measures it on the repeat buyers: Spearman's rank correlation of ``frequency`` and
    ``monetary_value`` (robust to the spend's heavy tail), its p-value, the number of buyers and a
    sentence: no link (|rho| < 0.1), a weak one (< 0.3; Fader & Hardie's CDNOW note accepts such),
    or a clear one (the values of the most and least frequent buyers may then be off)."""
    rep = rfm[(rfm["frequency"] > 0) & (rfm["monetary_value"] > 0)]
    n = len(rep)
    if n < 30 or rep["monetary_value"].nunique() < 2:
        return {"rho": float("nan"), "p_value": float("nan"), "buyers": n, "words": ""}
    rho, p = stats.spearmanr(rep["frequency"], rep["monetary_value"])
    rho, p = float(rho), float(p)
    way = "rises" if rho > 0 else "falls"
    where = f"Spearman correlation {rho:+.2f} over {n:,} repeat buyers"
    if abs(rho) < 0.1 or p > 0.01:
        words = (f"Spend per purchase does not vary with how often customers buy ({where}), as Gamma-Gamma "
                 "assumes.")
    elif abs(rho) < 0.3:
        words = (f"Spend per purchase {way} weakly with how often customers buy ({where}); Gamma-Gamma assumes "
                 "the two independent, a weak link of the kind Fader & Hardie accept on CDNOW.")
    else:
        words = (f"Spend per purchase {way} clearly with how often customers buy ({where}); Gamma-Gamma assumes "
                 "the two independent, so the value of the most and the least frequent buyers may be off - "
                 "compare the backtest's revenue per tier.")
    return {"rho": rho, "p_value": p, "buyers": n, "words": words}

