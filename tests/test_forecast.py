from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter, GammaGammaFitter

import clvmodels
from clvmodels import BetaGeoModel, GammaGammaModel
from clvmodels.exceptions import DataValidationError, ParameterError
from clvmodels.forecast import FORECAST_COLUMNS, acquisition_budget, forecast, period_discount_rate


@pytest.fixture(scope="module")
def fitted(sample_rfm):
    return BetaGeoModel().fit(sample_rfm), GammaGammaModel().fit(sample_rfm)


@pytest.fixture(scope="module")
def fc(fitted, sample_rfm):
    bg, gg = fitted
    return forecast(bg, gg, sample_rfm, horizon=52, discount_rate=0.1, margin=0.3)


def test_columns_and_consistency(fc, fitted, sample_rfm):
    bg, gg = fitted
    assert list(fc.columns) == list(FORECAST_COLUMNS)
    assert fc.index.equals(sample_rfm.index)
    assert np.isfinite(fc.to_numpy()).all()
    pd.testing.assert_series_equal(fc["p_alive"], bg.probability_alive(sample_rfm), check_names=False)
    np.testing.assert_allclose(fc["expected_purchases"], bg.expected_purchases(sample_rfm, 52), rtol=1e-10)
    np.testing.assert_allclose(fc["churn_probability_by_horizon"], 1 - bg.probability_alive_after(sample_rfm, 52), rtol=1e-10)
    np.testing.assert_allclose(fc["p_any_purchase"], bg.probability_any_purchase(sample_rfm, 52), rtol=1e-10)
    np.testing.assert_allclose(fc["expected_spend"], gg.expected_spend(sample_rfm), rtol=1e-12)
    assert (fc["churn_probability_by_horizon"] >= fc["churn_probability"] - 1e-12).all()
    assert (fc["clv"] <= 0.3 * fc["expected_revenue"] + 1e-9).all()
    assert fc.attrs["time_unit"] == "W" and fc.attrs["horizon"] == 52


def test_discount_rate_conversion_is_exact():
    weekly = period_discount_rate(0.10, "W")
    assert (1 + weekly) ** (365.25 / 7) == pytest.approx(1.10, rel=1e-12)
    daily = period_discount_rate(0.10, "D")
    assert (1 + daily) ** 365.25 == pytest.approx(1.10, rel=1e-12)
    assert period_discount_rate(0.0, "W") == 0.0


def test_clv_is_discounted_sum_of_period_purchases(fitted, sample_rfm):
    bg, gg = fitted
    fc = forecast(bg, gg, sample_rfm.head(50), horizon=10, discount_rate=0.2, margin=0.5)
    d = period_discount_rate(0.2, "W")
    cum = np.column_stack([bg.expected_purchases(sample_rfm.head(50), k) for k in range(11)])
    manual = 0.5 * gg.expected_spend(sample_rfm.head(50)).to_numpy() * (np.diff(cum, axis=1) / (1 + d) ** np.arange(1, 11)).sum(axis=1)
    np.testing.assert_allclose(fc["clv"], manual, rtol=1e-9)
    # with no discounting CLV is margin x spend x purchases
    flat = forecast(bg, gg, sample_rfm, horizon=10, discount_rate=0.0, margin=0.5)
    np.testing.assert_allclose(flat["clv"], 0.5 * flat["expected_revenue"], rtol=1e-9)


def test_fractional_horizon(fitted, sample_rfm):
    bg, gg = fitted
    fc = forecast(bg, gg, sample_rfm, horizon=10.5, discount_rate=0.0)
    np.testing.assert_allclose(fc["expected_purchases"], bg.expected_purchases(sample_rfm, 10.5), rtol=1e-10)


def test_clv_against_lifetimes_without_discounting(fitted, sample_rfm):
    """lifetimes' customer_lifetime_value with 0 discount equals spend x E[purchases]."""
    bg, gg = fitted
    bgf = BetaGeoFitter()
    bgf.params_ = bg.params_.copy()
    bgf.predict = bgf.conditional_expected_number_of_purchases_up_to_time  # set by its fit
    ggf = GammaGammaFitter()
    ggf.params_ = gg.params_.copy()
    # lifetimes counts months with a factor table: with freq "W" a month is 4.345 weeks
    theirs = ggf.customer_lifetime_value(bgf, sample_rfm["frequency"], sample_rfm["recency"], sample_rfm["T"],
                                         sample_rfm["monetary_value"], time=12, discount_rate=0.0, freq="W")
    ours = forecast(bg, gg, sample_rfm, horizon=12 * 4.345, discount_rate=0.0)
    np.testing.assert_allclose(ours["clv"], theirs, rtol=1e-6)


