from __future__ import annotations

import datetime

import numpy as np
import pandas as pd
import pytest

from clvmodels import DataValidationError, load_transactions
from clvmodels.exceptions import ParameterError


def _log(**overrides):
    data = {
        "customer_id": [1, 1, 2, 3],
        "date": pd.to_datetime(["2024-01-01", "2024-01-05", "2024-01-02", "2024-02-01"]),
        "amount": [10.0, 20.0, 5.0, 0.0],
    }
    data.update(overrides)
    return pd.DataFrame(data)


def test_dataframe_round_trip_and_column_mapping():
    df = _log().rename(columns={"customer_id": "cust", "date": "day", "amount": "eur"})
    t = load_transactions(df, customer_id="cust", date="day", amount="eur")
    assert t.columns == ("customer_id", "date", "amount")
    out = t.to_pandas()
    assert len(out) == 4
    assert out["amount"].sum() == 35.0
    # zero-value purchases are purchases
    assert (out["amount"] == 0).sum() == 1


def test_csv_and_parquet_paths(tmp_path):
    df = _log()
    csv, pq = tmp_path / "log.csv", tmp_path / "log.parquet"
    df.to_csv(csv, index=False)
    df.to_parquet(pq)
    for path in (csv, pq, str(csv)):
        out = load_transactions(path).to_pandas().sort_values(["customer_id", "date"])
        assert out["amount"].tolist() == [10.0, 20.0, 5.0, 0.0]
        assert pd.to_datetime(out["date"]).dt.day.tolist() == [1, 5, 2, 1]


def test_ibis_table_input():
    import ibis

    t = load_transactions(ibis.memtable(_log()))
    assert t.to_pandas()["amount"].sum() == 35.0


def test_missing_columns_lists_present():
    with pytest.raises(DataValidationError, match=r"Missing column\(s\) 'value' \(amount\).*columns \['customer_id', 'date', 'amount'\]"):
        load_transactions(_log(), amount="value")


def test_empty_log():
    with pytest.raises(DataValidationError, match="empty"):
        load_transactions(_log().iloc[:0])


def test_null_customer_ids():
    df = _log(customer_id=[1, None, 2, None])
    with pytest.raises(DataValidationError, match=r"Column 'customer_id': 2 of 4 rows have no customer id"):
        load_transactions(df)


def test_unparseable_dates_show_examples():
    df = _log(date=["2024-01-01", "not a date", "2024-13-45", "2024-02-01"])
    with pytest.raises(DataValidationError, match=r"Column 'date': 2 of 4 rows have dates that do not parse \(examples: 'not a date', '2024-13-45'\)"):
        load_transactions(df)


def test_missing_dates():
    df = _log(date=pd.to_datetime(["2024-01-01", None, "2024-01-02", "2024-02-01"]))
    with pytest.raises(DataValidationError, match=r"Column 'date': 1 of 4 rows have no date"):
        load_transactions(df)


def test_date_format_for_integer_dates():
    df = _log(date=[20240101, 20240105, 20240102, 20240201])
    with pytest.raises(DataValidationError, match="date_format"):
        load_transactions(df)
    out = load_transactions(df, date_format="%Y%m%d").to_pandas()
    assert pd.to_datetime(out["date"]).min() == pd.Timestamp("2024-01-01")


def test_non_numeric_amounts():
    df = _log(amount=["10", "$20", "5", "abc"])
    with pytest.raises(DataValidationError, match=r"Column 'amount': 2 of 4 rows have amounts that are not numbers \(examples: '\$20', 'abc'\)"):
        load_transactions(df)


def test_nan_amounts():
    with pytest.raises(DataValidationError, match=r"Column 'amount': 1 of 4 rows have no amount \(null/NaN\)"):
        load_transactions(_log(amount=[1.0, np.nan, 2.0, 3.0]))


def test_infinite_amounts():
    with pytest.raises(DataValidationError, match=r"Column 'amount': 2 of 4 rows have infinite amounts \(examples: inf, -inf\)"):
        load_transactions(_log(amount=[1.0, np.inf, -np.inf, 3.0]))


