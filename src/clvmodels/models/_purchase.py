"""What every model of the purchase and dropout process offers, written once.

A purchase model supplies its own math through a few hooks, each on arrays:

* ``_p_alive(x, t_x, T)``: P(active at T | history);
* ``_expected_if_alive(t, x, T, k)``, ``_survival_if_alive(t, x, T, k)``,
  ``_any_if_alive(t, x, T, k)``: expected purchases, survival and P(any purchase) over the next
  ``t`` given active at ``T``, with every dropout rate or probability scaled by ``k`` (given
  active, the posterior depends on ``x`` and ``T`` only, so these are evaluated once per
  distinct ``(x, T)``);
* ``_new_customer_alive()``: P(active right after the first purchase);
* ``_simulate(rng, x, T, horizon, alive)``: one posterior draw of future purchase counts;
* ``probability_purchases(n, t)``: P(X(t) = n) for a new customer.

The public predictions below combine them; forecasts, tiers, intervals and the scorecard use
only these, so every purchase model slots in beside BG/NBD.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from clvmodels._compress import compress
from clvmodels._validation import DAYS_PER_UNIT, DAYS_PER_YEAR, check_number, check_rfm
from clvmodels.exceptions import DataValidationError
from clvmodels.models._base import BaseModel

__all__ = ["PurchaseModel", "LIFETIME_YEARS", "lifetime_nodes"]

#: residual lifetime counts purchases over at most this many years ahead (beyond it a customer's
#: value is below the discounting's precision at any usual rate: e^-9.5 at 10% a year)
LIFETIME_YEARS = 100.0
#: Gauss-Legendre nodes per panel of :func:`lifetime_nodes`
_PANEL_NODES = 6


def lifetime_nodes(delta: float, end: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``t`` and weights ``w`` with ``sum w f(t) ~ int_0^end e^(-delta t) f(t) dt`` for a
    smooth ``f``: Gauss-Legendre on panels that double in width from one time unit (the
    expected purchases and survival change on every scale from the customer's pace to decades,
    which one Gauss-Laguerre rule at the scale ``1/delta`` misses near 0)."""
    edges = [0.0]
    width = min(1.0, end)
    while edges[-1] < end:
        edges.append(min(edges[-1] + width, end))
        width *= 2.0
    z, wz = np.polynomial.legendre.leggauss(_PANEL_NODES)
    lo, hi = np.asarray(edges[:-1]), np.asarray(edges[1:])
    t = ((hi - lo)[:, None] * (z[None, :] + 1) / 2 + lo[:, None]).ravel()
    w = ((hi - lo)[:, None] / 2 * wz[None, :]).ravel() * np.exp(-delta * t)
    return t, w


