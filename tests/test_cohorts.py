"""Left-truncated logs (issue 14, item 5): detected from the data, said in the report, and the
models learned from the real cohort."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import clvmodels
from clvmodels import cohorts, pipeline, reporting
from clvmodels.cohorts import MIN_COHORT, detect_left_truncation

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "validation"))
from worlds import worlds  # noqa: E402


@pytest.fixture(scope="module")
def truncated():
    return [w for w in worlds(3000) if w.name == "left-truncated"][0]


@pytest.fixture(scope="module")
def big():
    """A cohort of at least MIN_COHORT in the backtest."""
    return [w for w in worlds(4000) if w.name == "left-truncated"][0]


def test_closed_cohort_is_not_truncated(master_cal):
    # CDNOW: every customer first bought in the first quarter of 1997, nobody arrives later
    found = detect_left_truncation(master_cal["T"].to_numpy(), time_unit="W")
    assert not found.detected and "closed cohort" in found.describe()


def test_steady_arrivals_are_not_truncated():
    rng = np.random.default_rng(0)
    T = rng.uniform(0, 100, 5000)  # first purchases spread evenly over 100 weeks
    assert not detect_left_truncation(T, time_unit="W").detected
    # the same in days, and with weights (compressed rows)
    assert not detect_left_truncation(T * 7, np.ones_like(T) * 2, time_unit="D").detected


def test_pile_up_at_the_start_is_detected(truncated):
    log = truncated.log[truncated.log["date"] <= pd.Timestamp(truncated.cut)]
    rfm = clvmodels.rfm_summary(log, time_unit="W", observation_end=truncated.cut)
    found = detect_left_truncation(rfm["T"].to_numpy(), time_unit="W")
    assert found.detected and found.usable_cohort and found.cohort >= MIN_COHORT
    assert 0.3 * len(rfm) < found.pre_existing < 0.9 * len(rfm)
    assert "left-truncated" in found.describe()
    assert found.cohort == (rfm["T"] < found.cutoff_T).sum()


def test_report_says_what_it_did_with_left_truncation(truncated, tmp_path):
    """Issue 27 item 4: learning from the cohort alone is a candidate; where the backtest holds too
    few of the cohort to judge it, the models learn from everyone and the report says why."""
    log = clvmodels.load_transactions(truncated.log[truncated.log["date"] <= pd.Timestamp(truncated.cut)])
    # an events table cannot be used on a cohort (its calendar describes everyone): said, not silently dropped
    pd.DataFrame({"date": ["2021-01-04"], "holiday": [1]}).to_csv(tmp_path / "events.csv", index=False)
    cfg = reporting.validate_parameters({"observation_end": truncated.cut, "n_draws": 20, "scoring": "memory",
                                         "events_path": str(tmp_path / "events.csv")})
    an = pipeline.run_analysis(cfg, log)
    assert any("events table was not used" in n for n in an.scorecard.info["notes"])
    trunc = an.left_truncation
    assert trunc.detected and trunc.usable_cohort and not trunc.fits_cohort
    assert "too few of the cohort" in trunc.describe() and "was not taken" in trunc.describe()
    assert an.model.n_customers_ == len(an.rfm) == len(an.forecast)
    summary = reporting.executive_summary(an)
    assert "Customers from before the log" in summary and "not reliable here" in summary
    off = pipeline.run_analysis(reporting.validate_parameters({**cfg.__dict__, "left_truncation": "no",
                                                               "events_path": ""}), log)
    assert not off.left_truncation.detected and off.model.n_customers_ == len(off.rfm)


def _judged(world, monkeypatch, winner: str, scoring: str):
    """The report on ``world`` with the cohort judged at every origin and the verdict ``winner``."""
    log = clvmodels.load_transactions(world.log[world.log["date"] <= pd.Timestamp(world.cut)])
    monkeypatch.setattr(cohorts, "COMPARABLE_COHORT", 0.0)  # judge it at every origin
    seen = {}
    real = cohorts.compare_forecasts

    def judged(windows, forecasts, tier_shares=None):
        scores = real(windows, forecasts, tier_shares)
        seen["scores"] = scores.copy()
        scores["score"] = [1.0 if name == winner else 2.0 for name in scores.index]
        return scores

    monkeypatch.setattr(cohorts, "compare_forecasts", judged)
    cfg = reporting.validate_parameters({"observation_end": world.cut, "n_draws": 10, "scoring": scoring})
    return log, pipeline.run_analysis(cfg, log), seen["scores"]


@pytest.mark.parametrize("winner", ["everyone", "cohort"])
def test_the_cohort_is_a_candidate_the_backtest_judges(big, monkeypatch, winner):
    """Issue 27 item 4: learning from the cohort alone enters the backtest against learning from
    everyone, both forecasting every customer, and the report follows its verdict (in words)."""
    log, an, scores = _judged(big, monkeypatch, winner, "memory")
    trunc = an.left_truncation
    assert set(scores.index) == {"cohort", "everyone"}
    assert (scores["origins"] >= 1).all() and np.isfinite(scores["tier_pct"]).all()
    assert trunc.detected and trunc.usable_cohort and trunc.fits_cohort == (winner == "cohort")
    assert "learning from the cohort alone missed the tiers by" in trunc.describe()
    cal = clvmodels.calibration_holdout(log, calibration_end=an.calibration_end,
                                        observation_end=an.observation_end, time_unit="W")
    if winner == "everyone":
        assert an.model.n_customers_ == len(an.rfm)
        assert "was not taken" in trunc.describe() and "not reliable here: the models learn from every customer" in reporting.executive_summary(an)
        # the choice shown is the one made on everyone: its holdout purchases are everyone's
        assert an.selection.table["actual_purchases"].iloc[0] == cal["frequency_holdout"].sum()
    else:
        assert an.model.n_customers_ == int(trunc.cohort) < len(an.rfm)


def test_both_paths_choose_the_model_on_the_cohort(big, monkeypatch):
    """Issue 14 item 5: where the cohort wins, the engine path's backtest, like the in-memory one,
    chooses the model on the customers first seen after the pile-up (their holdout purchases)."""
    runs = {scoring: _judged(big, monkeypatch, "cohort", scoring)[1] for scoring in ("memory", "engine")}
    memory, engine = runs["memory"], runs["engine"]
    assert engine.left_truncation == memory.left_truncation and engine.left_truncation.fits_cohort
    assert engine.model.n_customers_ == memory.model.n_customers_
    log = clvmodels.load_transactions(big.log[big.log["date"] <= pd.Timestamp(big.cut)])
    cal = clvmodels.calibration_holdout(log, calibration_end=memory.calibration_end,
                                        observation_end=memory.observation_end, time_unit="W")
    cohort = cal[cal["T"] + cal["duration_holdout"] < memory.left_truncation.cutoff_T]
    assert MIN_COHORT <= len(cohort) < len(cal)
    for an in (memory, engine):
        assert an.selection.table["actual_purchases"].iloc[0] == cohort["frequency_holdout"].sum()
    pd.testing.assert_frame_equal(memory.selection.table.drop(columns="fit_seconds"),
                                  engine.selection.table.drop(columns="fit_seconds"))


def test_a_young_cohort_is_not_judged(big):
    """A backtest whose cohort has under COMPARABLE_COHORT of its age now cannot judge it: the
    models learn from everyone and the report says why (the validation worlds at week 78)."""
    log = clvmodels.load_transactions(big.log[big.log["date"] <= pd.Timestamp(big.cut)])
    an = pipeline.run_analysis(reporting.validate_parameters(
        {"observation_end": big.cut, "n_draws": 10, "scoring": "memory"}), log)
    trunc = an.left_truncation
    assert trunc.usable_cohort and not trunc.fits_cohort and "could not judge" in trunc.describe()
    assert f"at least {cohorts.COMPARABLE_COHORT:.0%} are needed" in trunc.describe()
    assert an.model.n_customers_ == len(an.rfm)
