from __future__ import annotations

import pandas as pd
import pytest

import clvmodels
from clvmodels import BetaGeoModel, ModifiedBetaGeoModel, ParetoNBDModel
from clvmodels.exceptions import DataValidationError, ParameterError
from clvmodels.selection import select_model


@pytest.fixture(scope="module")
def master_selection(master_cal):
    return select_model(master_cal)


def test_cdnow_master_choice_beats_lifetimes_best(master_selection, master_cal):
    """Issue 8: the chosen model's 39-week holdout MAE is no worse than the best of lifetimes'
    BG/NBD, MBG/NBD and Pareto/NBD on the same split (0.794, lifetimes' Pareto/NBD)."""
    from lifetimes import BetaGeoFitter, ModifiedBetaGeoFitter, ParetoNBDFitter

    sel = master_selection
    args = (master_cal["frequency"], master_cal["recency"], master_cal["T"])
    theirs = []
    for cls in (BetaGeoFitter, ModifiedBetaGeoFitter, ParetoNBDFitter):
        f = cls().fit(*args)
        pred = f.conditional_expected_number_of_purchases_up_to_time(39, *args)
        theirs.append((pred - master_cal["frequency_holdout"]).abs().mean())
    chosen_mae = sel.table.loc[sel.chosen, "mae"]
    # lifetimes' fitters sometimes stop short of their optimum, which moves their MAE in the
    # fourth digit either way: compare to a thousandth, and to the figure (0.794)
    assert chosen_mae <= min(theirs) + 1e-3
    assert round(chosen_mae, 3) <= 0.794
    assert sel.chosen == "Pareto/NBD"
    assert sel.table["chosen"].sum() == 1 and bool(sel.table.loc[sel.chosen, "chosen"])
    assert set(sel.table.index) == {"BG/NBD", "MBG/NBD", "Pareto/NBD"}
    assert "Pareto/NBD was chosen" in sel.reason and "Rule:" in sel.reason
    assert isinstance(sel.calibration_model, ParetoNBDModel)


def test_refit_and_rule(master_selection, cdnow_master):
    rfm = clvmodels.rfm_summary(cdnow_master, time_unit="W", observation_end="1998-06-30")
    m = master_selection.refit(rfm)
    assert isinstance(m, ParetoNBDModel) and m.n_customers_ == 23570


def test_tie_goes_to_smaller_aggregate_error(sample_cal):
    # with a 100% tolerance every model ties, and the smallest absolute aggregate error wins
    sel = select_model(sample_cal, tolerance=1.0)
    best = sel.table["aggregate_pct_error"].abs().idxmin()
    assert sel.chosen == best


def test_only_given_candidates_and_bad_input(sample_cal, sample_rfm):
    sel = select_model(sample_cal, candidates={"BG/NBD": BetaGeoModel, "MBG/NBD": ModifiedBetaGeoModel})
    assert set(sel.table.index) == {"BG/NBD", "MBG/NBD"}
    with pytest.raises(DataValidationError, match="calibration_holdout"):
        select_model(sample_rfm)
    with pytest.raises(ParameterError, match="candidates"):
        select_model(sample_cal, candidates={"x": int})
    quiet = sample_cal.assign(frequency_holdout=0)
    with pytest.raises(DataValidationError, match="Nobody bought in the holdout"):
        select_model(quiet)
    assert isinstance(sel.table, pd.DataFrame)
