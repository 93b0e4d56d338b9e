"""Residual lifetime value on every purchase model (issue 26's contract, issue 28 item 2): the
discounted expected residual purchases (DERT, Fader, Hardie & Lee 2005, "RFM and CLV", JMR
42(4), eq. 2) from each model's own expected purchases, checked against the closed forms the
papers give, and carried into the forecast, the what-if and the acquisition budget."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import clvmodels
from clvmodels.datasets import load_cdnow
from clvmodels.models._purchase import LIFETIME_YEARS, PurchaseModel
from clvmodels.models.registry import models_where

DELTA = np.log(1.15) * 7 / 365.25  # 15% a year, continuously compounded per week (FHL 2005 use 15%)


@pytest.fixture(scope="module")
def rfm():
    return clvmodels.rfm_summary(load_cdnow("sample"), time_unit="W", observation_end="1997-09-30", regularity=True)


def test_generic_dert_is_the_pareto_nbd_closed_form(rfm):
    """The quadrature over the model's own E[X(t)] gives FHL 2005 eq. 2 (through U(s, s; .)) to
    the precision of the 100-year cut (e^-14 of the weight at 15% a year)."""
    m = clvmodels.ParetoNBDModel().fit(rfm)
    closed = m.expected_discounted_residual_purchases(rfm, DELTA)
    generic = PurchaseModel.expected_discounted_residual_purchases(m, rfm, DELTA)
    np.testing.assert_allclose(generic, closed, rtol=1e-5)
    assert float(closed.max()) > 10  # frequent buyers: many purchases still to come


def test_mbg_cnbd_closed_form_is_mbg_nbd_at_k_1(rfm):
    """MBG/CNBD-k's closed form (per-rate Laplace transforms) at k = 1 is MBG/NBD, whose DERT the
    generic quadrature gives from its 2F1 forecasts."""
    mb = clvmodels.ModifiedBetaGeoModel().fit(rfm)
    one = clvmodels.MBGCNBDModel.from_params(dict(mb.params_), time_unit="W", k=1)
    assert one.k_ == 1
    np.testing.assert_allclose(one.expected_discounted_residual_purchases(rfm, DELTA),
                               mb.expected_discounted_residual_purchases(rfm, DELTA), rtol=1e-4)
    x, T = rfm["frequency"].to_numpy(float), rfm["T"].to_numpy(float)
    life_one, life_mb = one._lifetime_if_alive(x, T, DELTA, 0.7), mb._lifetime_if_alive(x, T, DELTA, 0.7)
    np.testing.assert_allclose(life_one["active"], life_mb["active"], rtol=1e-4)


def test_no_dropout_dert_is_rate_over_delta():
    """Without dropout a customer buys at the posterior rate (r+x)/(alpha+T) forever: DERT is
    that rate times int_0^M e^(-delta t) dt."""
    m = clvmodels.ParetoNBDModel.from_params({"r": 0.5, "alpha": 10.0, "s": 1e-9, "beta": 1e6}, time_unit="W")
    rows = pd.DataFrame({"frequency": [0, 3, 10], "recency": [0.0, 20.0, 30.0], "T": [30.0, 30.0, 30.0]})
    rows.attrs["time_unit"] = "W"
    end = LIFETIME_YEARS * 365.25 / 7
    expected = (0.5 + rows["frequency"]) / (10 + 30) * -np.expm1(-DELTA * end) / DELTA
    got = PurchaseModel.expected_discounted_residual_purchases(m, rows, DELTA)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize("name", list(models_where(kind="purchase", inputs="rfm")) + ["MBG/CNBD-k"])
def test_lifetime_in_every_forecast(rfm, name):
    """Every purchase model's forecast carries the lifetime: at least the horizon's value, the
    DERT of the model's own method, and a retention what-if worth more over the lifetime."""
    cls = models_where(kind="purchase")[name]
    m = cls().fit(rfm)
    gg = clvmodels.GammaGammaModel().fit(rfm)
    fc = clvmodels.forecast(m, gg, rfm, horizon=52, discount_rate=0.15, margin=0.3)
    assert np.isfinite(fc[["lifetime_purchases", "lifetime_clv"]].to_numpy()).all()
    assert (fc["lifetime_clv"] >= fc["clv"] - 1e-9).all()
    dert = m.expected_discounted_residual_purchases(rfm, DELTA)
    np.testing.assert_allclose(fc["lifetime_purchases"], dert, rtol=1e-4)
    np.testing.assert_allclose(fc["lifetime_clv"], 0.3 * fc["expected_spend"] * dert, rtol=1e-4)
    tiers = clvmodels.assign_tiers(fc)
    wi = clvmodels.retention_what_if(m, gg, rfm, tiers, horizon=52, discount_rate=0.15, margin=0.3)
    np.testing.assert_allclose(wi.loc["Total", "lifetime_clv"], fc["lifetime_clv"].sum(), rtol=1e-6)
    assert wi.loc["Total", "lifetime_change"] > wi.loc["Total", "change"] > 0
    budget = clvmodels.acquisition_budget(m, gg, horizon=52, discount_rate=0.15, margin=0.3)
    assert budget["lifetime_budget"] > budget["budget"] > 0
    table = clvmodels.tier_summary(fc, tiers)
    assert table.loc["Total", "total_lifetime_clv"] == pytest.approx(fc["lifetime_clv"].sum())