def test_cost_to_serve_makes_net_clv(fitted, sample_rfm):
    bg, gg = fitted
    fc = forecast(bg, gg, sample_rfm, horizon=52, discount_rate=0.1, margin=0.3, cost_to_serve=0.1)
    assert (fc["clv"] < 0).any()
    np.testing.assert_allclose(fc["clv"], fc["gross_clv"] - fc["cost_to_serve"])
    # a customer certainly alive for the whole horizon pays about 52 x 0.1, discounted
    assert fc["cost_to_serve"].max() < 5.2


def test_acquisition_budget(fitted):
    bg, gg = fitted
    b = acquisition_budget(bg, gg, horizon=52, discount_rate=0.0, margin=1.0)
    assert b["expected_repeat_purchases"] == pytest.approx(bg.expected_purchases_new_customer(52), rel=1e-9)
    assert b["budget"] == pytest.approx(gg.mean_spend * (1 + bg.expected_purchases_new_customer(52)), rel=1e-9)
    net = acquisition_budget(bg, gg, horizon=52, discount_rate=0.1, margin=0.3, cost_to_serve=0.5)
    assert net["budget"] < b["budget"]


def test_parameter_intervals(fitted, sample_rfm, fc):
    bg, gg = fitted
    iv = clvmodels.parameter_intervals(bg, gg, sample_rfm, horizon=52, discount_rate=0.1, margin=0.3, n_draws=60)
    assert (iv["expected_purchases_param_lower"] <= fc["expected_purchases"] + 1e-9).mean() > 0.95
    assert (iv["expected_purchases_param_upper"] >= fc["expected_purchases"] - 1e-9).mean() > 0.95
    assert (iv["clv_param_upper"] > iv["clv_param_lower"]).all()


def test_predictive_intervals_hold_the_process_noise(fitted, sample_cal):
    """Issue 14 item 6: a frequent buyer's interval is about as wide as the randomness of his
    purchases (not the 46.0-46.5 of parameter uncertainty), and on the CDNOW sample's 39-week
    holdout the 90% intervals cover 85-95% of customers (purchases)."""
    bg = clvmodels.BetaGeoModel().fit(sample_cal)
    gg = clvmodels.GammaGammaModel().fit(sample_cal)
    iv = clvmodels.forecast_intervals(bg, gg, sample_cal, horizon=39, margin=0.3, n_sims=400)
    fc = clvmodels.forecast(bg, gg, sample_cal, horizon=39, margin=0.3)
    top = fc["expected_purchases"].idxmax()
    e = fc.loc[top, "expected_purchases"]
    width = iv.loc[top, "purchases_upper"] - iv.loc[top, "purchases_lower"]
    assert width > 2 * 1.645 * np.sqrt(e) * 0.8  # at least the Poisson spread of the count
    actual = sample_cal["frequency_holdout"]
    inside = (iv["purchases_lower"] <= actual) & (actual <= iv["purchases_upper"])
    assert 0.85 <= inside.mean() <= 0.97
    assert (iv["revenue_lower"] <= iv["revenue_upper"]).all() and (iv["clv_lower"] <= iv["clv_upper"]).all()
    assert np.isfinite(iv.to_numpy()).all()
    assert iv.attrs["kind"] == "predictive"


def test_bad_parameters(fitted, sample_rfm):
    bg, gg = fitted
    with pytest.raises(ParameterError, match="horizon must be > 0"):
        forecast(bg, gg, sample_rfm, horizon=0)
    with pytest.raises(ParameterError, match="margin must be > 0"):
        forecast(bg, gg, sample_rfm, horizon=5, margin=0)
    with pytest.raises(ParameterError, match="discount_rate must be >= 0"):
        forecast(bg, gg, sample_rfm, horizon=5, discount_rate=-0.1)
    with pytest.raises(ParameterError, match="transaction_model must be a fitted purchase model"):
        forecast(gg, gg, sample_rfm, horizon=5)
    with pytest.raises(ParameterError, match="Conflicting time units"):
        forecast(bg, gg, sample_rfm, horizon=5, time_unit="D")
    with pytest.raises(DataValidationError, match="monetary_value"):
        forecast(bg, gg, sample_rfm.drop(columns="monetary_value"), horizon=5)


