"""Fits at a boundary and on a ridge (issue 14, items 3 and 4): a limiting model is evaluated as
that limit and said in words, a flat ridge is accepted and flagged, nothing is NaN."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import clvmodels
from clvmodels import reporting
from clvmodels.datasets import simulate_transactions
from clvmodels.models import beta_geo
from clvmodels.selection import CANDIDATES

HORIZON = 52


@pytest.fixture(scope="module")
def no_dropout_rfm():
    # a / (a + b) = 1e-7: nobody leaves in practice, the log is an NBD
    log = simulate_transactions(3000, a=1e-4, b=1e3, seed=1).transactions
    return clvmodels.rfm_summary(log, time_unit="W")


@pytest.mark.parametrize("name", list(CANDIDATES))
def test_no_dropout_log_fits_as_the_limit(no_dropout_rfm, name):
    model = CANDIDATES[name]().fit(no_dropout_rfm)
    limits = model.fit_info_["limits"]
    assert limits and "No dropout is detectable" in limits[0]
    assert model.fit_info_["at_limit"]  # the dropout parameters sit at the limit, held fixed
    fc = clvmodels.forecast(model, clvmodels.GammaGammaModel().fit(no_dropout_rfm), no_dropout_rfm,
                            horizon=HORIZON)
    assert np.isfinite(fc.to_numpy()).all()
    assert fc["p_alive"].min() > 0.99
    # with no dropout the conditional expectation is the NBD's: (r + x) / (alpha + T) * t
    r, alpha = model.params_["r"], model.params_["alpha"]
    nbd = (r + no_dropout_rfm["frequency"]) / (alpha + no_dropout_rfm["T"]) * HORIZON
    np.testing.assert_allclose(fc["expected_purchases"], nbd, rtol=2e-3)
    assert any("No dropout" in n for n in reporting.identification_notes(model))


@pytest.mark.parametrize("cls", [clvmodels.BetaGeoModel, clvmodels.ModifiedBetaGeoModel])
def test_homogeneous_dropout_limit_is_finite_and_exact(sample_rfm, cls):
    """The apparel case: a = 3.7e5, b = 1.8e6 made every churn-by-horizon NaN. With a and b that
    large the dropout probability is p = a / (a + b) for everyone; the forecasts given alive are
    then ``(1 - (1 + p t/(alpha+T))^-(r+x)) / p`` and ``(1 + p t/(alpha+T))^-(r+x)``."""
    a, b = 3.7e5, 1.8e6
    m = cls.from_params({"r": 0.243, "alpha": 4.414, "a": a, "b": b}, time_unit="W")
    x, T = sample_rfm["frequency"].to_numpy(float), sample_rfm["T"].to_numpy(float)
    p = a / (a + b + x + cls._shift)
    c = p * HORIZON / (4.414 + T)
    expected = -np.expm1(-(0.243 + x) * np.log1p(c)) / p
    survival = np.exp(-(0.243 + x) * np.log1p(c))
    # the point mass is the limit; at a + b = 2.2e6 the Beta's spread still moves the smallest
    # survival probabilities in the fifth digit
    np.testing.assert_allclose(m._expected_if_alive(HORIZON, x, T), expected, rtol=1e-4)
    np.testing.assert_allclose(m._survival_if_alive(HORIZON, x, T), survival, rtol=1e-4)
    fc = clvmodels.forecast(m, clvmodels.GammaGammaModel.from_params({"p": 6.25, "q": 3.74, "v": 15.44}),
                            sample_rfm, horizon=HORIZON)
    assert np.isfinite(fc.to_numpy()).all()


@pytest.mark.parametrize("a", [0.8, 5.0, 40.0, 120.0])
def test_quadrature_matches_closed_form(sample_rfm, a, monkeypatch):
    """Where the closed forms evaluate, the Beta quadrature used for large a agrees with them."""
    m = clvmodels.BetaGeoModel.from_params({"r": 0.3, "alpha": 5.0, "a": a, "b": 3.0 * a})
    x, T = sample_rfm["frequency"].to_numpy(float), sample_rfm["T"].to_numpy(float)
    monkeypatch.setattr(beta_geo, "QUADRATURE_ABOVE_A", 1e12)
    closed = m._expected_if_alive(39.0, x, T), m._survival_if_alive(39.0, x, T)
    monkeypatch.setattr(beta_geo, "QUADRATURE_ABOVE_A", 0.0)
    quad = m._expected_if_alive(39.0, x, T), m._survival_if_alive(39.0, x, T)
    for c, q in zip(closed, quad, strict=True):
        np.testing.assert_allclose(q, c, rtol=1e-10)


@pytest.fixture(scope="module")
def ridge_cal(cdnow_master):
    # CDNOW master calibrated just after the acquisition quarter: Pareto/NBD's dropout parameters
    # run off together (s and beta to infinity, s/beta = 0.054 a week: exponential dropout). Until
    # December 2026 the fit stopped at s = 4.26 and accepted "a flat ridge": the tails' quadrature
    # was inexact out there (log-likelihood -32,272.72 there by it, -32,272.685 exactly)
    return clvmodels.calibration_holdout(cdnow_master, calibration_end="1997-04-07",
                                         observation_end="1997-06-30", time_unit="W")


def test_dropout_runs_to_its_exponential_limit_and_intervals_are_finite(ridge_cal):
    model = clvmodels.ParetoNBDModel().fit(ridge_cal)
    assert model.converged_ and not model.fit_info_["flat_ridge"]
    assert any("s and beta ran to infinity" in n for n in model.fit_info_["limits"])
    assert model.log_likelihood_ > -32272.5  # -32,272.39 at the limit; -32,272.685 where it stopped before
    assert {"s", "beta"} <= set(model.poorly_identified_)
    assert "r" not in model.poorly_identified_
    assert np.isfinite(model.summary["std_error"]).all()
    notes = reporting.identification_notes(model)
    assert any("churn figures rest on them" in n for n in notes)
    spend = clvmodels.GammaGammaModel().fit(ridge_cal)
    fc = clvmodels.forecast(model, spend, ridge_cal, horizon=12)
    tiers = clvmodels.assign_tiers(fc)
    ti = clvmodels.tier_intervals(model, spend, ridge_cal, tiers, horizon=12, n_draws=60)
    assert np.isfinite(ti.to_numpy()).all()
    assert "included" in ti.attrs["parameter_uncertainty"]
    ci = clvmodels.parameter_intervals(model, spend, ridge_cal, horizon=12, n_draws=20)
    assert np.isfinite(ci.to_numpy()).all()
    pi = clvmodels.forecast_intervals(model, spend, ridge_cal, horizon=12, n_sims=60)
    assert np.isfinite(pi.to_numpy()).all()


def test_flat_ridge_is_accepted_and_flagged(sample_cal, monkeypatch):
    """Every BFGS run stops for lost precision with a gradient below RIDGE_GTOL and no limiting
    model explains it (simulated: each run's result marked so, as a flat likelihood makes them):
    the point is accepted, flagged and said in words; the report's notes say it."""
    from clvmodels.models import _fitting

    run = _fitting.MaximumLikelihood._run_bfgs

    def stalls(fun, start, gtol, max_iter):
        res = run(fun, start, gtol, max_iter)
        res.success, res.status = False, 2
        res.message = "Desired error not necessarily achieved due to precision loss."
        res.jac = res.jac + 1e-4   # what BFGS last saw: above its tolerance
        return res

    monkeypatch.setattr(_fitting.MaximumLikelihood, "_run_bfgs", staticmethod(stalls))
    monkeypatch.setattr(_fitting.MaximumLikelihood, "_fit_at_limit", lambda *a, **k: None)
    monkeypatch.setattr(_fitting, "NELDER_MEAD_EVALUATIONS", 60)
    model = clvmodels.ParetoNBDModel().fit(sample_cal)
    assert model.converged_ and model.fit_info_["flat_ridge"]
    assert model.fit_info_["attempts"][-1].startswith("accepted on a flat ridge")
    assert model.fit_info_["gradient_norm"] < _fitting.RIDGE_GTOL
    assert model.params_["r"] == pytest.approx(0.553, abs=5e-3)
    assert any("flat ridge" in n for n in reporting.identification_notes(model))


def test_intervals_without_covariance_say_so(sample_rfm):
    """A model with no usable covariance gives intervals of the purchase process alone and says
    so, instead of failing (or NaN)."""
    m = clvmodels.BetaGeoModel.from_params({"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}, time_unit="W")
    spend = clvmodels.GammaGammaModel().fit(sample_rfm)
    fc = clvmodels.forecast(m, spend, sample_rfm, horizon=HORIZON)
    ti = clvmodels.tier_intervals(m, spend, sample_rfm, clvmodels.assign_tiers(fc), horizon=HORIZON, n_draws=20)
    assert np.isfinite(ti.to_numpy()).all()
    assert ti.attrs["parameter_uncertainty"].startswith("omitted: BetaGeoModel has no parameter covariance")


def test_selection_uses_the_tier_score(sample_cal):
    sel = clvmodels.select_model(sample_cal, tolerance=0.0)
    assert sel.table.loc[sel.chosen, "score"] == pytest.approx(sel.table["score"].min())
    assert "tier cells" in sel.reason
    assert isinstance(sel.table, pd.DataFrame) and {"mse", "tier_pct_error"} <= set(sel.table.columns)


def _identical(x, tx, T, n=50):
    out = pd.DataFrame({"frequency": [x] * n, "recency": [float(tx)] * n, "T": [float(T)] * n})
    out.attrs["time_unit"] = "W"
    return out


def _point_mass_bgnbd(x, tx, T):
    """BG/NBD without heterogeneity (every customer has rate lam and dropout probability p),
    fitted directly: the model identical histories must run to, whatever the optimiser's path."""
    from scipy import optimize

    def nll(z):
        lam, p = np.exp(z[0]), 1.0 / (1.0 + np.exp(-z[1]))
        return -np.log((1 - p) ** x * lam**x * np.exp(-lam * T) + p * (1 - p) ** (x - 1) * lam**x * np.exp(-lam * tx))

    res = optimize.minimize(nll, [0.0, 0.0], method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-14})
    return float(np.exp(res.x[0])), float(1.0 / (1.0 + np.exp(-res.x[1])))


@pytest.mark.parametrize("history", [(2, 5, 10), (3, 9, 9.5), (10, 50, 52)])
def test_identical_histories_fit_the_point_mass_model(history):
    """Issue 29: the limit identical histories run to is the point-mass model; the fit finds it
    (rate and dropout probability) on any CPU, whether its optimiser path converged near the
    limit or lost precision on the way there."""
    lam, p = _point_mass_bgnbd(*history)
    model = clvmodels.BetaGeoModel().fit(_identical(*history))
    r, alpha, a, b = model.params_
    assert model.fit_info_["at_limit"]
    assert r / alpha == pytest.approx(lam, rel=1e-4)
    assert a / (a + b) == pytest.approx(p, rel=1e-3, abs=1e-6)


def test_a_fit_that_lost_precision_near_the_limit_is_placed_at_it():
    """The point one AMD EPYC machine's BFGS stopped at (precision loss, gradient norm 0.0046, issue
    29): the criterion finds the limiting model from there, so the outcome does not depend on
    where rounding stopped the optimiser."""
    from scipy import optimize

    from clvmodels.models._fitting import _guarded

    x, tx, T = np.full(50, 2.0), np.full(50, 5.0), np.full(50, 10.0)
    d = beta_geo._prepare(x, tx, T, weights=None)
    safe = _guarded(lambda th: beta_geo._objective(th, d, 0.0, 0))
    stuck = np.log([2.161e9, 6.788e9, 6.164e4, 1.035e5])
    value, grad = safe(stuck)
    best = optimize.OptimizeResult(x=stuck, fun=value, jac=grad, nit=50, success=False, status=2)
    found = clvmodels.BetaGeoModel()._fit_at_limit(safe, best, 1e-9)
    assert found is not None
    point, fixed, note = found
    assert all(fixed) and "limiting model" in note
    r, alpha, a, b = np.exp(point.x)
    lam, p = _point_mass_bgnbd(2, 5, 10)
    assert r / alpha == pytest.approx(lam, rel=1e-4)
    assert a / (a + b) == pytest.approx(p, rel=1e-3)


def test_an_interior_optimum_is_not_taken_for_a_limit(sample_cal):
    """The criterion refuses a limit where the data identify the parameters: from CDNOW's
    estimates pushed halfway to a limit, no face of the limit is as likely as the optimum."""
    from scipy import optimize

    from clvmodels.models._fitting import _guarded

    d = beta_geo._prepare(sample_cal["frequency"].to_numpy(float), sample_cal["recency"].to_numpy(float),
                          sample_cal["T"].to_numpy(float), weights=None)
    safe = _guarded(lambda th: beta_geo._objective(th, d, 0.0, 0))
    fitted = clvmodels.BetaGeoModel().fit(sample_cal)
    optimum = np.log(fitted.params_.to_numpy())
    value, grad = safe(optimum)
    near = optimum + np.array([10.0, 10.0, 0.0, 0.0])  # r and alpha 2e4 times the estimates
    best = optimize.OptimizeResult(x=near, fun=value, jac=grad, nit=50, success=False, status=2)
    assert clvmodels.BetaGeoModel()._fit_at_limit(safe, best, 1e-9) is None
