"""Gamma-Gamma spend with time-invariant covariates (issue 17, item 1): the spend scale
``v_i = v_0 exp(gamma' z_i)`` of Fader & Hardie's Gamma-Gamma note, fitted by maximum likelihood on
repeat buyers' mean spends compressed to distinct (x, zbar, covariate row)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, special

from clvmodels._compress import compress
from clvmodels._validation import check_rfm
from clvmodels.exceptions import ConvergenceError, DataValidationError, ModelError
from clvmodels.models._covariate_base import (
    CovariateContract,
    Design,
    design_matrix,
    multiplier_row,
    penalized_mean,
)
from clvmodels.models.gamma_gamma import GammaGammaModel, conditional_spend

__all__ = ["CovariateGammaGammaModel"]


def _gg_loglik(theta, x, m, w, Z, grad: bool):
    """Gamma-Gamma with ``v_i = v_0 exp(gamma' z_i)``: weighted log-likelihood of repeat buyers'
    mean spends and its gradient in (log p, log q, log v_0, gamma)."""
    p, q, v0 = np.exp(theta[:3])
    v = v0 * np.exp(Z @ theta[3:])
    px = p * x
    ll = (special.gammaln(px + q) - special.gammaln(px) - special.gammaln(q) + q * np.log(v)
          + (px - 1) * np.log(m) + px * np.log(x) - (px + q) * np.log(x * m + v))
    total = float((w * ll).sum())
    if not grad:
        return total, None
    lxm = np.log(x * m + v)
    d_p = x * (special.digamma(px + q) - special.digamma(px) + np.log(m) + np.log(x) - lxm)
    d_q = special.digamma(px + q) - special.digamma(q) + np.log(v) - lxm
    d_v = q / v - (px + q) / (x * m + v)
    g = [float((w * d_p).sum()) * p, float((w * d_q).sum()) * q, float((w * d_v * v).sum())]
    g += list(Z.T @ (w * d_v * v))
    return total, np.array(g)


class CovariateGammaGammaModel(CovariateContract, terms="covariates", configures={GammaGammaModel: {}}):
    """Gamma-Gamma spend with time-invariant covariates on the spend scale: ``v_i = v_0
    exp(gamma' z_i)``, so a customer's expected spend per purchase ``p v_i / (q - 1)`` is
    ``exp(gamma' z_i)`` times the reference customers' (and their own history updates it as in
    Gamma-Gamma: ``p (v_i + x zbar) / (p x + q - 1)``). Fitted like :class:`CovariateBetaGeoModel`
    on repeat buyers with positive mean spend, compressed to distinct (x, zbar, covariate row).

    Parameters
    ----------
    spend : list of str
        Covariates of the spend scale.
    penalizer_coef : float, default 0
        L2 penalty on the coefficients.
    reference : dict, optional
        Reference level per categorical covariate (default: the most frequent).
    """

    _param_names = ("p", "q", "v")
    _reference = "Fader & Hardie's Gamma-Gamma note, with covariates on the spend scale v."
    _name_lists = ("spend_names_",)
    _long_name = "Gamma-Gamma with covariates"

    def __init__(self, spend: list[str] | None = None, *, penalizer_coef: float = 0.0,
                 reference: dict[str, str] | None = None):
        self.spend = list(spend or [])
        self.penalizer_coef = penalizer_coef
        self.reference = dict(reference or {})

    def _design(self, covariates: pd.DataFrame) -> Design:
        return design_matrix(covariates, self.spend, self.reference, getattr(self, "levels_", None))

    def _covariate_columns(self) -> list[str]:
        return list(self.spend)

    def fit(self, data: pd.DataFrame, covariates: pd.DataFrame | None = None, *,
            weights: Any = None) -> CovariateGammaGammaModel:
        """Fit on an RFM table whose columns hold the covariates (or with a covariate table
        indexed like it). ``weights``: customers per row."""
        rfm = data
        pen = self._start_fit()
        check_rfm(rfm)
        user_w = self._weights(weights, len(rfm))
        covariates = self._table(rfm, covariates)
        design, levels = self._design(covariates)
        x = rfm["frequency"].to_numpy(float)
        mv = rfm["monetary_value"].to_numpy(float)
        keep = (x > 0) & (mv > 0) & (user_w > 0)
        if keep.sum() < 10:
            raise DataValidationError(f"Only {int(keep.sum())} repeat buyers with positive spend: too few to fit spend.")
        Zall = design.matrix[keep]
        k = Zall.shape[1]
        zcode = pd.factorize(pd.MultiIndex.from_arrays(Zall.T))[0] if k else np.zeros(int(keep.sum()), np.int64)
        c = compress(x[keep], mv[keep], zcode.astype(np.int64))
        ux, um, ucode = c.columns
        first = pd.Series(np.arange(len(zcode))).groupby(zcode).first().to_numpy()
        Z = Zall[first][ucode.astype(np.int64)]
        w = np.bincount(c.inverse, weights=user_w[keep], minlength=len(c.weights))
        n = float(w.sum())

        objective = penalized_mean(lambda th: _gg_loglik(th, ux, um, w, Z, grad=True), n, pen, 3)

        base = GammaGammaModel().fit(pd.DataFrame({"frequency": ux, "recency": 0.0, "T": 1.0, "monetary_value": um}),
                                     weights=w)
        start = np.concatenate([np.log(base.params_.to_numpy()), np.zeros(k)])
        res = optimize.minimize(objective, start, jac=True, method="BFGS", options={"gtol": 1e-9, "maxiter": 5000})
        if not np.isfinite(res.fun) or np.linalg.norm(res.jac) > 1e-3:
            raise ConvergenceError(f"Gamma-Gamma with covariates did not converge (gradient norm "
                                   f"{np.linalg.norm(res.jac):.2g}); add a small penalizer_coef.")
        theta = res.x
        if np.exp(theta[1]) <= 1:
            raise ModelError("Gamma-Gamma q <= 1: the mean spend is undefined (spend too heavy-tailed).")
        names = ["p", "q", "v"] + [f"spend: {v}" for v in design.names]
        self._keep_fit(theta, names, objective, n, _gg_loglik(theta, ux, um, w, Z, grad=False)[0], levels,
                       design.reference, rfm.attrs.get("time_unit"))
        self.spend_names_ = design.names
        return self

    def effects(self, level: float = 0.95) -> pd.DataFrame:
        """Each covariate's spend multiplier ``exp(gamma)`` with its interval, in words."""
        return pd.DataFrame([multiplier_row(self, f"spend: {name}", name, "spend per purchase",
                                             "spend {m:.2f}x as much per purchase", level)
                             for name in self.spend_names_])

    def plain_model(self) -> GammaGammaModel:
        """Gamma-Gamma with the reference customer's parameters (every categorical covariate at its
        reference level, every numeric one 0)."""
        self._check_fitted()
        return GammaGammaModel.from_params(self.params_[list(self._param_names)].to_dict(),
                                           time_unit=getattr(self, "time_unit_", None))

    def expected_spend(self, data: pd.DataFrame, covariates: pd.DataFrame | None = None) -> pd.Series:
        """Conditional expected spend per purchase ``p (v_i + x zbar) / (p x + q - 1)`` (the
        population mean of the customer's covariate group without a repeat purchase); the
        covariates from ``data``'s columns or from ``covariates``."""
        self._check_fitted()
        rfm = data
        design = self._design(self._table(rfm, covariates))[0]
        p, q, v0 = np.exp(self.theta_[:3])
        v = v0 * np.exp(design.matrix @ self.theta_[3:])
        out = conditional_spend(p, q, v, rfm["frequency"].to_numpy(float), rfm["monetary_value"].to_numpy(float))
        return pd.Series(out, index=rfm.index, name="expected_spend")
