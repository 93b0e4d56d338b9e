from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import clvmodels
from clvmodels import BetaGeoModel, GammaGammaModel
from clvmodels.exceptions import ParameterError
from clvmodels.intervals import tier_intervals
from clvmodels.tiers import (
    DEFAULT_SHARES,
    TIERS,
    assign_tiers,
    retention_what_if,
    tier_summary,
)


@pytest.fixture(scope="module")
def setup(sample_rfm):
    bg, gg = BetaGeoModel().fit(sample_rfm), GammaGammaModel().fit(sample_rfm)
    fc = clvmodels.forecast(bg, gg, sample_rfm, horizon=39, discount_rate=0.1, margin=0.3)
    return bg, gg, fc


def test_assign_tiers_shares_and_order(setup):
    fc = setup[2]
    tiers = assign_tiers(fc)
    assert list(tiers.cat.categories) == list(TIERS) and tiers.cat.ordered
    counts = tiers.value_counts().reindex(list(TIERS))
    n = len(fc)
    expected = np.diff(np.concatenate([[0], np.rint(np.cumsum(list(DEFAULT_SHARES.values())) * n)]))
    assert counts.tolist() == expected.astype(int).tolist()
    # every Platinum customer is worth at least every Gold customer, and so on
    for hi, lo in zip(TIERS[:-1], TIERS[1:], strict=True):
        assert fc["clv"][tiers == hi].min() >= fc["clv"][tiers == lo].max()


def test_ties_are_deterministic():
    fc = pd.DataFrame({"clv": [5.0, 5.0, 5.0, 5.0, 1.0]}, index=pd.Index([40, 10, 30, 20, 50], name="customer_id"))
    tiers = assign_tiers(fc, shares={"Platinum": 0.2, "Gold": 0.2, "Iron": 0.2, "Lead": 0.4})
    assert tiers.loc[10] == "Platinum" and tiers.loc[20] == "Gold" and tiers.loc[30] == "Iron"
    assert tiers.loc[40] == "Lead" and tiers.loc[50] == "Lead"
    again = assign_tiers(fc.iloc[::-1], shares={"Platinum": 0.2, "Gold": 0.2, "Iron": 0.2, "Lead": 0.4})
    pd.testing.assert_series_equal(again.sort_index(), tiers.sort_index())


def test_negative_clv_is_lead():
    fc = pd.DataFrame({"clv": [10.0, -1.0, 3.0, 2.0]})
    tiers = assign_tiers(fc, shares={"Platinum": 0.5, "Gold": 0.5, "Iron": 0.0, "Lead": 0.0})
    assert tiers.iloc[1] == "Lead"
    assert tiers.iloc[0] == "Platinum"


def test_bad_shares(setup):
    fc = setup[2]
    with pytest.raises(ParameterError, match="add up to 1"):
        assign_tiers(fc, shares={"Platinum": 0.5, "Gold": 0.5, "Iron": 0.5, "Lead": 0.5})
    with pytest.raises(ParameterError, match=r"missing \['Lead'\]"):
        assign_tiers(fc, shares={"Platinum": 0.5, "Gold": 0.25, "Iron": 0.25})


def test_tier_summary(setup):
    fc = setup[2]
    tiers = assign_tiers(fc)
    summary = tier_summary(fc, tiers)
    assert summary.index.tolist() == [*TIERS, "Total"]
    body = summary.loc[list(TIERS)]
    assert body["customers"].sum() == len(fc) == summary.loc["Total", "customers"]
    assert body["share_of_clv"].sum() == pytest.approx(1.0)
    assert body["total_clv"].sum() == pytest.approx(fc["clv"].sum())
    # churn split: gone already + leaving during the horizon = not active at the horizon's end
    assert body["expected_gone_now"].sum() == pytest.approx(fc["churn_probability"].sum())
    assert (body["expected_gone_now"] + body["expected_to_leave"]).sum() == pytest.approx(
        fc["churn_probability_by_horizon"].sum())
    assert ((body["share_of_active_leaving"] >= 0) & (body["share_of_active_leaving"] <= 1)).all()
    assert body["mean_clv"].is_monotonic_decreasing


