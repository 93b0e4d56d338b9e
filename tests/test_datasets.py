from __future__ import annotations

import numpy as np
import pytest

import clvmodels
from clvmodels import ParameterError
from clvmodels.datasets import load_cdnow, simulate_transactions


def test_cdnow_shapes(cdnow_master, cdnow_sample):
    assert len(cdnow_master) == 69_659
    assert cdnow_master["customer_id"].nunique() == 23_570
    assert len(cdnow_sample) == 6_919
    assert cdnow_sample["customer_id"].nunique() == 2_357
    assert str(cdnow_master["date"].min().date()) == "1997-01-01"
    assert str(cdnow_master["date"].max().date()) == "1998-06-30"
    assert list(cdnow_sample.columns) == ["customer_id", "date", "amount", "quantity"]


def test_cdnow_unknown_name():
    with pytest.raises(ParameterError, match="Unknown which 'full'"):
        load_cdnow("full")


def test_simulation_is_reproducible_and_consistent():
    a = simulate_transactions(2_000, seed=3)
    b = simulate_transactions(2_000, seed=3)
    assert a.transactions.equals(b.transactions)
    tx, truth = a
    assert tx["customer_id"].nunique() == 2_000
    assert (tx["amount"] > 0).all()
    # every customer's first purchase is their first row
    firsts = tx.groupby("customer_id")["date"].min()
    assert (firsts.to_numpy() == truth["first_purchase"].to_numpy()).all()
    counts = tx.groupby("customer_id").size() - 1
    assert (counts.to_numpy() == truth["repeat_purchases"].to_numpy()).all()
    assert tx["date"].max() <= np.datetime64("2021-07-01")


def test_simulation_matches_model_moments():
    r, alpha = 0.5, 5.0
    tx, truth = simulate_transactions(100_000, r=r, alpha=alpha, seed=1)
    assert truth["purchase_rate"].mean() == pytest.approx(r / alpha, rel=0.03)
    assert truth["dropout_probability"].mean() == pytest.approx(0.793 / (0.793 + 2.426), rel=0.02)
    assert truth["mean_spend"].mean() == pytest.approx(6.25 * 15.44 / (3.74 - 1), rel=0.03)
    # Expected repeat purchases of a new customer over t (FHL 2005, eq. 9) with exact times
    exact = simulate_transactions(100_000, r=r, alpha=alpha, acquisition_period=0.0, exact_times=True, seed=2)
    from scipy.special import hyp2f1

    a, b, t = 0.793, 2.426, 78.0
    expected = (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, t / (alpha + t)))
    assert exact.truth["repeat_purchases"].mean() == pytest.approx(expected, rel=0.03)


def test_simulation_rfm_roundtrip():
    tx, truth = simulate_transactions(500, seed=5, time_unit="D", period=365, acquisition_period=30)
    rfm = clvmodels.rfm_summary(tx, time_unit="D", observation_end=truth.attrs["observation_end"])
    assert len(rfm) == 500
    assert (rfm["frequency"] <= truth["repeat_purchases"]).all()


def test_simulation_bad_parameters():
    with pytest.raises(ParameterError, match="r must be > 0"):
        simulate_transactions(10, r=-1.0)
    with pytest.raises(ParameterError, match="n_customers must be a whole number"):
        simulate_transactions(2.5)


def test_bundled_data_ship_inside_clvmodels():
    """The CDNOW and donations files come from clvmodels itself (lifetimes is only a test
    reference) and equal the copies lifetimes ships."""
    import gzip
    from importlib import resources

    from clvmodels.datasets import cdnow_path, load_donations

    for which, name in (("master", "CDNOW_master.txt"), ("sample", "CDNOW_sample.txt")):
        ours = cdnow_path(which)
        assert "clvmodels" in str(ours) and ours.is_file()
        theirs = resources.files("lifetimes") / "datasets" / name
        assert gzip.decompress(ours.read_bytes()) == theirs.read_bytes()
    d = load_donations()
    assert d["weights"].sum() == 11104 and list(d.columns[:3]) == ["frequency", "recency", "n_periods"]
