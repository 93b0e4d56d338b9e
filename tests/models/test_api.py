"""One API across the model families (issue 18, item 4): the same names mean the same things,
every family answers the same questions, and each difference is the model's."""

from __future__ import annotations

import numpy as np
import pytest

import clvmodels
from clvmodels.datasets import load_donations
from clvmodels.models import mbgnbd_log_likelihood
from clvmodels.models.pareto_nbd import _legendre_nodes

CONTINUOUS = [clvmodels.BetaGeoModel, clvmodels.ModifiedBetaGeoModel, clvmodels.ParetoNBDModel,
              lambda: clvmodels.MBGCNBDModel(k=2)]


@pytest.fixture(scope="module", params=range(len(CONTINUOUS)), ids=["BG/NBD", "MBG/NBD", "Pareto/NBD", "MBG/CNBD-2"])
def fitted(request, sample_rfm):
    return CONTINUOUS[request.param]().fit(sample_rfm)


def test_conditional_pmf_is_a_distribution_whose_mean_is_the_forecast(fitted, sample_rfm):
    """P(Y(t) = n | history) for every n (was: only n = 0, through P(any purchase)): it sums to
    1 and its mean is expected_purchases, for the most active customers too."""
    sub = sample_rfm.sort_values("frequency").iloc[np.r_[0:20, -30:0]]
    pm = np.array([fitted.conditional_probability_purchases(sub, n, 39.0).to_numpy() for n in range(250)])
    np.testing.assert_allclose(pm.sum(axis=0), 1.0, atol=1e-10)
    np.testing.assert_allclose((pm * np.arange(250)[:, None]).sum(axis=0), fitted.expected_purchases(sub, 39.0),
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(1 - pm[0], fitted.probability_any_purchase(sub, 39.0), atol=1e-10)


def test_a_horizon_per_customer(fitted, sample_rfm):
    """``t`` may be one horizon per customer (e.g. to each one's contract end)."""
    t = np.linspace(1.0, 80.0, len(sample_rfm))
    for name in ("expected_purchases", "probability_alive_after", "probability_any_purchase"):
        each = getattr(fitted, name)(sample_rfm, t).to_numpy()
        for i in (0, 777, len(t) - 1):
            assert each[i] == pytest.approx(getattr(fitted, name)(sample_rfm.iloc[[i]], t[i]).iloc[0], rel=1e-12)
    with pytest.raises(clvmodels.DataValidationError, match="one per customer"):
        fitted.expected_purchases(sample_rfm, t[:5])


def test_bgbb_reads_like_the_others():
    """BG/BB is exported, counts come first in probability_purchases(n, t), the future P(alive)
    is probability_alive_after(data, t), and it has the conditional pmf too."""
    d = load_donations()
    m = clvmodels.BetaGeoBetaBinomModel().fit(d, weights=d["weights"])
    assert m.probability_purchases(np.arange(11), 10).sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(m.probability_alive_after(d, 3), m.probability_alive(d, 3))
    pm = np.array([m.conditional_probability_purchases(d, n, 5).to_numpy() for n in range(6)])
    np.testing.assert_allclose(pm.sum(axis=0), 1.0, atol=1e-12)
    np.testing.assert_allclose((pm * np.arange(6)[:, None]).sum(axis=0), m.expected_purchases(d, 5), rtol=1e-10)
    assert clvmodels.discrete_rfm is clvmodels.models.discrete_rfm


def test_mbgnbd_has_its_log_likelihood_function(sample_rfm):
    m = clvmodels.ModifiedBetaGeoModel().fit(sample_rfm)
    ll = mbgnbd_log_likelihood(m.params_, sample_rfm["frequency"], sample_rfm["recency"], sample_rfm["T"])
    assert ll.sum() == pytest.approx(m.log_likelihood_, rel=1e-12)


def test_pareto_pmf_reuses_its_quadrature_nodes(sample_rfm):
    m = clvmodels.ParetoNBDModel().fit(sample_rfm)
    m.probability_purchases(np.arange(5), 39.0)
    before = _legendre_nodes.cache_info()
    m.probability_purchases(np.arange(5), 39.0)
    after = _legendre_nodes.cache_info()
    assert after.hits == before.hits + 1 and after.misses == before.misses