def test_tier_intervals_cover_point_estimates(setup, sample_rfm):
    bg, gg, fc = setup
    tiers = assign_tiers(fc)
    iv = tier_intervals(bg, gg, sample_rfm, tiers, horizon=39, discount_rate=0.1, margin=0.3, n_draws=100)
    summary = tier_summary(fc, tiers, intervals=iv)
    for col in ("expected_purchases", "expected_revenue", "total_clv"):
        assert (summary[f"{col}_lower"] <= summary[col]).all(), col
        assert (summary[f"{col}_upper"] >= summary[col]).all(), col


def test_retention_what_if(setup, sample_rfm):
    bg, gg, fc = setup
    tiers = assign_tiers(fc)
    wi = retention_what_if(bg, gg, sample_rfm, tiers, dropout_reduction=0.2, horizon=39, discount_rate=0.1, margin=0.3)
    assert (wi.loc[list(TIERS), "change"] >= 0).all()
    assert wi.loc["Total", "change"] > 0
    none = retention_what_if(bg, gg, sample_rfm, tiers, dropout_reduction=0.0, horizon=39, discount_rate=0.1, margin=0.3)
    assert none["change"].abs().max() < 1e-9
    more = retention_what_if(bg, gg, sample_rfm, tiers, dropout_reduction=0.5, horizon=39, discount_rate=0.1, margin=0.3)
    assert more.loc["Total", "change"] > wi.loc["Total", "change"]


def test_backtest_error_and_widened_intervals():
    from types import SimpleNamespace

    from clvmodels.backtest_ranges import backtest_error, widen_intervals

    tiers = pd.DataFrame({
        "predicted_purchases": [100.0, 80.0, 40.0, 10.0], "actual_purchases": [90.0, 80.0, 50.0, 20.0],
        "predicted_revenue": [1000.0, 800.0, 400.0, 100.0], "actual_revenue": [1100.0, 800.0, 400.0, 50.0],
    }, index=["Platinum", "Gold", "Iron", "Lead"])
    err = backtest_error(SimpleNamespace(tiers=tiers, info={"description": "test"}))
    assert err.loc["Total", "actual_purchases"] == 240 and err.loc["Total", "predicted_purchases"] == 230
    assert err.loc["Lead", "purchases_pct_error"] == pytest.approx(-50.0)
    assert err.loc["Lead", "purchases_log_error"] == pytest.approx(np.log(2.0))
    logs = np.log(np.array([90, 80, 50, 20, 240]) / np.array([100, 80, 40, 10, 230]))
    assert err.attrs["sigma_purchases"] == pytest.approx(np.sqrt((logs**2).mean()))

    idx = ["Platinum", "Gold", "Iron", "Lead", "Total"]
    table = pd.DataFrame({
        "expected_purchases": [100.0, 80, 40, 10, 230], "expected_purchases_lower": [90.0, 72, 36, 8, 215],
        "expected_purchases_upper": [110.0, 88, 44, 12, 245],
        "expected_revenue": [1000.0, 800, 400, 100, 2300], "expected_revenue_lower": [900.0, 720, 360, 80, 2150],
        "expected_revenue_upper": [1100.0, 880, 440, 120, 2450],
        "total_clv": [300.0, 240, 120, -5, 655], "total_clv_lower": [270.0, 216, 108, -8, 610],
        "total_clv_upper": [330.0, 264, 132, -2, 700],
    }, index=idx)
    wide = widen_intervals(table, err, level=0.9)
    z, sig = 1.6448536269514722, err.attrs["sigma_purchases"]
    # Lead was under-predicted by half: the interval reaches up to the corrected forecast and beyond
    up = 10 * np.exp(np.log(2.0) + np.sqrt(np.log(12 / 10) ** 2 + (z * sig) ** 2))
    lo = 10 * np.exp(-np.sqrt(np.log(10 / 8) ** 2 + (z * sig) ** 2))
    assert wide.loc["Lead", "expected_purchases_upper"] == pytest.approx(up)
    assert wide.loc["Lead", "expected_purchases_lower"] == pytest.approx(lo)
    for col in ("expected_purchases", "expected_revenue", "total_clv"):
        assert (wide[f"{col}_lower"] <= table[f"{col}_lower"]).all()
        assert (wide[f"{col}_upper"] >= table[f"{col}_upper"]).all()
        assert (wide[f"{col}_lower"] <= wide[col]).all() and (wide[col] <= wide[f"{col}_upper"]).all()
    # the negative CLV of Lead is widened on the original scale
    assert wide.loc["Lead", "total_clv_lower"] < -8 and wide.loc["Lead", "total_clv_upper"] > -2
    # a horizon four times the backtest's holdout: the misses stretched x2 (a random walk's spread)
    far = widen_intervals(table, err, level=0.9, stretch=2.0)
    up2 = 10 * np.exp(2 * np.log(2.0) + np.sqrt(np.log(12 / 10) ** 2 + (2 * z * sig) ** 2))
    assert far.loc["Lead", "expected_purchases_upper"] == pytest.approx(up2) and far.attrs["stretch"] == 2.0
    for col in ("expected_purchases", "expected_revenue", "total_clv"):
        assert (far[f"{col}_lower"] <= wide[f"{col}_lower"]).all() and (far[f"{col}_upper"] >= wide[f"{col}_upper"]).all()
    with pytest.raises(clvmodels.exceptions.ParameterError, match="stretch"):
        widen_intervals(table, err, stretch=0.5)

    # issue 27, item 6: an earlier origin where Platinum was over-predicted by 25% (log error
    # ln(1/1.25)) widens Platinum's range down to that correction, and sigma covers both origins
    from clvmodels.backtest_ranges import with_earlier_origins

    earlier = pd.DataFrame([{"origin": 1, "purchases_Platinum_pct": 25.0, "purchases_Gold_pct": 0.0,
                             "purchases_Iron_pct": -20.0, "purchases_Lead_pct": -50.0, "total_pct": -4.0,
                             "revenue_Platinum_pct": 0.0, "revenue_Gold_pct": 0.0, "revenue_Iron_pct": 0.0,
                             "revenue_Lead_pct": 100.0, "revenue_total_pct": 0.0}])
    both = with_earlier_origins(err, earlier)
    assert both.loc["Platinum", "purchases_log_error_low"] == pytest.approx(np.log(1 / 1.25))
    assert both.loc["Platinum", "purchases_log_error_high"] == pytest.approx(np.log(90 / 100))
    all_logs = np.r_[logs, -np.log1p(np.array([25.0, 0.0, -20.0, -50.0, -4.0]) / 100)]
    assert both.attrs["sigma_purchases"] == pytest.approx(np.sqrt((all_logs**2).mean()))
    wider = widen_intervals(table, both, level=0.9)
    sig2 = both.attrs["sigma_purchases"]
    assert wider.loc["Platinum", "expected_purchases_lower"] == pytest.approx(
        100 * np.exp(np.log(1 / 1.25) - np.sqrt(np.log(100 / 90) ** 2 + (z * sig2) ** 2)))
    assert with_earlier_origins(err, earlier.iloc[:0]) is err


