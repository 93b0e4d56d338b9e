from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifetimes.utils import calibration_and_holdout_data, summary_data_from_transaction_data

import clvmodels
from clvmodels import DataValidationError, ParameterError, calibration_holdout, rfm_summary

from .conftest import CAL_END, OBS_END


def _assert_matches_lifetimes(ours: pd.DataFrame, theirs: pd.DataFrame, suffix: str = "") -> None:
    theirs = theirs.sort_index()
    assert ours.index.tolist() == theirs.index.tolist()
    for col in ("frequency",):
        np.testing.assert_array_equal(ours[col].to_numpy(), theirs[col + suffix].to_numpy())
    for col in ("recency", "T", "monetary_value"):
        np.testing.assert_allclose(ours[col].to_numpy(), theirs[col + suffix].to_numpy(), rtol=0, atol=1e-9)


@pytest.mark.parametrize("unit,multiplier", [("D", 1), ("W", 7)])
def test_rfm_equals_lifetimes_on_cdnow_master(cdnow_master, unit, multiplier):
    ours = rfm_summary(cdnow_master, time_unit=unit, observation_end=OBS_END)
    theirs = summary_data_from_transaction_data(
        cdnow_master, "customer_id", "date", monetary_value_col="amount",
        observation_period_end=OBS_END, freq="D", freq_multiplier=multiplier,
    )
    assert len(ours) == 23_570
    _assert_matches_lifetimes(ours, theirs)
    assert ours.attrs["time_unit"] == unit


@pytest.mark.parametrize("unit,multiplier", [("D", 1), ("W", 7)])
def test_calibration_holdout_equals_lifetimes_on_cdnow_master(cdnow_master, master_cal, unit, multiplier):
    ours = master_cal if unit == "W" else calibration_holdout(
        cdnow_master, calibration_end=CAL_END, observation_end=OBS_END, time_unit=unit
    )
    theirs = calibration_and_holdout_data(
        cdnow_master, "customer_id", "date", calibration_period_end=CAL_END,
        observation_period_end=OBS_END, freq="D", freq_multiplier=multiplier,
        monetary_value_col="amount",
    ).sort_index()
    _assert_matches_lifetimes(ours, theirs, suffix="_cal")
    np.testing.assert_array_equal(ours["frequency_holdout"], theirs["frequency_holdout"])
    # ours is per purchase day (as the calibration value); lifetimes' per raw transaction: they
    # agree for customers with at most one transaction per holdout day and differ otherwise
    per_day = ours["revenue_holdout"] / ours["frequency_holdout"].where(ours["frequency_holdout"] > 0)
    np.testing.assert_allclose(ours["monetary_value_holdout"], per_day.fillna(0.0), atol=1e-9, rtol=0)
    hold = cdnow_master[(cdnow_master["date"] > CAL_END) & (cdnow_master["date"] <= OBS_END)]
    one_a_day = hold.groupby("customer_id")["date"].agg(lambda d: d.is_unique)
    same = ours.index.isin(one_a_day[one_a_day].index) | (ours["frequency_holdout"] == 0)
    np.testing.assert_allclose(ours.loc[same, "monetary_value_holdout"], theirs.loc[same, "monetary_value_holdout"],
                               atol=1e-9, rtol=0)
    assert (~same).sum() > 0
    np.testing.assert_allclose(ours["duration_holdout"], theirs["duration_holdout"], atol=1e-12)


def test_cdnow_sample_published_numbers(sample_cal):
    row = sample_cal.loc[1]
    assert row["frequency"] == 2
    assert round(row["recency"], 2) == 30.43
    assert round(row["T"], 2) == 38.86
    assert len(sample_cal) == 2357
    assert sample_cal["frequency"].sum() == 2457
    assert sample_cal["frequency_holdout"].sum() == 1882
    assert (sample_cal["frequency"] > 0).sum() == 946
    assert sample_cal["duration_holdout"].iloc[0] == 39.0
    assert sample_cal.attrs["calibration_end"] == CAL_END


def test_sample_rfm_matches_published_summary(sample_rfm):
    from lifetimes.datasets import load_dataset

    published = load_dataset("cdnow_customers_summary_with_transactions.csv").set_index("ID")
    np.testing.assert_array_equal(sample_rfm["frequency"], published["x"])
    np.testing.assert_allclose(sample_rfm["recency"], published["t_x"], atol=0.005)
    np.testing.assert_allclose(sample_rfm["T"], published["T"], atol=0.005)
    np.testing.assert_allclose(sample_rfm["monetary_value"], published["zbar"], atol=0.005)


