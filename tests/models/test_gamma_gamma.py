from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from lifetimes import GammaGammaFitter

import clvmodels
from clvmodels import GammaGammaModel, ModelAssumptionWarning
from clvmodels.datasets import simulate_transactions
from clvmodels.exceptions import DataValidationError, ModelError, NotFittedError
from clvmodels.models.gamma_gamma import _objective, _prepare, gamma_gamma_log_likelihood


@pytest.fixture(scope="module")
def gg(sample_cal):
    return GammaGammaModel().fit(sample_cal)


def test_published_cdnow_values(gg):
    """Fader & Hardie (2013): p = 6.25, q = 3.74, v = 15.44 on the 946 repeat buyers."""
    assert gg.params_["p"] == pytest.approx(6.25, abs=0.005)
    assert gg.params_["q"] == pytest.approx(3.74, abs=0.005)
    assert gg.params_["v"] == pytest.approx(15.44, abs=0.005)
    assert gg.n_customers_ == 946
    assert gg.n_excluded_ == 2357 - 946
    assert gg.mean_spend == pytest.approx(6.25 * 15.44 / 2.74, rel=2e-3)


@pytest.mark.parametrize("which", ["sample", "master"])
def test_fit_and_predictions_match_lifetimes(which, sample_cal, master_cal):
    cal = sample_cal if which == "sample" else master_cal
    buyers = cal[(cal["frequency"] > 0) & (cal["monetary_value"] > 0)]
    ours = GammaGammaModel().fit(cal)
    ggf = GammaGammaFitter().fit(buyers["frequency"], buyers["monetary_value"])
    for k in ("p", "q", "v"):
        assert ours.params_[k] == pytest.approx(ggf.params_[k], rel=1e-4), k
    their_ll = -ggf._negative_log_likelihood_ * len(buyers)
    assert ours.log_likelihood_ == pytest.approx(their_ll, rel=1e-6)
    # predictions at the same parameters
    same = GammaGammaModel.from_params(ggf.params_)
    np.testing.assert_allclose(
        same.expected_spend(buyers),
        ggf.conditional_expected_average_profit(buyers["frequency"], buyers["monetary_value"]),
        rtol=1e-6,
    )


def test_random_inputs_match_lifetimes():
    rng = np.random.default_rng(4)
    for _ in range(5):
        params = {"p": rng.uniform(0.5, 10), "q": rng.uniform(1.5, 10), "v": rng.uniform(1, 50)}
        x = rng.integers(1, 40, 500).astype(float)
        m = rng.gamma(2, 20, 500)
        ggf = GammaGammaFitter()
        ggf.params_ = pd.Series(params)
        ours = GammaGammaModel.from_params(params)
        df = pd.DataFrame({"frequency": x, "monetary_value": m})
        np.testing.assert_allclose(ours.expected_spend(df), ggf.conditional_expected_average_profit(x, m), rtol=1e-6)
        theirs = -GammaGammaFitter._negative_log_likelihood(np.log(list(params.values())), x, m, np.ones(500), 0.0) * 500
        assert gamma_gamma_log_likelihood(params, x, m).sum() == pytest.approx(theirs, rel=1e-6)


def test_gradient_matches_finite_differences(sample_cal):
    buyers = sample_cal[sample_cal["frequency"] > 0]
    d = _prepare(buyers["frequency"].to_numpy(float), buyers["monetary_value"].to_numpy(float))
    for theta in (np.log([6.25, 3.74, 15.44]), np.log([1.0, 2.0, 30.0])):
        for pen in (0.0, 0.05):
            _, g = _objective(theta, d, pen)
            num = np.array([
                (_objective(theta + e, d, pen)[0] - _objective(theta - e, d, pen)[0]) / 2e-6
                for e in np.eye(3) * 1e-6
            ])
            np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-8)


