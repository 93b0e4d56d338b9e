"""Issue 19, item 2: the embedded DuckDB works within a stated memory budget (a share of the
machine by default, settable by parameter, CLI flag and environment), spilling to a private
temporary folder beyond it; bad budgets are one clear line."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from clvmodels import reporting
from clvmodels.engine import duckdb as _engine
from clvmodels.exceptions import ParameterError


def _setting(name: str) -> str:
    return _engine.duckdb_connection().raw_sql(f"SELECT current_setting('{name}')").fetchone()[0]


@pytest.fixture(autouse=True)
def _default_budget():
    yield
    _engine.set_engine_memory(None)


def test_default_is_a_share_of_the_machine_and_spills_to_a_private_folder():
    size = _engine.set_engine_memory(None)
    assert size == int(_engine._machine_memory() * _engine.DEFAULT_MEMORY_SHARE)
    shown = _setting("memory_limit")  # e.g. "5.8 GiB"
    assert abs(float(shown.split()[0]) * 1024 ** {"GiB": 3, "MiB": 2}[shown.split()[1]] - size) / size < 0.02
    assert "clvmodels-duckdb-spill-" in _setting("temp_directory")


@pytest.mark.parametrize(("given", "expected"), [("3GB", 3e9), ("512MiB", 512 * 1024**2), ("10%", None),
                                                 (str(2 * 1024**3), 2 * 1024**3)])
def test_budgets_in_every_spelling(given, expected):
    size = _engine.set_engine_memory(given)
    want = int(_engine._machine_memory() * 0.10) if expected is None else int(expected)
    assert size == want
    assert _engine.engine_memory() == want


@pytest.mark.parametrize("bad", ["abc", "4 apples", "0.1GB", "200%", "-1GB", "0%", "1e9GB"])
def test_bad_budgets_are_named(bad):
    with pytest.raises(ParameterError, match="Parameter 'engine_memory' must be"):
        _engine.set_engine_memory(bad)
    with pytest.raises(ParameterError, match="Parameter 'engine_memory' must be"):
        reporting.validate_parameters({"engine_memory": bad})


def test_environment_variable_sets_the_default(monkeypatch):
    monkeypatch.setenv(_engine.MEMORY_ENV, "1GB")
    assert _engine.set_engine_memory(None) == 10**9
    monkeypatch.setenv(_engine.MEMORY_ENV, "lots")
    with pytest.raises(ParameterError, match=f"Parameter '{_engine.MEMORY_ENV}' must be"):
        _engine.engine_memory()


def test_a_report_runs_within_its_budget_and_the_cli_flag_is_checked(tmp_path, cdnow_sample):
    """A budget below what the work would take: DuckDB spills instead of failing, and the
    report's numbers are those of an unlimited run."""
    import clvmodels
    from clvmodels import pipeline

    log = clvmodels.load_transactions(cdnow_sample)
    small = pipeline.run_analysis(reporting.validate_parameters({"engine_memory": "300MB", "n_draws": 10,
                                                                 "scoring": "engine"}), log)
    assert _setting("memory_limit").startswith("286")  # 300 MB in MiB
    free = pipeline.run_analysis(reporting.validate_parameters({"n_draws": 10, "scoring": "engine"}), log)
    cols = ["customers", "expected_purchases", "total_clv"]
    # the same numbers to the fits' precision: DuckDB's parallel sums may differ in the last bits between
    # budgets, and the fits started from them stop within their tolerance (measured: 4e-9 apart in one of
    # six fresh-clone runs, which failed the 1e-9 this test had)
    pd.testing.assert_frame_equal(small.tier_table[cols], free.tier_table[cols], rtol=1e-7)
    proc = subprocess.run([sys.executable, "-m", "clvmodels.cli", "report", "--dataset", "cdnow-sample",
                           "--engine-memory", "plenty", "--output", str(tmp_path / "out"), "--no-progress"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "Parameter 'engine_memory' must be a memory size such as '4GB'" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "clvmodels.cli", "score", "--input", str(tmp_path / "none.csv"),
                           "--engine-memory", "1000%", "--output", str(tmp_path / "scores")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "Parameter 'engine_memory' must be" in proc.stderr


def test_a_process_ended_by_a_signal_leaves_no_spill_folder(tmp_path):
    """Issue 29: `timeout` ends a run with SIGTERM, which skips the removal at exit; the spill
    folder is only named, never created, until DuckDB spills - so nothing is left behind."""
    import os
    import signal
    import subprocess
    import sys

    env = {**os.environ, "TMPDIR": str(tmp_path)}
    code = ("import time, clvmodels.engine as e; e.duckdb_connection().raw_sql('select 1'); "
            "print('ready', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("clvmodels-duckdb-spill-")]
