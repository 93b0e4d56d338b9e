"""BG/NBD with a calendar covariate (issue 17, item 3): seasonal purchase rates on an
operational clock."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import clvmodels
from clvmodels.exceptions import ParameterError
from clvmodels.models.seasonal import SeasonalBetaGeoModel

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "validation"))
from worlds import worlds  # noqa: E402


@pytest.fixture(scope="module")
def generated():
    return {w.name: w for w in worlds(3000) if w.name in ("seasonal", "BG/NBD")}


def _holdout(world):
    h = float(np.floor((pd.Timestamp(world.end) - pd.Timestamp(world.cut)).days / 7))
    end = str((pd.Timestamp(world.cut) + pd.Timedelta(days=7 * h)).date())
    cal = clvmodels.calibration_holdout(world.log, calibration_end=world.cut, observation_end=end, time_unit="W")
    return h, cal


def test_seasonal_log_forecast_and_the_season_found(generated):
    """Purchase rates swing +-60% over the year (1 + 0.6 sin(2 pi t / 52)): the calendar model
    finds a yearly wave of about that size and forecasts the holdout total within 10%, where
    plain BG/NBD misses by more than 10%."""
    world = generated["seasonal"]
    h, cal = _holdout(world)
    before = world.log[world.log["date"] <= world.cut]
    m = SeasonalBetaGeoModel(harmonics=2).fit(before, observation_end=world.cut)
    amplitude = float(np.hypot(m.params_["season sin 1"], m.params_["season cos 1"]))
    assert 0.4 < amplitude < 0.9  # ln-multiplier of the first harmonic (log(1.6) ~ 0.47 .. 0.69 at the peak)
    assert m.log_likelihood_ > m.plain_log_likelihood_ + 100
    pred = m.expected_purchases(h).reindex(cal.index)
    actual = cal["frequency_holdout"]
    assert abs(pred.sum() / actual.sum() - 1) < 0.10
    plain = clvmodels.BetaGeoModel().fit(cal).expected_purchases(cal, h)
    assert abs(plain.sum() / actual.sum() - 1) > 0.10
    assert ((pred - actual) ** 2).mean() < ((plain - actual) ** 2).mean()
    mult = m.multiplier(pd.date_range(world.cut, periods=52, freq="7D"))
    assert mult.max() / mult.min() > 2.0  # peak over trough: (1.6 / 0.4) in truth


def test_without_a_season_it_is_bg_nbd(generated):
    world = generated["BG/NBD"]
    h, cal = _holdout(world)
    before = world.log[world.log["date"] <= world.cut]
    m = SeasonalBetaGeoModel(harmonics=1).fit(before, observation_end=world.cut)
    assert np.all(np.abs(m.params_[["season sin 1", "season cos 1"]]) < 0.1)
    assert m.log_likelihood_ - m.plain_log_likelihood_ < 10  # two parameters buy little
    plain = clvmodels.BetaGeoModel().fit(cal).expected_purchases(cal, h)
    pred = m.expected_purchases(h).reindex(cal.index)
    assert abs(pred.sum() / plain.sum() - 1) < 0.03
    # no harmonics: the operational clock is the calendar and the fit is BG/NBD's
    flat = SeasonalBetaGeoModel(harmonics=0).fit(before, observation_end=world.cut)
    assert flat.operational_horizon(10) == pytest.approx(10.0)
    assert flat.log_likelihood_ == pytest.approx(flat.plain_log_likelihood_, rel=1e-6)
    assert flat.probability_alive_after(10).between(0, 1).all()


def test_bad_settings_are_named():
    with pytest.raises(ParameterError, match="harmonics must be a whole number from 0 to 6"):
        SeasonalBetaGeoModel(harmonics=9)
    with pytest.raises(ParameterError, match="time_unit must be"):
        SeasonalBetaGeoModel(time_unit="M")


def test_less_than_a_year_is_refused(generated):
    from clvmodels.exceptions import DataValidationError

    world = generated["seasonal"]
    short = world.log[world.log["date"] <= pd.Timestamp(world.log["date"].min()) + pd.Timedelta(days=200)]
    with pytest.raises(DataValidationError, match="needs at least 366 days of history"):
        SeasonalBetaGeoModel().fit(short)
    SeasonalBetaGeoModel(harmonics=0).fit(short)  # no season asked for: fine
