"""BG/NBD with a calendar covariate (issue 17, item 3): seasonal purchase rates on an
operational clock, fitted on the RFM table plus its purchase calendar, predicting through the
common purchase-model hooks (so forecasts, tiers, intervals and the report use it)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import clvmodels
from clvmodels.exceptions import DataValidationError, ModelFileError, ParameterError
from clvmodels.models import load_model
from clvmodels.models.seasonal import SeasonalBetaGeoModel, as_of

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "validation"))
from worlds import worlds  # noqa: E402


@pytest.fixture(scope="module")
def generated():
    return {w.name: w for w in worlds(3000) if w.name in ("seasonal", "BG/NBD")}


def _holdout(world):
    h = float(np.floor((pd.Timestamp(world.end) - pd.Timestamp(world.cut)).days / 7))
    end = str((pd.Timestamp(world.cut) + pd.Timedelta(days=7 * h)).date())
    cal = clvmodels.calibration_holdout(world.log, calibration_end=world.cut, observation_end=end, time_unit="W",
                                        calendar=True)
    return h, cal


@pytest.fixture(scope="module")
def seasonal_fit(generated):
    h, cal = _holdout(generated["seasonal"])
    return h, cal, SeasonalBetaGeoModel(harmonics=2).fit(cal)


def test_seasonal_log_forecast_and_the_season_found(seasonal_fit):
    """Purchase rates swing +-60% over the year (1 + 0.6 sin(2 pi t / 52)): the calendar model
    finds a yearly wave of about that size and forecasts the holdout total within 10%, where
    plain BG/NBD misses by more than 10%; the backtest chooses it."""
    h, cal, m = seasonal_fit
    eff = m.calendar_effects_["estimate"]
    amplitude = float(np.hypot(eff["season sin 1"], eff["season cos 1"]))
    assert 0.4 < amplitude < 0.9  # ln-multiplier of the first harmonic (log(1.6) ~ 0.47 .. 0.69 at the peak)
    assert (m.calendar_effects_["std_error"] < 0.05).all()
    assert m.log_likelihood_ > m.plain_log_likelihood_ + 100
    pred = m.expected_purchases(cal, h)
    actual = cal["frequency_holdout"]
    assert abs(pred.sum() / actual.sum() - 1) < 0.10
    plain = clvmodels.BetaGeoModel().fit(cal).expected_purchases(cal, h)
    assert abs(plain.sum() / actual.sum() - 1) > 0.10
    assert ((pred - actual) ** 2).mean() < ((plain - actual) ** 2).mean()
    mult = m.multiplier(pd.date_range(cal.attrs["calibration_end"], periods=52, freq="7D"))
    assert mult.max() / mult.min() > 2.0  # peak over trough: (1.6 / 0.4) in truth
    pattern = m.monthly_pattern()
    assert len(pattern) == 12 and pattern.mean() == pytest.approx(1.0, rel=0.02)
    sel = clvmodels.select_model(cal)
    assert sel.chosen == "BG/NBD + season"
    assert isinstance(sel.new_model(), SeasonalBetaGeoModel)


def test_without_a_season_it_is_bg_nbd(generated):
    h, cal = _holdout(generated["BG/NBD"])
    m = SeasonalBetaGeoModel(harmonics=1).fit(cal)
    assert np.all(np.abs(m.calendar_effects_["estimate"]) < 0.1)
    assert m.log_likelihood_ - m.plain_log_likelihood_ < 10  # two parameters buy little
    plain_model = clvmodels.BetaGeoModel().fit(cal)
    plain = plain_model.expected_purchases(cal, h)
    assert abs(m.expected_purchases(cal, h).sum() / plain.sum() - 1) < 0.03
    # no harmonics: the operational clock is the calendar and every prediction is BG/NBD's
    flat = SeasonalBetaGeoModel(harmonics=0).fit(cal)
    np.testing.assert_allclose(flat.params_, plain_model.params_, rtol=1e-5)
    assert flat.log_likelihood_ == pytest.approx(plain_model.log_likelihood_, rel=1e-9)
    assert flat.operational_horizon(10) == pytest.approx(10.0)
    np.testing.assert_allclose(flat.expected_purchases(cal, h), plain, rtol=1e-5)
    np.testing.assert_allclose(flat.probability_alive(cal), plain_model.probability_alive(cal), rtol=1e-5)
    np.testing.assert_allclose(flat.probability_alive_after(cal, 10), plain_model.probability_alive_after(cal, 10),
                               rtol=1e-5)
    spend = clvmodels.GammaGammaModel().fit(cal)
    a = clvmodels.forecast(flat, spend, cal, horizon=h)
    b = clvmodels.forecast(plain_model, spend, cal, horizon=h)
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-4, atol=1e-9)


def test_analytic_gradient_matches_differences(seasonal_fit, monkeypatch):
    """The fit's analytic gradient (through the clock's cumulative sums) against central
    differences of its own log-likelihood, at a point away from the optimum."""
    from scipy import optimize

    _, cal, _ = seasonal_fit
    seen = {}
    real = optimize.minimize

    def capture(fun, x0, **kw):
        seen["fun"] = fun
        return real(fun, x0, **kw)

    monkeypatch.setattr(optimize, "minimize", capture)
    SeasonalBetaGeoModel(harmonics=1, trend=True).fit(cal)
    theta = np.array([np.log(0.4), np.log(5.0), np.log(0.8), np.log(3.0), 0.3, -0.2, 0.1])
    _, grad = seen["fun"](theta)
    h = 1e-6
    num = np.array([(seen["fun"](theta + h * e)[0] - seen["fun"](theta - h * e)[0]) / (2 * h) for e in np.eye(7)])
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-8)


def test_predictions_read_like_every_purchase_model(seasonal_fit):
    """The common API: conditional pmf sums to 1 with mean = expected purchases; a horizon per
    customer; intervals and tiers from the generic code."""
    h, cal, m = seasonal_fit
    rows = cal.iloc[:200]
    probs = sum(m.conditional_probability_purchases(rows, n, 13) for n in range(80))
    np.testing.assert_allclose(probs, 1.0, atol=1e-8)
    mean = sum(n * m.conditional_probability_purchases(rows, n, 13) for n in range(80))
    np.testing.assert_allclose(mean, m.expected_purchases(rows, 13), rtol=1e-6)
    per = m.expected_purchases(rows, np.full(len(rows), 13.0))
    np.testing.assert_allclose(per, m.expected_purchases(rows, 13))
    spend = clvmodels.GammaGammaModel().fit(cal)
    fc = clvmodels.forecast(m, spend, cal, horizon=26)
    assert np.isfinite(fc.to_numpy()).all()
    tiers = clvmodels.assign_tiers(fc)
    iv = clvmodels.tier_intervals(m, spend, cal, tiers, horizon=26, n_draws=20)
    assert (iv["total_clv_lower"] <= iv["total_clv_upper"]).all()
    by_freq = m.expected_customers_by_frequency(cal)
    assert by_freq["expected"].sum() == pytest.approx(len(cal), rel=1e-6)


def test_save_load_and_as_of(seasonal_fit, tmp_path):
    h, cal, m = seasonal_fit
    path = m.save(tmp_path / "m.json")
    back = load_model(path)
    assert isinstance(back, SeasonalBetaGeoModel)
    np.testing.assert_allclose(back.expected_purchases(cal, h), m.expected_purchases(cal, h), rtol=1e-12)
    # a table as of another date is refused until the model is moved there
    later = cal.copy()
    later.attrs["observation_end"] = "2022-01-03"
    with pytest.raises(ParameterError, match="as of 2022-01-03 but this seasonal model predicts as of"):
        m.expected_purchases(later, 4)
    moved = as_of(m, "2022-01-03")
    assert moved.calendar_["as_of"] == "2022-01-03" and m.calendar_["as_of"] == cal.attrs["calibration_end"]
    assert np.isfinite(moved.expected_purchases(later, 4)).all()
    assert as_of(m, cal.attrs["calibration_end"]) is m
    # hostile model files: the calendar is checked like every parameter
    import json

    data = json.loads(path.read_text())
    for bad in ({"coefficients": [1e9, 0, 0, 0], "as_of": "2021-01-01"},
                {"coefficients": [0, 0], "as_of": "2021-01-01"},
                {"coefficients": [0, 0, 0, 0], "as_of": "not a date"},
                {"coefficients": [0, 0, 0, 0], "as_of": "2021-01-01", "code": "import os"},
                "calendar"):
        data["init_params"]["calendar"] = bad
        path.write_text(json.dumps(data))
        with pytest.raises(ModelFileError):
            load_model(path)


def test_bad_settings_and_tables_are_named(generated):
    with pytest.raises(ParameterError, match="harmonics must be a whole number from 0 to 6"):
        SeasonalBetaGeoModel(harmonics=9)
    with pytest.raises(ParameterError, match="trend must be True or False"):
        SeasonalBetaGeoModel(trend="yes")
    with pytest.raises(ParameterError, match="needs calendar="):
        SeasonalBetaGeoModel.from_params({"r": 1, "alpha": 1, "a": 1, "b": 1})
    world = generated["seasonal"]
    rfm = clvmodels.rfm_summary(world.log, time_unit="W", observation_end=world.cut)
    with pytest.raises(DataValidationError, match="calendar=True"):
        SeasonalBetaGeoModel().fit(rfm)
    full = clvmodels.rfm_summary(world.log, time_unit="W", observation_end=world.cut, calendar=True)
    with pytest.raises(DataValidationError, match="describes other customers"):
        SeasonalBetaGeoModel().fit(full.iloc[: len(full) // 2])
    short_end = pd.Timestamp(world.log["date"].min()) + pd.Timedelta(days=200)
    short = clvmodels.rfm_summary(world.log, time_unit="W", observation_end=short_end, calendar=True)
    with pytest.raises(DataValidationError, match="needs at least 364 days of history"):
        SeasonalBetaGeoModel().fit(short)
    SeasonalBetaGeoModel(harmonics=0).fit(short)  # no season asked for: fine
    assert "BG/NBD + season" not in clvmodels.select_model(
        clvmodels.calibration_holdout(world.log, calibration_end=short_end, observation_end=world.cut,
                                      time_unit="W", calendar=True)).table.index


def test_compressed_rows_fit_like_the_table(seasonal_fit):
    """Fitted on distinct rows with weights (the engine path), the same model."""
    _, cal, m = seasonal_fit
    rows = cal.groupby(["frequency", "recency", "T"]).size().rename("weight").reset_index()
    rows.attrs.update(cal.attrs)
    c = SeasonalBetaGeoModel(harmonics=2).fit(rows, weights=rows["weight"])
    np.testing.assert_allclose(c.params_, m.params_, rtol=1e-5)
    np.testing.assert_allclose(c.calendar_effects_["estimate"], m.calendar_effects_["estimate"], atol=1e-5)


def test_events_of_your_own_are_found_and_forecast():
    """A table of holiday days (period -> value, Bachmann et al.'s time-varying covariate): purchases
    run at 3x on them; the model finds about log(3), says it by name, keeps it when saved and
    forecasts a holdout that holds a holiday week better than without it."""
    from worlds import START, _simulate

    # holiday: the first week of every 10-week block (in weeks since START)
    def mult(t):
        return np.where((t % 10) < 1, 3.0, 1.0)

    log = _simulate(3000, acquisition=(0, 20), span=60, multiplier=mult, mult_max=3.0, seed=11)
    weeks = np.arange(0, 70)
    holidays = pd.DatetimeIndex([START + pd.Timedelta(days=7 * w + d) for w in weeks if w % 10 == 0 for d in range(7)])
    events = pd.DataFrame({"holiday": 1.0}, index=holidays)
    cut = str((START + pd.Timedelta(days=7 * 45)).date())
    end = str((START + pd.Timedelta(days=7 * 59)).date())
    cal = clvmodels.calibration_holdout(log, calibration_end=cut, observation_end=end, time_unit="W", calendar=True)
    m = SeasonalBetaGeoModel(harmonics=0, events=events).fit(cal)  # no season: 45 weeks are enough
    g = m.calendar_effects_.loc["event: holiday"]
    assert abs(g["estimate"] - np.log(3.0)) < 3 * g["std_error"] + 0.05
    h = float(cal["duration_holdout"].iloc[0])
    actual = cal["frequency_holdout"].sum()
    with_events = m.expected_purchases(cal, h).sum()
    plain = clvmodels.BetaGeoModel().fit(cal).expected_purchases(cal, h).sum()
    assert abs(with_events / actual - 1) < abs(plain / actual - 1)
    assert abs(with_events / actual - 1) < 0.10
    back = __import__("clvmodels").models.load_model(m.save(Path(__import__("tempfile").mkdtemp()) / "m.json"))
    np.testing.assert_allclose(back.expected_purchases(cal, h), m.expected_purchases(cal, h), rtol=1e-12)
    for bad, words in ((pd.DataFrame({"holiday": [1.0]}, index=["someday"]), "indexed by date"),
                       (pd.DataFrame({"holiday": [np.inf]}, index=["2021-01-01"]), "finite numbers"),
                       (pd.DataFrame({"a": [1.0, 1.0]}, index=["2021-01-01", "2021-01-01"]), "more than once"),
                       ("holidays.csv", "DataFrame indexed by date")):
        with pytest.raises(ParameterError, match=words):
            SeasonalBetaGeoModel(events=bad)