def test_negative_amounts_error_drop_net():
    df = _log(
        customer_id=[1, 1, 1, 2],
        date=pd.to_datetime(["2024-01-01", "2024-01-01", "2024-01-05", "2024-01-03"]),
        amount=[30.0, -10.0, 20.0, -5.0],
    )
    with pytest.raises(DataValidationError, match=r"Column 'amount': 2 of 4 rows have negative amounts.*refunds='drop'"):
        load_transactions(df)
    dropped = load_transactions(df, refunds="drop").to_pandas()
    assert sorted(dropped["amount"]) == [20.0, 30.0]
    netted = load_transactions(df, refunds="net").to_pandas().sort_values(["customer_id", "date"])
    # day 1 nets to 20; customer 2's refund-only day is not a purchase
    assert netted["amount"].tolist() == [20.0, 20.0]
    assert netted["customer_id"].tolist() == [1, 1]
    with pytest.raises(ParameterError, match="Unknown refunds 'keep'"):
        load_transactions(df, refunds="keep")


def test_missing_file_and_wrong_suffix(tmp_path):
    with pytest.raises(DataValidationError, match="does not exist"):
        load_transactions(tmp_path / "nope.csv")
    bad = tmp_path / "log.xlsx"
    bad.write_text("x")
    with pytest.raises(DataValidationError, match="neither CSV nor Parquet"):
        load_transactions(bad)
    broken = tmp_path / "broken.parquet"
    broken.write_text("this is not parquet")
    with pytest.raises(DataValidationError, match="Could not read transaction file"):
        load_transactions(broken)


def test_unsupported_source_type():
    with pytest.raises(DataValidationError, match="Cannot read transactions from a list"):
        load_transactions([1, 2, 3])


def test_timezone_aware_dates_become_calendar_days():
    dates = pd.to_datetime(["2024-01-01 23:30", "2024-01-02 00:10", "2024-01-02 12:00", "2024-02-01 00:00"])
    df = _log(date=dates.tz_localize("America/New_York"))
    out = load_transactions(df).to_pandas().sort_values(["customer_id", "date"])
    assert [d.isoformat() for d in pd.to_datetime(out["date"]).dt.date] == [
        "2024-01-01", "2024-01-02", "2024-01-02", "2024-02-01",
    ]


def test_timezone_aware_parquet_uses_its_own_zone(tmp_path):
    dates = pd.to_datetime(["2024-01-01 23:30", "2024-01-02 00:10", "2024-01-02 12:00", "2024-02-01 00:00"])
    df = _log(date=dates.tz_localize("America/New_York"))
    df.to_parquet(tmp_path / "tz.parquet")
    out = load_transactions(tmp_path / "tz.parquet").to_pandas().sort_values(["customer_id", "date"])
    assert [str(d) for d in pd.to_datetime(out["date"]).dt.date] == ["2024-01-01", "2024-01-02", "2024-01-02", "2024-02-01"]


def test_python_date_objects():
    df = _log(date=[datetime.date(2024, 1, d) for d in (1, 5, 2, 9)])
    assert len(load_transactions(df).to_pandas()) == 4


