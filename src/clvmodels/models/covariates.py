"""Time-invariant covariates in BG/NBD and MBG/NBD (issue 17, item 1).

Fader, P. S. & Hardie, B. G. S. (2007), "Incorporating time-invariant covariates into the
Pareto/NBD and BG/NBD models" (note at brucehardie.com), after Gupta (1991): a customer's
covariates ``z`` (acquisition channel, region, plan, ...) scale the mixing distributions,

* purchase rate: ``alpha_i = alpha_0 exp(-gamma_p' z_i)`` - the mean rate ``r / alpha_i`` is
  ``exp(gamma_p' z_i)`` times the reference customers';
* dropout: ``a_i = a_0 exp(gamma_a' z_i)``, ``b_i = b_0 exp(gamma_b' z_i)``;

with separate covariate sets for the purchase and the dropout process. Given ``z`` the
model is BG/NBD (MBG/NBD) with those parameters, so the likelihood is the usual closed form
evaluated per row; it is fitted on compressed statistics - one row per distinct (history,
covariate row) - by maximum likelihood with an analytic gradient, optionally with an L2
penalty on the coefficients. Categorical covariates are one-hot encoded against a stated
reference level (the most frequent). Predictions reuse the plain models: each distinct covariate
row is a BG/NBD with its own parameters (:meth:`CovariateBetaGeoModel.submodels`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, special

from clvmodels._compress import compress
from clvmodels._validation import check_rfm
from clvmodels.exceptions import ConvergenceError, DataValidationError, ParameterError
from clvmodels.models._covariate_base import (
    MAX_LEVELS,
    Design,
    PerCovariateRow,
    design_matrix,
    likelihood_ratio_test,
    multiplier_row,
    penalized_mean,
)
from clvmodels.models.beta_geo import BetaGeoModel
from clvmodels.models.covariate_spend import CovariateGammaGammaModel
from clvmodels.models.modified_beta_geo import ModifiedBetaGeoModel
from clvmodels.models.pareto_nbd import ParetoNBDModel
from clvmodels.models.pareto_nbd import _prepare as prepare_pareto
from clvmodels.models.pareto_nbd import _terms as pareto_terms

__all__ = ["CovariateBetaGeoModel", "CovariateParetoNBDModel", "CovariateGammaGammaModel", "design_matrix",
           "likelihood_ratio_test", "Design", "MAX_LEVELS"]


def _rows(theta: np.ndarray, kp: int, kd: int, Zp, Zd):
    """Per-row (r, alpha, a, b) from the parameter vector: 4 log-parameters, then gamma_p,
    gamma_a, gamma_b."""
    r, alpha0, a0, b0 = np.exp(theta[:4])
    gp, ga, gb = theta[4:4 + kp], theta[4 + kp:4 + kp + kd], theta[4 + kp + kd:4 + kp + 2 * kd]
    alpha = alpha0 * np.exp(-(Zp @ gp))
    a = a0 * np.exp(Zd @ ga)
    b = b0 * np.exp(Zd @ gb)
    return r, alpha, a, b


@dataclass
class _Prepared:
    """Rows (distinct history x covariate row) with weights, the distinct covariate rows, and
    each row's index into the distinct (x, row), (T, row) and (t_x, row) pairs: the gamma, beta
    and log terms are evaluated once per pair, not per row."""

    x: np.ndarray
    w: np.ndarray
    code: np.ndarray
    Zp: np.ndarray
    Zd: np.ndarray
    xs: np.ndarray
    xs_code: np.ndarray
    ix: np.ndarray
    Ts: np.ndarray
    Ts_code: np.ndarray
    iT: np.ndarray
    txs: np.ndarray
    txs_code: np.ndarray
    itx: np.ndarray


def _pairs(values: np.ndarray, code: np.ndarray):
    inverse, uniques = pd.factorize(pd.MultiIndex.from_arrays([values, code]))
    arr = np.asarray(uniques.tolist(), float).reshape(-1, 2)
    return arr[:, 0], arr[:, 1].astype(np.int64), inverse


def _prepare(x, tx, T, w, code, Zp_rows, Zd_rows) -> _Prepared:
    """``Zp_rows``/``Zd_rows``: the design of each distinct covariate row (indexed by ``code``)."""
    code = np.asarray(code, np.int64)
    xs, xs_code, ix = _pairs(np.asarray(x, float), code)
    Ts, Ts_code, iT = _pairs(np.asarray(T, float), code)
    txs, txs_code, itx = _pairs(np.asarray(tx, float), code)
    return _Prepared(np.asarray(x, float), np.asarray(w, float), code, Zp_rows, Zd_rows, xs, xs_code, ix,
                     Ts, Ts_code, iT, txs, txs_code, itx)


def _loglik(theta, x, tx, T, w, Zp, Zd, shift: int, grad: bool):
    """:func:`_loglik_prepared` on per-row designs (each row its own covariate row)."""
    Z = np.hstack([Zp, Zd])
    code = pd.factorize(pd.MultiIndex.from_arrays(Z.T))[0] if Z.shape[1] else np.zeros(len(x), np.int64)
    first = pd.Series(np.arange(len(code))).groupby(code).first().to_numpy()
    return _loglik_prepared(theta, _prepare(x, tx, T, w, code, Zp[first], Zd[first]), shift, grad)


def _loglik_prepared(theta, d: _Prepared, shift: int, grad: bool):
    """Weighted log-likelihood of BG/NBD (shift 0) or MBG/NBD (shift 1) with per-covariate-row
    alpha, a, b, and its gradient in the parameter vector (4 log-parameters, gamma_p, gamma_a,
    gamma_b)."""
    kp, kd = d.Zp.shape[1], d.Zd.shape[1]
    r, alpha_g, a_g, b_g = _rows(theta, kp, kd, d.Zp, d.Zd)  # per covariate row
    x, w = d.x, d.w
    # per (x, row)
    a_x, b_x, xs = a_g[d.xs_code], b_g[d.xs_code], d.xs
    lnB = special.betaln(a_x, b_x)
    lb2 = special.betaln(a_x, b_x + xs + shift) - lnB
    has3_x = (xs > 0) | (shift > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        lb3 = np.where(has3_x, special.betaln(a_x + 1, np.maximum(b_x + xs - 1 + shift, 1e-300)) - lnB, -np.inf)
    a1 = special.gammaln(r + xs) - special.gammaln(r) + r * np.log(alpha_g[d.xs_code])
    # per (T, row) and (t_x, row)
    lT = np.log(alpha_g[d.Ts_code] + d.Ts)
    ltx = np.log(alpha_g[d.txs_code] + d.txs)
    rx = r + x
    A2 = lb2[d.ix] - rx * lT[d.iT]
    A3 = lb3[d.ix] - rx * ltx[d.itx]
    both = np.logaddexp(A2, A3)
    ll = a1[d.ix] + both
    total = float((w * ll).sum())
    if not grad:
        return total, None
    w3 = np.exp(A3 - both)
    w2 = 1.0 - w3
    alpha = alpha_g[d.code]
    # per (x, row) pieces of the a and b derivatives
    psi_ab = special.digamma(a_x + b_x)
    psi_abx = special.digamma(a_x + b_x + xs + shift)
    da2, da3 = psi_ab - psi_abx, special.digamma(a_x + 1) - special.digamma(a_x) + psi_ab - psi_abx
    with np.errstate(invalid="ignore"):
        db3 = np.where(has3_x, special.digamma(np.maximum(b_x + xs - 1 + shift, 1e-300)), 0.0)
    db2 = special.digamma(b_x + xs + shift) - special.digamma(b_x) + psi_ab - psi_abx
    db3 = db3 - special.digamma(b_x) + psi_ab - psi_abx
    nx = len(xs)
    s2 = np.bincount(d.ix, weights=w * w2, minlength=nx)
    s3 = np.bincount(d.ix, weights=w * w3, minlength=nx)
    d_a_x = s2 * da2 + s3 * da3      # summed over the rows of each (x, row), times a below
    d_b_x = s2 * db2 + s3 * db3
    G = len(alpha_g)
    d_a_g = np.bincount(d.xs_code, weights=d_a_x, minlength=G) * a_g
    d_b_g = np.bincount(d.xs_code, weights=d_b_x, minlength=G) * b_g
    wx_sum = np.bincount(d.ix, weights=w, minlength=nx)
    d_r = float((wx_sum * (special.digamma(r + xs) - special.digamma(r) + np.log(alpha_g[d.xs_code]))).sum()
                - (w * (w2 * lT[d.iT] + w3 * ltx[d.itx])).sum())
    # d ll / d alpha per row, times alpha: r - (r+x) alpha (w2/(alpha+T) + w3/(alpha+tx))
    row_alpha = w * (r - rx * alpha * (w2 / np.exp(lT[d.iT]) + w3 / np.exp(ltx[d.itx])))
    d_alpha_g = np.bincount(d.code, weights=row_alpha, minlength=G)
    g = [d_r * r, float(d_alpha_g.sum()), float(d_a_g.sum()), float(d_b_g.sum())]
    g += list(-(d.Zp.T @ d_alpha_g))
    g += list(d.Zd.T @ d_a_g)
    g += list(d.Zd.T @ d_b_g)
    return total, np.array(g)




class CovariateBetaGeoModel(PerCovariateRow, terms="covariates",
                            configures={BetaGeoModel: {}, ModifiedBetaGeoModel: {"modified": True}}):
    """BG/NBD or MBG/NBD with time-invariant covariates of the purchase and the dropout process.

    Parameters
    ----------
    purchase : list of str
        Covariates of the purchase rate (columns of the covariate table).
    dropout : list of str
        Covariates of dropout (they enter ``a`` and ``b``).
    modified : bool, default False
        MBG/NBD (dropout possible right after the first purchase too) instead of BG/NBD.
    penalizer_coef : float, default 0
        L2 penalty on the coefficients (not on r, alpha_0, a_0, b_0), added to the mean negative
        log-likelihood.
    reference : dict, optional
        Reference level per categorical covariate (default: its most frequent level).

    Attributes
    ----------
    params_ : pandas.Series
        ``r, alpha, a, b`` (the reference customers': every covariate 0 or at its reference level),
        then ``purchase: NAME``, ``dropout a: NAME``, ``dropout b: NAME`` coefficients.
    standard_errors_ : pandas.Series
        From the observed information (the delta method for the four base parameters, as for
        the plain models; the coefficients' on their log scale).
    covariance_log_ : ndarray
        Inverse observed information of ``theta_`` (log base parameters, then coefficients).
    log_likelihood_ : float
    """

    _param_names = ("r", "alpha", "a", "b")
    _reference = ("Fader & Hardie (2007), \"Incorporating time-invariant covariates into the Pareto/NBD and BG/NBD "
                  "models\", note at brucehardie.com.")
    _name_lists = ("purchase_names_", "dropout_names_")

    def __init__(self, purchase: list[str] | None = None, dropout: list[str] | None = None, *, modified: bool = False,
                 penalizer_coef: float = 0.0, reference: dict[str, str] | None = None):
        self.purchase = list(purchase or [])
        self.dropout = list(dropout or [])
        self.modified = bool(modified)
        self.penalizer_coef = penalizer_coef
        self.reference = dict(reference or {})

    @property
    def _long_name(self) -> str:
        return ("MBG/NBD" if self.modified else "BG/NBD") + " with covariates"

    # ---------------------------------------------------------------- fitting
    def fit(self, data: pd.DataFrame, covariates: pd.DataFrame | None = None, *,
            weights: Any = None) -> CovariateBetaGeoModel:
        """Fit on an RFM table whose columns hold the covariates (or on an RFM table and a
        covariate table indexed like it, one row per customer). ``weights``: customers per row."""
        rfm = data
        pen = self._start_fit()
        check_rfm(rfm)
        user_w = self._weights(weights, len(rfm))
        covariates = self._table(rfm, covariates)
        dp, dd, levels = self._designs(covariates)
        # compressed: one row per distinct (history, covariate row)
        Z = np.hstack([dp.matrix, dd.matrix])
        zcode = pd.factorize(pd.MultiIndex.from_arrays(Z.T) if Z.shape[1] else np.zeros(len(rfm)))[0] \
            if Z.shape[1] else np.zeros(len(rfm), np.int64)
        x, tx, T = (rfm[c].to_numpy(float) for c in ("frequency", "recency", "T"))
        c = compress(x, tx, T, zcode.astype(np.int64))
        ux, utx, uT, ucode = c.columns
        first = pd.Series(np.arange(len(zcode))).groupby(zcode).first().to_numpy()
        w = np.bincount(c.inverse, weights=user_w, minlength=len(c.weights))
        data = _prepare(ux, utx, uT, w, ucode, dp.matrix[first], dd.matrix[first])
        n = float(w.sum())
        if float(w[ux > 0].sum()) == 0:
            raise DataValidationError("No customer made a repeat purchase: nothing to learn rates or dropout from.")
        kp, kd = data.Zp.shape[1], data.Zd.shape[1]
        shift = int(self.modified)

        objective = penalized_mean(lambda th: _loglik_prepared(th, data, shift, grad=True), n, pen, 4)

        mean_x, mean_T = float((w * ux).sum() / n), float((w * uT).sum() / n)
        # start at the plain model's estimates (no covariate effect)
        base = (ModifiedBetaGeoModel if self.modified else BetaGeoModel)().fit(
            pd.DataFrame({"frequency": ux, "recency": utx, "T": uT}), weights=w)
        starts = [np.concatenate([np.log(base.params_.to_numpy()), np.zeros(kp + 2 * kd)]),
                  np.concatenate([np.log([1.0, max(mean_T / max(mean_x, 1e-3), 1e-3), 1.0, 1.0]), np.zeros(kp + 2 * kd)])]
        best = None
        for s0 in starts:
            res = optimize.minimize(objective, s0, jac=True, method="BFGS", options={"gtol": 1e-9, "maxiter": 5000})
            if best is None or res.fun < best.fun:
                best = res
            if np.linalg.norm(res.jac) < 1e-5:
                break
        if best is None or not np.isfinite(best.fun) or np.linalg.norm(best.jac) > 1e-3:
            raise ConvergenceError(f"{self._long_name} did not converge (gradient norm "
                                   f"{np.linalg.norm(best.jac):.2g}); add a small penalizer_coef, use fewer covariates, "
                                   "or rescale numeric ones (e.g. thousands instead of units).")
        theta = best.x
        names = (["r", "alpha", "a", "b"] + [f"purchase: {v}" for v in dp.names]
                 + [f"dropout a: {v}" for v in dd.names] + [f"dropout b: {v}" for v in dd.names])
        self._keep_fit(theta, names, objective, n, _loglik_prepared(theta, data, shift, grad=False)[0], levels,
                       {**dp.reference, **dd.reference}, rfm.attrs.get("time_unit"))
        self.purchase_names_, self.dropout_names_ = dp.names, dd.names
        return self

    # ---------------------------------------------------------------- reading
    def effects(self, level: float = 0.95) -> pd.DataFrame:
        """Each covariate's effect in words and numbers: the purchase-rate multiplier
        ``exp(gamma_p)`` with its interval, and the dropout probability per purchase
        ``a/(a+b)`` for a customer with the covariate against the reference customer."""
        self._check_fitted()
        r, alpha, a, b = self.params_.iloc[:4]
        rows = [multiplier_row(self, f"purchase: {name}", name, "purchase rate", "buy {m:.2f}x as often", level)
                for name in self.purchase_names_]
        base = a / (a + b)
        for name in self.dropout_names_:
            ga, gb = self.params_[f"dropout a: {name}"], self.params_[f"dropout b: {name}"]
            aa, bb = a * np.exp(ga), b * np.exp(gb)
            p = aa / (aa + bb)
            rows.append({"covariate": name, "process": "dropout", "estimate": p / base, "lower": np.nan,
                         "upper": np.nan, "words": f"customers with {name} leave after a purchase with probability "
                                                   f"{p:.3f} against {base:.3f} for the reference ({p / base:.2f}x)"})
        out = pd.DataFrame(rows)
        out.attrs["reference"] = dict(self.reference_)
        return out

    def _plain_cls(self):
        return ModifiedBetaGeoModel if self.modified else BetaGeoModel

    def _plain_params(self, Zp: np.ndarray, Zd: np.ndarray) -> pd.DataFrame:
        r, alpha, a, b = _rows(self.theta_, len(self.purchase_names_), len(self.dropout_names_), Zp, Zd)
        return pd.DataFrame({"r": r, "alpha": alpha, "a": a, "b": b})


class CovariateParetoNBDModel(PerCovariateRow, terms="covariates", configures={ParetoNBDModel: {}}):
    """Pareto/NBD with time-invariant covariates (Fader & Hardie's covariates note): the purchase
    rate's scale ``alpha_i = alpha_0 exp(-gamma_p' z_i)`` and the dropout rate's ``beta_i =
    beta_0 exp(-gamma_d' z_i)``, so the mean purchase rate ``r/alpha_i`` and the mean dropout rate
    ``s/beta_i`` are ``exp(gamma' z_i)`` times the reference customers'.

    Parameters
    ----------
    purchase, dropout : list of str
        Covariates of the purchase and of the dropout process.
    same_effect : bool, default False
        Constrain each covariate to the same coefficient in both processes (``gamma_p = gamma_d``;
        ``purchase`` and ``dropout`` must then name the same covariates).
    penalizer_coef, reference
        As for :class:`CovariateBetaGeoModel`.

    Notes
    -----
    Given its covariates a customer is a Pareto/NBD customer, so the likelihood of each distinct
    covariate row's customers is the plain model's (its dropout integral included), fitted on
    compressed histories; the gradient comes from the plain model's analytic one by the chain rule
    through ``alpha_i`` and ``beta_i``.
    """

    _param_names = ("r", "alpha", "s", "beta")
    _reference = ("Fader & Hardie (2007), \"Incorporating time-invariant covariates into the Pareto/NBD and BG/NBD "
                  "models\", note at brucehardie.com.")
    _name_lists = ("purchase_names_", "dropout_names_")

    def __init__(self, purchase: list[str] | None = None, dropout: list[str] | None = None, *,
                 same_effect: bool = False, penalizer_coef: float = 0.0, reference: dict[str, str] | None = None):
        self.purchase = list(purchase or [])
        self.dropout = list(dropout or [])
        self.same_effect = bool(same_effect)
        self.penalizer_coef = penalizer_coef
        self.reference = dict(reference or {})
        if self.same_effect and self.purchase != self.dropout:
            raise ParameterError("same_effect needs the same covariates for purchase and dropout, got "
                                 f"{self.purchase} and {self.dropout}.")

    _long_name = "Pareto/NBD with covariates"

    def _plain_cls(self):
        return ParetoNBDModel

    def _split(self, theta):
        kp = len(self.purchase_names_)
        gp = theta[4:4 + kp]
        gd = gp if self.same_effect else theta[4 + kp:]
        return np.exp(theta[:4]), gp, gd

    def _plain_params(self, Zp: np.ndarray, Zd: np.ndarray) -> pd.DataFrame:
        (r, alpha0, s, beta0), gp, gd = self._split(self.theta_)
        return pd.DataFrame({"r": r, "alpha": alpha0 * np.exp(-(Zp @ gp)), "s": s, "beta": beta0 * np.exp(-(Zd @ gd))})

    def _total_and_grad(self, theta, groups, Zp_g, Zd_g):
        """Log-likelihood over the covariate rows' compressed histories and its gradient: each
        row's Pareto/NBD terms with its alpha_i, beta_i, chained to alpha_0, beta_0 and gamma."""
        (r, alpha0, s, beta0), gp, gd = self._split(theta)
        alpha = alpha0 * np.exp(-(Zp_g @ gp))
        beta = beta0 * np.exp(-(Zd_g @ gd))
        total, g_r, g_s = 0.0, 0.0, 0.0
        d_alpha, d_beta = np.zeros(len(groups)), np.zeros(len(groups))
        for i, d in enumerate(groups):
            ll, g = pareto_terms((r, float(alpha[i]), s, float(beta[i])), d, grad=True)
            total += float((d.w * ll).sum())
            g_r += g[0]
            g_s += g[2]
            d_alpha[i], d_beta[i] = g[1] * alpha[i], g[3] * beta[i]  # d/d log alpha_i, d/d log beta_i
        grad = [g_r * r, d_alpha.sum(), g_s * s, d_beta.sum()]
        if self.same_effect:
            grad += list(-(Zp_g.T @ d_alpha) - (Zd_g.T @ d_beta))
        else:
            grad += list(-(Zp_g.T @ d_alpha)) + list(-(Zd_g.T @ d_beta))
        return total, np.array(grad)

    def fit(self, data: pd.DataFrame, covariates: pd.DataFrame | None = None, *,
            weights: Any = None) -> CovariateParetoNBDModel:
        """Fit like :meth:`CovariateBetaGeoModel.fit`."""
        rfm = data
        pen = self._start_fit()
        check_rfm(rfm)
        user_w = self._weights(weights, len(rfm))
        covariates = self._table(rfm, covariates)
        dp, dd, levels = self._designs(covariates)
        self.purchase_names_, self.dropout_names_ = dp.names, dd.names
        Z = np.hstack([dp.matrix, dd.matrix])
        code = pd.factorize(pd.MultiIndex.from_arrays(Z.T))[0] if Z.shape[1] else np.zeros(len(rfm), np.int64)
        first = pd.Series(np.arange(len(code))).groupby(code).first().to_numpy()
        Zp_g, Zd_g = dp.matrix[first], dd.matrix[first]
        x, tx, T = (rfm[c].to_numpy(float) for c in ("frequency", "recency", "T"))
        groups = []
        for g in range(len(first)):
            inside = code == g
            c = compress(x[inside], tx[inside], T[inside])
            groups.append(prepare_pareto(*c.columns, np.bincount(c.inverse, weights=user_w[inside],
                                                                 minlength=len(c.weights))))
        n = float(user_w.sum())
        if n <= 0:
            raise DataValidationError("weights are all 0: there is no customer to fit on.")
        kp = Zp_g.shape[1]

        def total_and_grad(theta):
            return self._total_and_grad(theta, groups, Zp_g, Zd_g)

        objective = penalized_mean(total_and_grad, n, pen, 4)

        base = ParetoNBDModel().fit(rfm[["frequency", "recency", "T"]], weights=weights)
        k_coef = kp if self.same_effect else kp + Zd_g.shape[1]
        start = np.concatenate([np.log(base.params_.to_numpy()), np.zeros(k_coef)])
        res = optimize.minimize(objective, start, jac=True, method="BFGS", options={"gtol": 1e-9, "maxiter": 5000})
        for _ in range(3):  # BFGS can stop on a loss of precision short of the optimum: restart from there
            if not np.isfinite(res.fun) or np.linalg.norm(res.jac) <= 1e-5:
                break
            again = optimize.minimize(objective, res.x, jac=True, method="L-BFGS-B",
                                      options={"gtol": 1e-10, "ftol": 1e-15, "maxiter": 5000})
            if not again.fun <= res.fun:
                break
            res = again
        if not np.isfinite(res.fun) or np.linalg.norm(res.jac) > 1e-3:
            raise ConvergenceError(f"{self._long_name} did not converge (gradient norm {np.linalg.norm(res.jac):.2g}); "
                                   "add a small penalizer_coef, use fewer covariates, "
                                   "or rescale numeric ones (e.g. thousands instead of units).")
        theta = res.x
        names = ["r", "alpha", "s", "beta"] + [f"purchase: {v}" for v in dp.names]
        names += ([] if self.same_effect else [f"dropout: {v}" for v in dd.names])
        self._keep_fit(theta, names, objective, n, total_and_grad(theta)[0], levels,
                       {**dp.reference, **dd.reference}, rfm.attrs.get("time_unit"))
        return self

    def effects(self, level: float = 0.95) -> pd.DataFrame:
        """Multipliers of the mean purchase rate and of the mean dropout rate, with intervals."""
        self._check_fitted()
        rows = []
        for process, prefix, verb in (("purchase rate", "purchase", "buy {m:.2f}x as often"),
                                      ("dropout rate", "dropout" if not self.same_effect else "purchase",
                                       "leave at {m:.2f}x the rate")):
            names = self.purchase_names_ if prefix == "purchase" else self.dropout_names_
            rows += [multiplier_row(self, f"{prefix}: {name}", name, process, verb, level) for name in names]
        out = pd.DataFrame(rows)
        out.attrs["reference"] = dict(self.reference_)
        return out