def test_tier_intervals_from_a_subsample_match_full_simulation(setup, sample_rfm):
    """Above max_simulated customers only a subsample is simulated and its noise scaled; the
    intervals stay close to simulating everyone (here 600 of 2,357 customers)."""
    bg, gg, fc = setup
    tiers = assign_tiers(fc)
    kw = dict(horizon=39, discount_rate=0.1, margin=0.3, n_draws=200, seed=3)
    full = tier_intervals(bg, gg, sample_rfm, tiers, **kw)
    sub = tier_intervals(bg, gg, sample_rfm, tiers, max_simulated=600, **kw)
    assert full.attrs["simulated_customers"] == 2357 and sub.attrs["simulated_customers"] == 600
    point = tier_summary(fc, tiers)
    for col in ("expected_purchases", "expected_revenue"):
        w_full = full[f"{col}_upper"] - full[f"{col}_lower"]
        w_sub = sub[f"{col}_upper"] - sub[f"{col}_lower"]
        np.testing.assert_allclose(w_sub, w_full, rtol=0.35)
        mid = (sub[f"{col}_upper"] + sub[f"{col}_lower"]) / 2
        np.testing.assert_allclose(mid, point[col], rtol=0.15)
    # CLV has no process noise: identical either way (same parameter draws)
    np.testing.assert_allclose(sub["total_clv_lower"], full["total_clv_lower"], rtol=1e-10)
