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
