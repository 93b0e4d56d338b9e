"""sBG and BdW (issue 18, item 2): Fader & Hardie (2007)'s published estimates from the survival
counts printed in the paper, BdW = sBG at c = 1, parameter recovery, DERL (Fader & Hardie 2010),
and subscription logs to the models' statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

from clvmodels import BetaDiscreteWeibullModel, ShiftedBetaGeometricModel, subscription_periods
from clvmodels.exceptions import DataValidationError, ParameterError
from clvmodels.models import load_model
from clvmodels.models.contractual import _terms

# Fader & Hardie (2007), survivors of 1,000 subscribers per year (years 0-12)
REGULAR = [1000, 631, 468, 382, 326, 289, 262, 241, 223, 207, 194, 183, 173]
HIGH_END = [1000, 869, 743, 653, 593, 551, 517, 491, 468, 445, 427, 409, 394]


@pytest.mark.parametrize(("counts", "alpha", "beta"), [(REGULAR, 0.704, 1.182), (HIGH_END, 0.668, 3.806)])
def test_published_estimates_and_projection(counts, alpha, beta):
    """Fitted on years 1-7 as in the paper: alpha and beta to the published three decimals
    (the "regular" and "high end" cohorts, in that order: not swapped), and the projection of
    years 8-12 within 5% of what happened."""
    model = ShiftedBetaGeometricModel().fit_survival(counts[:8])
    assert model.params_["alpha"] == pytest.approx(alpha, abs=5e-4)
    assert model.params_["beta"] == pytest.approx(beta, abs=5e-4)
    projected = model.projected_survivors(1000, 12).to_numpy()
    np.testing.assert_allclose(projected[8:], counts[8:], rtol=0.05)
    # retention rises with tenure: (beta + t - 1) / (alpha + beta + t - 1)
    t = np.arange(1, 13)
    np.testing.assert_allclose(model.retention_rate(t), (beta + t - 1) / (alpha + beta + t - 1), rtol=2e-3)


def test_bdw_at_c1_is_sbg_and_its_gradient_is_right():
    sbg = ShiftedBetaGeometricModel().fit_survival(REGULAR[:8])
    same = BetaDiscreteWeibullModel.from_params({**sbg.params_, "c": 1.0})
    t = np.arange(0, 20)
    np.testing.assert_allclose(same.survival(t), sbg.survival(t), rtol=1e-12)
    np.testing.assert_allclose(same.derl(t, 0.1), sbg.derl(t, 0.1), rtol=1e-9)  # sum = closed form
    bdw = BetaDiscreteWeibullModel().fit_survival(REGULAR[:8])
    assert bdw.log_likelihood_ >= sbg.log_likelihood_ - 1e-9  # one more parameter never fits worse
    periods = np.array([1, 2, 3, 5, 7, 7], float)
    churned = np.array([True, True, True, True, True, False])
    w = np.array([369, 163, 86, 37, 21, 241], float)
    for c_free, p0 in ((True, np.array([0.6, 1.1, 1.3])), (False, np.array([0.6, 1.1]))):
        numeric = optimize.approx_fprime(p0, lambda p, c_free=c_free: _terms(p, c_free, periods, churned, w, False)[0],
                                         1e-7)
        np.testing.assert_allclose(_terms(p0, c_free, periods, churned, w, True)[1], numeric, rtol=1e-4)


def test_bdw_recovers_duration_dependence():
    rng = np.random.default_rng(7)
    n, horizon = 40_000, 10
    theta = rng.beta(0.8, 2.5, n)
    u = rng.random(n)
    # T = the first t with (1 - theta)^(t^c) < u
    c = 0.7
    t_leave = np.ceil((np.log(u) / np.log1p(-theta)) ** (1 / c))
    t_leave = np.maximum(t_leave, 1)
    churned = t_leave <= horizon
    periods = np.where(churned, t_leave, horizon)
    model = BetaDiscreteWeibullModel().fit(periods, churned)
    assert model.params_["c"] == pytest.approx(c, rel=0.1)
    assert model.params_["alpha"] == pytest.approx(0.8, rel=0.2)
    assert model.params_["beta"] == pytest.approx(2.5, rel=0.3)
    # the share still subscribed after 5 periods, as simulated
    assert model.survival(5) == pytest.approx(float((t_leave > 5).mean()), abs=0.01)


def test_subscription_log_to_periods_and_fit(tmp_path):
    """A subscription log: one who left mid-period paid for that period; an active subscriber has
    survived the periods completed so far; fitting on the log equals fitting on the counts."""
    log = pd.DataFrame({
        "customer_id": ["a", "b", "c", "d"],
        "start": ["2024-01-01", "2024-01-01", "2024-03-15", "2024-02-01"],
        "end": ["2024-03-01", "2024-02-15", None, ""],
        "amount": [10.0, 10.0, 25.0, 10.0],
    })
    out = subscription_periods(log, period="month", observation_end="2024-06-30")
    assert out.loc["a", "periods"] == 2 and out.loc["a", "churned"]  # Jan, Feb paid; left at the 2nd renewal
    assert out.loc["b", "periods"] == 2 and out.loc["b", "churned"]  # left mid-February: paid 2
    assert out.loc["c", "periods"] == 3 and not out.loc["c", "churned"]  # 15 Mar - 30 Jun: 3 whole months
    assert out.loc["d", "periods"] == 4 and not out.loc["d", "churned"]
    assert out.loc["c", "cohort"] == pd.Timestamp("2024-03-01")  # cohorts are whole months from the first start
    with pytest.raises(DataValidationError, match="one row per subscriber; repeated"):
        subscription_periods(pd.concat([log, log.iloc[:1]]))
    with pytest.raises(DataValidationError, match="'end' has 1 value.*not dates.*empty means active"):
        subscription_periods(log.assign(end=["2024-03-01", "soon", None, ""]))
    with pytest.raises(ParameterError, match="period must be one of"):
        subscription_periods(log, period="fortnight")
    # the log of a cohort as the paper's counts: fitting either way gives the same estimates
    rows = []
    for t in range(1, 8):
        rows += [(t, True)] * (REGULAR[t - 1] - REGULAR[t])
    rows += [(7, False)] * REGULAR[7]
    periods, churned = map(np.array, zip(*rows, strict=True))
    from_log = ShiftedBetaGeometricModel().fit(periods, churned)
    from_counts = ShiftedBetaGeometricModel().fit_survival(REGULAR[:8])
    np.testing.assert_allclose(from_log.params_, from_counts.params_, rtol=1e-6)
    back = load_model(from_log.save(tmp_path / "sbg.json"))
    np.testing.assert_allclose(back.survival(np.arange(10)), from_log.survival(np.arange(10)))


def test_predictions_and_bad_input():
    model = ShiftedBetaGeometricModel.from_params({"alpha": 0.704, "beta": 1.182})
    t = np.arange(1, 30)
    assert model.probability_churn_at(t).sum() + model.survival(29) == pytest.approx(1.0)
    # churn by a horizon for a subscriber who has renewed n times
    np.testing.assert_allclose(model.survival_after(3, 2), model.survival(5) / model.survival(3))
    # DERL: expected discounted renewals still to come, by direct summation
    n, d = 4, 0.1
    k = np.arange(5000)
    direct = (model.survival(n + k + 1) / model.survival(n) / (1 + d) ** k).sum()
    assert model.derl(n, d) == pytest.approx(direct, rel=1e-9)
    assert model.expected_lifetime_value(100.0, d) == pytest.approx(100 * (1 + model.derl(0, d) / (1 + d)))
    with pytest.raises(ParameterError, match="renewals must be whole numbers"):
        model.derl(1.5, 0.1)
    with pytest.raises(DataValidationError, match="Nobody left"):
        ShiftedBetaGeometricModel().fit(np.array([3, 4]), np.array([False, False]))
    with pytest.raises(DataValidationError, match="falling series"):
        ShiftedBetaGeometricModel().fit_survival([100, 120, 90])


def test_subscriber_forecast_tiers_and_table():
    """Per subscriber: churn by the horizon, renewals, DERL and CLV from the tenure; tiers from
    the CLV; the per-tier table adds up."""
    import clvmodels
    from clvmodels.subscriptions import subscriber_forecast, subscriber_tier_table

    rng = np.random.default_rng(3)
    n = 2000
    start = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 36 * 30, n), unit="D")
    theta = rng.beta(0.7, 1.2, n)
    months = np.minimum(rng.geometric(theta), 600)  # at most 50 years: the log ends in 2023 anyway
    end = start + pd.to_timedelta(months * 30.4375, unit="D")
    log = pd.DataFrame({"customer_id": [f"s{i}" for i in range(n)], "start": start,
                        "end": end.where(end <= pd.Timestamp("2023-12-31")),
                        "amount": rng.choice([10.0, 25.0, 60.0], n)})
    subs = subscription_periods(log, period="month", observation_end="2023-12-31")
    model = ShiftedBetaGeometricModel().fit(subs)
    assert model.params_["alpha"] == pytest.approx(0.7, rel=0.25) and model.params_["beta"] == pytest.approx(1.2, rel=0.3)
    fc = subscriber_forecast(model, subs, horizon=12, discount_rate=0.01, margin=0.5)
    active = fc[fc["active"]]
    one = active.index[0]
    nn = int(subs.loc[one, "periods"])
    assert active.loc[one, "churn_probability_during_horizon"] == pytest.approx(1 - model.survival_after(nn, 12))
    assert active.loc[one, "clv"] == pytest.approx(0.5 * subs.loc[one, "amount"] * model.derl(nn, 0.01))
    assert (fc.loc[~fc["active"], ["clv", "expected_renewals"]] == 0).all().all()
    tiers = clvmodels.assign_tiers(active)
    table = subscriber_tier_table(fc, tiers)
    assert table.loc["Total", "subscribers"] == len(active)
    assert table.loc[["Platinum", "Gold", "Iron", "Lead"], "total_clv"].sum() == pytest.approx(active["clv"].sum())
    assert table.loc["Platinum", "mean_clv"] > table.loc["Gold", "mean_clv"] > table.loc["Iron", "mean_clv"]


def test_amounts_must_be_finite_and_not_negative():
    log = pd.DataFrame({"customer_id": ["a", "b", "c"], "start": ["2024-01-01"] * 3, "end": ["2024-03-01", None, None],
                        "amount": [10.0, "ten", -5.0]})
    with pytest.raises(DataValidationError, match="'amount' must be an amount per period >= 0.*2 are not.*'ten', '-5.0'"):
        subscription_periods(log)
    ok = subscription_periods(log.assign(amount=[10.0, 12.5, 0.0]))
    assert ok["amount"].tolist() == [10.0, 12.5, 0.0]


def test_subscription_dates_with_offsets_and_placeholder_ends():
    """Issue 29: start times with a UTC offset (TypeError before), mixed offsets (pandas' 'Mixed
    timezones detected') and the database placeholder 9999-12-31 for 'no end' (the observation end
    became year 9999 and the fit failed) read as the days written and as active."""
    plain = pd.DataFrame({"customer_id": ["a", "b", "c", "d"],
                          "start": ["2023-01-15", "2023-03-01", "2023-06-10", "2024-01-05"],
                          "end": ["2023-09-20", "", "", "2024-04-02"]})
    expected = subscription_periods(plain, observation_end="2024-06-30")
    offsets = plain.assign(start=["2023-01-15T10:00:00+01:00", "2023-03-01T23:30:00-05:00",
                                  "2023-06-10T08:00:00Z", "2024-01-05T12:00:00+05:30"],
                           end=["2023-09-20T09:00:00+02:00", None, "", "2024-04-02T00:00:00-08:00"])
    pd.testing.assert_frame_equal(subscription_periods(offsets, observation_end="2024-06-30"), expected)
    placeholder = plain.assign(end=["2023-09-20", "9999-12-31", "", "2024-04-02"])
    got = subscription_periods(placeholder)
    assert got.attrs["observation_end"] == "2024-04-02"  # not 9999-12-31
    assert not got.loc["b", "churned"]
    pd.testing.assert_frame_equal(subscription_periods(placeholder, observation_end="2024-06-30"), expected)
