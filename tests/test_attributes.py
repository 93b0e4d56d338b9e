"""The customer table in the report (issue 17, item 5): effects of attributes in words with
their tests, the backtest with covariates beside the chosen model, the forecast per segment."""

from __future__ import annotations

import pandas as pd
import pytest

from clvmodels.datasets import simulate_transactions
from clvmodels.exceptions import DataValidationError, ParameterError
from clvmodels.reporting import run_report, validate_parameters

SPEC = {"A": (5.0, 0.8, 2.5), "B": (5.0 / 1.9, 1.2, 2.5)}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("attrs")
    logs = []
    for i, (ch, (alpha, a, b)) in enumerate(SPEC.items()):
        sim = simulate_transactions(1500, r=0.5, alpha=alpha, a=a, b=b, seed=40 + i)
        logs.append(sim.transactions.assign(customer_id=ch + sim.transactions["customer_id"].astype(str)))
    log = pd.concat(logs)[["customer_id", "date", "amount"]]
    log.to_csv(root / "log.csv", index=False)
    ids = log["customer_id"].drop_duplicates()
    customers = pd.DataFrame({"customer_id": ids, "channel": ids.str[0].map({"A": "web", "B": "store"}),
                              "region": ["<img src=x>" if i % 2 else "east" for i in range(len(ids))]})
    customers.to_csv(root / "customers.csv", index=False)
    return root


def test_report_with_a_customer_table(files, tmp_path):
    folder = run_report("clv_report", {"input_path": str(files / "log.csv"), "customers_path": str(files / "customers.csv"),
                                       "covariates": ["channel"], "segment_col": "region", "n_draws": 10,
                                       "horizon": 26}, tmp_path, progress=False)
    page = (folder / "report.html").read_text()
    # both channels have 1,500 customers: the reference is the first by name
    assert "Effects are against the reference customers: channel = store" in page
    assert "customers with channel=web buy 0.5" in page  # store buys 1.9x as often in the generated log
    assert "the attributes matter (likelihood-ratio test" in page
    assert "The forecasts in this report come from" in page
    assert "<img src=x>" not in page and "&lt;img src=x&gt;" in page
    effects = pd.read_csv(folder / "covariate_effects.csv")
    web = effects[(effects["covariate"] == "channel=web") & (effects["process"] == "purchase rate")].iloc[0]
    assert web["lower"] < 1 / 1.9 < web["upper"]
    segments = pd.read_csv(folder / "segments.csv", index_col=0)
    forecast = pd.read_parquet(folder / "forecast.parquet")
    assert segments["customers"].sum() == len(forecast)
    assert segments["total_clv"].sum() == pytest.approx(forecast["clv"].sum())


def test_customer_table_errors_are_named(files, tmp_path):
    with pytest.raises(ParameterError, match="give it with customers_path"):
        validate_parameters({"covariates": ["channel"]})
    with pytest.raises(ParameterError, match="'covariates' is a list of column names"):
        validate_parameters({"customers_path": str(files / "customers.csv"), "covariates": "channel"})
    with pytest.raises(ParameterError, match="'customers_path'.*does not exist"):
        validate_parameters({"customers_path": str(tmp_path / "nope.csv")})
    from clvmodels.attributes import read_customer_table

    ids = pd.Index(["A1", "A2", "Z9"], name="customer_id")
    with pytest.raises(DataValidationError, match="1 customer\\(s\\) of the log have no row.*'Z9'"):
        read_customer_table(files / "customers.csv", "customer_id", ids)
    with pytest.raises(DataValidationError, match="has no column 'cust'"):
        read_customer_table(files / "customers.csv", "cust", ids)


def test_customer_table_beyond_memory_scoring_is_one_clear_error(files, monkeypatch):
    """Above ENGINE_SCORING_ABOVE customers the customer table stays in the engine, where the
    covariate models do not run: one error naming the limit and the ways out (any engine)."""
    import clvmodels
    from clvmodels import pipeline

    monkeypatch.setattr(pipeline, "ENGINE_SCORING_ABOVE", 100)
    cfg = validate_parameters({"input_path": str(files / "log.csv"), "customers_path": str(files / "customers.csv"),
                               "covariates": ["channel"], "n_draws": 10})
    with pytest.raises(ParameterError, match="more than 100 customers.*Leave the customer table out"):
        pipeline.run_analysis(cfg, clvmodels.load_transactions(files / "log.csv"))


def test_the_customer_table_reads_text_as_written(tmp_path):
    """Issue 29: 'NA' (North America) and a customer called 'NA' are values, as in the log; a column
    of numbers with 'NA' in it is refused by name instead of silently becoming categories."""
    from clvmodels.attributes import read_customer_table
    from clvmodels.exceptions import DataValidationError

    path = tmp_path / "customers.csv"
    path.write_text("customer_id,region,score\nNA,NA,1.5\nNone,EU,2\nC3,APAC,3\n")
    ids = pd.Index(["NA", "None", "C3"])
    table = read_customer_table(path, "customer_id", ids)
    assert table["region"].tolist() == ["NA", "EU", "APAC"]
    assert table["score"].tolist() == [1.5, 2.0, 3.0]
    path.write_text("customer_id,region,score\nC1,NA,1.5\nC2,EU,NA\nC3,APAC,3\n")
    with pytest.raises(DataValidationError, match=r"Column 'score' .* holds numbers and, in 1 row\(s\), \['NA'\]"):
        read_customer_table(path, "customer_id", pd.Index(["C1", "C2", "C3"]))


def test_weekly_runs_with_a_customer_table_compare_with_each_other(files, tmp_path):
    """Issue 29: a run with a customer table writes covariate_parameters.csv and no
    purchase_model.json; the next run said the earlier one 'could not be read'. Now it compares
    tier moves, lost customers and value, and says the earlier forecast's accuracy is not measured."""
    common = {"input_path": str(files / "log.csv"), "customers_path": str(files / "customers.csv"),
              "covariates": ["channel"], "use_covariates": "yes", "n_draws": 10, "horizon": 26, "title": "Weekly"}
    first = run_report("clv_report", {**common, "observation_end": "2021-02-28"}, tmp_path, progress=False)
    assert (first / "covariate_parameters.csv").exists() and not (first / "purchase_model.json").exists()
    second = run_report("clv_report", common, tmp_path, progress=False)
    page = (second / "report.html").read_text()
    assert "Compared with the run as of <strong>2021-02-28</strong>" in page
    assert "How the last forecast did</strong>: not measured" in page
    assert (second / "since_last_run_migration.csv").exists()
