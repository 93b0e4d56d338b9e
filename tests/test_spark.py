"""Spark as an engine: the same RFM, holdout tables, forecasts and report as on DuckDB.

Runs Spark in local mode (two threads) in this process; Java 17 and pyspark come with the dev
set-up. The CDNOW master log (23,570 customers) is written to Parquet and CSV and read by both
engines.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import clvmodels
from clvmodels.engine import java_date_pattern
from clvmodels.exceptions import DataValidationError, ParameterError
from clvmodels.forecast import FORECAST_COLUMNS
from clvmodels.reporting import ReportConfig, load_report_transactions, validate_parameters

from .conftest import CAL_END, OBS_END


@pytest.fixture(scope="module")
def spark():
    con = clvmodels.spark_connection("local[2]", {"spark.sql.shuffle.partitions": "4"})
    return con._session


@pytest.fixture(scope="module")
def master_parquet(cdnow_master, tmp_path_factory):
    path = tmp_path_factory.mktemp("spark") / "master.parquet"
    cdnow_master[["customer_id", "date", "amount"]].to_parquet(path)
    return path


def _same(a: pd.DataFrame, b: pd.DataFrame, rtol: float = 1e-12) -> None:
    assert list(a.index) == list(b.index)
    assert list(a.columns) == list(b.columns)
    for col in a.columns:
        np.testing.assert_allclose(a[col].to_numpy(float), b[col].to_numpy(float), rtol=rtol, atol=1e-9,
                                   err_msg=col)


def test_spark_reads_and_validates_on_its_own_backend(spark, master_parquet):
    t = clvmodels.load_transactions(master_parquet, engine="spark")
    assert t._find_backend().name == "pyspark"
    assert t.columns == ("customer_id", "date", "amount")


def test_rfm_and_holdout_equal_duckdb(spark, master_parquet):
    on_spark = clvmodels.load_transactions(master_parquet, engine="spark")
    for unit in ("W", "D"):
        _same(clvmodels.rfm_summary(on_spark, time_unit=unit),
              clvmodels.rfm_summary(master_parquet, time_unit=unit))
    spark_cal = clvmodels.calibration_holdout(on_spark, calibration_end=CAL_END, observation_end=OBS_END,
                                              time_unit="W")
    duck_cal = clvmodels.calibration_holdout(master_parquet, calibration_end=CAL_END, observation_end=OBS_END,
                                             time_unit="W")
    _same(spark_cal, duck_cal)
    assert spark_cal.attrs == duck_cal.attrs
    # the seasonal model's purchase calendar (repeat purchases per day) is the same on both engines
    assert clvmodels.purchase_calendar(on_spark, observation_end=OBS_END) == \
        clvmodels.purchase_calendar(master_parquet, observation_end=OBS_END)
    assert clvmodels.purchase_calendar(on_spark).total == int(clvmodels.rfm_summary(on_spark)["frequency"].sum())


def test_forecasts_equal_duckdb(spark, master_parquet):
    settings = dict(horizon=52, discount_rate=0.1, margin=0.3)
    out = []
    for engine in ("spark", "duckdb"):
        rfm = clvmodels.rfm_summary(clvmodels.load_transactions(master_parquet, engine=engine), time_unit="W")
        model = clvmodels.ParetoNBDModel().fit(rfm)
        spend = clvmodels.GammaGammaModel().fit(rfm)
        out.append((model, clvmodels.forecast(model, spend, rfm, **settings)))
    (m_spark, f_spark), (m_duck, f_duck) = out
    np.testing.assert_allclose(m_spark.params_.to_numpy(), m_duck.params_.to_numpy(), rtol=1e-9)
    # monetary sums may differ in the last bit (summation order), so Gamma-Gamma to 1e-6
    _same(f_spark, f_duck, rtol=1e-6)
    tiers_spark = clvmodels.assign_tiers(f_spark)
    assert (tiers_spark == clvmodels.assign_tiers(f_duck)).all()


def test_date_formats_parse_the_same_on_spark(spark, cdnow_sample):
    base = cdnow_sample[["customer_id", "date", "amount"]]
    expected = clvmodels.rfm_summary(base, time_unit="D")
    cases = {
        "%d/%m/%Y": base["date"].dt.strftime("%d/%m/%Y"),
        "%m/%d/%Y %H:%M": base["date"].dt.strftime("%m/%d/%Y 10:05"),
        "%Y%m%d": base["date"].dt.strftime("%Y%m%d").astype("int64"),  # integers, fixed width
        "%b %d, %Y": base["date"].dt.strftime("%b %d, %Y"),
        "%Y-%m-%dT%H:%M:%S": base["date"].dt.strftime("%Y-%m-%dT23:59:59"),
    }
    for fmt, dates in cases.items():
        log = base.assign(date=dates)
        got = clvmodels.rfm_summary(clvmodels.load_transactions(log, engine="spark", date_format=fmt),
                                    time_unit="D")
        _same(got, expected, rtol=1e-12)
    iso = clvmodels.load_transactions(base.assign(date=base["date"].dt.strftime("%Y-%m-%d")), engine="spark")
    _same(clvmodels.rfm_summary(iso, time_unit="D"), expected)


def test_unparseable_dates_named_on_spark(spark, cdnow_sample):
    log = cdnow_sample[["customer_id", "date", "amount"]].assign(date=cdnow_sample["date"].dt.strftime("%d/%m/%Y"))
    log.loc[3, "date"] = "31/02/1997"
    with pytest.raises(DataValidationError, match=r"Column 'date': 1 of 6,919 rows .*'31/02/1997'"):
        clvmodels.load_transactions(log, engine="spark", date_format="%d/%m/%Y")
    with pytest.raises(DataValidationError, match=r"Column 'date': .* do not parse"):
        clvmodels.load_transactions(log, engine="spark")  # not ISO and no format: never guessed


def test_spark_csv_reads_dates_as_text(spark, tmp_path):
    path = tmp_path / "log.csv"
    # 01/02/2024 is 1 February with %d/%m/%Y, never Spark's guess
    pd.DataFrame({"cust": ["a", "a", "b"], "day": ["01/02/2024", "15/02/2024", "03/02/2024"],
                  "eur": [10.0, 5.0, 7.5]}).to_csv(path, index=False)
    for engine in ("spark", "duckdb"):
        t = clvmodels.load_transactions(path, engine=engine, customer_id="cust", date="day", amount="eur",
                                        date_format="%d/%m/%Y")
        rfm = clvmodels.rfm_summary(t, time_unit="D")
        assert rfm.loc["a", "recency"] == 14.0 and rfm.loc["a", "T"] == 14.0, engine
        assert rfm.loc["b", "T"] == 12.0, engine


def test_time_zone_days_equal_on_both_engines(spark, tmp_path):
    """A Parquet file of New York timestamps: each purchase falls on its New York calendar day
    on both engines (the engines' sessions run in UTC, where 22:00 is the next day)."""
    stamps = pd.to_datetime(["2024-01-01 22:00", "2024-01-05 23:30", "2024-01-03 09:00"]).tz_localize(
        "America/New_York")
    log = pd.DataFrame({"customer_id": [1, 1, 2], "date": stamps, "amount": [1.0, 2.0, 3.0]})
    path = tmp_path / "ny.parquet"
    log.to_parquet(path)
    expected = clvmodels.rfm_summary(log, time_unit="D")  # pandas: the wall-clock day
    assert expected.loc[1, "recency"] == 4.0
    for engine in ("spark", "duckdb"):
        _same(clvmodels.rfm_summary(clvmodels.load_transactions(path, engine=engine), time_unit="D"), expected)


def test_parquet_folder_on_spark(spark, cdnow_sample, tmp_path):
    folder = tmp_path / "by_year"
    log = cdnow_sample[["customer_id", "date", "amount"]].assign(year=cdnow_sample["date"].dt.year)
    log.to_parquet(folder, partition_cols=["year"])
    _same(clvmodels.rfm_summary(clvmodels.load_transactions(folder, engine="spark"), time_unit="W"),
          clvmodels.rfm_summary(cdnow_sample, time_unit="W"))


def test_report_input_table_from_the_spark_catalog(spark, cdnow_sample):
    spark.createDataFrame(cdnow_sample[["customer_id", "date", "amount"]].rename(columns={"customer_id": "cust"})
                          ).createOrReplaceTempView("cdnow_sample_log")
    cfg = validate_parameters({"engine": "spark", "input_table": "cdnow_sample_log", "customer_col": "cust"})
    t = load_report_transactions(cfg)
    assert t._find_backend().name == "pyspark"
    _same(clvmodels.rfm_summary(t, time_unit="W"), clvmodels.rfm_summary(cdnow_sample, time_unit="W"))
    assert "Spark table cdnow_sample_log" in cfg.data_label
    missing = validate_parameters({"engine": "spark", "input_table": "no_such_table"})
    with pytest.raises(DataValidationError, match=r"Spark table 'no_such_table' does not exist.*cdnow_sample_log"):
        load_report_transactions(missing)


def test_spark_parameters_are_checked():
    with pytest.raises(ParameterError, match=r"need engine='spark'"):
        validate_parameters({"input_table": "sales.orders"})
    with pytest.raises(ParameterError, match=r"engine 'sparkk'; expected one of 'duckdb', 'spark'"):
        validate_parameters({"engine": "sparkk"})
    with pytest.raises(ParameterError, match=r"spark_conf"):
        validate_parameters({"engine": "spark", "spark_conf": {"spark.executor.memory": [8]}})
    with pytest.raises(ParameterError, match=r"not both"):
        validate_parameters({"engine": "spark", "input_table": "t", "input_path": "x.parquet"})
    assert ReportConfig().engine == "duckdb"


def test_java_patterns():
    assert java_date_pattern("%d/%m/%Y") == "d/M/yyyy"
    assert java_date_pattern("%Y%m%d") == "yyyyMMdd"
    assert java_date_pattern("%Y-%m-%dT%H:%M:%S") == "yyyy-M-d'T'H:m:s"
    assert java_date_pattern("%d o'clock %Y") == "d' o''clock 'yyyy"
    assert java_date_pattern("100%% %Y") == "100% yyyy"
    with pytest.raises(DataValidationError, match=r"'%U'.*Spark"):
        java_date_pattern("%Y week %U")


def test_cli_report_on_spark(master_parquet, tmp_path):
    """The command line: --engine spark reads the Parquet file with Spark, keeps the customer
    table there (scoring "auto" on Spark) and publishes a report whose forecast and tier table
    equal the DuckDB run's (customer table in memory)."""
    outs = {}
    for engine in ("spark", "duckdb"):
        cmd = [sys.executable, "-m", "clvmodels.cli", "report", "--input", str(master_parquet), "--engine", engine,
               "--output", str(tmp_path / engine), "--no-progress", "-p", "calibration_end", "none"]
        if engine == "spark":
            cmd += ["--spark-master", "local[2]", "--spark-conf", "spark.sql.shuffle.partitions=4"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "Traceback" not in done.stderr
        folder = next((tmp_path / engine).iterdir())
        outs[engine] = (pd.read_parquet(folder / "forecast.parquet").set_index("customer_id").sort_index(),
                        pd.read_csv(folder / "tier_table.csv", index_col="tier"), folder)
    (f_s, t_s, folder_s), (f_d, t_d, _) = outs["spark"], outs["duckdb"]
    html = (folder_s / "report.html").read_text()
    assert "(on Spark)" in html and "scored inside Spark" in html
    assert not (folder_s / "forecast.csv").exists()  # the engine wrote the forecast, as Parquet only
    columns = list(FORECAST_COLUMNS)
    _same(f_s[columns], f_d[columns], rtol=1e-6)
    assert (f_s["tier"].astype(str) == f_d["tier"].astype(str)).all()
    _same(t_s, t_d[t_s.columns], rtol=1e-6)


@pytest.mark.parametrize("cutoff_sample", [None, 1000])
def test_scoring_inside_spark_equals_duckdb(spark, master_parquet, tmp_path, cutoff_sample, monkeypatch):
    """Fit on Spark's distinct rows and score every customer on Spark: the same models, scores
    and tiers as on DuckDB (also with the tiers' cut-offs estimated on a sample, as above 400,000
    customers), and the tiers of a full ranking."""
    from clvmodels import scoring
    from clvmodels.scoring import compressed_rfm, score_customers

    if cutoff_sample:
        monkeypatch.setattr(scoring, "CUTOFF_SAMPLE", cutoff_sample)

    results = {}
    for engine in ("spark", "duckdb"):
        stats = compressed_rfm(master_parquet, time_unit="W", engine=engine)
        model, spend = stats.fit(clvmodels.BetaGeoModel(), clvmodels.GammaGammaModel())
        res = score_customers(model, spend, master_parquet, tmp_path / engine, horizon=52, margin=0.3,
                              engine=engine)
        results[engine] = (model, res, pd.read_parquet(tmp_path / engine).set_index("customer_id").sort_index())
    (m_s, r_s, f_s), (m_d, r_d, f_d) = results["spark"], results["duckdb"]
    np.testing.assert_allclose(m_s.params_.to_numpy(), m_d.params_.to_numpy(), rtol=1e-9)
    assert r_s.distinct_histories == r_d.distinct_histories
    _same(f_s.drop(columns="tier"), f_d.drop(columns="tier"), rtol=1e-6)
    assert (f_s["tier"].astype(str) == f_d["tier"].astype(str)).all()
    pd.testing.assert_frame_equal(r_s.tier_table, r_d.tier_table, check_exact=False, rtol=1e-6)
    ranked = f_d.reset_index().sort_values(["clv", "customer_id"], ascending=[False, True], kind="stable")
    bounds = np.rint(np.cumsum([0.05, 0.15, 0.50]) * len(ranked)).astype(int)
    want = np.select([ranked["clv"].to_numpy() < 0, np.arange(len(ranked)) < bounds[0],
                      np.arange(len(ranked)) < bounds[1], np.arange(len(ranked)) < bounds[2]],
                     ["Lead", "Platinum", "Gold", "Iron"], "Lead")
    assert (ranked["tier"].astype(str).to_numpy() == want).all()
    # the at-risk list's candidates, chosen inside each engine by the same criteria (issue 28)
    cands = {}
    for engine in ("spark", "duckdb"):
        like = clvmodels.load_transactions(master_parquet, engine=engine)
        cands[engine] = scoring.at_risk_candidates(scoring.read_scores(tmp_path / engine, like), 0.5, 2.0, 40)
    assert len(cands["duckdb"]) == 40 and cands["spark"].attrs["qualified"] == cands["duckdb"].attrs["qualified"] > 40
    assert list(cands["spark"].index.astype(str)) == list(cands["duckdb"].index.astype(str))
    for tier, mean in cands["duckdb"].attrs["tier_p_no_purchase"].items():
        assert cands["spark"].attrs["tier_p_no_purchase"][tier] == pytest.approx(mean, rel=1e-9)


def test_remote_addresses_go_to_spark_only():
    from clvmodels.engine import is_remote

    assert is_remote("s3a://bucket/orders/") and is_remote("hdfs://nn:8020/x.parquet") and is_remote("dbfs:/mnt/x")
    assert not is_remote("C:/data/x.csv") and not is_remote("orders.parquet") and not is_remote("file:/tmp/x")
    with pytest.raises(DataValidationError, match=r"'s3a://bucket/orders/' is a remote address.*--engine spark"):
        clvmodels.load_transactions("s3a://bucket/orders/")
    with pytest.raises(ParameterError, match=r"remote address; it needs engine 'spark'"):
        validate_parameters({"input_path": "s3a://bucket/orders/"})
    assert validate_parameters({"input_path": "s3a://bucket/orders/", "engine": "spark"}).input_path


def test_unreachable_remote_log_is_a_clear_error(spark):
    with pytest.raises(DataValidationError, match=r"Could not read transaction log 'nosuchfs://x/y' with Spark"):
        clvmodels.load_transactions("nosuchfs://x/y", engine="spark")
    # the Java cause is kept (not "An error occurred while calling o32.parquet.") with what to do
    with pytest.raises(DataValidationError, match=r"S3AFileSystem not found \(Spark needs the hadoop-aws jars"):
        clvmodels.load_transactions("s3a://bucket/x.parquet", engine="spark")


def test_spark_settings_are_checked_before_a_jvm_starts():
    """Issue 15: an unreachable --spark-master is one line after one connection attempt (Spark
    itself retried for 69 s, then printed 192 lines); a memory setting that is not a size is named."""
    import socket

    from clvmodels.engine import check_spark_settings

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ParameterError, match=rf"--spark-master 'spark://127.0.0.1:{port}': nothing answers at "
                                             rf"127.0.0.1:{port} \(.*\)\. Start the Spark master"):
        check_spark_settings(f"spark://127.0.0.1:{port}", {}, timeout=2)
    with pytest.raises(ParameterError, match=r"'spark://nohostport': 'nohostport' is not host:port"):
        check_spark_settings("spark://nohostport", {})
    with socket.socket() as server:  # a listening master passes
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        check_spark_settings(f"spark://127.0.0.1:{server.getsockname()[1]}", {"spark.driver.memory": "8g"})
    for bad in ("abc", "8 gigs", "-1g", ""):
        with pytest.raises(ParameterError, match=r"--spark-conf spark.executor.memory=.* is not a memory size"):
            check_spark_settings("local[2]", {"spark.executor.memory": bad})
    check_spark_settings("local[2]", {"spark.executor.memory": "512m", "spark.driver.maxResultSize": "2g",
                                      "spark.sql.shuffle.partitions": "abc"})  # only sizes are checked here


def test_java_errors_are_said_by_their_cause():
    from clvmodels.engine import engine_error_text

    wrapped = Exception("An error occurred while calling o32.parquet.\n: java.lang.RuntimeException: "
                        "java.lang.ClassNotFoundException: Class org.apache.hadoop.fs.s3a.S3AFileSystem not found\n"
                        "\tat org.apache.hadoop.conf.Configuration.getClass(Configuration.java:2737)\n")
    assert engine_error_text(wrapped).startswith(
        "java.lang.ClassNotFoundException: Class org.apache.hadoop.fs.s3a.S3AFileSystem not found (Spark needs")
    caused = Exception("An error occurred while calling o1.load.\n: org.apache.spark.SparkException: outer\n"
                       "\tat x.y(Z.java:1)\nCaused by: java.io.FileNotFoundException: /data/x.parquet\n")
    assert engine_error_text(caused) == "java.io.FileNotFoundException: /data/x.parquet"
    assert engine_error_text(ValueError("Plain message.\nmore")) == "Plain message"
    assert engine_error_text(ValueError()) == "ValueError"


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_ids_are_text_as_written_and_missing_ids_refused(spark, tmp_path, engine):
    """Issue 15: zero-padded ids stay distinct after DuckDB's type-sampling window and on Spark;
    NaN ids and two-digit years are refused the same way on both engines."""
    rows = [(str(i), "2024-01-01", 1.0) for i in range(31_000)] + [("007", "2024-01-02", 1.0), ("7", "2024-01-03", 2.0)]
    path = tmp_path / "ids.csv"
    pd.DataFrame(rows, columns=["customer_id", "date", "amount"]).to_csv(path, index=False)
    rfm = clvmodels.rfm_summary(clvmodels.load_transactions(path, engine=engine), time_unit="D")
    assert len(rfm) == 31_001 and {"007", "7"} <= set(rfm.index.astype(str))
    assert rfm.loc["7", "frequency"] == 1 and rfm.loc["007", "frequency"] == 0
    nan_ids = pd.DataFrame({"customer_id": [1.0, np.nan], "date": ["2024-01-01", "2024-01-02"], "amount": [1.0, 2.0]})
    nan_path = tmp_path / "nan_ids.parquet"
    nan_ids.to_parquet(nan_path)
    with pytest.raises(DataValidationError, match="1 of 2 rows have no customer id"):
        clvmodels.load_transactions(nan_path, engine=engine)
    # issue 29: a true NaN in a Parquet float column (pandas writes NaN as null; other writers as
    # NaN), which DuckDB's isnan() missed: refused too, by both the check and the one pass
    import pyarrow as pa
    import pyarrow.parquet as pq

    true_nan = tmp_path / "true_nan_ids.parquet"
    pq.write_table(pa.table({"customer_id": pa.array([1.0, 3.0, float("nan")], from_pandas=False),
                             "date": ["2024-01-01", "2024-01-02", "2024-01-03"], "amount": [1.0, 2.0, 3.0]}), true_nan)
    with pytest.raises(DataValidationError, match="1 of 3 rows have no customer id"):
        clvmodels.load_transactions(true_nan, engine=engine)
    with pytest.raises(DataValidationError, match="1 of 3 rows have no customer id"):
        clvmodels.rfm.summarise_log(true_nan, engine=engine)
    with pytest.raises(DataValidationError, match="two-digit year"):
        clvmodels.load_transactions(path, engine=engine, date_format="%d/%m/%y")


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_paths_are_literal_and_folders_count_the_same_files(spark, tmp_path, engine):
    """Issue 15: 'q[1].parquet' reads that file (not q1.parquet); a folder's hidden files,
    _SUCCESS markers and _temporary/ leftovers of a failed write are skipped on both engines."""
    one = pd.DataFrame({"customer_id": ["a", "a"], "date": ["2024-01-01", "2024-01-05"], "amount": [1.0, 2.0]})
    other = pd.DataFrame({"customer_id": ["b"], "date": ["2024-01-01"], "amount": [9.0]})
    one.to_parquet(tmp_path / "q[1].parquet")
    other.to_parquet(tmp_path / "q1.parquet")
    got = clvmodels.load_transactions(tmp_path / "q[1].parquet", engine=engine).execute()
    assert sorted(got["customer_id"]) == ["a", "a"]
    folder = tmp_path / "log[2024]"
    (folder / "_temporary" / "0").mkdir(parents=True)
    one.to_parquet(folder / "part-0.parquet")
    other.to_parquet(folder / "_temporary" / "0" / "part-0.parquet")
    other.to_parquet(folder / ".part-1.parquet")
    (folder / "_SUCCESS").write_text("")
    got = clvmodels.load_transactions(folder, engine=engine).execute()
    assert sorted(got["customer_id"]) == ["a", "a"]
    # issue 29: Hive's suffix-less file names (000000_0) are read by both engines (DuckDB skipped
    # them: a total of 10.5 on DuckDB against 45.5 on Spark)
    hive = pd.DataFrame({"customer_id": ["c"], "date": ["2024-01-02"], "amount": [7.0]})
    hive.to_parquet(folder / "000000_0")
    got = clvmodels.load_transactions(folder, engine=engine).execute()
    assert sorted(got["customer_id"]) == ["a", "a", "c"] and got["amount"].sum() == 10.0


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_engines_agree_on_offsets_and_encodings(spark, tmp_path, engine):
    """Issue 15: text timestamps with a UTC offset count on the day written; Parquet timestamps
    of a fixed-offset zone (+05:30, as pandas writes) on that zone's day; a file that is not
    UTF-8 is refused on both engines (Spark merged José and Josè)."""
    (tmp_path / "tz.csv").write_text("customer_id,date,amount\na,2024-01-01T23:30:00-05:00,1\n"
                                     "a,2024-01-02T01:00:00+09:00,2\na,2024-01-03 10:00Z,3\n")
    got = clvmodels.load_transactions(tmp_path / "tz.csv", engine=engine).execute()
    assert [d.date().isoformat() for d in got.sort_values("amount")["date"]] == ["2024-01-01", "2024-01-02", "2024-01-03"]
    df = pd.DataFrame({"customer_id": ["a", "a"], "amount": [1.0, 2.0],
                       "date": pd.to_datetime(["2024-01-01 20:00", "2024-01-02 01:00"]).tz_localize("+05:30")})
    df.to_parquet(tmp_path / "offset.parquet")
    got = clvmodels.load_transactions(tmp_path / "offset.parquet", engine=engine).execute()
    assert [d.date().isoformat() for d in got.sort_values("amount")["date"]] == ["2024-01-01", "2024-01-02"]
    (tmp_path / "latin.csv").write_bytes(b"customer_id,date,amount\nJos\xe9,2024-01-01,1\nJos\xe8,2024-01-02,2\n")
    with pytest.raises(DataValidationError, match="is not valid UTF-8"):
        clvmodels.load_transactions(tmp_path / "latin.csv", engine=engine).execute()


def test_bad_spark_settings_and_mixed_folders_are_one_clear_line(tmp_path, cdnow_sample):
    """Issue 15: a JVM that refuses --spark-conf, and a folder whose files disagree on their
    columns, end in one line naming the problem and what to do (no traceback)."""
    cdnow_sample[["customer_id", "date", "amount"]].to_csv(tmp_path / "log.csv", index=False)
    proc = subprocess.run([sys.executable, "-m", "clvmodels.cli", "score", "--input", "log.csv", "--output", "out",
                           "--engine", "spark", "--spark-conf", "spark.driver.memory=abc"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "--spark-conf spark.driver.memory='abc' is not a memory size" in proc.stderr
    folder = tmp_path / "mixed"
    folder.mkdir()
    pd.DataFrame({"customer_id": ["a"], "date": ["2024-01-01"], "amount": [1.0]}).to_parquet(folder / "p1.parquet")
    pd.DataFrame({"customer_id": ["b"], "date": ["2024-01-02"]}).to_parquet(folder / "p2.parquet")
    with pytest.raises(DataValidationError, match="Check that every file has the columns"):
        clvmodels.load_transactions(folder)


def test_customer_table_on_spark_equals_duckdb(spark, tmp_path):
    """With a customer table, "auto" scoring brings up to ENGINE_SCORING_ABOVE customers to memory
    on Spark as on DuckDB, so the covariate models work on both and give the same report."""
    from clvmodels import pipeline
    from clvmodels.datasets import simulate_transactions

    logs = []
    for i, (ch, alpha) in enumerate((("A", 5.0), ("B", 2.6))):
        sim = simulate_transactions(600, r=0.5, alpha=alpha, a=0.8, b=2.5, seed=70 + i)
        logs.append(sim.transactions.assign(customer_id=ch + sim.transactions["customer_id"].astype(str)))
    log = pd.concat(logs)[["customer_id", "date", "amount"]]
    log.to_parquet(tmp_path / "log.parquet")
    ids = log["customer_id"].drop_duplicates()
    pd.DataFrame({"customer_id": ids, "channel": ids.str[0].map({"A": "web", "B": "store"})}).to_csv(
        tmp_path / "customers.csv", index=False)
    runs = []
    for engine in ("duckdb", "spark"):
        cfg = validate_parameters({"input_path": str(tmp_path / "log.parquet"), "engine": engine, "n_draws": 10,
                                   "customers_path": str(tmp_path / "customers.csv"), "covariates": ["channel"],
                                   "use_covariates": "yes", "horizon": 26})
        runs.append(pipeline.run_analysis(cfg, load_report_transactions(cfg)))
    duck, spk = runs
    assert spk.covariate_model is not None and duck.covariate_model is not None
    np.testing.assert_allclose(spk.covariate_model.model.params_, duck.covariate_model.model.params_, rtol=1e-6)
    cols = ["customers", "expected_purchases", "total_clv"]
    pd.testing.assert_frame_equal(spk.tier_table[cols], duck.tier_table[cols], rtol=1e-6, check_dtype=False)


def test_one_pass_on_spark_equals_duckdb_and_refuses_the_same(spark, tmp_path):
    """Issue 19: a CSV log read once on Spark (validation folded into the customer aggregation,
    kept persisted or brought to memory) gives DuckDB's table, and a bad file the same message."""
    from clvmodels import scoring
    from clvmodels.rfm import summarise_log

    from .test_one_pass import BAD, _log

    path = tmp_path / "log.csv"
    _log().to_csv(path, index=False)
    duck = summarise_log(path, refunds="net", observation_end="2023-08-31", time_unit="W")
    on_spark = summarise_log(path, refunds="net", observation_end="2023-08-31", time_unit="W", engine="spark")
    assert on_spark.log._find_backend().name == "pyspark"
    _same(on_spark.rfm, duck.rfm)
    assert (on_spark.first_day, on_spark.last_day, on_spark.customers) == (duck.first_day, duck.last_day, duck.customers)
    kept = summarise_log(path, refunds="net", keep="engine", engine="spark")
    rows = scoring.compressed_rfm(kept.log, time_unit="W").purchases
    pd.testing.assert_frame_equal(rows, scoring.compressed_rfm(path, time_unit="W", columns={"refunds": "net"}).purchases)
    scoring.release()
    for case in ("no id", "bad date", "text amount", "refund"):
        bad = tmp_path / f"{case.replace(' ', '_')}.csv"
        bad.write_text(BAD[case])
        with pytest.raises(DataValidationError) as loading:
            clvmodels.load_transactions(bad, engine="spark")
        with pytest.raises(DataValidationError) as one_pass:
            summarise_log(bad, keep="engine", engine="spark")
        assert str(one_pass.value) == str(loading.value)
