"""Since the last run (issue 16, item 5): two reports on CDNOW cut at two dates."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from clvmodels.datasets import load_cdnow
from clvmodels.reporting import run_report
from clvmodels.tiers import TIERS

FIRST, SECOND = "1998-01-31", "1998-06-30"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("since")
    common = {"dataset": "cdnow-sample", "n_draws": 10, "horizon": 26, "title": "Monthly CLV"}
    first = run_report("clv_report", {**common, "observation_end": FIRST}, root, progress=False)
    second = run_report("clv_report", common, root, progress=False)
    return first, second


def test_second_run_compares_with_the_first(two_runs):
    first, second = two_runs
    assert json.loads((first / "run.json").read_text())["observation_end"] == FIRST
    page = (second / "report.html").read_text()
    assert "Since the last run" in page and f"Compared with the run as of <strong>{FIRST}</strong>" in page
    migration = pd.read_csv(second / "since_last_run_migration.csv", index_col=0)
    then = pd.read_parquet(first / "forecast.parquet")
    now = pd.read_parquet(second / "forecast.parquet")
    # every customer of the first run is in one cell; rows are the tiers then
    assert migration.loc[list(TIERS)].to_numpy().sum() == len(then)
    for tier in TIERS:
        assert migration.loc[tier].sum() == (then["tier"] == tier).sum()
    assert migration.sum().sum() == len(now)
    # the summary's moves read the matrix the right way round (right of the diagonal is down)
    import numpy as np

    down = int(np.triu(migration.loc[list(TIERS), list(TIERS)].to_numpy(), 1).sum())
    assert f"{down:,} customers moved down the pyramid" in page
    # issue 28, item 3: the first screen says what changed, and what to do, one line each
    first_screen = page[:page.index("The customer pyramid")]
    assert f"<b>What changed:</b> since the run as of {FIRST}" in first_screen
    assert f"; {down:,} customers moved down the pyramid" in first_screen
    risk = pd.read_csv(second / "at_risk_customers.csv", index_col=0)
    assert f"<b>What to do:</b> contact the {len(risk):,} Platinum and Gold customers" in first_screen
    assert 'href="#Valuable-customers-at-risk"' in first_screen and 'id="Valuable-customers-at-risk"' in page
    # the lost Platinum and Gold customers are named (page: the first 20; CSV: every one)
    lost = pd.read_csv(second / "since_last_run_lost_customers.csv", index_col=0, dtype={0: str})
    assert len(lost) > 0 and set(lost["tier_then"]) <= {"Platinum", "Gold"} and (lost["p_alive_now"] < 0.5).all()
    assert lost["value_then"].is_monotonic_decreasing
    assert f"{len(lost):,} customers who were Platinum or Gold then are now probably gone" in page
    assert f"Platinum and Gold customers of the earlier run probably gone now: {len(lost):,}" in page
    accuracy = pd.read_csv(second / "since_last_run_accuracy.csv", index_col=0)
    log = load_cdnow("sample")
    after = log[(log["date"] > FIRST) & (log["date"] <= SECOND)]
    purchase_days = after.groupby(["customer_id", "date"]).ngroups
    assert accuracy.loc["Total", "actual_purchases"] == purchase_days
    assert accuracy.loc["Total", "predicted_purchases"] > 0


def test_first_run_says_the_next_will_compare(two_runs):
    first, _ = two_runs
    assert "the next run will show what changed" in (first / "report.html").read_text()


def test_previous_must_be_a_report_folder(tmp_path):
    from clvmodels.exceptions import ParameterError
    from clvmodels.reporting import validate_parameters

    with pytest.raises(ParameterError, match="Parameter 'previous'.*not a report folder"):
        validate_parameters({"previous": str(tmp_path)})


@pytest.fixture(scope="module")
def two_engine_runs(tmp_path_factory):
    """The same two runs scored inside the engine (forecast.parquet partitioned by tier)."""
    root = tmp_path_factory.mktemp("since_engine")
    common = {"dataset": "cdnow-sample", "n_draws": 10, "horizon": 26, "title": "Monthly CLV", "scoring": "engine"}
    first = run_report("clv_report", {**common, "observation_end": FIRST}, root, progress=False)
    second = run_report("clv_report", common, root, progress=False)
    return first, second


def test_engine_path_compares_the_same_as_memory(two_runs, two_engine_runs):
    """Issue 16: since the last run on the engine path (was: "made when the customer table is in
    memory"), worked out in the engine, equal to the in-memory path's comparison."""
    _, memory = two_runs
    first, engine = two_engine_runs
    assert (first / "forecast.parquet").is_dir()  # the engine's partitioned dataset
    page = (engine / "report.html").read_text()
    assert f"Compared with the run as of <strong>{FIRST}</strong>" in page
    for name in ("since_last_run_migration.csv", "since_last_run_accuracy.csv"):
        a = pd.read_csv(memory / name, index_col=0)
        b = pd.read_csv(engine / name, index_col=0)
        assert list(a.index) == list(b.index) and list(a.columns) == list(b.columns)
        # the two paths fit on sums the engine and pandas add up in different orders: forecasts
        # agree to the fit's precision (1e-7 relative), so errors in percent to 1e-4 points
        pct = [c for c in a.columns if c.endswith("pct_error")]
        rest = [c for c in a.columns if c not in pct]
        np.testing.assert_allclose(b[rest].to_numpy(float), a[rest].to_numpy(float), rtol=1e-6, atol=1e-6,
                                   err_msg=name)
        np.testing.assert_allclose(b[pct].to_numpy(float), a[pct].to_numpy(float), rtol=0, atol=1e-4, err_msg=name)


def test_since_last_run_on_spark_equals_duckdb(two_runs, two_engine_runs, tmp_path):
    """The comparison reads the earlier forecast (one file or a partitioned folder) and the log on
    Spark as on DuckDB, with the same numbers."""
    import clvmodels
    from clvmodels.engine import spark_view
    from clvmodels.since import compare_runs

    session = clvmodels.spark_connection("local[2]", {"spark.sql.shuffle.partitions": "4"})._session
    log = load_cdnow("sample")[["customer_id", "date", "amount"]].assign(customer_id=lambda d: d["customer_id"].astype(str))
    log.to_parquet(tmp_path / "log.parquet")
    for first, second in (two_runs, two_engine_runs):
        now = pd.read_parquet(second / "forecast.parquet", columns=["customer_id", "tier", "p_alive", "clv"])
        now["tier"] = now["tier"].astype(str)
        now.to_parquet(tmp_path / "now.parquet")
        spark_log = clvmodels.load_transactions(tmp_path / "log.parquet", engine="spark")
        spark_scores = spark_view(session.read.parquet(str(tmp_path / "now.parquet")), like=spark_log)
        on_spark = compare_runs(first, log=spark_log, scores=spark_scores, observation_end=SECOND)
        fc = now.set_index("customer_id")
        on_duckdb = compare_runs(first, log=tmp_path / "log.parquet", forecast=fc, tiers=fc["tier"],
                                 observation_end=SECOND)
        assert on_spark.available and on_duckdb.available
        pd.testing.assert_frame_equal(on_spark.migration, on_duckdb.migration)
        pd.testing.assert_frame_equal(on_spark.lost, on_duckdb.lost, check_dtype=False)
        pd.testing.assert_frame_equal(on_spark.accuracy, on_duckdb.accuracy, rtol=1e-9)
        assert on_spark.value_then == pytest.approx(on_duckdb.value_then, rel=1e-12)


def _copy_run(first, tmp_path, name="earlier"):
    import shutil

    target = tmp_path / name
    shutil.copytree(first, target)
    return target


def _this_run(second):
    fc = pd.read_parquet(second / "forecast.parquet").set_index("customer_id")
    return fc, fc["tier"].astype(str)


def _damage_forecast_text_clv(folder):
    fc = pd.read_parquet(folder / "forecast.parquet")
    fc["clv"] = "lots"
    fc.to_parquet(folder / "forecast.parquet")


def _damage_forecast_no_tier(folder):
    pd.read_parquet(folder / "forecast.parquet").drop(columns=["tier"]).to_parquet(folder / "forecast.parquet")


def _damage_forecast_not_parquet(folder):
    (folder / "forecast.parquet").write_text("not parquet")


def _damage_record(**fields):
    def damage(folder):
        record = json.loads((folder / "run.json").read_text())
        (folder / "run.json").write_text(json.dumps({**record, **fields}))
    return damage


def _damage_model(folder):
    (folder / "purchase_model.json").write_text('{"format": "clvmodels.model", "format_version": 1, "model": '
                                                '"BetaGeoModel", "params": {"r": "x"}}')


def _no_model(folder):
    (folder / "purchase_model.json").unlink()


@pytest.mark.parametrize(("damage", "reason"), [
    (_damage_forecast_text_clv, "column 'clv' holds"),
    (_damage_forecast_no_tier, "no column 'tier'"),
    (_damage_forecast_not_parquet, "could not be compared"),
    (_damage_record(observation_end="1998-13-45"), "observation_end '1998-13-45', which is not a date"),
    (_damage_record(observation_end=None), "not a date"),
    (_damage_record(time_unit="fortnight"), "time unit 'fortnight'"),
    (_damage_record(horizon=-3), "horizon '-3', not a positive number"),
    (_damage_record(currency="EUR"), "its values are in EUR, this run's in USD"),
    (_damage_model, "damaged or was not written by clvmodels"),
    (_no_model, "no purchase_model.json"),
])
def test_an_earlier_run_that_cannot_be_used_is_named_and_skipped(two_runs, tmp_path, damage, reason):
    """Issue 29: a damaged or foreign earlier run costs the comparison, never the report: the
    comparison says which run and why, in one sentence."""
    from clvmodels.since import compare_runs

    first, second = two_runs
    earlier = _copy_run(first, tmp_path)
    damage(earlier)
    fc, tiers = _this_run(second)
    out = compare_runs(earlier, log=load_cdnow("sample"), observation_end=SECOND, forecast=fc, tiers=tiers,
                       currency="USD")
    assert not out.available
    assert out.reason.startswith(f"The run in '{earlier.name}' could not be compared") or "could not be" in out.reason
    assert reason in out.reason


def test_another_shops_run_in_the_same_folder_is_not_taken_for_this_ones(two_runs, tmp_path):
    """Two logs reported into one folder with the same title: the other log's run shares none of
    this log's customers, and is said to be of another log (it cost the report before)."""
    from clvmodels.since import compare_runs

    first, second = two_runs
    earlier = _copy_run(first, tmp_path)
    fc = pd.read_parquet(earlier / "forecast.parquet")
    fc["customer_id"] = "other-shop-" + fc["customer_id"].astype(str)
    fc.to_parquet(earlier / "forecast.parquet")
    now, tiers = _this_run(second)
    out = compare_runs(earlier, log=load_cdnow("sample"), observation_end=SECOND, forecast=now, tiers=tiers)
    assert not out.available and "it is of another log: 0 of its" in out.reason


def test_a_report_beside_a_damaged_run_of_its_title_still_publishes(two_runs, tmp_path):
    """A scheduled run (previous 'auto') whose output folder holds a damaged run of the same title:
    the report publishes, and its page names the run it could not compare with."""
    first, _ = two_runs
    earlier = _copy_run(first, tmp_path, first.name)
    _damage_record(observation_end="1998-13-45")(earlier)
    _damage_forecast_text_clv(earlier)
    out = run_report("clv_report", {"dataset": "cdnow-sample", "n_draws": 10, "horizon": 26, "title": "Monthly CLV"},
                     tmp_path, progress=False)
    page = (out / "report.html").read_text()
    assert "could not be compared" in page and first.name in page


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_damaged_or_foreign_earlier_runs_on_every_engine(two_engine_runs, tmp_path, engine):
    """Issue 29 on both engines: the comparison with an earlier engine-scored run (its forecast a
    folder partitioned by tier) names and skips a damaged or foreign run in the same words on DuckDB
    and on Spark, with the log and this run's scores kept in the engine."""
    import shutil

    import clvmodels
    from clvmodels.engine import spark_view
    from clvmodels.scoring import read_scores
    from clvmodels.since import compare_runs

    first, second = two_engine_runs
    log = load_cdnow("sample")[["customer_id", "date", "amount"]].assign(customer_id=lambda d: d["customer_id"].astype(str))
    log.to_parquet(tmp_path / "log.parquet")
    engine_log = clvmodels.load_transactions(tmp_path / "log.parquet", engine=engine)
    if engine == "spark":
        session = clvmodels.spark_connection("local[2]", {"spark.sql.shuffle.partitions": "4"})._session
        now = pd.read_parquet(second / "forecast.parquet", columns=["customer_id", "tier", "p_alive", "clv"])
        now.assign(tier=now["tier"].astype(str)).to_parquet(tmp_path / "now.parquet")
        scores = spark_view(session.read.parquet(str(tmp_path / "now.parquet")), like=engine_log)
    else:
        scores = read_scores(second / "forecast.parquet")
    then = pd.read_parquet(first / "forecast.parquet")
    then["tier"] = then["tier"].astype(str)

    def replaced(frame, name):
        folder = tmp_path / name
        shutil.copytree(first, folder)
        shutil.rmtree(folder / "forecast.parquet")
        frame.to_parquet(folder / "forecast.parquet")
        return folder

    cases = {
        replaced(then.assign(clv="lots"), "text_clv"): "column 'clv' holds",
        replaced(then.drop(columns=["tier"]), "no_tier"): "no column 'tier'",
        replaced(then.assign(customer_id="x" + then["customer_id"].astype(str)), "other_log"): "it is of another log",
    }
    for folder, reason in cases.items():
        out = compare_runs(folder, log=engine_log, scores=scores, observation_end=SECOND)
        assert not out.available and out.reason.startswith(f"The run in '{folder.name}' could not be compared")
        assert reason in out.reason
    intact = compare_runs(first, log=engine_log, scores=scores, observation_end=SECOND)
    assert intact.available