def test_struct_ids_are_refused_in_one_line(tmp_path):
    """Issue 15: a struct-typed id column (Parquet) is refused naming the column and type."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"customer_id": [{"a": 1}, {"a": 2}], "date": ["2024-01-01", "2024-01-02"], "amount": [1.0, 2.0]})
    pq.write_table(table, tmp_path / "struct.parquet")
    with pytest.raises(DataValidationError, match="Column 'customer_id' has type struct"):
        load_transactions(tmp_path / "struct.parquet")


def test_validation_pass_learns_the_days_and_about_how_many_customers(monkeypatch):
    """Issue 19, item 1: the first and last day and the approximate customer count come from the
    validation pass, so the report asks no separate pass for them (and a refund-only last day is
    not a purchase day when refunds are dropped)."""
    from clvmodels import pipeline, reporting
    from clvmodels.transactions import date_range, log_facts

    rng = np.random.default_rng(0)
    n = 20000
    df = pd.DataFrame({"customer_id": rng.integers(0, 5000, n).astype(str),
                       "date": pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 300, n), unit="D"),
                       "amount": rng.gamma(2.0, 10.0, n)})
    refund = pd.DataFrame({"customer_id": ["x"], "date": [pd.Timestamp("2021-12-31")], "amount": [-5.0]})
    t = load_transactions(df)
    facts = log_facts(t)
    assert facts["first_day"] == df["date"].min() and facts["last_day"] == df["date"].max()
    assert abs(facts["customers_approx"] / df["customer_id"].nunique() - 1) < 0.05
    dropped = load_transactions(pd.concat([df, refund]), refunds="drop")
    assert date_range(dropped) == (df["date"].min(), df["date"].max())
    netted = load_transactions(pd.concat([df, refund]), refunds="net")
    assert log_facts(netted) is None and date_range(netted) == (df["date"].min(), df["date"].max())
    # the report's windows ask the engine nothing more
    import clvmodels.engine as engine

    calls = []
    real = engine._execute
    monkeypatch.setattr(engine, "_execute", lambda expr: calls.append(expr) or real(expr))
    cfg = reporting.validate_parameters({})
    assert pipeline.resolve_windows(cfg, t)[0] == str(df["date"].max().date())
    assert calls == []


def test_the_offset_pattern_runs_only_where_an_offset_can_be():
    """The text-date parse skips its (costly) offset pattern unless a sign or Z follows the 11th
    character; on every kind of ISO text it gives the day the pattern everywhere gives."""
    import ibis

    from clvmodels.transactions import _BEFORE_OFFSET, _parse_date

    texts = ["2024-01-01", "2024-01-01 23:59:59", "2024-01-01T23:30:00-05:00", "2024-01-01T01:30+05",
             "2024-01-01T23:30-0500", "2024-1-5T01:00Z", "2024-01-03 10:00Z", "2024-01-03 10:00:00.123+09:00",
             "2024-01-03T10:00:00 +01:00", "T10:00Z", "2024-01-01Z", "20240101", "not a date", "2024-13-01",
             "2024-01-01T10:00:00.5-02", "1999-12-31 23:00:00-12:00"]
    t = ibis.memtable(pd.DataFrame({"d": texts}))
    local = t.d.re_extract(_BEFORE_OFFSET, 1)
    everywhere = (local != "").ifelse(local, t.d).try_cast("timestamp").date()
    got = t.select(guarded=_parse_date(t.d, None, "d"), everywhere=everywhere).execute()
    assert got["guarded"].astype(str).tolist() == got["everywhere"].astype(str).tolist()
    assert got["guarded"].notna().sum() >= 10


def _log_tables() -> set[str]:
    from clvmodels.engine.duckdb import duckdb_connection

    rows = duckdb_connection().con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
    return {n for (n,) in rows if n.startswith("clvmodels_log_")}


def test_small_csv_is_parsed_once_and_dropped_with_its_last_expression(tmp_path, monkeypatch):
    """Issue 30: a small local CSV is parsed once into a temporary table (each of the report's
    dozen later queries read DuckDB's columns, not the text again): it stays readable after the file
    is gone, and the table is dropped once no expression refers to it. A file above the limit stays
    a view of the file."""
    import gc

    from clvmodels.engine import duckdb as duck

    path = tmp_path / "log.csv"
    pd.DataFrame({"customer_id": ["a", "a", "b"], "date": ["2024-01-01", "2024-02-01", "2024-01-05"],
                  "amount": [1.0, 2.0, 3.0]}).to_csv(path, index=False)
    before = _log_tables()
    t = load_transactions(path)
    new = _log_tables() - before
    assert len(new) == 1
    path.unlink()
    derived = t.filter(t.amount > 1.5)
    assert sorted(derived.to_pandas()["amount"]) == [2.0, 3.0]
    del t
    gc.collect()
    assert new <= _log_tables()  # a derived expression still holds it
    del derived
    gc.collect()
    # dropped by the next load (not from the garbage collector, which may run mid-query)
    pd.DataFrame({"customer_id": ["a"], "date": ["2024-01-01"], "amount": [1.0]}).to_csv(path, index=False)
    again = load_transactions(path)
    assert not (new & _log_tables()) and len(_log_tables() - before) == 1
    del again
    gc.collect()
    # above the limit: a view of the file, read again by each query
    monkeypatch.setattr(duck, "KEEP_CSV_BYTES", 0)
    t = load_transactions(path)
    path.unlink()
    with pytest.raises(Exception):  # noqa: B017 - the file is gone: the view cannot be read
        t.to_pandas()
