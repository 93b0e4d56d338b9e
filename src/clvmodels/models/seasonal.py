"""BG/NBD with a calendar covariate: seasonal purchase rates (issue 17, item 3).

While active, a customer buys as a Poisson process of rate ``lambda m(t)``: ``lambda ~
Gamma(r, alpha)`` as in BG/NBD and ``m(t) = exp(gamma' z(t))`` a calendar multiplier shared by
everyone - ``z(t)`` the Fourier terms of the calendar, ``sin(2 pi k d / 365.25)`` and
``cos(...)`` for ``k = 1 .. harmonics`` with ``d`` the day number (a smooth yearly pattern),
optionally plus a linear trend in years. Dropout happens right after purchases with
probability ``p ~ Beta(a, b)``.

By the time-change theorem a Poisson process of rate ``lambda m(t)`` is a Poisson process of
rate ``lambda`` on the operational clock ``tau(t) = int m(u) du``; and since BG/NBD's dropout
only happens at purchases, the whole customer is a BG/NBD customer on that clock. So the
likelihood of a customer's purchase times is BG/NBD's at ``(x, tau(t_x) - tau(t_0), tau(T) -
tau(t_0))`` times the Jacobian ``prod_j m(t_j)`` over the repeat purchases; forecasts are BG/NBD's
on the operational clock (a horizon of ``h`` calendar weeks is ``tau(T+h) - tau(T)`` operational
weeks, the same for every customer). This is the dynamic-covariate idea of Bachmann, Meierer &
Naef (2021, "The role of time-varying contextual factors in latent attrition models for customer
base analysis", Marketing Science 40(4)) for Pareto/NBD, applied to BG/NBD where it is exact with
purchase-tied dropout: contextual covariates in the purchase process only.

Fitted on compressed statistics like the other models: the RFM table (distinct ``(x, t_x, T)``
rows, in whole days) and the repeat purchases per calendar day
(:class:`clvmodels.rfm.PurchaseCalendar`, ``rfm_summary(..., calendar=True)``), from which the
Jacobian's sum ``sum_j z(t_j)`` comes; analytic gradient. Every prediction of
:class:`clvmodels.models._purchase.PurchaseModel` (P(alive), expected purchases, churn by
horizon, pmf, simulation, the forecast's per-period values) is BG/NBD's with the customer's
times moved to the operational clock, so forecasts, tiers, intervals and the report use it
unchanged. Predictions are "as of" a date (the fitted table's observation end, or
:meth:`SeasonalBetaGeoModel.as_of`): an RFM table's ``T`` counts back from it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy import optimize, special

from clvmodels._validation import check_rfm
from clvmodels.exceptions import ConvergenceError
from clvmodels.models.beta_geo import BetaGeoModel
from clvmodels.models.calendar import (  # the calendar's names, kept importable from here
    MIN_DROPOUT_SPAN_DAYS,
    MIN_SPAN_DAYS,
    CalendarClock,
    day_number,
    read_events,
)

__all__ = ["SeasonalBetaGeoModel", "MIN_SPAN_DAYS", "MIN_DROPOUT_SPAN_DAYS", "as_of", "read_events"]


class SeasonalBetaGeoModel(CalendarClock, BetaGeoModel, terms="calendar", configures={BetaGeoModel: {}}):
    """BG/NBD with a yearly seasonal purchase rate (and optionally a trend); see the module notes.

    Parameters
    ----------
    harmonics : int, default 2
        Fourier terms of the yearly pattern (1: one peak a year; 2 allows a sharper or second one).
    trend : bool, default False
        Also a log-linear trend in the purchase rate (per year; forecasts extrapolate it).
    events : DataFrame, optional
        Calendar covariates of your own: indexed by date, a column per event (``holiday`` 1 on
        holidays, ``promotion`` its discount, ...); days not listed are 0, so list the forecast
        horizon's events too. Each column gets a coefficient: the purchase rate on such a day is
        ``exp(gamma)`` times what it would be (the "table of period -> value" of Bachmann et al.).
    calendar : dict, optional
        The fitted calendar of a model rebuilt from saved parameters: ``coefficients`` (the
        gamma of the module notes, ``2 harmonics (+ 1)`` numbers), ``as_of`` (the date
        predictions count back from) and ``trend_origin`` (where the trend is 0). :meth:`fit`
        learns it; :meth:`get_params` returns the fitted one, so a saved model keeps it.
    penalizer_coef, tol, max_iter
        As for :class:`BetaGeoModel` (the penalty is on r, alpha, a, b).

    Attributes
    ----------
    params_ : Series
        ``r, alpha, a, b`` on the operational clock (the parameters of :meth:`plain_model`).
    calendar_ : dict
        ``coefficients``, ``as_of``, ``trend_origin``.
    calendar_effects_ : DataFrame
        Each calendar coefficient with its standard error.
    plain_log_likelihood_ : float
        BG/NBD's on the same table (comparable: both are densities of the calendar times).
    """

    _reference = ("Fader, Hardie & Lee (2005) on an operational clock with a calendar covariate, after "
                  "Bachmann, Meierer & Naef (2021), Marketing Science 40(4).")
    _FITTED: ClassVar[tuple[str, ...]] = BetaGeoModel._FITTED + ("calendar_", "calendar_effects_",
                                                                  "plain_log_likelihood_")

    def __init__(self, harmonics: int = 2, *, trend: bool = False, events: Any = None,
                 calendar: dict[str, Any] | None = None, penalizer_coef: float = 0.0, tol: float = 1e-9,
                 max_iter: int = 2000):
        super().__init__(penalizer_coef=penalizer_coef, tol=tol, max_iter=max_iter)
        self._init_calendar(harmonics, trend, events, calendar)

    def fit(self, rfm: pd.DataFrame, y: Any = None, *, weights: Any = None) -> SeasonalBetaGeoModel:
        """Fit by maximum likelihood on an RFM table built with ``calendar=True``
        (:func:`clvmodels.rfm_summary`, :func:`clvmodels.calibration_holdout`), or compressed
        rows of one with ``weights``.

        Raises
        ------
        DataValidationError
            No purchase calendar, one that does not describe the table's customers (a subset of
            the table), less than :data:`MIN_SPAN_DAYS` of history for a season or trend.
        """
        self._check_init_params()
        data = self._calendar_rows(rfm, weights)
        plain = BetaGeoModel(penalizer_coef=self.penalizer_coef, tol=self.tol, max_iter=self.max_iter).fit(
            data.table, weights=data.table_w)
        unit, rx, rw, lo, zsum = data.unit, data.x, data.w, data.lo, data.zsum
        Z = self._z(data.days, day_number(data.as_of, "as_of"))
        ux, xi = np.unique(rx, return_inverse=True)
        n_total = float(rw.sum())
        kz = Z.shape[1]
        i_first, i_last, i_end = data.first - lo, data.last - lo, -lo

        def parts(theta: np.ndarray, grad: bool):
            r, alpha, a, b = np.exp(theta[:4])
            gamma = theta[4:]
            m = np.exp(Z @ gamma) / unit
            C = np.concatenate([[0.0], np.cumsum(m)])
            Top = C[i_end] - C[i_first]
            txop = C[i_last] - C[i_first]
            # per distinct x: the gamma and beta terms
            c_x = special.gammaln(r + ux) - special.gammaln(r) + r * np.log(alpha) - special.betaln(a, b)
            lu_x = special.betaln(a, b + ux)
            lv_x = np.where(ux > 0, special.betaln(a + 1, np.maximum(b + ux - 1, 1e-300)), -np.inf)
            rx_ = r + rx
            u = lu_x[xi] - rx_ * np.log(alpha + Top)
            v = lv_x[xi] - rx_ * np.log(alpha + txop)
            big = np.logaddexp(u, v)
            ll = c_x[xi] + big
            total = float((rw * ll).sum() + zsum @ gamma)
            if not grad:
                return total, None
            pu = np.exp(u - big)
            pv = 1.0 - pu
            dTop = -pu * rx_ / (alpha + Top)
            dtx = -pv * rx_ / (alpha + txop)
            g_r = (special.digamma(r + ux) - special.digamma(r))[xi] + np.log(alpha) \
                - pu * np.log(alpha + Top) - pv * np.log(alpha + txop)
            g_alpha = r / alpha + dTop + dtx
            dpa = special.digamma(a) - special.digamma(a + b)
            dpb = special.digamma(b) - special.digamma(a + b)
            du_a = (special.digamma(a) - special.digamma(a + b + ux))[xi]
            du_b = (special.digamma(b + ux) - special.digamma(a + b + ux))[xi]
            with np.errstate(invalid="ignore"):
                dv_a = np.where(ux > 0, special.digamma(a + 1) - special.digamma(a + b + ux), 0.0)[xi]
                dv_b = np.where(ux > 0, special.digamma(np.maximum(b + ux - 1, 1e-300))
                                - special.digamma(a + b + ux), 0.0)[xi]
            g_a = -dpa + pu * du_a + pv * dv_a
            g_b = -dpb + pu * du_b + pv * dv_b
            g = np.empty(4 + kz)
            g[0] = r * float((rw * g_r).sum())
            g[1] = alpha * float((rw * g_alpha).sum())
            g[2] = a * float((rw * g_a).sum())
            g[3] = b * float((rw * g_b).sum())
            if kz:
                G = np.vstack([np.zeros(kz), np.cumsum(m[:, None] * Z, axis=0)])
                dT_dg = G[i_end][None, :] - G[i_first]
                dtx_dg = G[i_last] - G[i_first]
                g[4:] = (rw * dTop) @ dT_dg + (rw * dtx) @ dtx_dg + zsum
            return total, g

        theta0 = np.concatenate([np.log(np.clip(plain.params_.to_numpy(), 1e-8, 1e8)), np.zeros(kz)])
        res = optimize.minimize(self._penalised(parts, n_total), theta0, jac=True, method="BFGS",
                                options={"gtol": max(float(self.tol), 1e-9) * 100, "maxiter": int(self.max_iter)})
        if not np.isfinite(res.fun) or res.fun >= 1e299:
            raise ConvergenceError(f"The seasonal BG/NBD did not converge ({res.message}); try fewer harmonics "
                                   "or BetaGeoModel.")
        self._finish_fit(res.x, res, parts, data, plain, "BFGS (analytic gradient) from the BG/NBD fit")
        return self

    # ---------------------------------------------------------------- predictions
    def operational_rfm(self, rfm: pd.DataFrame) -> pd.DataFrame:
        """``rfm`` (as of the model's date) with ``recency`` and ``T`` on the operational clock."""
        self._check_fitted()
        check_rfm(rfm)
        self._check_unit(rfm)
        txop, Top = self._operational(rfm["frequency"], rfm["recency"], rfm["T"])
        out = rfm.assign(recency=txop, T=Top)
        out.attrs = {k: v for k, v in rfm.attrs.items() if k == "time_unit"}
        return out

    def operational_horizon(self, horizon: float) -> float:
        """``horizon`` time units after the as-of date, on the operational clock."""
        self._check_fitted()
        return float(self._op_horizon(horizon))

    def _p_alive(self, x, tx, T):
        txop, Top = self._operational(x, tx, T)
        return super()._p_alive(x, txop, Top)

    def _expected_if_alive(self, t, x, T, dropout_scale: float = 1.0):
        return super()._expected_if_alive(self._op_horizon(t), x, self._op_T(T), dropout_scale)

    def _survival_if_alive(self, t, x, T, dropout_scale: float = 1.0):
        return super()._survival_if_alive(self._op_horizon(t), x, self._op_T(T), dropout_scale)

    def _any_if_alive(self, t, x, T, dropout_scale: float = 1.0):
        return super()._any_if_alive(self._op_horizon(t), x, self._op_T(T), dropout_scale)

    def _simulate(self, rng: np.random.Generator, x, T, horizon: float, alive) -> np.ndarray:
        return super()._simulate(rng, x, self._op_T(T), float(self._op_horizon(horizon)), alive)

    def _pmf_if_alive(self, n: int, t, x, T, tx):
        txop, Top = self._operational(x, tx, T)
        return super()._pmf_if_alive(n, self._op_horizon(t), x, Top, txop)

    def probability_purchases(self, n: int | np.ndarray, t: float) -> float | np.ndarray:
        """P(X(t) = n) for a customer whose first purchase is at the as-of date: ``n`` repeat
        purchases in the ``t`` time units after it."""
        return self.plain_model().probability_purchases(n, self.operational_horizon(float(t)))

    def _window_pmf(self, ks: np.ndarray, T: float) -> np.ndarray:
        """The new-customer distribution over the window ``(first purchase, as-of date]``
        measured on the operational clock."""
        return self.plain_model().probability_purchases(ks, float(self._op_T(T)))


def as_of(model: Any, date: Any) -> Any:
    """``model`` predicting as of ``date``: a seasonal model moved there (:meth:`SeasonalBetaGeoModel.as_of`),
    any other model as it is (their predictions do not depend on the date)."""
    if isinstance(model, CalendarClock) and getattr(model, "calendar_", None) \
            and model.calendar_["as_of"] != str(pd.Timestamp(date).date()):
        return model.as_of(date)
    return model

