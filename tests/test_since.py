"""Since the last run (issue 16, item 5): two reports on CDNOW cut at two dates."""

from __future__ import annotations

import json

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
