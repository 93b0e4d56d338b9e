"""Shared fixtures: the CDNOW logs and their RFM tables, computed once per test session."""

from __future__ import annotations

import os

import pandas as pd
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

import clvmodels  # noqa: E402
from clvmodels.datasets import load_cdnow  # noqa: E402

CAL_END = "1997-09-30"
OBS_END = "1998-06-30"


@pytest.fixture(scope="session")
def cdnow_sample() -> pd.DataFrame:
    return load_cdnow("sample")


@pytest.fixture(scope="session")
def cdnow_master() -> pd.DataFrame:
    return load_cdnow("master")


@pytest.fixture(scope="session")
def sample_cal(cdnow_sample) -> pd.DataFrame:
    """The papers' table: CDNOW sample, 39-week calibration, 39-week holdout, in weeks."""
    return clvmodels.calibration_holdout(
        cdnow_sample, calibration_end=CAL_END, observation_end=OBS_END, time_unit="W"
    )


@pytest.fixture(scope="session")
def master_cal(cdnow_master) -> pd.DataFrame:
    return clvmodels.calibration_holdout(
        cdnow_master, calibration_end=CAL_END, observation_end=OBS_END, time_unit="W"
    )


@pytest.fixture(scope="session")
def sample_rfm(cdnow_sample) -> pd.DataFrame:
    return clvmodels.rfm_summary(cdnow_sample, time_unit="W", observation_end=CAL_END)


def interrupt_report(cmd: list[str], out, cwd, pause: float) -> tuple[int, str]:
    """Start a ``clvmodels report`` command writing into ``out``, send it SIGINT ``pause`` seconds
    after its executed notebook appears in the hidden run folder, and return its exit code and
    standard error. SIGINT as in a terminal: a suite started in the background (``make test &``)
    ignores it, and an ignored signal stays ignored in the children it starts."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob(".*.tmp/report.ipynb")):
        time.sleep(0.1)
    time.sleep(pause)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def assert_interrupted(code: int, err: str, out) -> None:
    """An interrupted report: one short line, exit 1 or 130, nothing published or left behind."""
    assert code in (1, 130), err
    assert "Traceback" not in err and "interrupted" in err
    assert not list(out.glob(".*.tmp"))
    assert not [p for p in out.iterdir() if (p / "report.html").exists()]