def test_parameter_intervals_chunks_give_the_same_answer(sample_rfm):
    """Bounded memory: chunks of 1,000 customers give exactly what one chunk gives, and every
    customer's interval brackets the point forecast."""
    bg, gg = clvmodels.BetaGeoModel().fit(sample_rfm), clvmodels.GammaGammaModel().fit(sample_rfm)
    kw = dict(horizon=52, n_draws=40, cost_to_serve=0.05)
    small = clvmodels.parameter_intervals(bg, gg, sample_rfm, chunk_size=1000, **kw)
    whole = clvmodels.parameter_intervals(bg, gg, sample_rfm, chunk_size=10**6, **kw)
    pd.testing.assert_frame_equal(small, whole, check_exact=False, rtol=1e-12, atol=1e-12)
    assert (small["clv_param_lower"] <= small["clv_param_upper"]).all()
    assert (small["expected_purchases_param_lower"] <= small["expected_purchases_param_upper"]).all()


def test_delta_method_agrees_with_parameter_draws(monkeypatch, master_cal):
    """Above DELTA_METHOD_ABOVE customers intervals come from the linearisation; on CDNOW master
    (23,570 customers, forced onto that path) they agree with 400 parameter draws to within a
    tenth of their width, per customer and per tier."""
    import importlib

    fmod = importlib.import_module("clvmodels.intervals")
    for cls in (clvmodels.BetaGeoModel, clvmodels.ParetoNBDModel):
        tm, gg = cls().fit(master_cal), clvmodels.GammaGammaModel().fit(master_cal)
        kw = dict(horizon=52, n_draws=400, cost_to_serve=0.02)
        draws = clvmodels.parameter_intervals(tm, gg, master_cal, **kw)
        fc = clvmodels.forecast(tm, gg, master_cal, horizon=52, cost_to_serve=0.02)
        tiers = clvmodels.assign_tiers(fc)
        t_draws = clvmodels.tier_intervals(tm, gg, master_cal, tiers, max_simulated=5000, **kw)
        monkeypatch.setattr(fmod, "DELTA_METHOD_ABOVE", 0)
        delta = clvmodels.parameter_intervals(tm, gg, master_cal, **kw)
        t_delta = clvmodels.tier_intervals(tm, gg, master_cal, tiers, max_simulated=5000, **kw)
        monkeypatch.setattr(fmod, "DELTA_METHOD_ABOVE", 1_000_000)
        assert delta.attrs["method"] == "delta"
        for col in ("clv", "expected_purchases"):
            width = draws[f"{col}_param_upper"] - draws[f"{col}_param_lower"]
            for end in ("lower", "upper"):
                off = (delta[f"{col}_param_{end}"] - draws[f"{col}_param_{end}"]).abs() / width.where(width > 1e-9)
                assert off.median() < 0.1, (cls.__name__, col, end)
        for col in ("expected_purchases", "expected_revenue", "total_clv"):
            width = t_draws[f"{col}_upper"] - t_draws[f"{col}_lower"]
            for end in ("lower", "upper"):
                off = (t_delta[f"{col}_{end}"] - t_draws[f"{col}_{end}"]).abs() / width
                assert (off < 0.2).all(), (cls.__name__, col, end)


def test_short_horizon_on_a_day_table_says_it_is_days(cdnow_sample):
    """Issue 16: forecast(horizon=52) on a day table is 52 days; it says so (a warning naming
    the fix) unless the unit is given explicitly."""
    from clvmodels.exceptions import ClvModelsWarning

    rfm = clvmodels.rfm_summary(cdnow_sample, time_unit="D")
    bg, gg = clvmodels.BetaGeoModel().fit(rfm), clvmodels.GammaGammaModel().fit(rfm)
    with pytest.warns(ClvModelsWarning, match=r"horizon=52 is in days.*pass horizon=364"):
        clvmodels.forecast(bg, gg, rfm, horizon=52)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", ClvModelsWarning)
        clvmodels.forecast(bg, gg, rfm, horizon=52, time_unit="D")
        clvmodels.forecast(bg, gg, rfm, horizon=364)


def test_discount_rates_per_any_period_round_trip():
    """Issue 18 item 4: a rate per month (or week, quarter) is turned into the annual rate every
    forecast takes, and back to the forecast's time unit exactly."""
    from clvmodels.forecast import period_discount_rate

    annual = clvmodels.annual_discount_rate(0.01, "month")
    assert annual == pytest.approx(1.01**12 - 1, rel=1e-12)
    assert period_discount_rate(clvmodels.annual_discount_rate(0.002, "week"), "W") == pytest.approx(0.002, rel=1e-12)
    assert clvmodels.annual_discount_rate(0.1, "year") == pytest.approx(0.1)
    with pytest.raises(clvmodels.ParameterError, match="per must be one of"):
        clvmodels.annual_discount_rate(0.01, "fortnight")