def test_non_buyers_get_population_mean(gg, sample_cal):
    spend = gg.expected_spend(sample_cal)
    one_timers = sample_cal["frequency"] == 0
    assert np.allclose(spend[one_timers], gg.mean_spend)
    assert spend.index.equals(sample_cal.index)
    zero_spend = pd.DataFrame({"frequency": [3.0], "monetary_value": [0.0]})
    assert gg.expected_spend(zero_spend).iloc[0] == pytest.approx(gg.mean_spend)


def test_correlation_warning():
    rng = np.random.default_rng(0)
    x = rng.integers(1, 30, 2000).astype(float)
    # spend rate falls with frequency, so frequent buyers spend more per purchase
    nu = rng.gamma(20.0, 1 / 20.0, 2000) / x
    mean_spend = rng.gamma(4.0 * x, 1.0 / (nu * x))
    df = pd.DataFrame({"frequency": x, "monetary_value": mean_spend})
    with pytest.warns(ModelAssumptionWarning, match=r"Pearson r = 0\.[4-9]"):
        GammaGammaModel().fit(df)


def test_no_warning_on_cdnow(sample_cal):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelAssumptionWarning)
        GammaGammaModel().fit(sample_cal)


def test_q_at_most_one_is_an_error():
    with pytest.raises(ModelError, match=r"q = 0.9 <= 1: the mean spend p\*v/\(q-1\) is undefined"):
        GammaGammaModel.from_params({"p": 2.0, "q": 0.9, "v": 3.0})


def test_errors(sample_cal):
    with pytest.raises(NotFittedError, match="GammaGammaModel is not fitted"):
        GammaGammaModel().expected_spend(sample_cal)
    with pytest.raises(DataValidationError, match="No repeat buyer with positive spend"):
        GammaGammaModel().fit(pd.DataFrame({"frequency": [0.0, 0.0], "monetary_value": [0.0, 0.0]}))
    with pytest.raises(DataValidationError, match="'monetary_value'"):
        GammaGammaModel().fit(sample_cal.drop(columns="monetary_value"))


def test_parameter_recovery_on_generated_data():
    truth = {"p": 4.0, "q": 5.0, "v": 20.0}
    sim = simulate_transactions(200_000, **truth, seed=3)
    rfm = clvmodels.rfm_summary(sim.transactions, time_unit="W")
    m = GammaGammaModel().fit(rfm)
    for k, v in truth.items():
        assert m.params_[k] == pytest.approx(v, rel=0.05), k


def test_save_load(tmp_path, gg):
    loaded = GammaGammaModel.load(gg.save(tmp_path / "gg.json"))
    pd.testing.assert_series_equal(loaded.params_, gg.params_)
    assert loaded.summary.shape == (3, 4)


@pytest.mark.parametrize("seed", [31, 32])
def test_fit_matches_lifetimes_on_generated_data(seed):
    rng = np.random.default_rng(seed)
    truth = {"p": rng.uniform(1, 8), "q": rng.uniform(2, 8), "v": rng.uniform(5, 40)}
    sim = simulate_transactions(5_000, **truth, seed=seed)
    rfm = clvmodels.rfm_summary(sim.transactions, time_unit="W")
    ours = GammaGammaModel().fit(rfm)
    b = rfm[(rfm["frequency"] > 0) & (rfm["monetary_value"] > 0)]
    ggf = GammaGammaFitter().fit(b["frequency"], b["monetary_value"])
    for k in ("p", "q", "v"):
        assert ours.params_[k] == pytest.approx(ggf.params_[k], rel=1e-4), k


