"""Fitting on distinct rows and scoring inside the engine: the same numbers as in memory."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import clvmodels
from clvmodels.cli import main
from clvmodels.exceptions import ParameterError
from clvmodels.scoring import compressed_rfm, score_customers

SETTINGS = dict(horizon=52, discount_rate=0.1, margin=0.3)


@pytest.fixture(scope="module")
def master_log(cdnow_master, tmp_path_factory):
    path = tmp_path_factory.mktemp("scoring") / "master.parquet"
    cdnow_master[["customer_id", "date", "amount"]].to_parquet(path)
    return path


@pytest.fixture(scope="module")
def master_rfm(cdnow_master):
    return clvmodels.rfm_summary(cdnow_master, time_unit="W")


@pytest.mark.parametrize("model_cls", [clvmodels.BetaGeoModel, clvmodels.ParetoNBDModel])
def test_fit_on_distinct_rows_equals_fit_on_customers(model_cls, master_log, master_rfm):
    stats = compressed_rfm(master_log, time_unit="W")
    assert stats.customers == len(master_rfm)
    assert stats.purchases["weight"].sum() == len(master_rfm)
    assert len(stats.purchases) < len(master_rfm) / 2  # the point: far fewer rows than customers
    assert stats.spend["weight"].sum() == (master_rfm["frequency"] > 0).sum()
    model, spend = stats.fit(model_cls(), clvmodels.GammaGammaModel())
    full = model_cls().fit(master_rfm)
    np.testing.assert_allclose(model.params_.to_numpy(), full.params_.to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(model.log_likelihood_, full.log_likelihood_, rtol=1e-10)
    full_spend = clvmodels.GammaGammaModel().fit(master_rfm)
    np.testing.assert_allclose(spend.params_.to_numpy(), full_spend.params_.to_numpy(), rtol=1e-6)


@pytest.mark.parametrize("cost_to_serve", [0.0, 0.1])
@pytest.mark.parametrize("cutoff_sample", [None, 1000])
def test_scores_equal_the_in_memory_forecast_and_tiers(master_log, master_rfm, tmp_path, cost_to_serve, cutoff_sample,
                                                       monkeypatch):
    """Also with the cut-offs estimated on a sample of 1,000 of the 23,570 customers (the path of
    logs above 400,000 customers): the same tiers as ranking everyone."""
    if cutoff_sample:
        monkeypatch.setattr(clvmodels.scoring, "CUTOFF_SAMPLE", cutoff_sample)
    model = clvmodels.ParetoNBDModel().fit(master_rfm)
    spend = clvmodels.GammaGammaModel().fit(master_rfm)
    shares = {"Platinum": 0.1, "Gold": 0.2, "Iron": 0.4, "Lead": 0.3}
    result = score_customers(model, spend, master_log, tmp_path / "fc", tier_shares=shares,
                             cost_to_serve=cost_to_serve, **SETTINGS)
    fc = clvmodels.forecast(model, spend, master_rfm, cost_to_serve=cost_to_serve, **SETTINGS)
    tiers = clvmodels.assign_tiers(fc, shares=shares)
    got = pd.read_parquet(tmp_path / "fc").set_index("customer_id").sort_index()
    assert sorted(p.name for p in (tmp_path / "fc").iterdir()) == [
        "tier=Gold", "tier=Iron", "tier=Lead", "tier=Platinum"]
    assert result.customers == len(fc) and result.distinct_histories < len(fc)
    for col in fc.columns:
        np.testing.assert_allclose(got[col].to_numpy(), fc[col].to_numpy(), rtol=1e-11, atol=1e-12, err_msg=col)
    for col in ("frequency", "recency", "T"):
        np.testing.assert_array_equal(got[col].to_numpy(), master_rfm[col].to_numpy())
    # sums in a parallel aggregation: the order, so the last bit, may differ between queries
    np.testing.assert_allclose(got["monetary_value"].to_numpy(), master_rfm["monetary_value"].to_numpy(), rtol=1e-13)
    assert (got["tier"].astype(str) == tiers.astype(str)).all()
    if cost_to_serve:
        assert (fc["clv"] < 0).any()  # the negative-CLV rule is exercised
    expected = clvmodels.tier_summary(fc, tiers)
    pd.testing.assert_frame_equal(result.tier_table, expected[result.tier_table.columns], check_exact=False,
                                  rtol=1e-9, check_dtype=False)


def test_score_refuses_an_existing_output_and_unfitted_models(master_log, master_rfm, tmp_path):
    spend = clvmodels.GammaGammaModel().fit(master_rfm)
    with pytest.raises(ParameterError, match="fitted"):
        score_customers(clvmodels.BetaGeoModel(), spend, master_log, tmp_path / "a", **SETTINGS)
    (tmp_path / "b").mkdir()
    model = clvmodels.BetaGeoModel().fit(master_rfm)
    with pytest.raises(ParameterError, match="already exists"):
        score_customers(model, spend, master_log, tmp_path / "b", **SETTINGS)
    with pytest.raises(ParameterError, match="horizon"):
        score_customers(model, spend, master_log, tmp_path / "c", horizon=-1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # nothing half-written


def test_cli_score_with_report_models_and_with_a_fit(master_log, master_rfm, tmp_path, capsys):
    model = clvmodels.ModifiedBetaGeoModel().fit(master_rfm)
    spend = clvmodels.GammaGammaModel().fit(master_rfm)
    report = tmp_path / "report"
    report.mkdir()
    model.save(report / "purchase_model.json")
    spend.save(report / "gamma_gamma.json")
    (report / "parameters.json").write_text('{"horizon": 26.0, "margin": 0.5, "discount_rate": 0.05}')
    assert main(["score", "--input", str(master_log), "--models", str(report), "--output", str(tmp_path / "s1")]) == 0
    got = pd.read_parquet(tmp_path / "s1" / "forecast.parquet").set_index("customer_id").sort_index()
    fc = clvmodels.forecast(model, spend, master_rfm, horizon=26, margin=0.5, discount_rate=0.05)
    np.testing.assert_allclose(got["clv"].to_numpy(), fc["clv"].to_numpy(), rtol=1e-11)
    table = pd.read_csv(tmp_path / "s1" / "tier_table.csv", index_col="tier")
    assert table.loc["Total", "customers"] == len(master_rfm)

    assert main(["score", "--input", str(master_log), "--model", "bgnbd", "--horizon", "10",
                 "--output", str(tmp_path / "s2")]) == 0
    fitted = clvmodels.models.load_model(tmp_path / "s2" / "purchase_model.json")
    np.testing.assert_allclose(fitted.params_.to_numpy(), clvmodels.BetaGeoModel().fit(master_rfm).params_.to_numpy(),
                               rtol=1e-6)

    assert main(["score", "--input", str(master_log), "--output", str(tmp_path / "s2")]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["score", "--table", "t", "--output", str(tmp_path / "s3")]) == 1
    assert "need --engine spark" in capsys.readouterr().err
    assert not (tmp_path / "s3").exists()


def test_spend_rows_are_sampled_above_the_cap(master_log, master_rfm):
    repeat = int((master_rfm["frequency"] > 0).sum())
    stats = compressed_rfm(master_log, time_unit="W", max_spend_rows=3000)
    assert 0.3 * 3000 < stats.spend["weight"].sum() < 2 * 3000  # about the cap, not all repeat buyers
    assert stats.spend_sample == pytest.approx(3000 / repeat, rel=1e-3)
    assert stats.purchases["weight"].sum() == len(master_rfm)  # the purchase model still sees everyone
    _, spend = stats.fit(clvmodels.BetaGeoModel(), clvmodels.GammaGammaModel())
    full = clvmodels.GammaGammaModel().fit(master_rfm)
    mean = lambda g: g.params_["p"] * g.params_["v"] / (g.params_["q"] - 1)  # noqa: E731
    assert mean(spend) == pytest.approx(mean(full), rel=0.15)  # a sample's estimate of the same mean


def _score_cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clvmodels.cli", "score", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_score_publishes_atomically_under_any_name(cdnow_sample, tmp_path):
    """Issue 15: score output follows the report's rules: a name the engine would read as a
    pattern is literal, a failure (non-finite CLV) publishes nothing and is kept as -FAILED with
    one line of explanation, a killed run's hidden folder is removed by the next run."""
    import json

    from clvmodels import reporting

    cdnow_sample[["customer_id", "date", "amount"]].to_csv(tmp_path / "log.csv", index=False)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    killed = tmp_path / ".clvmodels-score-killed.tmp"
    (killed / "forecast.parquet").mkdir(parents=True)
    (killed / reporting.OWNER_FILE).write_text(json.dumps({**json.loads(reporting.owner_record()), "pid": dead.pid}))
    ok = _score_cli("--input", "log.csv", "--output", "scores[1]*", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    out = tmp_path / "scores[1]*"
    assert (out / "tier_table.csv").is_file() and (out / "forecast.parquet").is_dir()
    assert pd.read_parquet(out / "forecast.parquet")["customer_id"].nunique() == 2357
    assert not list(tmp_path.glob(".*.tmp"))  # the killed run's folder is gone, nothing left hidden
    bad = _score_cli("--input", "log.csv", "--output", "inf", "--cost-to-serve", "1e308", cwd=tmp_path)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "not a finite number" in bad.stderr
    assert not (tmp_path / "inf").exists() and (tmp_path / "inf-FAILED" / "FAILED.txt").is_file()
    again = _score_cli("--input", "log.csv", "--output", "scores[1]*", cwd=tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr


def _ranked_tiers(frame: pd.DataFrame, counts: list[int]) -> np.ndarray:
    """The tiers a global sort gives: value descending, then id ascending; negative CLV is Lead."""
    order = frame.sort_values(["clv", "customer_id"], ascending=[False, True], kind="stable").index
    rank = pd.Series(np.arange(len(frame)), index=order).reindex(frame.index).to_numpy()
    names = np.array(["Platinum", "Gold", "Iron", "Lead"])
    out = names[np.searchsorted(np.asarray(counts), rank, side="right")]
    return np.where(frame["clv"].to_numpy() < 0, "Lead", out)


@pytest.mark.parametrize("ids", ["int", "text"])
@pytest.mark.parametrize("values", ["continuous", "ties", "one value", "negative"])
def test_tier_cutoffs_rank_like_a_global_sort(ids, values, monkeypatch):
    """Issue 19, item 3: tiers from cut-off rows (approximate quantiles, then the few customers
    near each cut-off ranked exactly) equal the tiers of a full ranking, ties broken by id, for
    continuous values, heavy ties, a single value, negative values; also when the band has to
    be widened or is too large to bring into this process."""
    import ibis

    from clvmodels import scoring

    rng = np.random.default_rng(7)
    n = 5000
    clv = {"continuous": rng.lognormal(0, 2, n), "ties": np.round(rng.lognormal(0, 1, n), 1),
           "one value": np.full(n, 3.0), "negative": rng.normal(0, 1, n)}[values]
    cid = rng.permutation(n) if ids == "int" else np.array([f"c-{v:05d}é" for v in rng.permutation(n)], dtype=object)
    frame = pd.DataFrame({"customer_id": cid, "clv": clv})
    table = ibis.memtable(frame)
    for counts in ([250, 1000, 3500], [0, 0, n], [1, 2, 3], [n, n, n]):
        for band, max_rows in ((0.002, scoring.MAX_BAND_ROWS), (1e-9, 10)):
            monkeypatch.setattr(scoring, "MAX_BAND_ROWS", max_rows)
            cuts = scoring.tier_cutoffs(table, counts, n, band=band)
            tier = ibis.cases((table.clv < 0, "Lead"),
                              *((scoring._inside(table, c), name) for c, name in zip(cuts, ["Platinum", "Gold", "Iron"], strict=True)),
                              else_="Lead")
            got = clvmodels.engine.execute(table.mutate(tier=tier)).set_index("customer_id")["tier"]
            want = pd.Series(_ranked_tiers(frame, counts), index=frame["customer_id"])
            assert (got.reindex(want.index) == want).all(), (counts, band)


def test_tier_cutoffs_recover_from_a_poor_quantile_estimate(monkeypatch):
    """An engine whose approximate quantiles are far off (here: 30 points of quantile too high)
    makes the bands miss their cut-offs; they are widened until they hold them, and the tiers
    are still those of the full ranking."""
    import ibis
    import ibis.expr.types as ir

    from clvmodels import scoring

    rng = np.random.default_rng(3)
    n = 4000
    frame = pd.DataFrame({"customer_id": rng.permutation(n), "clv": np.round(rng.lognormal(0, 1, n), 2)})
    table = ibis.memtable(frame)
    real = ir.NumericColumn.approx_quantile
    asked = []

    def off(self, quantile, **kw):
        asked.append(quantile)
        return real(self, min(1.0, quantile + 0.3), **kw)

    monkeypatch.setattr(ir.NumericColumn, "approx_quantile", off)
    counts = [200, 800, 2800]
    cuts = scoring.tier_cutoffs(table, counts, n)
    tier = ibis.cases(*((scoring._inside(table, c), name) for c, name in zip(cuts, ["Platinum", "Gold", "Iron"], strict=True)),
                      else_="Lead")
    got = clvmodels.engine.execute(table.mutate(tier=tier)).set_index("customer_id")["tier"]
    want = pd.Series(_ranked_tiers(frame, counts), index=frame["customer_id"])
    assert (got.reindex(want.index) == want).all()
    assert len(asked) > 2 * len(counts)  # more than one round of estimates
