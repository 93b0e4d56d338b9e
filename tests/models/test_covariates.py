"""Time-invariant covariates in BG/NBD and MBG/NBD (issue 17, item 1): Fader & Hardie's note on
covariates, fitted on compressed statistics with an analytic gradient."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

import clvmodels
from clvmodels.datasets import simulate_transactions
from clvmodels.exceptions import DataValidationError, ParameterError
from clvmodels.models.covariates import CovariateBetaGeoModel, _loglik, likelihood_ratio_test

# per channel: (alpha, a, b); r = 0.5. B buys 1.9x as often and leaves more, C buys less, leaves less
SPEC = {"A": (5.0, 0.8, 2.5), "B": (5.0 / 1.9, 1.2, 2.5), "C": (6.5, 0.8, 5.0)}


@pytest.fixture(scope="module")
def channels():
    logs = []
    for i, (ch, (alpha, a, b)) in enumerate(SPEC.items()):
        sim = simulate_transactions(6000 if ch != "C" else 4000, r=0.5, alpha=alpha, a=a, b=b, seed=10 + i)
        logs.append(sim.transactions.assign(customer_id=ch + sim.transactions["customer_id"].astype(str)))
    rfm = clvmodels.rfm_summary(pd.concat(logs), time_unit="W")
    covs = pd.DataFrame({"channel": rfm.index.str[0], "score": (rfm.index.str.len() % 3).astype(float)},
                        index=rfm.index)
    return rfm, covs


def test_gradient_is_the_derivative(channels):
    rfm, covs = channels
    sub = rfm.iloc[::37]
    x, tx, T = (sub[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    Zp = np.c_[(covs.loc[sub.index, "channel"] == "B").to_numpy(float), covs.loc[sub.index, "score"].to_numpy()]
    Zd = (covs.loc[sub.index, "channel"] == "C").to_numpy(float)[:, None]
    w = np.ones_like(x)
    theta = np.array([np.log(0.6), np.log(4.0), np.log(0.9), np.log(2.0), 0.3, -0.1, 0.2, -0.4])
    for shift in (0, 1):
        numeric = optimize.approx_fprime(theta, lambda th, s=shift: _loglik(th, x, tx, T, w, Zp, Zd, s, False)[0], 1e-7)
        np.testing.assert_allclose(_loglik(theta, x, tx, T, w, Zp, Zd, shift, True)[1], numeric, rtol=2e-4, atol=1e-3)


def test_without_covariates_it_is_the_plain_model(sample_rfm):
    empty = pd.DataFrame(index=sample_rfm.index)
    for modified, plain in ((False, clvmodels.BetaGeoModel), (True, clvmodels.ModifiedBetaGeoModel)):
        m = CovariateBetaGeoModel(modified=modified).fit(sample_rfm, empty)
        p = plain().fit(sample_rfm)
        np.testing.assert_allclose(m.params_.to_numpy(), p.params_.to_numpy(), rtol=1e-4)
        assert m.log_likelihood_ == pytest.approx(p.log_likelihood_, rel=1e-9)


def test_recovers_the_effects_and_says_them(channels):
    rfm, covs = channels
    m = CovariateBetaGeoModel(purchase=["channel"], dropout=["channel"]).fit(rfm, covs)
    assert m.reference_ == {"channel": "A"}  # the most frequent level (A and B tie; A first by name)
    est = m.params_
    assert np.exp(est["purchase: channel=B"]) == pytest.approx(1.9, rel=0.1)
    assert np.exp(est["purchase: channel=C"]) == pytest.approx(5.0 / 6.5, rel=0.1)
    eff = m.effects().set_index("covariate")
    b_rate = eff[eff["process"] == "purchase rate"].loc["channel=B"]
    assert b_rate["lower"] < 1.9 < b_rate["upper"]
    assert "customers with channel=B buy 1." in b_rate["words"] and "95% interval" in b_rate["words"]
    drop = eff[eff["process"] == "dropout"]
    # dropout per purchase a/(a+b): B 0.32, C 0.14, reference 0.24
    assert drop.loc["channel=B", "estimate"] > 1.15 and drop.loc["channel=C", "estimate"] < 0.8
    plain = clvmodels.BetaGeoModel().fit(rfm)
    lr = likelihood_ratio_test(plain, m)
    assert lr["df"] == 6 and lr["p_value"] < 1e-10
    # predictions per customer are those of the plain model with the customer's parameters
    codes, models = m.submodels(covs)
    one = rfm.index[codes == 1][:5]
    np.testing.assert_allclose(m.predict("expected_purchases", rfm, covs, 26).loc[one],
                               models[1].expected_purchases(rfm.loc[one], 26))
    spend = clvmodels.GammaGammaModel().fit(rfm)
    wi = clvmodels.covariate_what_if(m, spend, rfm, {"channel": "A"}, covariates=covs, horizon=26)
    # the covariates may as well be columns of the data: the same numbers
    joined = rfm.join(covs)
    pd.testing.assert_frame_equal(clvmodels.covariate_what_if(m, spend, joined, {"channel": "A"}, horizon=26), wi)
    np.testing.assert_allclose(m.expected_purchases(joined, 26), m.predict("expected_purchases", rfm, covs, 26))
    again = CovariateBetaGeoModel(purchase=["channel"], dropout=["channel"]).fit(joined)
    pd.testing.assert_series_equal(again.params_, m.params_, rtol=1e-9)
    a_customers = covs["channel"] == "A"
    np.testing.assert_allclose(wi.loc[a_customers, "clv_what_if"], wi.loc[a_customers, "clv"])
    b = covs["channel"] == "B"
    assert wi.loc[b, "clv_what_if"].sum() > wi.loc[b, "clv"].sum()  # B customers dropping out like A's


def test_penalty_reference_and_bad_covariates(channels):
    rfm, covs = channels
    free = CovariateBetaGeoModel(purchase=["channel"]).fit(rfm, covs)
    shrunk = CovariateBetaGeoModel(purchase=["channel"], penalizer_coef=0.5).fit(rfm, covs)
    assert abs(shrunk.params_["purchase: channel=B"]) < abs(free.params_["purchase: channel=B"])
    other = CovariateBetaGeoModel(purchase=["channel"], reference={"channel": "C"}).fit(rfm, covs)
    assert "purchase: channel=A" in other.params_.index and "purchase: channel=C" not in other.params_.index
    assert other.log_likelihood_ == pytest.approx(free.log_likelihood_, rel=1e-7)  # the same model, recoded
    with pytest.raises(DataValidationError, match="Covariate 'region' is not a column"):
        CovariateBetaGeoModel(purchase=["region"]).fit(rfm, covs)
    with pytest.raises(DataValidationError, match="missing for 1 customer"):
        CovariateBetaGeoModel(purchase=["channel"]).fit(rfm, covs.assign(channel=[None] + list(covs["channel"][1:])))
    with pytest.raises(DataValidationError, match="level\\(s\\) \\['Z'\\] the model was not fitted with"):
        free.predict("probability_alive", rfm.iloc[:3], covs.iloc[:3].assign(channel="Z"))
    with pytest.raises(ParameterError, match="Reference level 'Q'"):
        CovariateBetaGeoModel(purchase=["channel"], reference={"channel": "Q"}).fit(rfm, covs)


def test_gamma_gamma_with_covariates():
    """Spend per purchase scaled by exp(gamma z) (v_i = v_0 exp(gamma z)): the multiplier is
    recovered, no covariate is plain Gamma-Gamma, and the gradient is the derivative."""
    from clvmodels.models.covariate_spend import CovariateGammaGammaModel, _gg_loglik

    rng = np.random.default_rng(5)
    n = 20_000
    vip = rng.random(n) < 0.3
    x = rng.integers(1, 12, n).astype(float)
    p, q, v0 = 6.0, 4.0, 15.0
    nu = rng.gamma(q, 1.0 / (v0 * np.where(vip, 1.8, 1.0)))  # rate: VIPs' spend scale 1.8x
    mbar = rng.gamma(p * x, 1.0 / (nu * x))
    rfm = pd.DataFrame({"frequency": x, "recency": x, "T": 50.0, "monetary_value": mbar},
                       index=pd.Index([f"c{i}" for i in range(n)], name="customer_id"))
    covs = pd.DataFrame({"segment": np.where(vip, "vip", "standard")}, index=rfm.index)
    m = CovariateGammaGammaModel(spend=["segment"]).fit(rfm, covs)
    assert m.reference_ == {"segment": "standard"}
    assert np.exp(m.params_["spend: segment=vip"]) == pytest.approx(1.8, rel=0.06)
    eff = m.effects().iloc[0]
    assert eff["lower"] < 1.8 < eff["upper"] and "spend 1." in eff["words"]
    plain = clvmodels.GammaGammaModel().fit(rfm)
    none = CovariateGammaGammaModel().fit(rfm, covs)
    np.testing.assert_allclose(none.params_.to_numpy(), plain.params_.to_numpy(), rtol=1e-4)
    assert likelihood_ratio_test(none, m)["p_value"] < 1e-10
    spend = m.expected_spend(rfm, covs)
    assert spend[vip].mean() > 1.5 * spend[~vip].mean()
    theta = np.array([np.log(5.0), np.log(3.0), np.log(12.0), 0.4])
    Z = vip[:300, None].astype(float)
    f = lambda th: _gg_loglik(th, x[:300], mbar[:300], np.ones(300), Z, False)[0]  # noqa: E731
    np.testing.assert_allclose(_gg_loglik(theta, x[:300], mbar[:300], np.ones(300), Z, True)[1],
                               optimize.approx_fprime(theta, f, 1e-7), rtol=1e-4)


def _pareto_world(n=6000, seed=1):
    """Pareto/NBD customers in two channels: B buys 1.8x as often and leaves at half the rate."""
    rng = np.random.default_rng(seed)
    ch = rng.choice(["A", "B"], n)
    alpha = np.where(ch == "B", 10.0 / 1.8, 10.0)
    beta = np.where(ch == "B", 24.0, 12.0)
    lam, mu = rng.gamma(0.6, 1 / alpha), rng.gamma(0.6, 1 / beta)
    T = rng.uniform(30, 52, n)
    life = np.minimum(rng.exponential(1 / mu), T)
    x = rng.poisson(lam * life).astype(float)
    tx = np.where(x > 0, life * rng.beta(np.maximum(x, 1), 1), 0.0)  # the last of x uniform times on [0, life]
    rfm = pd.DataFrame({"frequency": x, "recency": tx, "T": T}, index=pd.Index([f"c{i}" for i in range(n)]))
    rfm.attrs["time_unit"] = "W"
    return rfm, pd.DataFrame({"channel": ch}, index=rfm.index)


def test_pareto_nbd_with_covariates():
    from clvmodels.models.covariates import CovariateParetoNBDModel

    rfm, covs = _pareto_world()
    m = CovariateParetoNBDModel(purchase=["channel"], dropout=["channel"]).fit(rfm, covs)
    other = "A" if m.reference_["channel"] == "B" else "B"
    buy, leave = np.exp(m.params_[f"purchase: channel={other}"]), np.exp(m.params_[f"dropout: channel={other}"])
    expected_buy, expected_leave = (1 / 1.8, 2.0) if other == "A" else (1.8, 0.5)
    assert buy == pytest.approx(expected_buy, rel=0.12) and leave == pytest.approx(expected_leave, rel=0.3)
    eff = m.effects()
    assert set(eff["process"]) == {"purchase rate", "dropout rate"} and eff["words"].str.contains("interval").all()
    assert likelihood_ratio_test(clvmodels.ParetoNBDModel().fit(rfm), m)["p_value"] < 1e-10
    # the gradient of the chained likelihood is its derivative
    from clvmodels.models.pareto_nbd import _prepare

    sub = rfm.iloc[:400]
    code = (covs["channel"].iloc[:400] == other).to_numpy()
    groups = [_prepare(*(sub[c].to_numpy(float)[code == g] for c in ("frequency", "recency", "T")))
              for g in (False, True)]
    Z = np.array([[0.0], [1.0]])
    theta = m.theta_ + 0.05
    f = lambda th: m._total_and_grad(th, groups, Z, Z)[0]  # noqa: E731
    np.testing.assert_allclose(m._total_and_grad(theta, groups, Z, Z)[1], optimize.approx_fprime(theta, f, 1e-7),
                               rtol=1e-4)
    # the same effect on both processes is a nested model with one coefficient fewer
    same = CovariateParetoNBDModel(purchase=["channel"], dropout=["channel"], same_effect=True).fit(rfm, covs)
    assert same.n_params_ == m.n_params_ - 1 and same.log_likelihood_ <= m.log_likelihood_ + 1e-6
    with pytest.raises(ParameterError, match="same_effect needs the same covariates"):
        CovariateParetoNBDModel(purchase=["channel"], dropout=[], same_effect=True)
    codes, models = m.submodels(covs)
    assert isinstance(models[0], clvmodels.ParetoNBDModel) and len(models) == 2


def test_a_covariate_on_a_huge_scale_is_one_clear_error(sample_rfm):
    from clvmodels.exceptions import ConvergenceError

    cov = pd.DataFrame({"big": np.random.default_rng(0).uniform(0, 1e6, len(sample_rfm))}, index=sample_rfm.index)
    with pytest.raises(ConvergenceError, match="rescale numeric ones"):
        CovariateBetaGeoModel(purchase=["big"]).fit(sample_rfm, cov)
    with pytest.raises(DataValidationError, match="Covariate 'big' has values that are not finite"):
        CovariateBetaGeoModel(purchase=["big"]).fit(sample_rfm, cov.assign(big=np.inf))


def test_a_covariate_with_too_many_levels_is_refused_by_name():
    """Issue 29: a covariate of 20,000 levels ran out of memory after 37 s; now one clear error
    naming the column and the limit, before any design matrix is built."""
    from clvmodels.exceptions import DataValidationError
    from clvmodels.models.covariates import MAX_LEVELS

    rfm = clvmodels.rfm_summary(simulate_transactions(3000, seed=2).transactions, time_unit="W")
    covs = pd.DataFrame({"postcode": [f"P{i}" for i in range(len(rfm))]}, index=rfm.index)
    with pytest.raises(DataValidationError, match=rf"'postcode' has 3,000 levels.*at most {MAX_LEVELS}"):
        clvmodels.CovariateBetaGeoModel(purchase=["postcode"]).fit(rfm, covs)