def test_a_log_without_price_variation_gives_constant_spend(tmp_path):
    """Issue 27: a log of counts (every amount 1; same-day purchases merge into 2, 3, ...) stopped
    the report with a Gamma-Gamma convergence error. Gamma-Gamma is then at its constant-spend
    limit, says so, and every customer's expected spend is the mean spend per purchase."""
    from clvmodels.datasets import simulate_transactions
    from clvmodels.models import load_model

    log = simulate_transactions(2000, seed=5).transactions.assign(amount=1.0)
    rfm = clvmodels.rfm_summary(log, time_unit="W")
    gg = GammaGammaModel().fit(rfm)
    repeat = rfm[rfm["frequency"] > 0]
    c = float((repeat["frequency"] * repeat["monetary_value"]).sum() / repeat["frequency"].sum())
    assert gg.constant_spend == pytest.approx(c, rel=1e-12)
    np.testing.assert_allclose(gg.expected_spend(rfm), c, rtol=1e-5)
    assert gg.mean_spend == pytest.approx(c, rel=1e-9)
    assert "spend is taken as constant" in gg.fit_info_["limits"][0]
    assert np.isfinite(gg.log_likelihood_)
    back = load_model(gg.save(tmp_path / "gg.json"))
    assert back.constant_spend == pytest.approx(c) and np.allclose(back.expected_spend(rfm), c, rtol=1e-5)
    fc = clvmodels.forecast(clvmodels.BetaGeoModel().fit(rfm), gg, rfm, horizon=26)
    np.testing.assert_allclose(fc["expected_revenue"], fc["expected_purchases"] * c, rtol=1e-5)
    # real spread: the failure is not hidden behind a constant
    spread = rfm.assign(monetary_value=np.where(rfm["frequency"] > 0, np.exp(np.random.default_rng(0).standard_cauchy(
        len(rfm)).clip(-30, 30) * 3), 0.0))
    with pytest.raises((clvmodels.ConvergenceError, clvmodels.exceptions.ModelError)):
        GammaGammaModel().fit(spread)


def test_spend_that_does_not_differ_between_customers_is_a_stated_limit():
    """Every purchase's value drawn from one Gamma(2, 1/20) for everyone (the 400-customer random
    log of issue 30): q and v run to infinity together - the report stopped with 'v ran off'. The
    fit is the limiting model (every customer forecast to spend the population's mean per
    purchase), said in words, with finite forecasts."""
    rng = np.random.default_rng(0)
    rows = [(f"C{i:04d}", pd.Timestamp("2024-01-01") + pd.Timedelta(days=float(d)), rng.gamma(2, 20))
            for i in range(400) for d in rng.uniform(0, 182, 1 + rng.poisson(2.5))]
    rfm = clvmodels.rfm_summary(pd.DataFrame(rows, columns=["customer_id", "date", "amount"]), time_unit="W")
    gg = GammaGammaModel().fit(rfm)
    assert set(gg.fit_info_["at_limit"]) == {"q", "v"}
    assert "Spend barely differs between customers" in gg.fit_info_["limits"][0]
    repeat = rfm[rfm["frequency"] > 0]
    mean = float((repeat["frequency"] * repeat["monetary_value"]).sum() / repeat["frequency"].sum())
    assert gg.mean_spend == pytest.approx(mean, rel=1e-3)
    spend = gg.expected_spend(rfm)
    assert np.isfinite(spend).all() and spend.std() / spend.mean() < 1e-3
    assert gg.constant_spend is None  # the values of purchases still vary: not the constant-spend limit


def test_spend_frequency_check_in_words(sample_rfm):
    """Issue 27, item 5: Gamma-Gamma's independence of spend and frequency is measured and said."""
    from clvmodels.models.gamma_gamma import spend_frequency_check

    found = spend_frequency_check(sample_rfm)
    rep = sample_rfm[sample_rfm["frequency"] > 0]
    assert found["buyers"] == len(rep) and 0.1 < found["rho"] < 0.3  # CDNOW: a weak rise
    assert found["words"].startswith("Spend per purchase rises weakly")
    rng = np.random.default_rng(0)
    independent = rep.assign(monetary_value=rng.permutation(rep["monetary_value"].to_numpy()))
    assert spend_frequency_check(independent)["words"].startswith("Spend per purchase does not vary")
    linked = rep.assign(monetary_value=rep["frequency"] * 5.0 + rng.uniform(0, 1, len(rep)))
    assert "rises clearly" in spend_frequency_check(linked)["words"]
    assert spend_frequency_check(rep.head(10))["words"] == ""
