"""MBG/CNBD-k: MBG/NBD with Erlang-k inter-purchase times, for customers who buy regularly.

Platzer, M. & Reutterer, T. (2016). Ticking away the moments: timing regularity helps to better
predict customer activity. *Marketing Science* 35(5), 779-799.

While active, a customer's inter-purchase times are Erlang-k with rate ``lambda`` (k exponential
phases in a row: mean ``k / lambda``, coefficient of variation ``1/sqrt(k)``), ``lambda ~ Gamma(r,
alpha)`` across customers; right after every purchase, the first one included, the customer
drops out with probability ``p ~ Beta(a, b)``. ``k = 1`` is MBG/NBD. The regularity ``k`` is
the same for everyone and is chosen by likelihood.

Why it matters: a customer who buys every four weeks like clockwork and has now been silent for
twelve is probably gone; under a Poisson process (k = 1) twelve silent weeks say much less. The
models of the NBD family ignore the timing between purchases; this one uses the time since
the last purchase relative to the customer's pace.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from clvmodels._compress import compress
from clvmodels._validation import DAYS_PER_UNIT, DAYS_PER_YEAR, check_number, check_rfm
from clvmodels.exceptions import DataValidationError, ParameterError
from clvmodels.models._fitting import _SHAPE_LOG, penalized_objective, subsample_weights
from clvmodels.models._purchase import LIFETIME_YEARS, PurchaseModel
from clvmodels.models._special import _beta_rule, _gamma_rule, beta_means, hyp2f1
from clvmodels.models.beta_geo import QUADRATURE_ABOVE_A

__all__ = ["MBGCNBDModel", "mbgcnbd_log_likelihood"]

#: largest regularity tried when ``k`` is chosen by likelihood (the paper's grocery panel: k = 2)
MAX_K = 12
#: the largest regularity a model may have, fitted or read from a file: the forecasts sum over k
#: phases per future purchase (their cost grows with k), and no buyer is that regular (a tampered
#: model file with k = 20,000 ran for minutes; one with a huge k asked for 9 GB)
K_LIMIT = 100
#: number of future purchases summed in the forecasts: beyond it every term is below 1e-12
_TERMS_CAP = 20_000
#: a forecast's period ends are evaluated at every GRID_STEP-th one (and the last), interpolated between
GRID_STEP = 4


def _history_terms(params, k: int, x, tx, T):
    """The two parts of the likelihood of each history, in logs, without the constant
    ``(k-1) litt - x ln((k-1)!)`` and without ``ln G(r+kx) - ln G(r) + r ln alpha``:

    * ``lD``: dropped out right after the last (x-th repeat) purchase,
      ``B(a+1, b+x)/B(a,b) (alpha+t_x)^-(r+kx)``;
    * ``lA``: still active at ``T``, no purchase since ``t_x``,
      ``B(a, b+x+1)/B(a,b) sum_{i<k} G(r+kx+i)/G(r+kx) (T-t_x)^i / i! (alpha+T)^-(r+kx+i)``
      (``i``: phases of the next inter-purchase time already completed);
    * and the normalised weights of the ``i`` terms (the posterior phase, given active).
    """
    r, alpha, a, b = params
    s = r + k * x
    lnB = special.betaln(a, b)
    lD = special.betaln(a + 1, b + x) - lnB - s * np.log(alpha + tx)
    u = np.maximum(T - tx, 0.0)
    i = np.arange(k, dtype=float)
    # ln u, with u = 0 (bought at T) as a huge negative number: only i = 0 keeps any weight
    log_u = np.where(u > 0, np.log(np.where(u > 0, u, 1.0)), -1e300)
    terms = (special.gammaln(s[..., None] + i) - special.gammaln(s)[..., None]
             - (s[..., None] + i) * np.log(alpha + T)[..., None]
             + i * log_u[..., None] - special.gammaln(i + 1))
    lse = special.logsumexp(terms, axis=-1)
    lA = special.betaln(a, b + x + 1) - lnB + lse
    weights = np.exp(terms - lse[..., None])
    return lD, lA, weights


def mbgcnbd_log_likelihood(params: dict[str, float] | pd.Series, k: int, frequency: Any, recency: Any, T: Any,
                           litt: Any = None) -> np.ndarray:
    """Log-likelihood of each customer under MBG/CNBD-k (Platzer & Reutterer 2016, eq. 9 with
    the MBG dropout at the first purchase), a pure function. ``litt``: each customer's sum of
    the logs of their inter-purchase times (needed to compare values of ``k``; without it the
    constant ``(k-1) litt - x ln((k-1)!)`` is left out)."""
    x = np.asarray(frequency, float)
    tx, TT = np.asarray(recency, float), np.asarray(T, float)
    p = tuple(float(params[n]) for n in ("r", "alpha", "a", "b"))
    lD, lA, _ = _history_terms(p, int(k), x, tx, TT)
    r, alpha = p[0], p[1]
    ll = special.gammaln(r + k * x) - special.gammaln(r) + r * np.log(alpha) + np.logaddexp(lD, lA)
    if litt is not None:
        ll = ll + (k - 1) * np.asarray(litt, float) - x * special.gammaln(k)
    return ll


def _total(params, k: int, x, tx, T, w, grad: bool):
    """Weighted log-likelihood (without the constant) and its gradient in (r, alpha, a, b)."""
    r, alpha, a, b = params
    s = r + k * x
    lD, lA, wi = _history_terms(params, k, x, tx, T)
    both = np.logaddexp(lD, lA)
    ll = special.gammaln(s) - special.gammaln(r) + r * np.log(alpha) + both
    total = float((w * ll).sum())
    if not grad:
        return total, None
    pD = np.exp(lD - both)
    pA = 1.0 - pD
    i = np.arange(k, dtype=float)
    # d lA / d r and d lA / d alpha through the phase terms (weights wi sum to 1 per row)
    dA_r = (wi * (special.digamma(s[:, None] + i) - special.digamma(s)[:, None])).sum(axis=1) - np.log(alpha + T)
    dA_alpha = -(wi * (s[:, None] + i)).sum(axis=1) / (alpha + T)
    psi_ab, psi_abx1 = special.digamma(a + b), special.digamma(a + b + x + 1)
    g_r = (w * (special.digamma(s) - special.digamma(r) + np.log(alpha)
                + pD * -np.log(alpha + tx) + pA * dA_r)).sum()
    g_alpha = (w * (r / alpha + pD * (-s / (alpha + tx)) + pA * dA_alpha)).sum()
    g_a = (w * (pD * (special.digamma(a + 1) - special.digamma(a)) + psi_ab - psi_abx1)).sum()
    g_b = (w * (pD * special.digamma(b + x) + pA * special.digamma(b + x + 1)
                - special.digamma(b) + psi_ab - psi_abx1)).sum()
    return total, np.array([g_r, g_alpha, g_a, g_b])


class MBGCNBDModel(PurchaseModel):
    """MBG/CNBD-k model of purchase counts, regularity and dropout (Platzer & Reutterer 2016).

    Parameters
    ----------
    k : int, optional
        Regularity: the number of exponential phases of an inter-purchase time (1 = Poisson, as
        MBG/NBD). None (default): chosen by likelihood among 1 .. ``max_k``, which needs each
        customer's ``litt`` (sum of the logs of their inter-purchase times: ``rfm_summary(...,
        regularity=True)``).
    max_k : int, default 12
    penalizer_coef, tol, max_iter
        As for :class:`clvmodels.BetaGeoModel`.

    Attributes
    ----------
    params_ : pandas.Series
        ``r``, ``alpha``, ``a``, ``b`` (as in MBG/NBD; ``r/alpha`` is the mean rate of *phases*, so
        the mean purchase rate of an active customer is ``r / (alpha k)``).
    k_ : int
        The regularity used (given or chosen).
    k_table_ : pandas.DataFrame
        When ``k`` was chosen: log-likelihood (with the ``litt`` term) per ``k`` tried.

    Notes
    -----
    Likelihood of a history ``(x, t_x, T)`` (the first purchase at 0, ``x`` repeat purchases,
    the last at ``t_x``): integrating ``lambda`` and ``p`` out,

    ``L = G(r+kx)/G(r) alpha^r exp((k-1) litt) / ((k-1)!)^x
    [ B(a+1, b+x)/B(a,b) (alpha+t_x)^-(r+kx)
    + B(a, b+x+1)/B(a,b) sum_{i<k} G(r+kx+i)/G(r+kx) (T-t_x)^i/i! (alpha+T)^-(r+kx+i) ]``:

    dropped out right after the last purchase, or still active and the next purchase's ``k``
    phases not all completed in ``T - t_x`` (``i`` completed). ``P(alive)`` is the second
    term's share. Given active, ``lambda`` is a mixture over ``i`` of ``Gamma(r+kx+i, alpha+T)``
    and ``p ~ Beta(a, b+x+1)``; the ``j``-th future purchase comes after ``kj - i`` phases, a
    Gamma time whose distribution, integrated over ``lambda``, is a beta-prime:
    ``P(S_j <= t) = I_{t/(t+alpha+T)}(kj-i, r+kx+i)``. So

    ``E[purchases in (T, T+t] | active] = sum_i w_i sum_j I(kj-i, r+kx+i) B(a, b+x+j)/B(a, b+x+1)``

    (purchase ``j`` happens if it falls in the window and the customer survived the ``j-1``
    coins before it), summed until the terms vanish. Parameters are fitted by maximum
    likelihood with an analytic gradient on the distinct histories (the ``litt`` term does not
    depend on the parameters: only its total enters the choice of ``k``).

    References
    ----------
    Platzer, M. & Reutterer, T. (2016). Ticking away the moments: timing regularity helps to
    better predict customer activity. *Marketing Science* 35(5), 779-799.
    Batislam, E. P., Denizel, M. & Filiztekin, A. (2007). Empirical validation and comparison of
    models for customer base analysis. *IJRM* 24(3), 201-209 (the MBG dropout).
    """

    _param_names = ("r", "alpha", "a", "b")
    _vanishing = ("a",)
    _limit_pairs = (("r", "alpha"), ("a", "b"))
    _reference = ("Platzer & Reutterer (2016), Ticking away the moments: timing regularity helps to better "
                  "predict customer activity, Marketing Science 35(5).")
    #: the posterior given active depends on the time since the last purchase, not only on (x, T)
    _uses_recency_given_alive = True
    #: forecasts are sums over future purchases: intervals use the delta method (see
    #: :func:`clvmodels.forecast.use_delta_method`)
    _costly_forecasts = True

    def __init__(self, k: int | None = None, *, max_k: int = MAX_K, penalizer_coef: float = 0.0, tol: float = 1e-9,
                 max_iter: int = 2000):
        super().__init__(penalizer_coef=penalizer_coef, tol=tol, max_iter=max_iter)
        self.k = k
        self.max_k = max_k

    _FITTED = (*PurchaseModel._FITTED, "k_", "k_table_")

    def _check_init_params(self) -> None:
        super()._check_init_params()
        check_number("max_k", self.max_k, minimum=1, maximum=K_LIMIT, integer=True)
        if self.k is not None:
            check_number("k", self.k, minimum=1, maximum=K_LIMIT, integer=True)

    def _after_params_set(self) -> None:
        if self.k is None:
            raise ParameterError("MBGCNBDModel.from_params needs the regularity k (a whole number >= 1), e.g. k=2.")
        check_number("k", self.k, minimum=1, maximum=K_LIMIT, integer=True)
        check_number("max_k", self.max_k, minimum=1, maximum=K_LIMIT, integer=True)
        self.k_ = int(self.k)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["init_params"] = {**out["init_params"], "k": int(self.k_)}
        return out

    @property
    def _long_name(self) -> str:  # type: ignore[override]
        return f"MBG/CNBD-{getattr(self, 'k_', 'k')}"

    @property
    def n_free_params(self) -> int:
        """r, alpha, a, b and the regularity k when it is chosen by likelihood (k=None)."""
        return len(self._param_names) + int(self.k is None)

    def _defining(self) -> dict[str, Any]:
        return {"k": int(self.k_)}

    # ---------------------------------------------------------------- fitting
    def fit(self, rfm: pd.DataFrame, y: Any = None, *, weights: Any = None) -> MBGCNBDModel:
        """Fit by maximum likelihood; with ``k`` None, for each ``k`` in 1 .. ``max_k`` and keep
        the one of highest likelihood (stopping when it has fallen for two ``k`` in a row).

        ``rfm`` needs ``frequency``, ``recency``, ``T``, and ``litt`` when ``k`` is chosen.
        """
        self._check_init_params()
        check_rfm(rfm)
        x = rfm["frequency"].to_numpy(float)
        tx = rfm["recency"].to_numpy(float)
        T = rfm["T"].to_numpy(float)
        w0 = self._fit_weights(weights, len(x))
        litt_total = None
        if self.k is None:
            if "litt" not in rfm.columns:
                raise DataValidationError(
                    "MBGCNBDModel chooses the regularity k by likelihood, which needs a 'litt' column (each "
                    "customer's sum of the logs of their inter-purchase times): make the table with "
                    "clvmodels.rfm_summary(..., regularity=True), or give k (e.g. MBGCNBDModel(k=2)).")
            litt = rfm["litt"].to_numpy(float)
            if not np.all(np.isfinite(litt)):
                raise DataValidationError("Column 'litt' must be finite (a sum of logs of inter-purchase times).")
            litt_total = float(((np.ones_like(litt) if w0 is None else w0) * litt).sum())
        if w0 is None:
            c = compress(x, tx, T)
            x, tx, T = c.columns
            w = c.weights
        else:
            w = w0
        if float(w.sum()) <= 0:
            raise DataValidationError("rfm has no customers with positive weight.")
        self._check_informative(x, T, w)
        n = float(w.sum())
        xw = float((w * x).sum())
        if self.k is not None:
            self._fit_k(int(self.k), x, tx, T, w, n)
            self.k_ = int(self.k)
        else:
            rows, best = [], None
            for k in range(1, int(self.max_k) + 1):
                trial = MBGCNBDModel(k, penalizer_coef=self.penalizer_coef, tol=self.tol, max_iter=self.max_iter)
                # the rate of phases grows with k: start from the last fit with alpha scaled to match
                start = None if best is None else np.log(best[1].params_.to_numpy()) + np.log(
                    [1.0, (k - 1) / k, 1.0, 1.0])
                try:
                    trial._fit_k(k, x, tx, T, w, n, start)
                except Exception as exc:  # noqa: BLE001 - a k that cannot be fitted is reported, not fatal
                    rows.append({"k": k, "log_likelihood": np.nan, "error": f"{type(exc).__name__}: {exc}"[:200]})
                    continue
                ll = trial.log_likelihood_ + (k - 1) * litt_total - xw * float(special.gammaln(k))
                rows.append({"k": k, "log_likelihood": ll, "error": ""})
                if best is None or ll > best[0]:
                    best = (ll, trial)
                lls = [r["log_likelihood"] for r in rows if np.isfinite(r["log_likelihood"])]
                if len(lls) >= 3 and lls[-1] < lls[-2] < lls[-3]:
                    break
            if best is None:
                raise DataValidationError("MBGCNBDModel could not be fitted for any k: " + rows[-1]["error"])
            for name in ("params_", "converged_", "covariance_log_", "fit_info_"):
                setattr(self, name, getattr(best[1], name))
            self.k_ = int(best[1].k_)
            self.k_table_ = pd.DataFrame(rows).set_index("k")
            self.log_likelihood_ = float(best[0])
        self.n_customers_ = int(round(n))
        self.time_unit_ = rfm.attrs.get("time_unit")
        return self

    def _fit_k(self, k: int, x, tx, T, w, n: float, start: np.ndarray | None = None) -> None:
        """Fit with regularity ``k``; ``start``: log-parameters to try first (the fit at k-1)."""
        penalizer = float(self.penalizer_coef)
        self.k_ = k

        def objective_on(xs, txs, Ts, ws, total):
            return lambda theta: penalized_objective(lambda p: _total(p, k, xs, txs, Ts, ws, grad=True), theta,
                                                     total, penalizer)

        mean_x = float((w * x).sum() / n)
        mean_T = float((w * T).sum() / n)
        alpha0 = max(mean_T / max(k * mean_x, 1e-3), 1e-3)
        starts = [np.log([1.0, alpha0, 1.0, 1.0]), np.zeros(4), np.log([0.1, alpha0 * 0.1, 0.5, 5.0])]
        if start is not None:
            starts.insert(0, np.asarray(start, float))
        # as BG/NBD: a fit on a random subsample of customers gives the start and the curvature
        warm = None
        ws = subsample_weights(w)
        if ws is not None:
            keep = ws > 0
            warm = objective_on(x[keep], tx[keep], T[keep], ws[keep], float(ws.sum()))
        self._maximise(objective_on(x, tx, T, w, n), starts, n, warm)
        self.k_ = k  # (_maximise forgets what an earlier fit set)
        self.log_likelihood_ = _total(self._p(), k, x, tx, T, w, grad=False)[0]

    def _describe_limit(self, first: str, second: str, v1: float, v2: float) -> str:
        if first == "r":
            return (f"Purchase rates barely differ between customers (r and alpha ran to infinity): every "
                    f"active customer buys about {v1 / v2 / self.k_:.3g} times per time unit.")
        p = v1 / (v1 + v2)
        if min(v1, v2) > np.exp(_SHAPE_LOG):
            return (f"Dropout barely differs between customers (a and b ran to infinity): every customer "
                    f"leaves after a purchase with the same probability, {p:.3g}.")
        return (f"No dropout is detectable in the data: the chance of leaving after a purchase is about "
                f"{p:.2g}, so nearly every customer counts as active.")

    # ---------------------------------------------------------------- predictions
    def _p_alive(self, x, tx, T):
        lD, lA, _ = _history_terms(self._p(), self.k_, np.asarray(x, float), np.asarray(tx, float),
                                   np.asarray(T, float))
        return special.expit(lA - lD)

    def _window_sums(self, t, x, T, tx, dropout_scale: float, what: str):
        """Sums over future purchases j >= 1 of P(S_j <= t) times a function of j, given active:
        ``what`` "expected" (survived the j-1 coins before) or "dropped" (dropped at coin j).

        Given the completed phase ``i`` the sum depends on ``(t, x, T)`` only; it is evaluated
        once per distinct ``(t, x, T)`` and phase and mixed with each history's phase weights."""
        t, x, T = np.broadcast_arrays(*(np.asarray(v, float) for v in (t, x, T)))
        tx = T if tx is None else np.broadcast_to(np.asarray(tx, float), T.shape)
        shape = t.shape
        t, x, T, tx = (np.ascontiguousarray(v).ravel() for v in (t, x, T, tx))
        c = compress(t, x, T)
        ut, ux, uT = c.columns
        per_phase = np.empty((len(ut), self.k_))
        # rows in order of how many purchases their sums need, chunked so that each chunk's
        # rows x phases array holds a few million numbers
        need = self._terms_needed(ut, ux, uT)
        order = np.argsort(need, kind="stable")
        c0 = 0
        while c0 < len(order):
            J = int(need[order[min(c0 + 255, len(order) - 1)]])
            step = max(256, 2_000_000 // (J * self.k_))
            rows = order[c0:c0 + step]
            J = int(need[rows].max())
            per_phase[rows] = self._window_chunk(ut[rows], ux[rows], uT[rows], J, dropout_scale, what)
            c0 += step
        _, _, wi = _history_terms(self._p(), self.k_, x, tx, T)
        return (wi * per_phase[c.inverse]).sum(axis=1).reshape(shape)

    def _terms_needed(self, t, x, T) -> np.ndarray:
        """Future purchases to sum per row so that the rest is negligible: the phases in the
        window are negative binomial (shape r+kx+i, success (alpha+T)/(alpha+T+t)); cover its
        mean plus 10 standard deviations plus a geometric tail of 1e-15."""
        r, alpha, _, _ = self._p()
        k = self.k_
        s = r + k * np.asarray(x, float) + k
        z = np.clip(np.asarray(t, float) / (np.asarray(t, float) + alpha + np.asarray(T, float)), 0.0, 1.0 - 1e-12)
        mean = s * z / (1 - z)
        sd = np.sqrt(s * z) / (1 - z)
        with np.errstate(divide="ignore"):
            tail = np.where(z > 0, 35.0 / -np.log(np.where(z > 0, z, 0.5)), 0.0)
        return np.minimum(_TERMS_CAP, np.ceil((mean + 10 * sd + tail) / k) + 2).astype(np.int64)

    def _window_chunk(self, t, x, T, J: int, dropout_scale: float, what: str):
        """See :meth:`_window_sums`. Purchase ``j`` falls in the window when at least ``kj - i``
        phases do; the phases in the window are negative binomial given the history (shape
        ``r+kx+i``, ``z = t/(t+alpha+T)``), so the sum over purchases is a sum over phase counts
        ``n`` of ``P(n phases) C(floor((n+i)/k))`` with ``C`` the cumulative coin weights; the
        probabilities come from their ratio recurrence (no special function per term)."""
        r, alpha, a, b = self._p()
        k = self.k_
        z = t / (t + alpha + T)
        s = r + k * x
        j = np.arange(1, J + 1, dtype=float)
        bb = b + x + 1  # posterior Beta(a, b+x+1) of p, given active
        if dropout_scale == 1.0:
            lnB = special.betaln(a, bb)[:, None]
            if what == "dropped":
                coin = np.exp(special.betaln(a + 1, bb[:, None] + j - 1) - lnB)
            else:
                coin = np.exp(special.betaln(a, bb[:, None] + j - 1) - lnB)
        else:
            # E[(1 - c p)^(j-1)] (times c p) over Beta(a, b+x+1), by Gauss-Jacobi quadrature
            c = float(dropout_scale)
            ub, inv = np.unique(bb, return_inverse=True)
            nodes, weights = _beta_rule(np.full_like(ub, a), ub)
            q = np.clip(c * nodes, 0.0, 1.0)
            powers = np.exp((j[None, :, None] - 1) * np.log1p(-np.minimum(q, 1 - 1e-16))[:, None, :])
            if what == "dropped":
                powers = powers * q[:, None, :]
            coin = (powers * weights[:, None, :]).sum(axis=-1)[inv]
        cum = np.concatenate([np.zeros((len(t), 1)), np.cumsum(coin, axis=1)], axis=1)  # C(0..J)
        n = np.arange(1, k * J, dtype=float)
        out = np.empty((len(t), k))
        if np.all((s + k - 1) * np.log1p(-z) > -600):
            # every shape in linear space: P for shape s by its ratio recurrence in n, then shape
            # s+i from shape s+i-1 by P_{s+1}(n) / P_s(n) = (1-z) (n+s) / s, one product per phase
            pmf = np.empty((len(t), k * J))
            pmf[:, 0] = np.exp(s * np.log1p(-z))
            np.cumprod(z[:, None] * (n[None, :] - 1 + s[:, None]) / n[None, :], axis=1, out=pmf[:, 1:])
            pmf[:, 1:] *= pmf[:, :1]
            all_n = np.arange(k * J, dtype=float)
            for i in range(k):
                if i:
                    pmf *= (1 - z)[:, None] * (all_n[None, :] + (s + i - 1)[:, None]) / (s + i - 1)[:, None]
                out[:, i] = (pmf * cum[:, np.minimum((np.arange(k * J) + i) // k, J)]).sum(axis=1)
            return out
        for i in range(k):
            shape = (s + i)[:, None]
            # P(n phases) by its ratio P(n)/P(n-1) = z (n-1+shape)/n: in logs only where P(0) =
            # (1-z)^shape would underflow
            log_p0 = shape[:, 0] * np.log1p(-z)
            ratios = z[:, None] * (n[None, :] - 1 + shape) / n[None, :]
            linear = log_p0 > -600
            pmf = np.empty((len(t), k * J))
            if linear.all():
                pmf[:, 0] = np.exp(log_p0)
                np.cumprod(ratios, axis=1, out=pmf[:, 1:])
                pmf[:, 1:] *= pmf[:, :1]
            else:
                pmf[linear, 0] = np.exp(log_p0[linear])
                pmf[linear, 1:] = pmf[linear, :1] * np.cumprod(ratios[linear], axis=1)
            if (~linear).any():
                with np.errstate(divide="ignore"):
                    logs = np.cumsum(np.log(ratios[~linear]), axis=1)
                pmf[~linear, 0] = 0.0
                pmf[~linear, 1:] = np.exp(log_p0[~linear, None] + logs)
            idx = np.minimum((np.arange(k * J) + i) // k, J)
            out[:, i] = (pmf * cum[:, idx]).sum(axis=1)
        return out

    def _on_grid(self, t, x, T, tx, dropout_scale: float, what: str):
        """:meth:`_window_sums`; for a row of many horizons shared by every history (the
        forecast's period ends, ``t`` of shape (1, E)), evaluated at every ``GRID_STEP``-th
        horizon and the last, and interpolated linearly between: the sums are smooth in ``t`` and
        only the discount weights of the periods in between use the interpolation (the total over
        the horizon is exact; the discounted sum within 1e-3 of the exact, tested)."""
        tt = np.asarray(t, float)
        if tt.ndim == 2 and tt.shape[0] == 1 and tt.shape[1] > 2 * GRID_STEP:
            cols = np.unique(np.r_[np.arange(0, tt.shape[1], GRID_STEP), tt.shape[1] - 1])
            coarse = self._window_sums(tt[:, cols], x, T, tx, dropout_scale, what)
            coarse = np.broadcast_to(coarse, (coarse.shape[0], len(cols)))
            grid = tt[0]
            # linear interpolation of every row at once: each fine column between two coarse ones
            hi = np.clip(np.searchsorted(grid[cols], grid, side="left"), 1, len(cols) - 1)
            lo = hi - 1
            frac = (grid - grid[cols][lo]) / (grid[cols][hi] - grid[cols][lo])
            return coarse[:, lo] * (1 - frac) + coarse[:, hi] * frac
        return self._window_sums(t, x, T, tx, dropout_scale, what)

    def _expected_if_alive(self, t, x, T, dropout_scale: float = 1.0, tx=None):
        """E[purchases in (T, T+t] | active at T] (see the class notes); ``tx`` None: the last
        purchase was at T (a new customer)."""
        return self._on_grid(t, x, T, tx, dropout_scale, "expected")

    def _lifetime_if_alive(self, x, T, delta: float, dropout_scale: float = 1.0, tx=None) -> dict[str, np.ndarray]:
        """DERT and the discounted time still active, given active at ``T``, in closed form per
        rate (the horizon sums would need every purchase of a regular buyer's decades).

        With ``i`` phases of the next inter-purchase time done, purchase ``j`` comes after
        ``kj - i`` more exponential phases, so ``E[e^(-delta S_j) | lambda] = q^(kj-i)`` with
        ``q = lambda/(lambda+delta)``; it counts if the ``j-1`` coins before it were survived:
        ``DERT = E[q^(k-i) / (1 - (1-cp) q^k)]`` and, the customer leaving at purchase ``J``,
        ``int e^(-delta t) S(t) dt = (1 - E[cp q^(k-i) / (1 - (1-cp) q^k)]) / delta``. ``p ~ Beta(a,
        b+x+1)`` is averaged in closed form (``E[1/(A+Bp)] = 2F1(1, a; a+b; -B/A) / A``),
        ``lambda ~ Gamma(r+kx+i, alpha+T)`` by Gauss-Laguerre quadrature, ``i`` by the history's
        phase weights. Untruncated (at a rate of 0, an e-folding of
        :data:`clvmodels.models._purchase.LIFETIME_YEARS`)."""
        r, alpha, a, b = self._p()
        k = self.k_
        c = float(dropout_scale)
        delta = max(float(delta), DAYS_PER_UNIT[self.time_unit_] / (LIFETIME_YEARS * DAYS_PER_YEAR))
        x, T = np.asarray(x, float), np.asarray(T, float)
        tx = T if tx is None else np.asarray(tx, float)
        _, _, wi = _history_terms(self._p(), k, x, tx, T)
        bb = b + x + 1
        purchases = np.zeros(len(x))
        dropped = np.zeros(len(x))
        for i in range(k):
            shape = r + k * x + i
            ushape, inv = np.unique(shape, return_inverse=True)
            nodes, weights = _gamma_rule(ushape)
            lam = nodes[inv] / (alpha + T)[:, None]
            q = lam / (lam + delta)
            Q = q**k
            A = -np.expm1(k * np.log1p(-delta / (lam + delta)))  # 1 - q^k without cancellation
            B = c * Q
            if a > QUADRATURE_ABOVE_A:
                one, with_p = beta_means(A, B, a, bb)
            else:
                z = -B / A
                one = hyp2f1(1.0, a, (a + bb)[:, None], z) / A
                with_p = (a / (a + bb))[:, None] * hyp2f1(1.0, a + 1, (a + bb + 1)[:, None], z) / A
                # the closed form's 2F1 already fails for some rows at a ~ 25 (a concentrated Beta)
                bad = ~(np.isfinite(one) & np.isfinite(with_p)).all(axis=1)
                if bad.any():
                    one[bad], with_p[bad] = beta_means(A[bad], B[bad], a, bb[bad])
            lead = q ** (k - i)
            purchases += wi[:, i] * (weights[inv] * lead * one).sum(axis=1)
            dropped += wi[:, i] * (weights[inv] * c * lead * with_p).sum(axis=1)
        return {"purchases": purchases, "active": (1.0 - dropped) / delta}

    def _survival_if_alive(self, t, x, T, dropout_scale: float = 1.0, tx=None):
        """P(active at T+t | active at T) = 1 - sum_j P(S_j <= t) E[p (1-p)^(j-1)]."""
        return 1.0 - self._on_grid(t, x, T, tx, dropout_scale, "dropped")

    def _any_if_alive(self, t, x, T, dropout_scale: float = 1.0, tx=None):
        """P(a purchase in (T, T+t] | active at T) = sum_i w_i I_{t/(t+alpha+T)}(k-i, r+kx+i)."""
        r, alpha, a, b = self._p()
        k = self.k_
        t, x, T = np.broadcast_arrays(*(np.asarray(v, float) for v in (t, x, T)))
        tx = T if tx is None else np.broadcast_to(np.asarray(tx, float), T.shape)
        _, _, wi = _history_terms(self._p(), k, x, tx, T)
        i = np.arange(k, dtype=float)
        z = (t / (t + alpha + T))[..., None]
        return (wi * special.betainc(k - i, (r + k * x)[..., None] + i, z)).sum(axis=-1)

    def _pmf_if_alive(self, n: int, t, x, T, tx):
        """P(n purchases in the next t | active): purchases 1..n fall in the window and the
        customer then either drops at coin n or survives it with purchase n+1 beyond the window:
        ``E[p(1-p)^(n-1)] P(S_n <= t) + E[(1-p)^n] (P(S_n <= t) - P(S_{n+1} <= t))`` per phase."""
        r, alpha, a, b = self._p()
        k = self.k_
        _, _, wi = _history_terms(self._p(), k, x, tx, T)
        z = t / (t + alpha + T)
        bb = b + x + 1
        lnB = special.betaln(a, bb)
        out = np.zeros(len(x))
        for i in range(k):
            shape = r + k * x + i

            def reach(j, shape=shape, i=i):  # P(S_j <= t | phase i)
                return special.betainc(k * j - i, shape, z) if j > 0 else np.ones_like(z)

            if n == 0:
                out += wi[:, i] * (1.0 - reach(1))
                continue
            dropped = np.exp(special.betaln(a + 1, bb + n - 1) - lnB)
            survived = np.exp(special.betaln(a, bb + n) - lnB)
            out += wi[:, i] * (dropped * reach(n) + survived * (reach(n) - reach(n + 1)))
        return out

    def _new_customer_alive(self) -> float:
        """P(active right after the first purchase) = E[1 - p] = b/(a+b) (the MBG coin)."""
        _, _, a, b = self._p()
        return b / (a + b)

    def _simulate(self, rng: np.random.Generator, x, T, horizon: float, alive, tx=None) -> np.ndarray:
        """One posterior draw of each active customer's purchases in the next ``horizon``: the
        completed phase ``i`` from its posterior weights, ``lambda ~ Gamma(r+kx+i, alpha+T)``,
        ``p ~ Beta(a, b+x+1)``; phases in the window are Poisson(lambda horizon) and purchase
        ``j`` needs ``kj - i`` of them; the customer stops after a geometric number of purchases."""
        r, alpha, a, b = self._p()
        k = self.k_
        x, T = np.asarray(x, float), np.asarray(T, float)
        tx = T if tx is None else np.asarray(tx, float)
        _, _, wi = _history_terms(self._p(), k, x, tx, T)
        i = (rng.random(len(x))[:, None] > np.cumsum(wi, axis=1)).sum(axis=1).clip(0, k - 1)
        lam = rng.gamma(r + k * x + i, 1.0 / (alpha + T))
        drop = rng.beta(a, b + x + 1)
        n_events = (rng.poisson(lam * horizon) + i) // k
        n_until = rng.geometric(np.clip(drop, 1e-12, 1.0))
        return np.where(alive, np.minimum(n_events, n_until), 0)

    def expected_purchases_new_customer(self, t: float | np.ndarray) -> float | np.ndarray:
        """E[X(t)]: expected repeat purchases of a new customer in ``t``."""
        self._check_fitted()
        tt = np.asarray(t, float)
        if not np.all(np.isfinite(tt)) or np.any(tt < 0):
            raise DataValidationError(f"t must be finite and >= 0, got {t!r}.")
        r, alpha, a, b = self._p()
        k = self.k_
        # at the first purchase: phase 0, lambda ~ Gamma(r, alpha), p ~ Beta(a, b); the first coin
        # is tossed right away, so purchase j happens if S_j <= t and j coins were survived
        J = int(self._terms_needed(np.atleast_1d(tt).ravel(), np.zeros(np.size(tt)), np.zeros(np.size(tt))).max())
        j = np.arange(1, J + 1, dtype=float)
        z = (tt / (tt + alpha))[..., None]
        cdf = special.betainc(k * j, r, z)
        coin = np.exp(special.betaln(a, b + j) - special.betaln(a, b))
        out = (cdf * coin).sum(axis=-1)
        return float(out) if np.ndim(t) == 0 else out

    def probability_purchases(self, n: int | np.ndarray, t: float) -> float | np.ndarray:
        """P(X(t) = n) for a new customer: survive the first coin and ``n`` more with exactly ``n``
        purchases in ``t``, or survive ``n`` coins, drop at the next with at least ``n`` purchases
        possible. ``P(N(t) >= n) = I_{t/(t+alpha)}(kn, r)`` (Erlang-k arrivals, gamma rates)."""
        r, alpha, a, b = self._p()
        k = self.k_
        t = check_number("t", t, minimum=0.0)
        nn = np.asarray(n)
        if np.any(nn < 0) or np.any(nn != np.floor(nn)):
            raise DataValidationError(f"n must be whole numbers >= 0, got {n!r}.")
        nn = nn.astype(float)
        z = t / (t + alpha)

        def at_least(m):
            return np.where(m > 0, special.betainc(np.maximum(k * m, 1e-300), r, z), 1.0)

        lnB = special.betaln(a, b)
        exactly = at_least(nn) - at_least(nn + 1)
        out = (np.exp(special.betaln(a, b + nn + 1) - lnB) * exactly
               + np.exp(special.betaln(a + 1, b + nn) - lnB) * at_least(nn))
        return float(out) if np.ndim(n) == 0 else out