def test_same_day_purchases_merge_and_monetary_value():
    log = pd.DataFrame({
        "customer_id": ["a", "a", "a", "a", "b"],
        "date": pd.to_datetime(["2024-01-01", "2024-01-01", "2024-01-08", "2024-01-15", "2024-01-10"]),
        "amount": [5.0, 5.0, 20.0, 40.0, 7.0],
    })
    rfm = rfm_summary(log, time_unit="W", observation_end="2024-01-29")
    assert rfm.loc["a"].tolist() == [2, 2.0, 4.0, 30.0]
    b = rfm.loc["b"]
    assert b["frequency"] == 0 and b["recency"] == 0 and b["monetary_value"] == 0
    assert b["T"] == pytest.approx(19 / 7)
    assert rfm.index.name == "customer_id"
    days = rfm_summary(log, time_unit="D")
    assert days.attrs["observation_end"] == "2024-01-15"
    assert days.loc["a", "T"] == 14.0


def test_observation_end_excludes_later_purchases():
    log = pd.DataFrame({
        "customer_id": [1, 1, 2],
        "date": pd.to_datetime(["2024-01-01", "2024-03-01", "2024-04-01"]),
        "amount": [1.0, 2.0, 3.0],
    })
    rfm = rfm_summary(log, observation_end="2024-02-01")
    assert rfm.index.tolist() == [1]
    assert rfm.loc[1, "frequency"] == 0
    with pytest.raises(DataValidationError, match="No purchases on or before observation_end=2023-01-01"):
        rfm_summary(log, observation_end="2023-01-01")


def test_calibration_excludes_late_first_purchases():
    log = pd.DataFrame({
        "customer_id": [1, 1, 2],
        "date": pd.to_datetime(["2024-01-01", "2024-03-01", "2024-04-01"]),
        "amount": [1.0, 2.0, 3.0],
    })
    cal = calibration_holdout(log, calibration_end="2024-02-01", observation_end="2024-05-01")
    assert cal.index.tolist() == [1]
    assert cal.loc[1, "frequency_holdout"] == 1
    assert cal.loc[1, "monetary_value_holdout"] == 2.0


def test_holdout_monetary_value_is_per_purchase_day():
    log = pd.DataFrame({
        "customer_id": [1, 1, 1, 1],
        "date": pd.to_datetime(["2024-01-01", "2024-03-01", "2024-03-01", "2024-03-05"]),
        "amount": [1.0, 2.0, 4.0, 3.0],
    })
    cal = calibration_holdout(log, calibration_end="2024-02-01", observation_end="2024-05-01")
    assert cal.loc[1, "frequency_holdout"] == 2
    assert cal.loc[1, "monetary_value_holdout"] == 4.5  # (2+4 on one day, 3 on another) / 2 days
    assert cal.loc[1, "revenue_holdout"] == 9.0
    assert cal.loc[1, "duration_holdout"] == 90.0


def test_bad_parameters():
    log = clvmodels.load_cdnow("sample").head(50)
    with pytest.raises(ParameterError, match=r"Unknown time_unit 'Q'; expected one of 'D', 'W'"):
        rfm_summary(log, time_unit="Q")
    with pytest.raises(ParameterError, match=r"calibration_end \(1998-01-01\) must be before observation_end \(1997-06-01\)"):
        calibration_holdout(log, calibration_end="1998-01-01", observation_end="1997-06-01")
    with pytest.raises(ParameterError, match="observation_end must be a date"):
        rfm_summary(log, observation_end="someday")


def test_parquet_file_is_aggregated_in_duckdb(tmp_path, cdnow_sample):
    path = tmp_path / "log.parquet"
    cdnow_sample.to_parquet(path)
    from_file = rfm_summary(path, time_unit="W", observation_end=CAL_END)
    from_frame = rfm_summary(cdnow_sample, time_unit="W", observation_end=CAL_END)
    pd.testing.assert_frame_equal(from_file, from_frame)


def test_column_mapping_through_rfm(cdnow_sample):
    renamed = cdnow_sample.rename(columns={"customer_id": "cid", "date": "d", "amount": "usd"})
    rfm = rfm_summary(renamed, time_unit="W", observation_end=CAL_END,
                      columns={"customer_id": "cid", "date": "d", "amount": "usd"})
    assert rfm.loc[1, "frequency"] == 2


def test_purchase_days_between_equals_the_holdout_counts_in_one_pass(cdnow_sample):
    """Several windows in one query give each window's calibration_holdout frequency_holdout
    (customers first seen after a window's start count 0 in it, as they are not in that table)."""
    from clvmodels.rfm import purchase_days_between

    windows = {"autumn": ("1997-09-30", "1997-12-31"), "winter": ("1997-12-31", "1998-03-31"),
               "late": ("1997-03-15", "1997-04-15")}
    got = purchase_days_between(cdnow_sample, windows)
    assert got.index.is_monotonic_increasing and list(got.columns) == list(windows)
    for name, (start, end) in windows.items():
        cal = calibration_holdout(cdnow_sample, calibration_end=start, observation_end=end)
        expected = cal["frequency_holdout"].reindex(got.index, fill_value=0)
        np.testing.assert_array_equal(got[name].to_numpy(), expected.to_numpy())
    assert got["late"].sum() > 0 and (got["late"] == 0).sum() > 0
    with pytest.raises(ParameterError, match="late start"):
        purchase_days_between(cdnow_sample, {"late": ("not a date", "1998-01-01")})
