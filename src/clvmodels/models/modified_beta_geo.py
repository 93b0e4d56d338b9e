"""MBG/NBD: the modified beta-geometric / negative binomial distribution model.

Batislam, E. P., Denizel, M. & Filiztekin, A. (2007). Empirical validation and comparison of
models for customer base analysis. *International Journal of Research in Marketing* 24(3),
201-209.

As BG/NBD (:mod:`clvmodels.models.beta_geo`), except that a customer may also drop out right
after the first purchase, not only after repeat purchases. A customer with no repeat purchase
is then not certainly active: BG/NBD gives every one-time buyer ``P(alive) = 1`` however long
ago they bought, MBG/NBD gives ``1 / (1 + a/b ((alpha+T)/alpha)^r)``, which falls with time.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from clvmodels._validation import check_number
from clvmodels.exceptions import DataValidationError
from clvmodels.models.beta_geo import BetaGeoModel, _prepare, _terms

__all__ = ["ModifiedBetaGeoModel", "mbgnbd_log_likelihood"]


def mbgnbd_log_likelihood(params, frequency, recency, T) -> np.ndarray:
    """Log-likelihood of each customer under MBG/NBD (Batislam et al. 2007, eq. 3), a pure
    function: ``ln G(r+x) - ln G(r) + r ln alpha + ln[B(a, b+x+1)/B(a,b) (alpha+T)^-(r+x)
    + B(a+1, b+x)/B(a,b) (alpha+t_x)^-(r+x)]``."""
    x = np.asarray(frequency, float)
    d = _prepare(x, np.asarray(recency, float), np.asarray(T, float), weights=np.ones_like(x))
    ll, _ = _terms(tuple(float(params[k]) for k in ("r", "alpha", "a", "b")), d, grad=False, shift=1)
    return ll


class ModifiedBetaGeoModel(BetaGeoModel):
    """MBG/NBD model of purchase counts and dropout (Batislam, Denizel & Filiztekin 2007).

    Parameters, attributes and methods are those of :class:`BetaGeoModel`; the parameters
    ``r, alpha, a, b`` mean the same, but the dropout coin is also tossed at the first purchase.

    Notes
    -----
    Likelihood (Batislam et al. 2007, eq. 3)::

        L = G(r+x) alpha^r / G(r) [ B(a, b+x+1)/B(a, b) (alpha+T)^-(r+x)
                                   + B(a+1, b+x)/B(a, b) (alpha+t_x)^-(r+x) ]

    ``P(alive | x, t_x, T) = 1 / (1 + a/(b+x) ((alpha+T)/(alpha+t_x))^(r+x))`` for every x.
    Given alive at ``T`` the posterior is ``lambda ~ Gamma(r+x, alpha+T)``,
    ``p ~ Beta(a, b+x+1)``: every forecast is BG/NBD's with ``b`` replaced by ``b + 1``,
    times ``P(alive)``. A new customer is active after the first purchase with probability
    ``b/(a+b)``, so ``E[X(t)] = b/(a-1) [1 - (alpha/(alpha+t))^r 2F1(r, b+1; a+b; t/(alpha+t))]``.

    References
    ----------
    Batislam, E. P., Denizel, M. & Filiztekin, A. (2007). Empirical validation and comparison
    of models for customer base analysis. *IJRM* 24(3), 201-209.

    Examples
    --------
    >>> import clvmodels
    >>> from clvmodels.datasets import load_cdnow
    >>> rfm = clvmodels.rfm_summary(load_cdnow("sample"), time_unit="W", observation_end="1997-09-30")
    >>> model = clvmodels.ModifiedBetaGeoModel().fit(rfm)
    >>> model.params_.round(3).tolist()
    [0.525, 6.183, 0.891, 1.614]
    """

    _shift = 1
    _long_name = "MBG/NBD"
    _reference = (
        "Batislam, Denizel & Filiztekin (2007), Empirical validation and comparison of models "
        "for customer base analysis, IJRM 24(3)."
    )

    def _new_customer_alive(self) -> float:
        """P(active right after the first purchase) = E[1 - p] = b/(a+b)."""
        _, _, a, b = self._p()
        return b / (a + b)

    def probability_purchases(self, n: int | np.ndarray, t: float) -> float | np.ndarray:
        """P(X(t) = n) for a new customer.

        Given ``lambda`` and ``p``: the customer survives the coin at the first purchase and
        after each of the ``n`` repeat purchases and the Poisson count is ``n``, or survives
        ``n`` coins, drops at the next one and the Poisson count would have been ``n`` or more:
        ``B(a, b+n+1)/B(a, b) NB(n) + B(a+1, b+n)/B(a, b) P(NB >= n)``.
        """
        from scipy import stats  # heavy import, only here

        r, alpha, a, b = self._p()
        t = check_number("t", t, minimum=0.0)
        nn = np.asarray(n)
        if np.any(nn < 0) or np.any(nn != np.floor(nn)):
            raise DataValidationError(f"n must be whole numbers >= 0, got {n!r}.")
        nn = nn.astype(float)
        lnB_ab = special.betaln(a, b)
        q = alpha / (alpha + t)
        with np.errstate(divide="ignore", invalid="ignore"):
            term1 = np.exp(special.betaln(a, b + nn + 1) - lnB_ab) * stats.nbinom.pmf(nn, r, q)
            term2 = np.exp(special.betaln(a + 1, b + nn) - lnB_ab) * stats.nbinom.sf(nn - 1, r, q)
        out = term1 + term2
        return float(out) if np.ndim(n) == 0 else out
