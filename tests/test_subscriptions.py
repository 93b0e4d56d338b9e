"""The subscription report (issue 18, item 3): a subscription log to a tiered report with the
same first screen, ranges, backtest and since-last-run view as the transaction report."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from clvmodels import pipeline, subscriptions
from clvmodels import stages as stages_module
from clvmodels.datasets import example_subscriptions
from clvmodels.exceptions import ParameterError
from clvmodels.reporting import run_report
from clvmodels.tiers import TIERS

FIRST = "2024-06-30"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("subs")
    common = {"n_draws": 40, "currency": "<b>EUR</b>", "title": "Subs <img src=x onerror=alert(1)>"}
    first = run_report("subscription_report", {**common, "observation_end": FIRST}, root, progress=False)
    second = run_report("subscription_report", common, root, progress=False)
    return first, second


def test_report_first_screen_tiers_and_files(two_runs):
    _, second = two_runs
    page = (second / "report.html").read_text()
    for words in ("over their remaining lifetime (payments still to come)",
                  "Subscribers expected to leave in the next 12 months",
                  "share of that value", "How far the last backtest missed",
                  ">Retention<", "Assumptions behind every value"):
        assert words in page, words
    assert "<img src=x" not in page and "<b>EUR</b>" not in page  # user text is inert
    table = pd.read_csv(second / "tier_table.csv", index_col=0)
    assert table.loc[list(TIERS), "subscribers"].sum() == table.loc["Total", "subscribers"]
    assert table.loc[list(TIERS), "total_clv"].sum() == pytest.approx(table.loc["Total", "total_clv"])
    for col in ("total_clv", "expected_to_leave"):
        assert (table[f"{col}_lower"] <= table[col] + 1e-6).all() and (table[col] <= table[f"{col}_upper"] + 1e-6).all()
    fc = pd.read_parquet(second / "forecast.parquet")
    assert len(fc) == len(example_subscriptions()) and set(fc["tier"]) == {*TIERS, "left"}
    assert np.isfinite(fc.select_dtypes("number").to_numpy(float)).all()
    backtest = pd.read_csv(second / "backtest.csv", index_col=0)
    assert set(backtest.index) == {"sBG", "BdW"} and backtest["chosen"].sum() == 1
    assert backtest.loc[backtest["chosen"], "log_loss"].iloc[0] == backtest["log_loss"].min()
    assert json.loads((second / "run.json").read_text())["model"] in ("sBG", "BdW")
    # issue 28, item 5: the subscribers to call, ranked by value at stake, with the reason; named on the first screen
    risk = pd.read_csv(second / "subscribers_at_risk.csv", index_col=0, dtype={0: str})
    assert len(risk) > 50 and set(risk["tier"]) <= {"Platinum", "Gold"}
    assert risk["value_at_stake"].is_monotonic_decreasing
    # money in the CSV is in cents (issue 30); the value at stake is value x chance to the cent
    np.testing.assert_allclose(risk["value_at_stake"], risk["clv"] * risk["churn_probability_during_horizon"], atol=0.01)
    assert (risk["clv"] * 100).round(6).eq((risk["clv"] * 100).round()).all()
    assert risk["why"].iloc[0].startswith("subscribed for ") and "chance of cancelling in the next 12 months" in risk["why"].iloc[0]
    assert "<b>What to do:</b> call the Platinum and Gold subscribers" in page and 'id="Subscribers-to-call"' in page
    assert f"{len(risk):,} subscribers listed, the first 50 shown" in page


def test_since_the_last_run(two_runs):
    first, second = two_runs
    page = (second / "report.html").read_text()
    assert f"Compared with the run as of <strong>{FIRST}</strong> (6 months earlier)" in page
    then = pd.read_parquet(first / "forecast.parquet")
    assert then["customer_id"].nunique() < len(example_subscriptions())  # as of the earlier date: fewer began
    assert "the next run will show what changed" in (first / "report.html").read_text()


def test_analysis_as_of_a_past_date_and_the_backtest():
    log = example_subscriptions(30)
    cfg = subscriptions.validate_subscription_parameters({"n_draws": 20, "observation_end": "2023-12-31"})
    an = subscriptions.run_subscription_analysis(cfg, log)
    assert an.observation_end == "2023-12-31"
    assert len(an.subscribers) == int((pd.to_datetime(log["start"]) <= "2023-12-31").sum())
    bt = an.backtest
    assert bt.attrs["calibration_end"] == "2023-06-30" and bt.attrs["holdout_periods"] == 6
    # the survivors the backtest counts are those active at its date and still active at the end
    assert bt["actual_survivors"].iloc[0] == pytest.approx(bt["actual_survivors"].iloc[1])
    assert abs(an.backtest_error) < 10
    assert cfg.per_period_discount == pytest.approx(1.10 ** (1 / 12) - 1, rel=1e-3)
    assert (an.retention["observed"].between(0, 1)).all()
    # the stages ran in order and each is timed, as the transaction report's are
    assert list(an.timings) == ["load and periods", "backtest and model choice", "fit on all data and forecast",
                                "tiers and intervals", "retention curve and at-risk list", "since the last run",
                                "write files"]


def test_a_new_section_is_one_stage(monkeypatch):
    """Both reports run a list of stages through clvmodels.stages.run_stages: a stage added to
    the list sees what the earlier ones left and its result is part of the run."""
    seen = {}

    def count_long_subscribers(run):
        seen["long"] = int((run.forecast["periods"] >= 12).sum())
        run.clock.lap("long subscribers")

    stages = list(subscriptions.SUBSCRIPTION_STAGES)
    monkeypatch.setattr(subscriptions, "SUBSCRIPTION_STAGES", stages[:3] + [count_long_subscribers] + stages[3:])
    cfg = subscriptions.validate_subscription_parameters({"n_draws": 20, "observation_end": "2023-12-31"})
    an = subscriptions.run_subscription_analysis(cfg, example_subscriptions(30))
    assert seen["long"] == int((an.forecast["periods"] >= 12).sum()) > 0
    assert "long subscribers" in an.timings
    assert pipeline.STAGES and all(callable(s) for s in pipeline.STAGES)
    assert stages_module.run_stages([], []) == []


def test_bad_parameters_are_named(tmp_path):
    with pytest.raises(ParameterError, match="'period' must be one of"):
        subscriptions.validate_subscription_parameters({"period": "fortnight"})
    with pytest.raises(ParameterError, match="'model' must be 'auto', 'sbg' or 'bdw'"):
        subscriptions.validate_subscription_parameters({"model": "pareto"})
    with pytest.raises(ParameterError, match="'input_path'.*does not exist"):
        subscriptions.validate_subscription_parameters({"input_path": str(tmp_path / "nope.csv")})


def test_cli_kind_subscription(tmp_path):
    example_subscriptions(10).rename(columns={"start": "began", "end": "stopped"}).to_csv(tmp_path / "subs.csv",
                                                                                        index=False)
    cmd = [sys.executable, "-m", "clvmodels.cli", "report", "--kind", "subscription", "--input", "subs.csv",
           "--start-col", "began", "--end-col", "stopped", "--output", "out", "--no-progress", "-p", "n_draws", "20"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / proc.stdout.strip()).exists()
    wrong = subprocess.run(cmd[:-4] + ["--date-col", "day"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    assert "--date-col is for transaction logs" in wrong.stderr


def test_template_declares_every_parameter_of_the_config():
    import nbformat
    import papermill as pm

    from clvmodels.reporting import template_path

    path = template_path("subscription_report")
    nb = nbformat.read(str(path), as_version=4)
    first = nb.cells[0]
    assert "parameters" in first.metadata.get("tags", [])
    declared = sorted(pm.inspect_notebook(str(path)))
    assert declared == sorted(subscriptions.SubscriptionConfig.__dataclass_fields__)


@pytest.mark.parametrize(("damage", "reason"), [
    ("no_active", "no column 'active'"),
    ("bad_date", "which is not a date"),
    ("bad_model", "could not be compared"),
    ("other_log", "another subscription log"),
    ("other_currency", "its values are in USD"),
])
def test_a_damaged_earlier_subscription_run_is_named_and_skipped(two_runs, tmp_path, damage, reason):
    """Issue 29: an earlier subscription run that cannot be used costs the comparison (named, with
    why), never the report (KeyError: 'active' before)."""
    import shutil

    first, _ = two_runs
    earlier = tmp_path / "earlier"
    shutil.copytree(first, earlier)
    fc = pd.read_parquet(earlier / "forecast.parquet")
    record = json.loads((earlier / "run.json").read_text())
    if damage == "no_active":
        fc.drop(columns=["active"]).to_parquet(earlier / "forecast.parquet")
    elif damage == "bad_date":
        (earlier / "run.json").write_text(json.dumps({**record, "observation_end": "2024-13-45"}))
    elif damage == "bad_model":
        (earlier / "subscription_model.json").write_text("{}")
    elif damage == "other_log":
        fc.assign(customer_id="x" + fc["customer_id"].astype(str)).to_parquet(earlier / "forecast.parquet")
    else:
        (earlier / "run.json").write_text(json.dumps({**record, "currency": "USD"}))
    cfg = subscriptions.validate_subscription_parameters({"n_draws": 20, "previous": str(earlier),
                                                          "currency": "<b>EUR</b>"})
    an = subscriptions.run_subscription_analysis(cfg, example_subscriptions())
    assert an.since["available"] is False
    assert "earlier" in an.since["reason"] and reason in an.since["reason"]
