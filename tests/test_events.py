"""Calendar events of your own in the report (issue 17, item 3's "table of period -> value"):
``-p events_path events.csv`` / ``--events``: a date column and a column per event; the backtest's
calendar candidates take them (with the events alone when the history is too short for a
season), the report says each event's effect, and hostile files are refused by name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import clvmodels
from clvmodels import pipeline, reporting
from clvmodels.exceptions import DataValidationError, ParameterError
from clvmodels.models.calendar import read_events

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "validation"))
from worlds import START, _simulate  # noqa: E402


def _holiday_world(n: int = 3000):
    """Purchases at 5x in the first week of every 13-week quarter; the events table marks those
    days up to week 130 (the forecast horizon included)."""
    log = _simulate(n, acquisition=(0, 20), span=60, multiplier=lambda t: np.where((t % 13) < 1, 5.0, 1.0),
                    mult_max=5.0, seed=11)
    days = [START + pd.Timedelta(days=7 * w + d) for w in range(0, 130, 13) for d in range(7)]
    return log, pd.DataFrame({"date": [str(d.date()) for d in days], "holiday": 1.0})


def test_report_learns_and_says_the_events(tmp_path):
    log, events = _holiday_world()
    path = tmp_path / "events.csv"
    events.rename(columns={"holiday": "holiday <b>week</b>"}).to_csv(path, index=False)
    cfg = reporting.validate_parameters({"events_path": str(path), "n_draws": 10, "horizon": 26})
    a = pipeline.run_analysis(cfg, clvmodels.load_transactions(log))
    table = a.selection.table
    # 60 weeks of log: the backtest's calibration is shorter than a year, so the events come alone;
    # they win it (measured: MSE 1.339 against MBG/NBD's 1.411, holdout total +2% against +16%)
    assert "BG/NBD + events" in table.index and "Pareto/NBD + events" in table.index
    assert a.selection.chosen in ("BG/NBD + events", "Pareto/NBD + events")
    assert table.loc[a.selection.chosen, "mse"] < table.loc[["BG/NBD", "MBG/NBD", "Pareto/NBD"], "mse"].min()
    assert abs(table.loc[a.selection.chosen, "aggregate_pct_error"]) < 5
    eff = a.model.calendar_effects_.loc["event: holiday <b>week</b>"]
    assert abs(eff["estimate"] - np.log(5.0)) < 4 * eff["std_error"] + 0.05
    text = reporting.model_paragraph(a)
    assert "each unit of 'holiday" in text and "<b>" not in text  # the user's column name is text
    assert "lists days up to " in text
    # the engine path: the same choice, fit and tiers
    eng = pipeline.run_analysis(reporting.validate_parameters(
        {"events_path": str(path), "n_draws": 10, "horizon": 26, "scoring": "engine",
         "output_dir": str(tmp_path / "engine")}), clvmodels.load_transactions(log))
    assert eng.selection.chosen == a.selection.chosen
    np.testing.assert_allclose(eng.model.params_, a.model.params_, rtol=1e-5)
    cols = ["customers", "expected_purchases", "total_clv"]
    pd.testing.assert_frame_equal(eng.tier_table[cols], a.tier_table[cols], rtol=1e-4, check_dtype=False)


def test_events_files_are_checked_by_name(tmp_path):
    ok = tmp_path / "ok.csv"
    pd.DataFrame({"date": ["2021-12-24", "2021-12-25"], "holiday": [1, 1], "promo": [0.2, 0.0]}).to_csv(ok, index=False)
    got = read_events(ok)
    assert list(got.columns) == ["holiday", "promo"] and str(got.index[0].date()) == "2021-12-24"
    cases = [
        (pd.DataFrame({"day": ["2021-12-24"], "holiday": [1]}), "no column 'date'"),
        (pd.DataFrame({"date": ["someday"], "holiday": [1]}), "must hold dates"),
        (pd.DataFrame({"date": ["2021-12-24"], "holiday": ["yes"]}), "must hold numbers"),
        (pd.DataFrame({"date": ["2021-12-24", "2021-12-24"], "holiday": [1, 1]}), "more than once"),
        (pd.DataFrame({"date": ["2021-12-24"], "holiday": [1e9]}), "between -1000 and 1000"),
        (pd.DataFrame({"date": ["2021-12-24"], **{f"e{i}": [1] for i in range(12)}}), "1 to 10"),
    ]
    for i, (frame, words) in enumerate(cases):
        path = tmp_path / f"bad{i}.csv"
        frame.to_csv(path, index=False)
        with pytest.raises(DataValidationError, match=words) as info:
            read_events(path)
        assert str(path) in str(info.value)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    with pytest.raises(DataValidationError, match="Could not read the events table"):
        read_events(broken)
    with pytest.raises(ParameterError, match="events_path"):
        reporting.validate_parameters({"events_path": str(tmp_path / "missing.csv")})


def test_cli_refuses_a_missing_events_file_in_one_line(tmp_path):
    exe = Path(sys.executable).with_name("clvmodels")
    run = subprocess.run([str(exe), "report", "--events", str(tmp_path / "nope.csv"), "--output", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert "Traceback" not in run.stderr + run.stdout
    assert "events_path" in run.stderr and "--events" in run.stderr


def test_events_without_a_backtest_are_said_to_be_unused(tmp_path):
    """Events enter the forecast through the backtest's calendar candidates; with
    ``calibration_end none`` the report said nothing of the table it was given."""
    log, events = _holiday_world(500)
    path = tmp_path / "events.csv"
    events.to_csv(path, index=False)
    with_events = pipeline.run_analysis(reporting.validate_parameters(
        {"events_path": str(path), "calibration_end": "none", "n_draws": 10, "horizon": 26}),
        clvmodels.load_transactions(log))
    assert "The events table given was not used" in reporting.model_paragraph(with_events)
    without = pipeline.run_analysis(reporting.validate_parameters(
        {"calibration_end": "none", "n_draws": 10, "horizon": 26}), clvmodels.load_transactions(log))
    assert "events table" not in reporting.model_paragraph(without)
