"""Pareto/NBD with calendar covariates in both processes (issue 17, item 3).

The dynamic-covariate Pareto/NBD of Bachmann, Meierer & Naef (2021, "The role of time-varying
contextual factors in latent attrition models for customer base analysis", Marketing Science
40(4)), with contextual covariates that every customer shares: the calendar. While active, a
customer buys as a Poisson process of rate ``lambda m(t)`` and leaves with hazard ``mu d(t)``,

* ``lambda ~ Gamma(r, alpha)`` and ``mu ~ Gamma(s, beta)`` independent, as in Pareto/NBD;
* ``m(t) = exp(gamma' z(t))``: purchase covariates, the yearly season's Fourier terms
  (``harmonics``), a trend in years (``trend``) and events of your own (``events``: a table of
  day -> value, e.g. holiday 1);
* ``d(t) = exp(delta' w(t))``: dropout covariates, a season (``dropout_harmonics``), a trend
  (``dropout_trend``) and the events (``dropout_events``), so customers can leave more in some
  months, or around some days, than at others.

Both multipliers are constant within a calendar day. With ``A(u)`` and ``B(u)`` the purchase
and dropout clocks from the customer's first purchase (``int m`` and ``int d``, in time units),
the likelihood of ``x`` repeat purchases at ``t_1 .. t_x``, observed until ``T``, is::

    L = prod_j m(t_j) G(r+x)/G(r) alpha^r beta^s [ (alpha+A(T))^-(r+x) (beta+B(T))^-s
        + s int_{t_x}^T (alpha+A(u))^-(r+x) (beta+B(u))^-(s+1) d(u) du ]

(alive at ``T``, or gone at ``u``: integrate ``lambda`` and ``mu`` out of the exponential-clock
likelihood). With no covariates it is Pareto/NBD's (Fader & Hardie 2005, eq. 3 in the integral
form :mod:`clvmodels.models.pareto_nbd` uses). The integral is computed as Pareto/NBD's is, by
Gauss-Legendre quadrature after the substitution ``y = ((alpha+A(t_x))/(alpha+A(u)))^(r+x+s)``
on the purchase clock; what is left under the integral is the flat ratio
``((beta+B)/(alpha+A))^-(s+1)`` times ``d/m``. The gradient is analytic: the derivatives of the
integrand's log averaged by the same quadrature, the covariates' through the clocks' cumulative
sums. Fitted on compressed statistics: distinct ``(x, first day, last day)`` rows and the repeat
purchases per calendar day (``rfm_summary(..., calendar=True)``), from which the Jacobian
``sum_j z(t_j)`` comes.

Given active at ``T``, ``lambda ~ Gamma(r+x, alpha+A(T))`` and ``mu ~ Gamma(s, beta+B(T))``,
independent; over the next ``t`` the purchase clock ``a(v)`` and dropout clock ``b(v)`` from the
as-of date are the same for every customer, so

* survival: ``(1 + k b(t)/(beta+B(T)))^-s`` (every dropout hazard scaled by ``k``);
* expected purchases: ``(r+x)/(alpha+A(T)) int_0^{a(t)} (1 + k b(a)/(beta+B(T)))^-s da``;
* P(any purchase): ``int_{y_t}^1 (1 + k b(a(y))/(beta+B(T)))^-s dy`` with
  ``y = (1 + a/(alpha+A(T)))^-(r+x)``;
* the number of purchases: negative binomial over the purchase clock up to dropout, mixed over
  the dropout time on the dropout clock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy import optimize, special

from clvmodels._compress import compress
from clvmodels._validation import check_number
from clvmodels.exceptions import ConvergenceError, DataValidationError
from clvmodels.models._special import _Q_NODES, _Q_WEIGHTS, _composite_rule
from clvmodels.models.calendar import CalendarClock, day_number
from clvmodels.models.pareto_nbd import ParetoNBDModel, _legendre_nodes, _pnbd_pmf

__all__ = ["SeasonalParetoNBDModel", "FIT_CUSTOMERS"]

#: the likelihood's quadrature for rows whose substitution ends at y >= _NEAR_FROM: the rule of
#: :func:`clvmodels.models._special.power_integral` without its panels below y = 1e-3 (they serve
#: integrals that reach y -> 0, i.e. u -> infinity)
_NEAR_FROM = 1e-4
_NEAR_NODES, _NEAR_WEIGHTS = _composite_rule([0.0, 1e-3, 1e-2, 0.1, 1.0], 16)
#: rows of the likelihood's quadrature handled at once (rows x up to 144 nodes per array)
_CHUNK = 8192
#: Gauss-Legendre nodes for the forecasts' integrals over the next horizon (smooth integrands)
_H_NODES = 96
#: the fit uses a random sample of this many customers when there are more (a step of the fit, value
#: and gradient, costs about 13 microseconds per distinct history: measured 0.10 s for 7,573 rows of
#: bench_seasonal.py's 10,000 customers, and the fit takes 40-100 steps; the sample's standard
#: errors are the sample's)
FIT_CUSTOMERS = 50_000
#: DERT sums discounted purchases over at most this many days (100 years)
_DERT_DAYS = 36_525


@dataclass
class _Clocks:
    """Per-day rates (per time unit) over a range of days and their cumulative clocks."""

    m: np.ndarray   # purchase multiplier / unit, per day
    d: np.ndarray   # dropout multiplier / unit, per day
    C: np.ndarray   # purchase clock at the days' starts (len n+1)
    D: np.ndarray   # dropout clock at the days' starts


def _clocks(m: np.ndarray, d: np.ndarray) -> _Clocks:
    return _Clocks(m, d, np.concatenate([[0.0], np.cumsum(m)]), np.concatenate([[0.0], np.cumsum(d)]))


def _locate(q, sub, cl: _Clocks):
    """Points ``q`` (in [0, 1]) of the likelihood's substitution, per row: ln((alpha+A)/(alpha+A(t_x))),
    the purchase clock, the day and the fraction of it, and the dropout clock (both absolute)."""
    y_hi, one_minus, M, a_lo, aAx, a_end, day_lo, day_hi = sub
    y = y_hi + one_minus * q
    with np.errstate(divide="ignore"):
        step = -np.log(y) / M
    a_abs = np.minimum(a_lo + aAx * np.expm1(step), a_end)
    idx = np.clip(np.searchsorted(cl.C, a_abs, side="right") - 1, day_lo, day_hi)
    frac = np.clip((a_abs - cl.C[idx]) / cl.m[idx], 0.0, 1.0)
    return step, a_abs, idx, frac, cl.D[idx] + frac * cl.d[idx]


def _row_terms(params, x, cl: _Clocks, i_first, i_last, i_end, *, grad: bool = False, rw=None,
               kz: int = 0, kw: int = 0):
    """Per-row ``log_alive`` and ``log I`` (the likelihood's two terms, without the constant);
    with ``grad`` also the weighted gradient's pieces (see :meth:`SeasonalParetoNBDModel.fit`),
    those of the purchase covariates when ``kz`` (their number) and of the dropout ones when ``kw``."""
    r, alpha, s, beta = params
    rx = r + x
    C, D, m, d = cl.C, cl.D, cl.m, cl.d
    n_days = len(m)
    AT, Ax = C[i_end] - C[i_first], C[i_last] - C[i_first]
    BT = D[i_end] - D[i_first]
    log_alive = -rx * np.log(alpha + AT) - s * np.log(beta + BT)
    log_i = np.full(len(x), -np.inf)
    mom = np.zeros((4, len(x))) if grad else None
    if grad:
        # bincount targets: sums over (row, node) of coefficients times G(u), H(u), w(u)
        acc = {"g0": np.zeros(n_days), "g1": np.zeros(n_days), "h0": np.zeros(n_days), "h1": np.zeros(n_days),
               "w": np.zeros(n_days), "gf": np.zeros(n_days + 1), "hf": np.zeros(n_days + 1)}
    open_rows = np.flatnonzero(i_last < i_end)
    # rows whose substitution ends well above y = 0 need no panels near it (most rows: 64 nodes
    # instead of 144); the rest keep the rule that reaches y -> 0 geometrically
    y_end = np.exp(-(rx[open_rows] + s) * np.log1p((AT[open_rows] - Ax[open_rows]) / (alpha + Ax[open_rows])))
    groups = [(open_rows[y_end >= _NEAR_FROM], _NEAR_NODES, _NEAR_WEIGHTS),
              (open_rows[y_end < _NEAR_FROM], _Q_NODES, _Q_WEIGHTS)]
    chunks = [(g[i:i + _CHUNK], nodes, weights) for g, nodes, weights in groups for i in range(0, len(g), _CHUNK)]
    for rows, nodes, weights in chunks:
        M = rx[rows] + s
        aAx = alpha + Ax[rows]
        log_ratio = np.log1p((AT[rows] - Ax[rows]) / aAx)
        one_minus = -np.expm1(-M * log_ratio)
        y_hi = np.exp(-M * log_ratio)
        c_first, d_first = C[i_first[rows]][:, None], D[i_first[rows]][:, None]
        day_lo, day_hi = i_last[rows][:, None], i_end[rows][:, None] - 1
        a_end = C[i_end[rows]][:, None]

        sub = (y_hi[:, None], one_minus[:, None], M[:, None], c_first + Ax[rows][:, None], aAx[:, None], a_end,
               day_lo, day_hi)
        step, _, idx, frac, B_abs = _locate(nodes, sub, cl)
        log_au = np.log(aAx)[:, None] + step
        Bu = B_abs - d_first
        log_bu = np.log(beta + Bu)
        # the dropout clock's rate against the purchase clock's, d/m, drawn linearly between the
        # days' middles: continuous in the parameters (each day's own rate would jump as a node
        # crosses midnight, and the quadrature's value with it)
        sigma = d / m
        nb = np.clip(np.where(frac >= 0.5, idx + 1, idx - 1), 0, n_days - 1)
        t_nb = np.abs(frac - 0.5)
        ratio = (1.0 - t_nb) * sigma[idx] + t_nb * sigma[nb]
        lr = -(s + 1.0) * (log_bu - log_au) + np.log(ratio)
        top = lr.max(axis=-1, keepdims=True)
        with np.errstate(under="ignore"):
            wts = weights * np.exp(lr - top)
        total = wts.sum(axis=-1)
        with np.errstate(divide="ignore"):
            log_i[rows] = -M * np.log(aAx) - np.log(M) + np.log(one_minus) + top[:, 0] + np.log(total)
        if not grad:
            continue
        wn = wts / total[:, None]
        au, bu = np.exp(log_au), beta + Bu
        mom[0, rows] = (wn * log_au).sum(-1)
        mom[1, rows] = (wn / au).sum(-1)
        mom[2, rows] = (wn * log_bu).sum(-1)
        mom[3, rows] = (wn / bu).sum(-1)
        # the share of the dropout term, needed to weight the covariates' sums
        lse = np.logaddexp(log_alive[rows], np.log(s) + log_i[rows])
        s2 = rw[rows] * -np.expm1(log_alive[rows] - lse)
        flat = idx.ravel()
        if kz:
            c = (s2 * rx[rows])[:, None] * wn / au
            acc["g0"] += np.bincount(flat, c.ravel(), n_days)
            acc["g1"] += np.bincount(flat, (c * frac).ravel(), n_days)
            acc["gf"] += np.bincount(i_first[rows], s2 * rx[rows] * mom[1, rows], n_days + 1)
        if kw:
            c = (s2 * (s + 1.0))[:, None] * wn / bu
            acc["h0"] += np.bincount(flat, c.ravel(), n_days)
            acc["h1"] += np.bincount(flat, (c * frac).ravel(), n_days)
            acc["hf"] += np.bincount(i_first[rows], s2 * (s + 1.0) * mom[3, rows], n_days + 1)
            # d ln(ratio)/d delta: the two days' w, weighted by their shares of the ratio
            cw = s2[:, None] * wn / ratio
            acc["w"] += np.bincount(flat, (cw * (1.0 - t_nb) * sigma[idx]).ravel(), n_days)
            acc["w"] += np.bincount(nb.ravel(), (cw * t_nb * sigma[nb]).ravel(), n_days)
    if not grad:
        return log_alive, log_i
    return log_alive, log_i, mom, acc


class SeasonalParetoNBDModel(CalendarClock, ParetoNBDModel, terms="calendar", configures={ParetoNBDModel: {}}):
    """Pareto/NBD with calendar covariates in the purchase and the dropout process; see the module notes.

    Parameters
    ----------
    harmonics : int, default 2
        Fourier terms of the yearly pattern of the purchase rate (0: none).
    trend : bool, default False
        A log-linear trend in the purchase rate (per year; forecasts extrapolate it).
    events : DataFrame, optional
        Purchase covariates of your own, indexed by date, a column per event (days not listed
        are 0; list the forecast horizon's too), as for :class:`SeasonalBetaGeoModel`.
    dropout_harmonics : int, default 1
        Fourier terms of a yearly pattern in the dropout hazard (1: customers leave more in one
        part of the year; 0: no season in the dropout).
    dropout_trend : bool, default False
        A log-linear trend in the dropout hazard.
    dropout_events : bool, default False
        The events' columns act on the dropout hazard too, each with its own coefficient
        (customers who leave after a price rise, at a contract's anniversary, ...).
    calendar : dict, optional
        A fitted calendar (``coefficients``: purchase ones, then dropout ones; ``as_of``;
        ``trend_origin``), for a model rebuilt from saved parameters.
    penalizer_coef, tol, max_iter
        As for :class:`ParetoNBDModel` (the penalty is on r, alpha, s, beta).

    Attributes
    ----------
    params_ : Series
        ``r, alpha, s, beta`` in the clocks' time units.
    calendar_, calendar_effects_, plain_log_likelihood_
        As for :class:`SeasonalBetaGeoModel` (the plain model is Pareto/NBD).
    """

    _reference = ("Bachmann, Meierer & Naef (2021), The role of time-varying contextual factors in latent "
                  "attrition models, Marketing Science 40(4), with calendar covariates shared by all customers.")
    _FITTED: ClassVar[tuple[str, ...]] = ParetoNBDModel._FITTED + ("calendar_", "calendar_effects_",
                                                                    "plain_log_likelihood_")

    def __init__(self, harmonics: int = 2, *, trend: bool = False, events: Any = None, dropout_harmonics: int = 1,
                 dropout_trend: bool = False, dropout_events: bool = False, calendar: dict[str, Any] | None = None,
                 penalizer_coef: float = 0.0,
                 tol: float = 1e-9, max_iter: int = 2000):
        super().__init__(penalizer_coef=penalizer_coef, tol=tol, max_iter=max_iter)
        self._init_calendar(harmonics, trend, events, calendar, dropout_harmonics, dropout_trend, dropout_events)

    def _defining(self) -> dict[str, Any]:
        return {**super()._defining(), "dropout_harmonics": self.dropout_harmonics,
                "dropout_trend": self.dropout_trend, "dropout_events": self.dropout_events}

    # ---------------------------------------------------------------- fitting
    def fit(self, rfm: pd.DataFrame, y: Any = None, *, weights: Any = None) -> SeasonalParetoNBDModel:
        """Fit by maximum likelihood on an RFM table built with ``calendar=True`` (or
        compressed rows of one with ``weights``), from the Pareto/NBD fit.

        Raises
        ------
        DataValidationError
            As :meth:`SeasonalBetaGeoModel.fit`.
        ConvergenceError
            The optimiser failed, or a calendar coefficient ran beyond ``+-10``.
        """
        self._check_init_params()
        data = self._calendar_rows(rfm, weights)
        plain = ParetoNBDModel(penalizer_coef=self.penalizer_coef, tol=self.tol, max_iter=self.max_iter).fit(
            data.table, weights=data.table_w)
        origin = day_number(data.as_of, "as_of")
        Z, W = self._z(data.days, origin), self._zd(data.days, origin)
        kz, kw = Z.shape[1], W.shape[1]
        x, rw, lo, unit = data.x, data.w, data.lo, data.unit
        full_n = float(rw.sum())
        zsum = data.zsum
        sampled = full_n > FIT_CUSTOMERS
        if sampled:
            # a random FIT_CUSTOMERS customers (multinomial over the rows); the Jacobian's sum is
            # the sample's expected share of the calendar's
            draw = np.random.default_rng(0).multinomial(FIT_CUSTOMERS, rw / full_n).astype(float)
            keep = draw > 0
            zsum = zsum * float((draw * x).sum() / max(float((rw * x).sum()), 1e-300))
            x, rw = x[keep], draw[keep]
            data = replace(data, x=x, w=rw, first=data.first[keep], last=data.last[keep])
        i_first, i_last = data.first - lo, data.last - lo
        i_end = np.full(len(x), -lo)
        n_total = float(rw.sum())
        ux, xi = np.unique(x, return_inverse=True)

        def parts(theta: np.ndarray, grad: bool):
            r, alpha, s, beta = np.exp(theta[:4])
            gamma, delta = theta[4:4 + kz], theta[4 + kz:]
            m, d = np.exp(Z @ gamma) / unit, np.exp(W @ delta) / unit
            cl = _clocks(m, d)
            const = (special.gammaln(r + ux) - special.gammaln(r))[xi] + r * np.log(alpha) + s * np.log(beta)
            if not grad:
                log_alive, log_i = _row_terms((r, alpha, s, beta), x, cl, i_first, i_last, i_end)
                ll = const + np.logaddexp(log_alive, np.log(s) + log_i)
                return float((rw * ll).sum() + zsum @ gamma), None
            Gc = np.vstack([np.zeros(kz), np.cumsum(m[:, None] * Z, axis=0)])
            Hc = np.vstack([np.zeros(kw), np.cumsum(d[:, None] * W, axis=0)])
            log_alive, log_i, mom, acc = _row_terms((r, alpha, s, beta), x, cl, i_first, i_last, i_end, grad=True,
                                                    rw=rw, kz=kz, kw=kw)
            lse = np.logaddexp(log_alive, np.log(s) + log_i)
            ll = const + lse
            total = float((rw * ll).sum() + zsum @ gamma)
            s1 = np.exp(log_alive - lse)
            s2 = 1.0 - s1
            e_la, e_ia, e_lb, e_ib = mom
            rx = r + x
            AT, BT = cl.C[i_end] - cl.C[i_first], cl.D[i_end] - cl.D[i_first]
            g = np.empty(4 + kz + kw)
            g[0] = r * float((rw * ((special.digamma(r + ux) - special.digamma(r))[xi] + np.log(alpha)
                                    - s1 * np.log(alpha + AT) - s2 * e_la)).sum())
            g[1] = alpha * float((rw * (r / alpha - rx * (s1 / (alpha + AT) + s2 * e_ia))).sum())
            g[2] = s * float((rw * (np.log(beta) - s1 * np.log(beta + BT) + s2 * (1.0 / s - e_lb))).sum())
            g[3] = beta * float((rw * (s / beta - s1 * s / (beta + BT) - s2 * (s + 1.0) * e_ib)).sum())
            if kz:
                alive_c = rw * s1 * rx / (alpha + AT)
                dead = acc["g0"] @ Gc[:-1] + acc["g1"] @ (m[:, None] * Z) - acc["gf"] @ Gc
                g[4:4 + kz] = -(alive_c @ (Gc[i_end] - Gc[i_first])) - dead + zsum
            if kw:
                alive_c = rw * s1 * s / (beta + BT)
                dead = acc["h0"] @ Hc[:-1] + acc["h1"] @ (d[:, None] * W) - acc["hf"] @ Hc
                g[4 + kz:] = -(alive_c @ (Hc[i_end] - Hc[i_first])) - dead + acc["w"] @ W
            return total, g

        theta0 = np.concatenate([np.log(np.clip(plain.params_.to_numpy(), 1e-8, 1e8)), np.zeros(kz + kw)])
        # L-BFGS-B: the quadrature's gradient agrees with its value to about 1e-4 of a customer's
        # log-likelihood, where BFGS's line search gives up on lost precision
        res = optimize.minimize(self._penalised(parts, n_total), theta0, jac=True, method="L-BFGS-B",
                                options={"gtol": 1e-7, "ftol": 1e-10, "maxiter": int(self.max_iter)})
        if not np.isfinite(res.fun) or res.fun >= 1e299:
            raise ConvergenceError(f"The seasonal Pareto/NBD did not converge ({res.message}); try fewer harmonics "
                                   "or ParetoNBDModel.")
        method = "L-BFGS-B (analytic gradient) from the Pareto/NBD fit"
        if sampled:
            method += f", on a random {n_total:,.0f} of the {full_n:,.0f} customers"
        self._finish_fit(res.x, res, parts, data, plain, method)
        if sampled:
            # the log-likelihood of all customers, estimated from the sample's
            self.log_likelihood_ *= full_n / n_total
            self.n_customers_ = int(round(full_n))
        return self

    # ---------------------------------------------------------------- the clocks for predictions
    def _days(self, T: Any) -> np.ndarray:
        return np.rint(np.asarray(T, float) * self._unit_days()).astype(np.int64)

    def _past(self, lo: int) -> _Clocks:
        """The clocks over the days ``lo .. -1`` before the as-of date (``lo < 0``)."""
        C = self._clock(lo, 1)[:-lo + 1]
        D = self._clock(lo, 1, dropout=True)[:-lo + 1]
        return _Clocks(np.diff(C), np.diff(D), C - C[0], D - D[0])

    def _future(self, t: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(a_grid, b_grid, a(t), b(t))``: the clocks at the starts of the days after the
        as-of date (as far as the longest horizon) and at each horizon ``t`` (time units)."""
        t = np.asarray(t, float)
        hi = int(np.ceil(float(t.max(initial=0.0)) * self._unit_days())) + 1
        a_grid, b_grid = self._clock(0, hi), self._clock(0, hi, dropout=True)
        return a_grid, b_grid, self._op_horizon(t), self._tau(t * self._unit_days(), dropout=True)

    def _AB_T(self, T: Any) -> tuple[np.ndarray, np.ndarray]:
        """Each customer's purchase and dropout clock from the first purchase to the as-of date."""
        o = -np.asarray(T, float) * self._unit_days()
        return -self._tau(o), -self._tau(o, dropout=True)

    # ---------------------------------------------------------------- hooks
    def _p_alive(self, x, tx, T):
        x, tx, T = np.broadcast_arrays(*(np.asarray(v, float).ravel() for v in (x, tx, T)))
        if x.size == 0:
            return np.zeros(0)
        rows = compress(x, -self._days(T), self._days(tx) - self._days(T))  # once per distinct history
        ux, f, la = rows.columns
        lo = min(int(f.min()), -1)
        log_alive, log_i = _row_terms(self._p(), ux, self._past(lo), f - lo, la - lo, np.full(len(ux), -lo))
        s = self._p()[2]
        return np.exp(log_alive - np.logaddexp(log_alive, np.log(s) + log_i))[rows.inverse]

    def _ahead(self, t, x, T):
        """Broadcast ``(t, x, T)``, the clocks ahead (grids and at ``t``) and each customer's
        clocks from the first purchase to the as-of date."""
        t, x, T = np.broadcast_arrays(*(np.asarray(v, float) for v in (t, x, T)))
        a_grid, b_grid, a_t, _ = self._future(t)
        return t, x, a_grid, b_grid, a_t, *self._AB_T(T)

    def _expected_if_alive(self, t, x, T, dropout_scale: float = 1.0):
        r, alpha, s, beta = self._p()
        k = float(dropout_scale)
        t, x, a_grid, b_grid, a_t, AT, BT = self._ahead(t, x, T)
        z, wz = _legendre_nodes(_H_NODES)
        a = a_t[..., None] * (z + 1) / 2
        b = np.interp(a, a_grid, b_grid)
        inner = (np.exp(-s * np.log1p(k * b / (beta + BT)[..., None])) * wz).sum(-1) * a_t / 2
        return (r + x) / (alpha + AT) * inner

    def _survival_if_alive(self, t, x, T, dropout_scale: float = 1.0):
        r, alpha, s, beta = self._p()
        t, T = np.broadcast_arrays(np.asarray(t, float), np.asarray(T, float))
        _, BT = self._AB_T(T)
        b_t = self._tau(t * self._unit_days(), dropout=True)
        return np.exp(-s * np.log1p(float(dropout_scale) * b_t / (beta + BT)))

    def _any_if_alive(self, t, x, T, dropout_scale: float = 1.0):
        r, alpha, s, beta = self._p()
        k = float(dropout_scale)
        t, x, a_grid, b_grid, a_t, AT, BT = self._ahead(t, x, T)
        rx = r + x
        y_t = np.exp(-rx * np.log1p(a_t / (alpha + AT)))
        z, wz = _legendre_nodes(_H_NODES)
        y = y_t[..., None] + (1 - y_t)[..., None] * (z + 1) / 2
        a = (alpha + AT)[..., None] * np.expm1(-np.log(y) / rx[..., None])
        b = np.interp(a, a_grid, b_grid)
        inner = (np.exp(-s * np.log1p(k * b / (beta + BT)[..., None])) * wz).sum(-1) * (1 - y_t) / 2
        return np.where(t > 0, inner, 0.0)

    def _pmf_given(self, n, t, rx, aT, bT):
        """P(N = n purchases over the next ``t``) for an active customer with posterior
        ``Gamma(rx, aT)``, ``Gamma(s, bT)``: Pareto/NBD's, over the dropout clock after the as-of
        date, with the purchase clock at each dropout time."""
        s = self._p()[2]
        a_grid, b_grid, _, b_t = self._future(t)
        return _pnbd_pmf(n, b_t, rx, aT, s, bT, clock=lambda v: np.interp(v, b_grid, a_grid))

    def _pmf_if_alive(self, n: int, t, x, T, tx):
        r, alpha, s, beta = self._p()
        AT, BT = self._AB_T(T)
        return self._pmf_given(n, t, r + np.asarray(x, float), alpha + AT, beta + BT)

    def _simulate(self, rng: np.random.Generator, x, T, horizon: float, alive) -> np.ndarray:
        """Posterior draw: ``lambda ~ Gamma(r+x, alpha+A(T))``, ``mu ~ Gamma(s, beta+B(T))``;
        the customer leaves when the dropout clock has run ``Exp(mu)``, and buys
        Poisson(``lambda`` times the purchase clock until then or the horizon)."""
        r, alpha, s, beta = self._p()
        AT, BT = self._AB_T(T)
        a_grid, b_grid, a_h, b_h = self._future(horizon)
        lam = rng.gamma(r + np.asarray(x, float), 1.0 / (alpha + AT))
        mu = rng.gamma(s, 1.0 / (beta + BT))
        e = rng.exponential(1.0 / np.maximum(mu, 1e-300))
        a = np.where(e < b_h, np.interp(np.minimum(e, b_h), b_grid, a_grid), a_h)
        return np.where(alive, rng.poisson(lam * a), 0)

    # ---------------------------------------------------------------- extras
    def probability_purchases(self, n: int | np.ndarray, t: float) -> float | np.ndarray:
        """P(X(t) = n) for a customer whose first purchase is at the as-of date: ``n`` repeat
        purchases in the ``t`` time units after it."""
        self._check_fitted()
        r, alpha, s, beta = self._p()
        t = check_number("t", t, minimum=0.0)
        nn = np.asarray(n)
        if np.any(nn < 0) or np.any(nn != np.floor(nn)):
            raise DataValidationError(f"n must be whole numbers >= 0, got {n!r}.")
        out = self._pmf_given(nn.astype(float), t, r, alpha, beta)
        return float(out) if np.ndim(n) == 0 else out

    def _window_pmf(self, ks: np.ndarray, T: float) -> np.ndarray:
        """P(``ks`` repeat purchases) over a customer's own stretch of the two clocks, from the
        first purchase ``T`` before the as-of date to it."""
        r, alpha, s, beta = self._p()
        n_days = int(self._days(T))
        if n_days == 0:  # first seen on the as-of day: no time to buy again
            return (np.asarray(ks) == 0).astype(float)
        cl = self._past(-n_days)
        return _pnbd_pmf(ks, cl.D[-1], r, alpha, s, beta, clock=lambda v: np.interp(v, cl.D, cl.C))

    def expected_discounted_residual_purchases(self, rfm: pd.DataFrame, discount_rate: float) -> pd.Series:
        """DERT on the calendar: ``P(alive) (r+x)/(alpha+A(T)) int_0^inf e^(-delta v) m(v)
        (1 + b(v)/(beta+B(T)))^-s dv``, summed day by day (each day's discount at its middle)
        over at most 100 years; ``delta`` the continuously compounded rate per time unit."""
        delta = check_number("discount_rate", discount_rate, minimum=0.0, min_inclusive=False)
        r, alpha, s, beta = self._p()
        x, tx, T = self._rows(rfm)
        unit = self._unit_days()
        days = int(min(_DERT_DAYS, np.ceil(30.0 / delta * unit)))  # e^-30 of the first day's weight beyond
        a_grid, b_grid = self._clock(0, days), self._clock(0, days, dropout=True)
        m = np.diff(a_grid)
        b_mid = (b_grid[:-1] + b_grid[1:]) / 2
        disc = np.exp(-delta * (np.arange(days) + 0.5) / unit) * m
        AT, BT = self._AB_T(T)
        ub, inv = np.unique(beta + BT, return_inverse=True)
        inner = np.array([float(disc @ np.exp(-s * np.log1p(b_mid / c))) for c in ub])[inv.ravel()]
        return pd.Series(self._p_alive(x, tx, T) * (r + x) / (alpha + AT) * inner, index=rfm.index, name="dert")
