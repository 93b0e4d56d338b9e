"""Pareto/NBD with calendar covariates in the purchase and the dropout process (issue 17, item 3:
Bachmann, Meierer & Naef's dynamic-covariate Pareto/NBD with covariates shared by all customers),
fitted on the RFM table plus its purchase calendar, predicting through the common hooks."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import clvmodels
from clvmodels.exceptions import DataValidationError, ModelFileError, ParameterError
from clvmodels.models import load_model
from clvmodels.models import seasonal_pareto as sp
from clvmodels.models.seasonal_pareto import SeasonalParetoNBDModel

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "validation"))
from worlds import _date, simulate_pareto_calendar  # noqa: E402

H = 52.0


def _purchase(t):
    return 1 + 0.5 * np.sin(2 * np.pi * t / 52)


def _dropout(t):
    return np.exp(0.8 * np.cos(2 * np.pi * t / 52))


@pytest.fixture(scope="module")
def cal():
    # two years of calibration (a dropout season needs them), a year of holdout
    log = simulate_pareto_calendar(3000, seed=1, purchase=_purchase, purchase_max=1.5, dropout=_dropout,
                                   dropout_max=np.exp(0.8), span=160.0)
    return clvmodels.calibration_holdout(log, calibration_end=_date(108), observation_end=_date(160), time_unit="W",
                                         calendar=True)


@pytest.fixture(scope="module")
def fitted(cal):
    return SeasonalParetoNBDModel(harmonics=1, dropout_harmonics=1).fit(cal)


def test_both_seasons_found_and_the_forecast_holds(cal, fitted):
    """Purchases swing +-50% (peak in spring), dropout x e^0.8 in January: the model finds the
    purchase wave's size and the dropout wave's phase and size, and forecasts the holdout year
    within 5%, where Pareto/NBD and the seasonal BG/NBD (purchase season only) miss by more."""
    eff = fitted.calendar_effects_
    est, se = eff["estimate"], eff["std_error"]
    assert 0.35 < est["season sin 1"] < 0.65 and abs(est["season cos 1"]) < 4 * se["season cos 1"] + 0.02
    assert abs(est["dropout season cos 1"] - 0.8) < 3 * se["dropout season cos 1"]
    assert abs(est["dropout season sin 1"]) < 3 * se["dropout season sin 1"]
    actual = cal["frequency_holdout"].sum()
    season = fitted.expected_purchases(cal, H).sum() / actual - 1
    plain = clvmodels.ParetoNBDModel().fit(cal).expected_purchases(cal, H).sum() / actual - 1
    bg = clvmodels.SeasonalBetaGeoModel(harmonics=1).fit(cal).expected_purchases(cal, H).sum() / actual - 1
    assert abs(season) < 0.05 and abs(plain) > 0.07 and abs(bg) > 0.07
    assert fitted.log_likelihood_ > fitted.plain_log_likelihood_ + 200
    words = fitted.season_in_words()
    month = words.split("most likely to leave in ")[1].split(" ")[0]
    assert month in ("December", "January")  # the truth peaks on 6 January
    months = fitted.monthly_pattern(dropout=True)
    assert months.idxmax() in ("December", "January") and months.mean() == pytest.approx(1.0, rel=0.02)


def test_backtest_chooses_it(cal):
    sel = clvmodels.select_model(cal)
    assert "Pareto/NBD + season" in sel.table.index
    assert sel.chosen == "Pareto/NBD + season"
    assert isinstance(sel.new_model(), SeasonalParetoNBDModel)


def test_without_covariates_it_is_pareto_nbd(cal):
    """No harmonics: the clocks are the calendar and every number is Pareto/NBD's."""
    plain = clvmodels.ParetoNBDModel().fit(cal)
    flat = SeasonalParetoNBDModel(harmonics=0, dropout_harmonics=0).fit(cal)
    np.testing.assert_allclose(flat.params_, plain.params_, rtol=1e-5)
    assert flat.log_likelihood_ == pytest.approx(plain.log_likelihood_, rel=1e-10)
    for name, args, rtol in [("probability_alive", (), 1e-6), ("expected_purchases", (H,), 1e-6),
                             ("probability_alive_after", (H,), 1e-6), ("probability_any_purchase", (H,), 1e-5)]:
        np.testing.assert_allclose(getattr(flat, name)(cal, *args), getattr(plain, name)(cal, *args), rtol=rtol,
                                   atol=1e-10, err_msg=name)
    np.testing.assert_allclose(flat.probability_purchases(np.arange(6), 30.0),
                               plain.probability_purchases(np.arange(6), 30.0), atol=1e-12)
    np.testing.assert_allclose(flat.expected_customers_by_frequency(cal)["expected"],
                               plain.expected_customers_by_frequency(cal)["expected"], rtol=1e-8)
    np.testing.assert_allclose(flat.expected_discounted_residual_purchases(cal, 0.002),
                               plain.expected_discounted_residual_purchases(cal, 0.002), rtol=1e-4)
    spend = clvmodels.GammaGammaModel().fit(cal)
    a = clvmodels.forecast(flat, spend, cal, horizon=H)
    b = clvmodels.forecast(plain, spend, cal, horizon=H)
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-5, atol=1e-9)


