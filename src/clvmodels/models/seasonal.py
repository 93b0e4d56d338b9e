"""BG/NBD with a calendar covariate: seasonal purchase rates (issue 17, item 3).

While active, a customer buys as a Poisson process of rate ``lambda m(t)``: ``lambda ~
Gamma(r, alpha)`` as in BG/NBD and ``m(t) = exp(gamma' z(t))`` a calendar multiplier shared by
everyone - ``z(t)`` the Fourier terms of the day of the year, ``sin(2 pi k d / 365.25)`` and
``cos(...)`` for ``k = 1 .. harmonics`` (a smooth yearly pattern), optionally plus a linear
trend in years. Dropout happens right after purchases with probability ``p ~ Beta(a, b)``.

By the time-change theorem a Poisson process of rate ``lambda m(t)`` is a Poisson process of
rate ``lambda`` on the operational clock ``tau(t) = int_0^t m(u) du``; and since BG/NBD's dropout
only happens at purchases, the whole customer is a BG/NBD customer on that clock. So the
likelihood of a customer's purchase times is BG/NBD's at ``(x, tau(t_x) - tau(t_0), tau(T) -
tau(t_0))`` times the Jacobian ``prod_j m(t_j)`` over the repeat purchases; forecasts are BG/NBD's
on the operational clock (a horizon of ``h`` calendar weeks is ``tau(T+h) - tau(T)`` operational
weeks, the same for every customer). This is the dynamic-covariate idea of Bachmann, Meierer &
Naef (2021, "The role of time-varying contextual factors in latent attrition models for customer
base analysis", Marketing Science 40(4)) for Pareto/NBD, applied to BG/NBD where it is exact with
purchase-tied dropout: contextual covariates in the purchase process only. Fitted by maximum
likelihood on distinct (x, first day, last day) rows; the calendar coefficients' gradient by
central differences.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize

from clvmodels.exceptions import (
    ConvergenceError,
    DataValidationError,
    NotFittedError,
    ParameterError,
)

__all__ = ["SeasonalBetaGeoModel"]

_YEAR = 365.25
#: history a season needs: a full year (measured: six months of CDNOW doubled the forecast)
MIN_SPAN_DAYS = 366


class SeasonalBetaGeoModel:
    """BG/NBD with a yearly seasonal purchase rate (and optionally a trend); see the module notes.

    Parameters
    ----------
    harmonics : int, default 2
        Fourier terms of the yearly pattern (1: one peak a year; 2 allows a sharper or second one).
    trend : bool, default False
        Also a log-linear trend in the purchase rate (per year).
    time_unit : {"W", "D"}, default "W"
    """

    def __init__(self, harmonics: int = 2, *, trend: bool = False, time_unit: str = "W"):
        if not isinstance(harmonics, int) or harmonics < 0 or harmonics > 6:
            raise ParameterError(f"harmonics must be a whole number from 0 to 6, got {harmonics!r}.")
        if time_unit not in ("W", "D"):
            raise ParameterError(f"time_unit must be 'W' or 'D', got {time_unit!r}.")
        self.harmonics = harmonics
        self.trend = bool(trend)
        self.time_unit = time_unit

    # ---------------------------------------------------------------- the calendar
    def _z(self, days: np.ndarray) -> np.ndarray:
        """Calendar covariates of days counted from the origin (day 0)."""
        d = np.asarray(days, float)
        doy = (self.origin_.day_of_year - 1 + d) * 2 * np.pi / _YEAR
        cols = []
        for k in range(1, self.harmonics + 1):
            cols += [np.sin(k * doy), np.cos(k * doy)]
        if self.trend:
            cols.append(d / _YEAR)
        return np.column_stack(cols) if cols else np.zeros((len(d), 0))

    def _clock(self, gamma: np.ndarray, last_day: int) -> np.ndarray:
        """tau at the start of each day 0..last_day+1, in time units (each day weighs m(day))."""
        m = np.exp(self._z(np.arange(last_day + 1)) @ gamma)
        unit = 7.0 if self.time_unit == "W" else 1.0
        return np.concatenate([[0.0], np.cumsum(m)]) / unit

    def multiplier(self, dates: Any) -> pd.Series:
        """The fitted calendar multiplier ``m(t)`` of the purchase rate on ``dates``."""
        self._check()
        idx = pd.DatetimeIndex(pd.to_datetime(dates))
        days = (idx - self.origin_).days.to_numpy()
        return pd.Series(np.exp(self._z(days) @ self.gamma_), index=idx, name="multiplier")

    # ---------------------------------------------------------------- fitting
    def fit(self, transactions: pd.DataFrame, *, observation_end: Any = None) -> SeasonalBetaGeoModel:
        """Fit on a transaction log (``customer_id, date``; purchases on one day are one purchase)."""
        from clvmodels.models.beta_geo import BetaGeoModel, bgnbd_log_likelihood

        if not isinstance(transactions, pd.DataFrame) or not {"customer_id", "date"} <= set(transactions.columns):
            raise DataValidationError("transactions must be a DataFrame with customer_id and date columns.")
        days = pd.to_datetime(transactions["date"]).dt.normalize()
        end = days.max() if observation_end is None else pd.Timestamp(observation_end)
        log = pd.DataFrame({"c": transactions["customer_id"].to_numpy(), "d": days.to_numpy()})
        log = log[log["d"] <= end].drop_duplicates()
        if log.empty:
            raise DataValidationError("No purchases on or before observation_end.")
        self.origin_ = log["d"].min()
        self.end_ = end
        span = (end - self.origin_).days
        if (self.harmonics or self.trend) and span < MIN_SPAN_DAYS:
            raise DataValidationError(
                f"The log spans {span} days to observation_end; a yearly season (or a trend) needs at least "
                f"{MIN_SPAN_DAYS} days of history, or it is extrapolated from part of one year (on CDNOW cut after "
                "six months it doubled the forecast). Use BetaGeoModel, or a longer log.")
        log["k"] = (log["d"] - self.origin_).dt.days.to_numpy()
        g = log.groupby("c")["k"]
        first, last, n = g.min(), g.max(), g.size()
        per = pd.DataFrame({"x": (n - 1).astype(float), "first": first, "last": last})
        rows = per.groupby(["x", "first", "last"]).size().rename("w").reset_index()
        x, k0, k1, w = (rows[c].to_numpy() for c in ("x", "first", "last", "w"))
        x, w = x.astype(float), w.astype(float)
        end_day = int((end - self.origin_).days)
        repeat = log[log["k"] > log["c"].map(first)]["k"].to_numpy()  # repeat purchase days
        if len(repeat) == 0:
            raise DataValidationError("No repeat purchases: nothing to learn purchase rates or seasons from.")
        zsum = self._z(repeat).sum(axis=0)
        n_total = float(w.sum())
        kz = self._z(np.array([0])).shape[1]

        def loglik(theta):
            r, alpha, a, b = np.exp(theta[:4])
            gamma = theta[4:]
            tau = self._clock(gamma, end_day)
            # purchases on day k happen at its start: the clock at the start of day k
            tx, T = tau[k1] - tau[k0], tau[end_day + 1] - tau[k0]
            ll = bgnbd_log_likelihood({"r": r, "alpha": alpha, "a": a, "b": b}, x, tx, T)
            return float((w * ll).sum() + zsum @ gamma)

        def objective(theta):
            value = -loglik(theta) / n_total
            return value if np.isfinite(value) else 1e300

        unit = 7.0 if self.time_unit == "W" else 1.0
        plain = BetaGeoModel().fit(pd.DataFrame({"frequency": x, "recency": (k1 - k0) / unit,
                                                 "T": (end_day + 1 - k0) / unit}), weights=w)
        start = np.concatenate([np.log(plain.params_.to_numpy()), np.zeros(kz)])
        res = optimize.minimize(objective, start, method="BFGS", options={"gtol": 1e-7, "maxiter": 2000})
        if not np.isfinite(res.fun) or res.fun >= 1e299:
            raise ConvergenceError("The seasonal BG/NBD did not converge; try fewer harmonics.")
        theta = res.x
        self.theta_ = theta
        self.gamma_ = theta[4:]
        names = ["r", "alpha", "a", "b"] + self._names()
        self.params_ = pd.Series(np.concatenate([np.exp(theta[:4]), theta[4:]]), index=names, name="estimate")
        self.log_likelihood_ = loglik(theta)
        self.plain_log_likelihood_ = float(plain.log_likelihood_)
        self.n_params_ = len(theta)
        # standard errors from a finite-difference Hessian of the total log-likelihood
        k = len(theta)
        h = 1e-4
        hess = np.empty((k, k))
        for i in range(k):
            for j in range(i, k):
                e_i, e_j = np.eye(k)[i] * h, np.eye(k)[j] * h
                hess[i, j] = hess[j, i] = -(loglik(theta + e_i + e_j) - loglik(theta + e_i - e_j)
                                            - loglik(theta - e_i + e_j) + loglik(theta - e_i - e_j)) / (4 * h * h)
        try:
            se = np.sqrt(np.clip(np.diag(np.linalg.inv(hess)), 0, None))
        except np.linalg.LinAlgError:
            se = np.full(k, np.nan)
        self.standard_errors_ = pd.Series(se, index=names, name="std_error")
        self._per_customer = per
        return self

    def _names(self) -> list[str]:
        names = []
        for k in range(1, self.harmonics + 1):
            names += [f"season sin {k}", f"season cos {k}"]
        return names + (["trend per year"] if self.trend else [])

    def _check(self) -> None:
        if not hasattr(self, "params_"):
            raise NotFittedError("This SeasonalBetaGeoModel is not fitted yet; call fit(transactions) first.")

    # ---------------------------------------------------------------- predictions
    def operational_rfm(self) -> pd.DataFrame:
        """The customers of the fit on the operational clock (frequency, recency, T)."""
        self._check()
        end_day = int((self.end_ - self.origin_).days)
        tau = self._clock(self.gamma_, end_day)
        per = self._per_customer
        out = pd.DataFrame({"frequency": per["x"], "recency": tau[per["last"].to_numpy()] - tau[per["first"].to_numpy()],
                            "T": tau[end_day + 1] - tau[per["first"].to_numpy()]}, index=per.index)
        out.index.name = "customer_id"
        out.attrs["time_unit"] = self.time_unit
        return out

    def operational_horizon(self, horizon: float) -> float:
        """``horizon`` time units after the observation end, on the operational clock."""
        self._check()
        unit = 7 if self.time_unit == "W" else 1
        end_day = int((self.end_ - self.origin_).days)
        tau = self._clock(self.gamma_, end_day + int(np.ceil(horizon * unit)) + 1)
        return float(tau[end_day + 1 + int(round(horizon * unit))] - tau[end_day + 1])

    def plain_model(self) -> Any:
        """BG/NBD with the fitted r, alpha, a, b: the customers on the operational clock."""
        from clvmodels.models.beta_geo import BetaGeoModel

        self._check()
        return BetaGeoModel.from_params(self.params_.iloc[:4].to_dict(), time_unit=self.time_unit)

    def expected_purchases(self, horizon: float) -> pd.Series:
        """Expected purchases of each customer of the fit in the next ``horizon`` time units."""
        return self.plain_model().expected_purchases(self.operational_rfm(), self.operational_horizon(horizon))

    def probability_alive(self) -> pd.Series:
        return self.plain_model().probability_alive(self.operational_rfm())

    def probability_alive_after(self, horizon: float) -> pd.Series:
        return self.plain_model().probability_alive_after(self.operational_rfm(), self.operational_horizon(horizon))
