"""Issue 19: a log read once - validation, first/last day and customer count folded into the
customer aggregation (:func:`clvmodels.rfm.summarise_log`) - with the same table and the same
errors as loading it first and aggregating after."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import clvmodels
from clvmodels import scoring
from clvmodels.exceptions import DataValidationError
from clvmodels.rfm import summarise_log
from clvmodels.transactions import CheckedLog, date_range, log_facts


def _log() -> pd.DataFrame:
    """Text ids, several purchases on one day, refunds (one netting a day to zero, one day of refunds
    only), customers seen only after the calibration end."""
    rng = np.random.default_rng(5)
    rows = []
    for i in range(300):
        start = pd.Timestamp("2023-01-01") + pd.Timedelta(days=int(rng.integers(0, 300)))
        for _ in range(int(rng.integers(1, 6))):
            day = start + pd.Timedelta(days=int(rng.integers(0, 200)))
            rows.append((f"c{i:03d}", str(day.date()), round(float(rng.gamma(2, 20)), 2)))
    rows += [("c001", rows[0][1], 5.0), ("c002", "2023-03-03", 10.0), ("c002", "2023-03-03", -10.0),
             ("c003", "2023-04-04", -3.0), ("late", "2023-12-30", 7.0)]
    return pd.DataFrame(rows, columns=["customer_id", "date", "amount"])


@pytest.fixture(scope="module")
def csv_log(tmp_path_factory):
    path = tmp_path_factory.mktemp("one_pass") / "log.csv"
    _log().to_csv(path, index=False)
    return path


def _close(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.index) == list(b.index) and list(a.columns) == list(b.columns)
    for col in a.columns:  # the engine's parallel sums may differ in the last bit between any two queries
        np.testing.assert_allclose(a[col].to_numpy(float), b[col].to_numpy(float), rtol=1e-13, err_msg=col)


@pytest.mark.parametrize("refunds", ["drop", "net"])
@pytest.mark.parametrize("end", [None, "2023-08-31"])
def test_one_pass_equals_loading_then_aggregating(csv_log, refunds, end):
    two = clvmodels.load_transactions(csv_log, refunds=refunds)
    expected = clvmodels.rfm_summary(two, time_unit="W", observation_end=end)
    for keep in ("memory", "auto"):
        s = summarise_log(csv_log, observation_end=end, time_unit="W", keep=keep, engine_above=10_000,
                          refunds=refunds)
        _close(s.rfm, expected)
        assert s.customers == len(expected)
        assert (s.first_day, s.last_day) == date_range(two)
        assert s.observation_end == pd.Timestamp(end or date_range(two)[1])
        # the log handed on is the validated log, with what the pass learnt remembered for it
        got = s.log.execute().sort_values(["customer_id", "date"]).reset_index(drop=True)
        want = two.execute().sort_values(["customer_id", "date"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want)
        assert log_facts(s.log)["first_day"] == s.first_day
    # kept by the engine: the scoring functions find it, and agree with the table built from the loaded log
    s = summarise_log(csv_log, observation_end=end, keep="engine", refunds=refunds)
    assert s.rfm is None
    kept = scoring.compressed_rfm(s.log, time_unit="W", observation_end=s.observation_end)
    fresh = scoring.compressed_rfm(two, time_unit="W", observation_end=s.observation_end)
    assert kept.customers == fresh.customers == s.customers
    pd.testing.assert_frame_equal(kept.purchases, fresh.purchases)
    pd.testing.assert_frame_equal(kept.spend, fresh.spend)
    scoring.release()


def test_rfm_summary_of_a_file_reads_it_once(csv_log, monkeypatch):
    """A CSV log given straight to rfm_summary (or compressed_rfm) is not validated in a pass of its own."""
    expected = clvmodels.rfm_summary(clvmodels.load_transactions(csv_log, refunds="drop"), time_unit="D")
    expected_rows = scoring.compressed_rfm(clvmodels.load_transactions(csv_log, refunds="drop")).purchases

    def no_second_pass(self):
        raise AssertionError("the validation pass ran")

    monkeypatch.setattr(CheckedLog, "validated", no_second_pass)
    _close(clvmodels.rfm_summary(csv_log, time_unit="D", columns={"refunds": "drop"}), expected)
    pd.testing.assert_frame_equal(scoring.compressed_rfm(csv_log, columns={"refunds": "drop"}).purchases, expected_rows)
    scoring.release()


BAD = {
    "no id": "customer_id,date,amount\na,2024-01-01,1\n,2024-01-02,2\n",
    "no date": "customer_id,date,amount\na,2024-01-01,1\nb,,2\n",
    "bad date": "customer_id,date,amount\na,2024-01-01,1\nb,01/02/2024,2\n",
    "no amount": "customer_id,date,amount\na,2024-01-01,1\nb,2024-01-02,\n",
    "text amount": "customer_id,date,amount\na,2024-01-01,1\nb,2024-01-02,$5\n",
    "infinite": "customer_id,date,amount\na,2024-01-01,1\nb,2024-01-02,inf\n",
    "refund": "customer_id,date,amount\na,2024-01-01,1\nb,2024-01-02,-4\n",
    "empty": "customer_id,date,amount\n",
    "missing column": "customer_id,day,amount\na,2024-01-01,1\n",
}


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("keep", ["memory", "engine"])
def test_one_pass_refuses_what_loading_refuses_with_its_message(tmp_path, case, keep):
    path = tmp_path / f"{case.replace(' ', '_')}.csv"
    path.write_text(BAD[case])
    with pytest.raises(DataValidationError) as loading:
        clvmodels.load_transactions(path)
    with pytest.raises(DataValidationError) as one_pass:
        summarise_log(path, keep=keep)
    assert str(one_pass.value) == str(loading.value)
    assert clvmodels.engine.kept_table() is None  # nothing left behind in the engine


@pytest.mark.parametrize("refunds", ["drop", "net"])
def test_a_log_of_refunds_only_is_one_clear_error(tmp_path, refunds):
    """Was a ValueError about NaN from deep inside (before the one pass too)."""
    path = tmp_path / "refunds.csv"
    netted = "b,2024-01-03,2\nb,2024-01-03,-2\n" if refunds == "net" else ""
    path.write_text("customer_id,date,amount\na,2024-01-01,-1\nb,2024-01-02,-2\n" + netted)
    for call in (lambda: summarise_log(path, refunds=refunds),
                 lambda: summarise_log(path, refunds=refunds, keep="engine"),
                 lambda: clvmodels.rfm_summary(clvmodels.load_transactions(path, refunds=refunds)),
                 lambda: clvmodels.calibration_holdout(path, calibration_end="2024-01-02", columns={"refunds": refunds})):
        with pytest.raises(DataValidationError, match="has no purchases: every amount is a refund"):
            call()


def test_report_on_a_csv_log_reads_it_once_before_the_backtest(tmp_path, monkeypatch):
    """The report's first pass is the customer table; its windows and its choice of where the
    customer table lives need nothing more (on both homes of the customer table)."""
    from clvmodels import pipeline
    from clvmodels.reporting import validate_parameters

    def no_second_pass(self):
        raise AssertionError("the validation pass ran")

    from clvmodels.datasets import simulate_transactions

    path = tmp_path / "generated.csv"
    simulate_transactions(2_000, seed=3)[0].to_csv(path, index=False)
    monkeypatch.setattr(CheckedLog, "validated", no_second_pass)
    base = {"input_path": str(path), "calibration_end": "none", "time_unit": "W", "horizon": 26}
    mem = pipeline.run_analysis(validate_parameters(base))
    eng = pipeline.run_analysis(validate_parameters({**base, "scoring": "engine"}))
    assert mem.scoring == "memory" and eng.scoring == "engine"
    np.testing.assert_allclose(mem.tier_table[["customers", "total_clv", "expected_purchases"]].to_numpy(float),
                               eng.tier_table[["customers", "total_clv", "expected_purchases"]].to_numpy(float),
                               rtol=1e-6)
    scoring.release()


@pytest.mark.parametrize("end", [None, "2023-08-31"])
def test_one_pass_equals_loading_then_aggregating_without_refunds(tmp_path, end):
    """The default policy (refunds are an error) on a log without refunds: the same table."""
    path = tmp_path / "clean.csv"
    log = _log()
    log[log["amount"] >= 0].to_csv(path, index=False)
    expected = clvmodels.rfm_summary(clvmodels.load_transactions(path), time_unit="D", observation_end=end)
    for keep in ("memory", "engine"):
        s = summarise_log(path, observation_end=end, keep=keep)
        if keep == "memory":
            _close(s.rfm, expected)
        else:
            rows = scoring.compressed_rfm(s.log, time_unit="D", observation_end=s.observation_end).purchases
            assert int(rows["weight"].sum()) == len(expected) == s.customers
            scoring.release()
