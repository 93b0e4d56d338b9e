from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifetimes import ModifiedBetaGeoFitter
from scipy import optimize

import clvmodels
from clvmodels import ModifiedBetaGeoModel
from clvmodels.models.beta_geo import _objective, _prepare


@pytest.fixture(scope="module")
def sample_model(sample_cal):
    return ModifiedBetaGeoModel().fit(sample_cal)


@pytest.mark.parametrize("which", ["sample", "master"])
def test_fit_and_predictions_match_lifetimes(which, sample_cal, master_cal):
    cal = sample_cal if which == "sample" else master_cal
    ours = ModifiedBetaGeoModel().fit(cal)
    mbg = ModifiedBetaGeoFitter().fit(cal["frequency"], cal["recency"], cal["T"])
    for k in ("r", "alpha", "a", "b"):
        assert ours.params_[k] == pytest.approx(mbg.params_[k], rel=1e-4), k
    mbg.params_ = ours.params_[["r", "alpha", "a", "b"]]
    args = (cal["frequency"], cal["recency"], cal["T"])
    np.testing.assert_allclose(ours.probability_alive(cal), mbg.conditional_probability_alive(*args), atol=1e-10)
    np.testing.assert_allclose(
        ours.expected_purchases(cal, 39),
        mbg.conditional_expected_number_of_purchases_up_to_time(39, *args), rtol=1e-8)
    t = np.array([1.0, 10.0, 78.0])
    np.testing.assert_allclose(ours.expected_purchases_new_customer(t),
                               mbg.expected_number_of_purchases_up_to_time(t), rtol=1e-10)
    for n in range(4):
        assert ours.probability_purchases(n, 39) == pytest.approx(
            mbg.probability_of_n_purchases_up_to_time(39, n), rel=1e-8)


def test_one_time_buyers_are_not_certainly_alive(sample_model, sample_cal):
    """The point of MBG/NBD: P(alive) < 1 for x = 0 and it falls with time since purchase."""
    one = pd.DataFrame({"frequency": [0, 0, 0], "recency": [0.0, 0.0, 0.0], "T": [1.0, 20.0, 60.0]})
    p = sample_model.probability_alive(one).to_numpy()
    assert (p < 1).all() and p[0] > p[1] > p[2]
    bg = clvmodels.BetaGeoModel().fit(sample_cal)
    assert (bg.probability_alive(one) == 1).all()


def test_gradient_and_pmf(sample_cal, sample_model):
    d = _prepare(sample_cal["frequency"].to_numpy(float), sample_cal["recency"].to_numpy(float),
                 sample_cal["T"].to_numpy(float))
    th = np.log(sample_model.params_.to_numpy()) + 0.1
    err = optimize.check_grad(lambda t: _objective(t, d, 0.0, 1)[0], lambda t: _objective(t, d, 0.0, 1)[1], th)
    assert err < 1e-5
    assert sample_model.probability_purchases(np.arange(400), 39).sum() == pytest.approx(1.0, abs=1e-9)


def test_forecast_and_save_load(tmp_path, sample_model, sample_cal):
    gg = clvmodels.GammaGammaModel().fit(sample_cal)
    fc = clvmodels.forecast(sample_model, gg, sample_cal, horizon=52)
    assert fc.notna().all().all()
    np.testing.assert_allclose(fc["expected_purchases"], sample_model.expected_purchases(sample_cal, 52), rtol=1e-10)
    back = ModifiedBetaGeoModel.load(sample_model.save(tmp_path / "m.json"))
    np.testing.assert_allclose(back.probability_alive(sample_cal), sample_model.probability_alive(sample_cal))
    with pytest.raises(clvmodels.exceptions.ModelFileError, match="ModifiedBetaGeoModel"):
        clvmodels.BetaGeoModel.load(tmp_path / "m.json")


def test_simulated_future_matches_closed_form(sample_model):
    """Posterior draws of the next 52 weeks average to E[purchases | alive]."""
    rng = np.random.default_rng(0)
    x = np.full(200_000, 3.0)
    T = np.full(200_000, 30.0)
    sims = sample_model._simulate(rng, x, T, 52.0, np.ones(len(x), bool))
    exact = sample_model._expected_if_alive(52.0, 3.0, 30.0)
    assert sims.mean() == pytest.approx(exact, rel=0.02)