class PurchaseModel(BaseModel):
    """Base of the purchase/dropout models (BG/NBD, MBG/NBD, Pareto/NBD)."""

    def _check_informative(self, x: np.ndarray, T: np.ndarray, w: np.ndarray) -> None:
        """Refuse data from which no purchase model can learn, before fitting: without a
        repeat purchase nothing tells how often customers buy or when they leave."""
        n = float(w.sum())
        if float(w[T > 0].sum()) == 0:
            raise DataValidationError(
                f"Every one of the {n:,.0f} customers made their first purchase on the last day of the "
                "data (T = 0 for all): there is no time in which to observe repeat purchases. Use a "
                "later observation_end or a longer log."
            )
        if float(w[x > 0].sum()) == 0:
            raise DataValidationError(
                f"No customer made a repeat purchase (frequency is 0 for all {n:,.0f} customers): "
                "purchase rates and dropout cannot be estimated from first purchases alone. Use a "
                "longer observation window, or check that customer ids identify customers across purchases."
            )

    def _rows(self, rfm: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self._check_fitted()
        check_rfm(rfm)
        self._check_unit(rfm)
        return (rfm["frequency"].to_numpy(float), rfm["recency"].to_numpy(float),
                rfm["T"].to_numpy(float))

    def _per_customer(self, rfm: pd.DataFrame, t: Any, term: str, name: str) -> pd.Series:
        """P(alive) per row (cheap, elementwise) times a horizon term given active, evaluated once
        per distinct (frequency, T) - with t_x for a model whose posterior given active uses it,
        and with the horizon when each customer has their own - and joined back."""
        x, tx, T = self._rows(rfm)
        p_alive = self._p_alive(x, tx, T)
        if term == "p_alive":
            return pd.Series(p_alive, index=rfm.index, name=name)
        t = _horizon(t, len(x))
        recency = getattr(self, "_uses_recency_given_alive", False)
        cols = [x.astype(np.int64), T] + ([tx] if recency else []) + ([t] if np.ndim(t) else [])
        groups = compress(*cols)
        g = groups.columns
        fn = {"expected": self._expected_if_alive, "survival": self._survival_if_alive,
              "any": self._any_if_alive, "lifetime": self._lifetime_purchases_if_alive}[term]
        extra = {"tx": g[2]} if recency else {}
        values = p_alive * fn(g[-1] if np.ndim(t) else t, g[0].astype(float), g[1], **extra)[groups.inverse]
        return pd.Series(values, index=rfm.index, name=name)

    def _lifetime_if_alive(self, x, T, delta: float, dropout_scale: float = 1.0, tx=None) -> dict[str, np.ndarray]:
        """Given active at ``T``: the discounted expected residual purchases (DERT) and the
        discounted expected time still active, over :data:`LIFETIME_YEARS` at the continuously
        compounded rate ``delta`` per time unit, from the model's own hooks:
        ``DERT = int_0^M e^(-delta t) dE(t) = e^(-delta M) E(M) + delta int_0^M e^(-delta t) E(t) dt``
        (by parts, ``E(t)`` the expected purchases in the next ``t``; Fader, Hardie & Lee 2005,
        "RFM and CLV", eq. 2, whose closed form for Pareto/NBD it matches) and
        ``int_0^M e^(-delta t) S(t) dt`` (``S`` the survival)."""
        end = LIFETIME_YEARS * DAYS_PER_YEAR / DAYS_PER_UNIT[self.time_unit_]
        t, w = lifetime_nodes(delta, end)
        x, T = np.asarray(x, float)[:, None], np.asarray(T, float)[:, None]
        two = {} if tx is None else {"tx": np.asarray(tx, float)[:, None]}
        grid = np.concatenate([t, [end]])[None, :]
        e = self._expected_if_alive(grid, x, T, dropout_scale, **two)
        s = self._survival_if_alive(t[None, :], x, T, dropout_scale, **two)
        return {"purchases": np.exp(-delta * end) * e[:, -1] + delta * (e[:, :-1] * w).sum(axis=1),
                "active": (s * w).sum(axis=1)}

    def _lifetime_purchases_if_alive(self, delta, x, T, **tx):
        """DERT given active (:meth:`_lifetime_if_alive`) in the argument order of the horizon hooks."""
        return self._lifetime_if_alive(x, T, float(delta), **tx)["purchases"]

    def expected_discounted_residual_purchases(self, rfm: pd.DataFrame, discount_rate: float) -> pd.Series:
        """DERT: the discounted expected residual purchases of each customer (Fader, Hardie & Lee
        2005, "RFM and CLV: using iso-value curves for customer base analysis", JMR 42(4), eq. 2):
        ``P(alive) int_0^inf e^(-delta t) dE(t)`` with ``delta`` = ``discount_rate``, the continuously
        compounded rate per time unit (a 10% annual rate in weeks: ``log(1.10) / 52.18``), counted
        over :data:`LIFETIME_YEARS`. Multiply by margin x spend for residual lifetime value."""
        delta = check_number("discount_rate", discount_rate, minimum=0.0)
        return self._per_customer(rfm, delta, "lifetime", "dert")

    def conditional_probability_purchases(self, rfm: pd.DataFrame, n: int, t: Any) -> pd.Series:
        """P(exactly ``n`` purchases in the next ``t`` | x, t_x, T) per customer.

        ``P(alive) P(n | active) + (1 - P(alive)) 1{n = 0}``: a customer who is gone buys
        nothing; given active, the posterior of the rates is the prior updated by the history,
        and the count follows the model's own distribution from there (each model's
        ``_pmf_if_alive``). Summed over ``n`` it is 1 and ``sum n P(n)`` is
        :meth:`expected_purchases` (tested). ``t``: one horizon, or one per customer.
        """
        n = check_number("n", n, minimum=0, integer=True)
        x, tx, T = self._rows(rfm)
        t = _horizon(t, len(x))
        p_alive = self._p_alive(x, tx, T)
        given = self._pmf_if_alive(int(n), np.broadcast_to(np.asarray(t, float), x.shape), x, T, tx)
        out = p_alive * given + (1.0 - p_alive) * (n == 0)
        return pd.Series(out, index=rfm.index, name="p_purchases")

    def probability_alive(self, rfm: pd.DataFrame) -> pd.Series:
        """P(customer still active at T | x, t_x, T).

        BG/NBD: ``1 / (1 + 1{x>0} a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x))`` (FHL 2005, eq. 13),
        evaluated as a logistic of a log-odds so it never overflows; see each model's notes.
        """
        return self._per_customer(rfm, None, "p_alive", "p_alive")

    def expected_purchases(self, rfm: pd.DataFrame, t: Any) -> pd.Series:
        """Expected purchases in the next ``t`` time units (one horizon, or one per customer),
        given each customer's history.

        BG/NBD, FHL 2005 eq. 10: ``E[Y(t) | x, t_x, T] = (a+b+x-1)/(a-1) [1 - ((alpha+T)/(alpha+T+t))^(r+x)
        2F1(r+x, b+x; a+b+x-1; t/(alpha+T+t))] / (1 + 1{x>0} a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x))``.
        """
        return self._per_customer(rfm, t, "expected", "expected_purchases")

    def probability_alive_after(self, rfm: pd.DataFrame, t: Any) -> pd.Series:
        """P(still active at ``T + t`` | x, t_x, T): survival to the end of a horizon.

        Notes
        -----
        For BG/NBD: given alive at ``T`` with rate ``lambda`` and dropout probability ``p``, a customer dies
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
        return self._per_customer(rfm, t, "survival", "p_alive_after")

    def probability_any_purchase(self, rfm: pd.DataFrame, t: Any) -> pd.Series:
        """P(at least one purchase in the next ``t`` | x, t_x, T).

        BG/NBD: ``P(alive) * (1 - ((alpha+T)/(alpha+T+t))^(r+x))``: a customer who is gone buys nothing,
        an active one buys unless the Poisson process is silent for ``t`` (the posterior rate is
        Gamma(r+x, alpha+T)).
        """
        return self._per_customer(rfm, t, "any", "p_any_purchase")

    def expected_purchases_new_customer(self, t: float | np.ndarray) -> float | np.ndarray:
        """E[X(t)]: expected repeat purchases of a new customer in ``t`` (BG/NBD: FHL 2005, eq. 9)."""
        self._check_fitted()
        tt = np.asarray(t, float)
        if not np.all(np.isfinite(tt)) or np.any(tt < 0):
            raise DataValidationError(f"t must be finite and >= 0, got {t!r}.")
        zero = np.zeros_like(tt)
        out = self._new_customer_alive() * self._expected_if_alive(tt, zero, zero)
        return float(out) if np.ndim(t) == 0 else out

    def expected_customers_by_frequency(self, rfm: pd.DataFrame, max_frequency: int = 7,
                                        weights: Any = None) -> pd.DataFrame:
        """Observed vs expected number of customers by number of repeat purchases.

        Expected counts sum ``P(X(T_i) = x)`` over customers with each customer's own ``T``
        (the paper's Figure 2 for the calibration period); the last bin is ``max_frequency+``.
        ``weights``: customers per row, for compressed rows (:func:`clvmodels.scoring.compressed_rfm`).
        """
        self._check_fitted()
        check_rfm(rfm)
        w = self._fit_weights(weights, len(rfm))
        w = np.ones(len(rfm)) if w is None else w
        Ts, inverse = np.unique(rfm["T"].to_numpy(float), return_inverse=True)
        counts = np.bincount(inverse, weights=w, minlength=len(Ts))
        ks = np.arange(max_frequency)
        expected = np.zeros(max_frequency + 1)
        for Tv, cnt in zip(Ts, counts, strict=True):
            probs = self._window_pmf(ks, float(Tv))
            expected[:max_frequency] += cnt * probs
            expected[max_frequency] += cnt * (1 - probs.sum())
        freq = rfm["frequency"].to_numpy()
        observed = np.array([w[freq == k].sum() for k in ks] + [w[freq >= max_frequency].sum()], float)
        labels = [str(k) for k in ks] + [f"{max_frequency}+"]
        return pd.DataFrame({"observed": observed, "expected": expected},
                            index=pd.Index(labels, name="repeat_purchases"))

    def _window_pmf(self, ks: np.ndarray, T: float) -> np.ndarray:
        """P(``ks`` repeat purchases) of a customer first seen ``T`` before the table's end: the
        new-customer distribution over ``T`` (a calendar model's depends on where the window lies)."""
        return self.probability_purchases(ks, T)


def _horizon(t: Any, n: int) -> float | np.ndarray:
    """A horizon: one number >= 0, or one per customer (an array of ``n`` such numbers)."""
    if np.ndim(t) == 0:
        return check_number("t", t, minimum=0.0)
    arr = np.asarray(t, float)
    if arr.shape != (n,) or not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise DataValidationError(f"t must be one number >= 0 or {n} of them (one per customer), got shape {arr.shape}.")
    return arr