def _captured_objective(monkeypatch, cal, model, k):
    from scipy import optimize

    seen = {}
    real = optimize.minimize

    def capture(fun, x0, **kw):
        if len(x0) == k:
            seen.setdefault("fun", fun)
        return real(fun, x0, **kw)

    monkeypatch.setattr(optimize, "minimize", capture)
    model.fit(cal)
    return seen["fun"]


def test_analytic_gradient_matches_differences(cal, monkeypatch):
    """Season and trend in both processes: the gradient against central differences of the
    objective, to the quadrature's accuracy (its nodes move with r, alpha, s and the purchase
    coefficients; beta and the dropout coefficients move none and agree to 1e-6). With an event
    (a one-day step in the rates) the quadrature resolves the step only to about 1e-3 and the
    gradient agrees to a few per cent, still exact for beta and the dropout coefficients."""
    theta = np.array([np.log(0.4), np.log(5.0), np.log(0.8), np.log(20.0), 0.3, -0.2, 0.1, 0.5, 0.2, -0.3])
    model = SeasonalParetoNBDModel(harmonics=1, trend=True, dropout_harmonics=1, dropout_trend=True)
    f = _captured_objective(monkeypatch, cal, model, 10)
    _, grad = f(theta)
    h = 1e-5
    num = np.array([(f(theta + h * e)[0] - f(theta - h * e)[0]) / (2 * h) for e in np.eye(len(theta))])
    np.testing.assert_allclose(grad, num, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(grad[[3, 7, 8, 9]], num[[3, 7, 8, 9]], rtol=1e-6, atol=1e-9)
    days = ["2020-12-24", "2020-12-25", "2021-12-24", "2021-12-25"]
    events = pd.DataFrame({"holiday": [1.0] * 4}, index=days)
    model = SeasonalParetoNBDModel(harmonics=1, events=events, dropout_harmonics=1)
    f = _captured_objective(monkeypatch, cal, model, 9)
    theta = np.array([np.log(0.4), np.log(5.0), np.log(0.8), np.log(20.0), 0.3, -0.2, 0.5, 0.2, -0.3])
    _, grad = f(theta)
    num = np.array([(f(theta + h * e)[0] - f(theta - h * e)[0]) / (2 * h) for e in np.eye(len(theta))])
    np.testing.assert_allclose(grad, num, rtol=0.05, atol=1e-4)
    np.testing.assert_allclose(grad[[3, 7, 8]], num[[3, 7, 8]], rtol=1e-6, atol=1e-9)


def test_likelihood_integral_against_day_by_day_integration(fitted):
    """The quadrature of the dropout integral against a brute-force one: 20 Gauss nodes in each
    day of the exact piecewise-linear clocks. Within 1e-4 of ln I over weeks and months; a gap of
    a few days differs by up to 2e-3 (the rates' ratio is drawn linearly between the days'
    middles, where the clocks step at midnight)."""
    r, alpha, s, beta = fitted._p()
    lo = -400
    cl = fitted._past(lo)
    x = np.array([0.0, 1.0, 3.0, 12.0, 40.0])
    first = np.array([-400, -300, -380, -390, -399]) - lo
    last = np.array([-400, -200, -100, -300, -150]) - lo
    end = np.full(5, -lo)
    _, log_i = sp._row_terms((r, alpha, s, beta), x, cl, first, last, end)
    z, wz = np.polynomial.legendre.leggauss(20)
    for k in range(5):
        total = 0.0
        for j in range(last[k], end[k]):
            tau = (z + 1) / 2
            A = cl.C[j] + cl.m[j] * tau - cl.C[first[k]]
            B = cl.D[j] + cl.d[j] * tau - cl.D[first[k]]
            total += float((wz / 2 * (alpha + A) ** -(r + x[k]) * (beta + B) ** -(s + 1) * cl.d[j]).sum())
        # frequent buyers: the dead term lies within days of the last purchase, where the drawn
        # ratio differs from the day's own most
        assert log_i[k] == pytest.approx(np.log(total), abs=1e-4 if x[k] < 10 else 5e-4), k


def test_predictions_read_like_every_purchase_model(cal, fitted):
    """The common API: the conditional pmf sums to 1 with mean = expected purchases; simulated
    futures average to the expected purchases; a horizon per customer; forecasts, tiers and
    intervals from the generic code."""
    m = fitted
    rows = cal.iloc[:150]
    probs = sum(m.conditional_probability_purchases(rows, n, 26) for n in range(80))
    np.testing.assert_allclose(probs, 1.0, atol=1e-6)
    mean = sum(n * m.conditional_probability_purchases(rows, n, 26) for n in range(80))
    np.testing.assert_allclose(mean, m.expected_purchases(rows, 26), rtol=2e-3)
    per = m.expected_purchases(rows, np.full(len(rows), 26.0))
    np.testing.assert_allclose(per, m.expected_purchases(rows, 26))
    rng = np.random.default_rng(0)
    x, T = np.full(40_000, 3.0), np.full(40_000, 60.0)
    draws = m._simulate(rng, x, T, 26.0, np.ones(40_000, bool))
    assert draws.mean() == pytest.approx(float(m._expected_if_alive(26.0, 3.0, 60.0)), rel=0.03)
    alive_after = (m._survival_if_alive(26.0, 3.0, 60.0))
    assert 0 < alive_after < 1
    new = m.probability_purchases(np.arange(600), 52.0)
    assert new.sum() == pytest.approx(1.0, abs=1e-6)
    spend = clvmodels.GammaGammaModel().fit(cal)
    fc = clvmodels.forecast(m, spend, cal, horizon=26)
    assert np.isfinite(fc.to_numpy()).all()
    tiers = clvmodels.assign_tiers(fc)
    iv = clvmodels.tier_intervals(m, spend, cal, tiers, horizon=26, n_draws=20)
    assert (iv["total_clv_lower"] <= iv["total_clv_upper"]).all()
    by_freq = m.expected_customers_by_frequency(cal)
    assert by_freq["expected"].sum() == pytest.approx(len(cal), rel=1e-6)
    assert (m.expected_discounted_residual_purchases(rows, 0.002) > 0).all()


def test_save_load_and_as_of(cal, fitted, tmp_path):
    back = load_model(fitted.save(tmp_path / "m.json"))
    assert isinstance(back, SeasonalParetoNBDModel) and back.dropout_harmonics == 1
    np.testing.assert_allclose(back.expected_purchases(cal, H), fitted.expected_purchases(cal, H), rtol=1e-12)
    later = cal.copy()
    later.attrs = {**cal.attrs, "observation_end": "2022-09-01"}
    with pytest.raises(ParameterError, match="as_of"):
        fitted.expected_purchases(later, H)
    moved = clvmodels.models.seasonal.as_of(fitted, "2022-09-01")
    assert moved.calendar_["as_of"] == "2022-09-01"
    assert np.isfinite(moved.expected_purchases(later, H)).all()
    # hostile model files: the dropout settings and the calendar are checked like every parameter
    import json

    path = tmp_path / "m.json"
    good = json.loads(path.read_text())
    for key, bad in (("dropout_harmonics", 1e9), ("dropout_harmonics", "1"), ("dropout_trend", "yes"),
                     ("calendar", {"coefficients": [0.1] * 5, "as_of": "2022-01-03"}),
                     ("calendar", {"coefficients": [0.1] * 6, "as_of": "2022-01-03", "extra": 1})):
        data = json.loads(json.dumps(good))
        data["init_params"][key] = bad
        path.write_text(json.dumps(data))
        with pytest.raises(ModelFileError):
            load_model(path)


def test_many_customers_fit_on_a_sample(cal, monkeypatch):
    """Beyond FIT_CUSTOMERS customers the fit uses a random sample of them: said in fit_info_,
    n_customers_ is everyone, and the estimates stay within 4 of the sample's standard errors of
    the full fit's (the sample's own purchase days are not in the compressed calendar: their
    covariate sum is the calendar's times the sample's share of the purchases, which adds about
    one standard error of noise; six samples of half the customers moved the season's
    coefficient by 0.01-0.05 with standard errors of 0.017)."""
    full = SeasonalParetoNBDModel(harmonics=1, dropout_harmonics=0).fit(cal)
    monkeypatch.setattr(sp, "FIT_CUSTOMERS", 1500)
    part = SeasonalParetoNBDModel(harmonics=1, dropout_harmonics=0).fit(cal)
    assert "random 1,500 of the 3,000 customers" in part.fit_info_["method"]
    assert part.n_customers_ == 3000
    diff = (part.calendar_effects_["estimate"] - full.calendar_effects_["estimate"]).abs()
    assert (diff < 4 * part.calendar_effects_["std_error"]).all()
    assert part.log_likelihood_ == pytest.approx(full.log_likelihood_, rel=0.05)


def test_bad_settings_and_tables_are_named(cal):
    with pytest.raises(ParameterError, match="dropout_harmonics"):
        SeasonalParetoNBDModel(dropout_harmonics=-1)
    with pytest.raises(ParameterError, match="dropout_trend"):
        SeasonalParetoNBDModel(dropout_trend="yes")
    plain = cal.copy()
    plain.attrs = {k: v for k, v in cal.attrs.items() if k != "purchase_calendar"}
    with pytest.raises(DataValidationError, match="calendar=True"):
        SeasonalParetoNBDModel().fit(plain)
    # a dropout season needs two years of history: one year is the cohort's age by another name
    short = clvmodels.calibration_holdout(simulate_pareto_calendar(300, seed=3), calibration_end=_date(78),
                                          observation_end=_date(130), time_unit="W", calendar=True)
    with pytest.raises(DataValidationError, match="dropout hazard needs at least 728 days"):
        SeasonalParetoNBDModel().fit(short)
    assert SeasonalParetoNBDModel(dropout_harmonics=0).fit(short).n_coefficients == 4
    assert "Pareto/NBD + season" not in clvmodels.select_model(short).table.index
    with pytest.raises(ParameterError, match="coefficients"):
        SeasonalParetoNBDModel.from_params({"r": 1, "alpha": 2, "s": 1, "beta": 3},
                                           calendar={"coefficients": [0.1], "as_of": "2021-07-05"})


def test_events_in_the_dropout_hazard(monkeypatch):
    """dropout_events: the events' columns act on the dropout hazard too. Customers leave at
    e^1.5 their rate in one week a quarter (a price rise, say) and buy as usual: the dropout
    coefficient comes out near 1.5, the purchase one near 0, and the report's words say both.
    The gradient of the dropout coefficient is exact (it moves no quadrature node)."""
    from worlds import START

    def quarter_week(t):
        return (np.asarray(t) % 13) < 1

    log = simulate_pareto_calendar(4000, seed=5, acquisition=(0.0, 40.0), span=100.0, beta=20.0,
                                   dropout=lambda t: np.where(quarter_week(t), np.exp(1.5), 1.0),
                                   dropout_max=float(np.exp(1.5)))
    days = [START + pd.Timedelta(days=7 * w + d) for w in range(0, 120, 13) for d in range(7)]
    events = pd.DataFrame({"price rise": 1.0}, index=pd.DatetimeIndex(days))
    cal = clvmodels.calibration_holdout(log, calibration_end=_date(80), observation_end=_date(100), time_unit="W",
                                        calendar=True)
    m = SeasonalParetoNBDModel(harmonics=0, dropout_harmonics=0, events=events, dropout_events=True).fit(cal)
    eff = m.calendar_effects_
    assert list(eff.index) == ["event: price rise", "dropout event: price rise"]
    d = eff.loc["dropout event: price rise"]
    assert abs(d["estimate"] - 1.5) < 3 * d["std_error"] + 0.05
    p = eff.loc["event: price rise"]
    assert abs(p["estimate"]) < 3 * p["std_error"] + 0.05
    assert m._long_name == "Pareto/NBD with calendar events in purchases and dropout"
    assert "and the dropout hazard by" in m.events_in_words()
    assert m.log_likelihood_ > clvmodels.ParetoNBDModel().fit(cal).log_likelihood_ + 20
    f = _captured_objective(monkeypatch, cal, SeasonalParetoNBDModel(harmonics=0, dropout_harmonics=0, events=events,
                                                                     dropout_events=True), 6)
    theta = np.array([np.log(0.5), np.log(4.0), np.log(0.8), np.log(20.0), 0.2, 1.0])
    _, grad = f(theta)
    h = 1e-5
    num = np.array([(f(theta + h * e)[0] - f(theta - h * e)[0]) / (2 * h) for e in np.eye(6)])
    np.testing.assert_allclose(grad[[3, 5]], num[[3, 5]], rtol=1e-6, atol=1e-9)
    with pytest.raises(ParameterError, match="dropout_events=True"):
        SeasonalParetoNBDModel(dropout_events=True)
