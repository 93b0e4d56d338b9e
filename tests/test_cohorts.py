"""Left-truncated logs (issue 14, item 5): detected from the data, said in the report, and the
models learned from the real cohort."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import clvmodels
from clvmodels import pipeline, reporting
from clvmodels.cohorts import MIN_COHORT, detect_left_truncation

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "validation"))
from worlds import worlds  # noqa: E402


@pytest.fixture(scope="module")
def truncated():
    return [w for w in worlds(3000) if w.name == "left-truncated"][0]


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


def test_report_learns_from_the_cohort_and_says_so(truncated, tmp_path):
    log = clvmodels.load_transactions(truncated.log[truncated.log["date"] <= pd.Timestamp(truncated.cut)])
    # an events table cannot be used on a cohort (its calendar describes everyone): said, not silently dropped
    pd.DataFrame({"date": ["2021-01-04"], "holiday": [1]}).to_csv(tmp_path / "events.csv", index=False)
    cfg = reporting.validate_parameters({"observation_end": truncated.cut, "n_draws": 20, "scoring": "memory",
                                         "events_path": str(tmp_path / "events.csv")})
    an = pipeline.run_analysis(cfg, log)
    assert any("events table was not used" in n for n in an.scorecard.info["notes"])
    trunc = an.left_truncation
    assert trunc.detected and an.model.n_customers_ == int(trunc.cohort) < len(an.rfm)
    assert len(an.forecast) == len(an.rfm)  # everyone is still scored
    assert "Customers from before the log" in reporting.executive_summary(an)
    off = pipeline.run_analysis(reporting.validate_parameters({**cfg.__dict__, "left_truncation": "no",
                                                               "events_path": ""}), log)
    assert not off.left_truncation.detected and off.model.n_customers_ == len(off.rfm)


def test_both_paths_choose_the_model_on_the_cohort():
    """Issue 14 item 5: the engine path's backtest, like the in-memory one, chooses the model on
    the customers first seen after the pile-up (their actual purchases in the holdout)."""
    truncated = [w for w in worlds(4000) if w.name == "left-truncated"][0]  # a cohort of >= MIN_COHORT in the backtest
    log = clvmodels.load_transactions(truncated.log[truncated.log["date"] <= pd.Timestamp(truncated.cut)])
    runs = {}
    for scoring in ("memory", "engine"):
        cfg = reporting.validate_parameters({"observation_end": truncated.cut, "n_draws": 10, "scoring": scoring})
        runs[scoring] = pipeline.run_analysis(cfg, log)
    memory, engine = runs["memory"], runs["engine"]
    assert engine.left_truncation.detected and engine.model.n_customers_ == memory.model.n_customers_
    cal = clvmodels.calibration_holdout(log, calibration_end=memory.calibration_end,
                                        observation_end=memory.observation_end, time_unit="W")
    cohort = cal[cal["T"] + cal["duration_holdout"] < memory.left_truncation.cutoff_T]
    assert MIN_COHORT <= len(cohort) < len(cal)
    for an in (memory, engine):
        table = an.selection.table
        assert table["actual_purchases"].iloc[0] == cohort["frequency_holdout"].sum()
    pd.testing.assert_frame_equal(memory.selection.table.drop(columns="fit_seconds"),
                                  engine.selection.table.drop(columns="fit_seconds"))
