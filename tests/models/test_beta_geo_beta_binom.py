from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoBetaBinomFitter
from scipy import optimize

from clvmodels.exceptions import ConvergenceError, DataValidationError
from clvmodels.models._fitting import penalized_objective
from clvmodels.models.beta_geo_beta_binom import (
    BetaGeoBetaBinomModel,
    _prepare,
    _terms,
)
from clvmodels.rfm import discrete_rfm


@pytest.fixture(scope="module")
def donations():
    from clvmodels.datasets import load_donations

    return load_donations()


@pytest.fixture(scope="module")
def model(donations):
    return BetaGeoBetaBinomModel().fit(donations, weights=donations["weights"])


def test_published_donation_values(model):
    """Fader, Hardie & Shang (2010), 1995 cohort of donors, 6 opportunities."""
    p = model.params_
    assert p["alpha"] == pytest.approx(1.204, abs=5e-4)
    assert p["beta"] == pytest.approx(0.750, abs=5e-4)
    assert p["gamma"] == pytest.approx(0.657, abs=5e-4)
    assert p["delta"] == pytest.approx(2.783, abs=5e-4)
    assert model.log_likelihood_ == pytest.approx(-33225.6, abs=0.05)
    assert model.n_customers_ == 11104


def test_matches_lifetimes(model, donations):
    f = BetaGeoBetaBinomFitter().fit(donations["frequency"], donations["recency"], donations["n_periods"],
                                     weights=donations["weights"])
    for k in model.params_.index:
        assert model.params_[k] == pytest.approx(f.params_[k], rel=1e-4)
    f.params_ = model.params_
    args = (donations["frequency"], donations["recency"], donations["n_periods"])
    np.testing.assert_allclose(model.probability_alive(donations), f.conditional_probability_alive(1, *args), rtol=1e-10)
    # churn by a horizon: alive 5 opportunities on
    np.testing.assert_allclose(model.probability_alive(donations, 5), f.conditional_probability_alive(5, *args),
                               rtol=1e-10)
    assert (model.probability_alive(donations, 5) < model.probability_alive(donations)).all()
    np.testing.assert_allclose(model.expected_purchases(donations, 5),
                               f.conditional_expected_number_of_purchases_up_to_time(5, *args), rtol=1e-9)
    expected = f.expected_number_of_transactions_in_first_n_periods(6)["model"].to_numpy()
    np.testing.assert_allclose(model.probability_purchases(np.arange(7), 6) * 11104, expected, rtol=1e-9)


def test_gradient_and_pmf(model, donations):
    d = _prepare(*(donations[c].to_numpy(float) for c in ("frequency", "recency", "n_periods")),
                 weights=donations["weights"].to_numpy(float))

    def obj(th):
        def total(params):
            ll, g = _terms(params, d, True)
            return (d.w * ll).sum(), g
        return penalized_objective(total, th, d.total, 0.0)

    th = np.log(model.params_.to_numpy()) + 0.2
    assert optimize.check_grad(lambda t: obj(t)[0], lambda t: obj(t)[1], th) < 1e-5
    assert model.probability_purchases(np.arange(11), 10).sum() == pytest.approx(1.0, abs=1e-12)
    # E[X(n)] from the pmf equals the closed form
    pmf = model.probability_purchases(np.arange(11), 10)
    assert (np.arange(11) * pmf).sum() == pytest.approx(model.expected_purchases_new_customer(10), rel=1e-10)


def test_bad_input_named(donations):
    bad = donations.assign(recency=donations["n_periods"] + 1)
    with pytest.raises(DataValidationError, match="recency"):
        BetaGeoBetaBinomModel().fit(bad)
    with pytest.raises(DataValidationError, match="n_periods"):
        BetaGeoBetaBinomModel().fit(donations.drop(columns="n_periods"))


def test_discrete_rfm_from_transactions():
    tx = pd.DataFrame({
        "customer_id": [1, 1, 1, 2, 3, 3],
        "date": pd.to_datetime(["2020-03-01", "2020-05-01", "2022-01-01", "2021-06-01", "2020-01-01", "2023-12-31"]),
        "amount": [1.0] * 6,
    })
    d = discrete_rfm(tx, period="Y")
    assert d.loc[1].tolist() == [1, 2, 3]   # years 2020, 2022 of 2020..2023
    assert d.loc[2].tolist() == [0, 0, 2]
    assert d.loc[3].tolist() == [1, 3, 3]
    # three repeated patterns do not identify four parameters: refused, not "converged"
    with pytest.raises(ConvergenceError, match="do not identify"):
        BetaGeoBetaBinomModel().fit(pd.concat([d] * 50))
