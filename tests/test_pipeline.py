from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import clvmodels
from clvmodels import pipeline, reporting
from clvmodels.datasets import load_cdnow
from clvmodels.exceptions import DataValidationError


@pytest.fixture(scope="module")
def log(cdnow_sample):
    return clvmodels.load_transactions(cdnow_sample)


def test_windows_come_from_the_data(log):
    cfg = reporting.validate_parameters({})
    obs, cal = pipeline.resolve_windows(cfg, log)
    # CDNOW runs to 1998-06-30; a third of its 77.9 weeks is 25 whole weeks (< the 52-week horizon)
    assert obs == "1998-06-30" and cal == str((pd.Timestamp("1998-06-30") - pd.Timedelta(weeks=25)).date())
    cfg = reporting.validate_parameters({"horizon": 10})
    assert pipeline.resolve_windows(cfg, log)[1] == str((pd.Timestamp("1998-06-30") - pd.Timedelta(weeks=10)).date())
    assert pipeline.resolve_windows(reporting.validate_parameters({"calibration_end": "none"}), log)[1] is None
    given = reporting.validate_parameters({"calibration_end": "1997-09-30", "observation_end": "1998-01-31"})
    assert pipeline.resolve_windows(given, log) == ("1998-01-31", "1997-09-30")
    with pytest.raises(DataValidationError, match=r"'calibration_end' \(1996-01-01\) must fall between"):
        pipeline.resolve_windows(reporting.validate_parameters({"calibration_end": "1996-01-01"}), log)
    with pytest.raises(DataValidationError, match="before the first purchase"):
        pipeline.resolve_windows(reporting.validate_parameters({"observation_end": "1990-01-01"}), log)


def test_at_risk_customers(sample_rfm):
    """Issue 28: the list holds valuable customers more likely than not to buy nothing in the
    horizon and at least twice as likely as their tier's average, ranked by that ratio, each with
    the value at risk (value if retained x P(active) x P(no purchase)) and the reason in words; no
    figure is larger than what it is compared with."""
    bg = clvmodels.BetaGeoModel().fit(sample_rfm)
    gg = clvmodels.GammaGammaModel().fit(sample_rfm)
    settings = dict(horizon=52, discount_rate=0.1, margin=0.3, cost_to_serve=0.0)
    fc = clvmodels.forecast(bg, gg, sample_rfm, **settings)
    tiers = clvmodels.assign_tiers(fc)
    log = clvmodels.load_transactions(load_cdnow("sample")[["customer_id", "date", "amount"]])
    cands = sample_rfm.join(fc).assign(tier=tiers)
    risk = pipeline.at_risk_customers(cands, bg, gg, settings, observation_end="1997-09-30", time_unit="W", log=log)
    p_no = 1 - cands["p_any_purchase"]
    tier_mean = p_no.groupby(cands["tier"].astype(str)).mean()
    ratio = p_no / cands["tier"].astype(str).map(tier_mean)
    eligible = cands["tier"].isin(["Platinum", "Gold"]) & (p_no >= 0.5) & (ratio >= 2)
    assert len(risk) == int(eligible.sum()) >= 5  # every one that qualifies
    assert set(risk.index) == set(cands.index[eligible])
    assert set(risk["tier"]) <= {"Platinum", "Gold"} and (risk["p_no_purchase_in_horizon"] >= 0.5).all()
    np.testing.assert_allclose(risk["risk_against_tier"], ratio[risk.index], rtol=1e-12)
    assert risk["risk_against_tier"].is_monotonic_decreasing and (risk["risk_against_tier"] >= 2).all()
    assert (risk["value_at_risk"] <= risk["value_if_retained"] + 1e-9).all()
    assert (risk["clv"] <= risk["value_if_retained"] + 1e-9).all()
    first = risk.iloc[0]
    assert first["why"].endswith(f"; {first['risk_against_tier']:.1f}x a typical {first['tier']} customer's "
                                 "risk of buying nothing")
    expected = risk["value_if_retained"] * risk["p_alive"] * risk["p_no_purchase_in_horizon"]
    np.testing.assert_allclose(risk["value_at_risk"], expected, rtol=1e-9)
    repeat = risk[risk["purchases_so_far"] > 1].iloc[0]
    gap = repeat["usual_gap"]
    assert repeat["why"].startswith(f"usually buys every {gap:.1f} weeks, silent for "
                                    f"{repeat['time_since_last_purchase']:.1f}")
    one = risk.index[0]
    row = sample_rfm.loc[one]
    assert risk.loc[one, "purchases_so_far"] == row["frequency"] + 1
    assert risk.loc[one, "time_since_last_purchase"] == pytest.approx(row["T"] - row["recency"])
    raw = load_cdnow("sample")
    mine = raw[(raw["customer_id"] == one) & (raw["date"] <= "1997-09-30")]
    assert risk.loc[one, "spend_so_far"] == pytest.approx(mine["amount"].sum())
    assert pd.Timestamp(risk.loc[one, "last_purchase"]) == mine["date"].max()

def test_gradient_boosting_baseline_can_be_left_out(log):
    """Issue 30, item 1: the gradient-boosting baseline (most of a small log's backtest) is a
    setting; left out, the scorecard has the model and the naive rate, says why, and the choice
    and forecast are those of the run with it."""
    with pytest.raises(clvmodels.exceptions.ParameterError, match="baseline"):
        reporting.validate_parameters({"baseline": "maybe"})
    runs = {b: pipeline.run_analysis(reporting.validate_parameters({"baseline": b, "n_draws": 10}), log)
            for b in ("yes", "no")}
    with_it, without = runs["yes"].scorecard, runs["no"].scorecard
    assert "gradient boosting" in with_it.metrics.index and "gradient boosting" not in without.metrics.index
    assert "naive rate" in without.metrics.index
    assert any("baseline 'no'" in n for n in without.info["notes"])
    assert "baseline 'no'" in reporting.backtest_reading(runs["no"])
    assert runs["yes"].selection.chosen == runs["no"].selection.chosen
    pd.testing.assert_frame_equal(runs["yes"].tier_table, runs["no"].tier_table)


def test_analysis_without_backtest(log):
    cfg = reporting.validate_parameters({"calibration_end": "none", "n_draws": 10})
    a = pipeline.run_analysis(cfg, log)
    assert a.selection is None and a.scorecard is None and a.backtest_error is None
    assert a.model_name == "BG/NBD" and a.tier_table is a.tier_table_model_only
    assert "this run had no backtest" in reporting.first_screen(a)
    assert "There was no backtest in this run" in reporting.model_paragraph(a)
    assert set(a.timings) >= {"load and RFM", "tier intervals", "write files"}


def test_analysis_with_backtest_names_model_and_error(log):
    cfg = reporting.validate_parameters({"n_draws": 10, "currency": "USD"})
    a = pipeline.run_analysis(cfg, log)
    assert a.model_name in {"BG/NBD", "MBG/NBD", "Pareto/NBD"} and a.model_name == a.selection.chosen
    screen = reporting.first_screen(a)
    assert "USD " in screen and "How far the last backtest missed" in screen and "next 52 weeks" in screen
    # model names and statistical terms live in the method section, not on the first screen
    assert a.model_name not in screen and a.model_name not in reporting.executive_summary(a)
    assert f"**{a.model_name}**" in reporting.model_paragraph(a) and "chosen by backtest" in reporting.model_paragraph(a)
    total = a.tier_table.loc["Total"]
    model_only = a.tier_table_model_only.loc["Total"]
    assert total["total_clv_lower"] <= model_only["total_clv_lower"] <= model_only["total_clv_upper"] <= total["total_clv_upper"]


def test_backtest_on_a_customer_sample(log, monkeypatch):
    monkeypatch.setattr(pipeline, "BACKTEST_CUSTOMERS", 1000)
    a = pipeline.run_analysis(reporting.validate_parameters({"n_draws": 10}), log)
    assert len(a.rfm) == 2357 and a.model.n_customers_ == 2357  # the final fit sees everyone
    assert a.selection.calibration_model.n_customers_ <= 1000
    assert any("random sample of about 1,000 of 2,357 customers" in n for n in a.scorecard.info["notes"])


def _both_paths(log, tmp_path, **params):
    """The analysis of ``log`` with the customer table in memory and in the engine."""
    return [pipeline.run_analysis(reporting.validate_parameters({"scoring": mode, "output_dir": str(tmp_path / mode),
                                                                 **params}), log) for mode in ("memory", "engine")]


def test_engine_scoring_equals_memory(cdnow_master, tmp_path, monkeypatch):
    """scoring="engine" (customer table left in DuckDB) gives the report's numbers of the
    in-memory path: tier table with intervals, what-if, at-risk list, overview, frequency fit."""
    log = clvmodels.load_transactions(cdnow_master[["customer_id", "date", "amount"]])
    # the at-risk list capped below the customers who qualify: both paths say how many qualify
    from clvmodels import customer_tables, retention

    monkeypatch.setattr(retention, "AT_RISK_CANDIDATES", 100)
    monkeypatch.setattr(customer_tables, "AT_RISK_CANDIDATES", 100)
    mem, eng = _both_paths(log, tmp_path, n_draws=30, cost_to_serve=0.02)
    assert eng.scoring == "engine" and eng.customers == len(mem.rfm) == 23570
    assert eng.model_name == mem.model_name
    pd.testing.assert_frame_equal(eng.tier_table[mem.tier_table.columns], mem.tier_table, rtol=1e-6,
                                  check_dtype=False)
    pd.testing.assert_frame_equal(eng.what_if, mem.what_if, rtol=1e-6)
    pd.testing.assert_frame_equal(eng.at_risk, mem.at_risk, rtol=1e-6, check_dtype=False)
    assert len(mem.at_risk) == 100 and eng.at_risk.attrs["qualified"] == mem.at_risk.attrs["qualified"] > 100
    caption = reporting.format_at_risk(eng.at_risk).to_html()
    assert f"{mem.at_risk.attrs['qualified']:,} customers qualify; the 100 most at risk for their tier" in caption
    pd.testing.assert_frame_equal(eng.cash_flow, mem.cash_flow, rtol=1e-6)
    # issue 28, item 4: the periods add up to the horizon's totals, and the lifetime is in both paths
    total = mem.tier_table.loc["Total"]
    assert mem.cash_flow["expected_purchases"].sum() == pytest.approx(total["expected_purchases"], rel=1e-6)
    assert mem.cash_flow["expected_revenue"].sum() == pytest.approx(total["expected_revenue"], rel=1e-6)
    assert (mem.cash_flow["expected_revenue_lower"] <= mem.cash_flow["expected_revenue"]).all()
    assert eng.tier_table.loc["Total", "total_lifetime_clv"] == pytest.approx(total["total_lifetime_clv"], rel=1e-6)
    pd.testing.assert_frame_equal(eng.overview, mem.overview)
    pd.testing.assert_frame_equal(eng.frequency_fit, mem.frequency_fit, rtol=1e-6)
    assert eng.max_T == mem.max_T
    written = pd.read_parquet(tmp_path / "engine" / "forecast.parquet").set_index("customer_id").sort_index()
    np.testing.assert_allclose(written["clv"].to_numpy(), mem.forecast["clv"].to_numpy(), rtol=1e-6)
    assert (written["tier"].astype(str) == mem.tiers.astype(str)).all()
    assert not (tmp_path / "engine" / "forecast.csv").exists()
    assert "scored inside DuckDB" in reporting.scoring_note(eng) and reporting.scoring_note(mem) == ""
    assert (tmp_path / "engine" / "tier_table.csv").exists() and (tmp_path / "engine" / "purchase_model.json").exists()


def test_engine_scoring_samples_for_figures_and_cleans_up(cdnow_master, monkeypatch):
    import gc
    import tempfile
    from pathlib import Path

    def scratch_dirs() -> set:
        return set(Path(tempfile.gettempdir()).glob("clvmodels-scores-*"))

    before = scratch_dirs()
    monkeypatch.setattr(pipeline, "SAMPLE_CUSTOMERS", 2000)
    monkeypatch.setattr(pipeline, "BACKTEST_CUSTOMERS", 5000)
    log = clvmodels.load_transactions(cdnow_master[["customer_id", "date", "amount"]])
    a = pipeline.run_analysis(reporting.validate_parameters({"scoring": "engine", "n_draws": 10}), log)
    assert 1000 < len(a.rfm) < 4000 and a.customers == 23570  # a sample for figures, totals of all
    assert a.tier_table.loc["Total", "customers"] == 23570
    assert any("random sample of about 5,000 of 23,570" in n for n in a.scorecard.info["notes"])
    assert a.selection.calibration_model.n_customers_ < 10000
    assert len(scratch_dirs() - before) == 1  # no output_dir: the scores live in a scratch folder ...
    del a
    gc.collect()
    assert scratch_dirs() - before == set()  # ... removed with the analysis


def test_scoring_auto_uses_the_engine_above_the_threshold(log, monkeypatch):
    monkeypatch.setattr(pipeline, "ENGINE_SCORING_ABOVE", 1000)
    a = pipeline.run_analysis(reporting.validate_parameters({"n_draws": 10, "calibration_end": "none"}), log)
    assert a.scoring == "engine"
    monkeypatch.setattr(pipeline, "ENGINE_SCORING_ABOVE", 10_000)
    assert pipeline.run_analysis(reporting.validate_parameters({"n_draws": 10, "calibration_end": "none"}),
                                 log).scoring == "memory"


@pytest.mark.parametrize("scoring", ["memory", "engine"])
def test_everyone_lead_gives_every_tier_row(cdnow_sample, scoring):
    """Issue 15: a cost to serve above every customer's value puts everyone in Lead; both paths
    give a row per tier (empty ones with zeros, no NaN) and the report text renders."""
    log = clvmodels.load_transactions(cdnow_sample[["customer_id", "date", "amount"]])
    cfg = reporting.validate_parameters({"scoring": scoring, "n_draws": 10, "cost_to_serve": 1000})
    an = pipeline.run_analysis(cfg, log)
    table = an.tier_table
    assert list(table.index) == ["Platinum", "Gold", "Iron", "Lead", "Total"]
    assert table.loc["Lead", "customers"] == 2357 and table.loc["Platinum", "customers"] == 0
    assert not table[["mean_clv", "mean_churn_probability", "share_of_active_leaving"]].isna().any().any()
    assert "Platinum" in reporting.first_screen(an) and "USD" in reporting.executive_summary(an)


def test_backtest_reading_says_when_the_naive_model_ranks_as_well(cdnow_master):
    """Issue 16: on CDNOW master as of 1997-09-30 the naive rate ranks customers at least as well
    as the fitted model (Spearman); the reading says so."""
    log = clvmodels.load_transactions(cdnow_master[["customer_id", "date", "amount"]])
    cfg = reporting.validate_parameters({"n_draws": 10, "scoring": "memory", "observation_end": "1997-09-30",
                                         "horizon": 39})
    a = pipeline.run_analysis(cfg, log)
    m = a.scorecard.metrics
    text = reporting.backtest_reading(a)
    naive_as_good = m.loc["naive rate", "spearman"] >= m.loc[a.scorecard.info.get("model", m.index[0]), "spearman"] - 0.01
    assert ("ranks customers as well as this model" in text) == naive_as_good
    assert naive_as_good  # what was measured on this cut


def test_charts_adapt_to_frequent_buyers():
    """Issue 16: on a frequent-buyer log the observed-vs-expected chart does not put nearly everyone
    in one "7+" bar, the probability maps reach the frequencies customers have, and the churn axis
    follows the data."""
    import matplotlib

    matplotlib.use("Agg")
    from clvmodels import plots
    from clvmodels.datasets import simulate_transactions

    log = simulate_transactions(1500, r=4.0, alpha=5.0, a=0.3, b=30.0, seed=3).transactions
    cfg = reporting.validate_parameters({"n_draws": 10, "scoring": "memory", "calibration_end": "none"})
    an = pipeline.run_analysis(cfg, clvmodels.load_transactions(log))
    fit = an.frequency_fit
    assert fit["observed"].iloc[-1] <= 0.15 * fit["observed"].sum()  # the last "n+" bin is a tail, not the bulk
    assert an.frequency_range >= an.rfm["frequency"].median()
    ax = plots.plot_frequency_fit(fit)
    assert len(ax.get_xticklabels()) <= 12
    ax = plots.plot_tier_churn(an.tier_table)
    top = float(an.tier_table.loc[list(clvmodels.tiers.TIERS), ["mean_churn_probability", "mean_churn_by_horizon"]].max().max())
    assert ax.get_ylim()[1] == pytest.approx(min(1.0, max(top * 1.15, 0.02)))


def test_a_seasonal_log_gets_the_seasonal_model_on_both_paths(tmp_path):
    """A log whose purchase rates swing with the calendar: the report's backtest picks BG/NBD
    with a yearly season (52 weeks of calibration history), the engine path fits it on
    compressed rows plus the purchase calendar and gives the in-memory path's tier table, and
    the report says the season in words. A saved seasonal model scores a later log (moved to
    its date) from the command line's engine scoring."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "validation"))
    from worlds import worlds

    world = next(w for w in worlds(1500) if w.name == "seasonal")
    log = clvmodels.load_transactions(world.log[world.log["date"] <= pd.Timestamp(world.cut)])
    mem, eng = _both_paths(log, tmp_path, n_draws=20, horizon=52)
    assert mem.selection.chosen == eng.selection.chosen == "BG/NBD + season"
    assert isinstance(mem.model, clvmodels.SeasonalBetaGeoModel) and mem.model.calendar_["as_of"] == mem.observation_end
    np.testing.assert_allclose(eng.model.params_, mem.model.params_, rtol=1e-5)
    cols = ["customers", "expected_purchases", "expected_revenue", "total_clv"]
    pd.testing.assert_frame_equal(eng.tier_table[cols], mem.tier_table[cols], rtol=1e-5, check_dtype=False)
    assert "Purchases follow the calendar" in reporting.model_paragraph(mem)
    # the saved model scores the whole log (a later date) in the engine, moved to that date
    from clvmodels.models import load_model
    from clvmodels.scoring import score_customers

    saved = load_model(tmp_path / "memory" / "purchase_model.json")
    spend = load_model(tmp_path / "memory" / "gamma_gamma.json")
    later = score_customers(saved, spend, world.log, tmp_path / "later", horizon=26)
    assert later.customers == world.log["customer_id"].nunique()
    assert np.isfinite(later.tier_table.select_dtypes("number").to_numpy()).all()


def test_seasonal_dropout_report_on_both_paths(tmp_path):
    """A log whose customers leave most around New Year (validation's "seasonal dropout" world,
    two years of calibration before the backtest's holdout year): both paths choose the seasonal
    Pareto/NBD, fit it alike (compressed rows plus the purchase calendar in the engine), give the
    same tier table, and the report says when customers leave."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "validation"))
    from worlds import worlds

    world = next(w for w in worlds(1500) if w.name == "seasonal dropout")
    log = clvmodels.load_transactions(world.log[world.log["date"] <= pd.Timestamp(world.cut)])
    mem, eng = _both_paths(log, tmp_path, n_draws=20, horizon=52)
    assert mem.selection.chosen == eng.selection.chosen == "Pareto/NBD + season"
    assert isinstance(eng.model, clvmodels.SeasonalParetoNBDModel)
    np.testing.assert_allclose(eng.model.params_, mem.model.params_, rtol=1e-4)
    cols = ["customers", "expected_purchases", "expected_revenue", "total_clv"]
    pd.testing.assert_frame_equal(eng.tier_table[cols], mem.tier_table[cols], rtol=1e-4, check_dtype=False)
    assert "Customers are most likely to leave in" in reporting.model_paragraph(mem)
    assert "Customers leave most in" in reporting.executive_summary(mem)
    # the saved model scores the whole log (a later date) in the engine, moved to that date
    from clvmodels.models import load_model
    from clvmodels.scoring import score_customers

    saved = load_model(tmp_path / "memory" / "purchase_model.json")
    assert isinstance(saved, clvmodels.SeasonalParetoNBDModel)
    later = score_customers(saved, load_model(tmp_path / "memory" / "gamma_gamma.json"), world.log, tmp_path / "later",
                            horizon=26)
    assert later.customers == world.log["customer_id"].nunique()
    assert np.isfinite(later.tier_table.select_dtypes("number").to_numpy()).all()


def test_frequency_bins_are_ranges_of_one_width_and_an_open_last_bin():
    """Issue 30: the observed-vs-expected chart's bins read "0-3, 4-7, ... 40+" (they read
    "38-39, 40, 41+": a short range and a single count before the open bin)."""
    from clvmodels.plots import _grouped_counts

    for n in (13, 25, 42, 121):
        index = pd.Index([str(i) for i in range(n - 1)] + [f"{n - 1}+"], name="repeat_purchases")
        table = pd.DataFrame({"observed": np.arange(n, dtype=float), "expected": 1.0}, index=index)
        grouped = _grouped_counts(table)
        assert len(grouped) <= 12 and grouped.sum().tolist() == table.sum().tolist()
        ranges = [tuple(map(int, v.split("-"))) for v in grouped.index[:-1]]
        assert len({b - a for a, b in ranges}) == 1 and ranges[0][0] == 0  # one width, from 0
        assert grouped.index[-1] == f"{ranges[-1][1] + 1}+"


def test_figure_text_is_readable_on_a_phone():
    """Issue 30: at 400 px (352 px for the figure) every text of the report's figures is at least
    10 px: figures FIGURE_WIDTH inches wide with text of at least SMALLEST_TEXT points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from clvmodels import plots

    plots.set_report_style()
    fc_table = pd.DataFrame({"total_clv": [50.0, 30.0, 15.0, 5.0], "total_clv_lower": [40.0, 25, 12, 4],
                             "total_clv_upper": [60.0, 35, 18, 6], "share_of_clv": [0.5, 0.3, 0.15, 0.05]},
                            index=list(clvmodels.tiers.TIERS))
    ax = plots.plot_tier_value(fc_table, money=" (USD)")
    assert ax.get_ylabel() == "Total CLV (USD)"
    fig = ax.figure
    width_in = fig.get_size_inches()[0]
    sizes = [t.get_fontsize() for t in fig.findobj(matplotlib.text.Text) if t.get_text()]
    assert sizes and min(sizes) * 352 / (72 * width_in) >= 10
    plt.close("all")


def test_ranges_stretch_the_backtest_misses_to_a_longer_horizon():
    """Issue 27, item 6: a 52-week horizon after a 12-week backtest holdout carries the backtest's
    misses stretched x2.08 (sqrt(52 / 12)), said under the tier table."""
    log = clvmodels.load_cdnow("sample")
    cfg = reporting.validate_parameters({"n_draws": 20, "observation_end": "1997-09-30", "scoring": "memory"})
    obs, cal_end = pipeline.resolve_windows(cfg, clvmodels.load_transactions(log[log["date"] <= "1997-09-30"]))
    holdout = (pd.Timestamp(obs) - pd.Timestamp(cal_end)).days / 7
    assert holdout == 12
    an = pipeline.run_analysis(cfg, log[log["date"] <= "1997-09-30"])
    assert an.tier_table.attrs["stretch"] == pytest.approx(np.sqrt(52 / holdout))
    words = an.tier_table.attrs["stretch_words"]
    assert "stretched x2.08 from its 12-week holdout to the 52-week horizon" in words
    assert words in reporting.format_tier_table(an.tier_table).to_html()
    inner = an.tier_table_model_only
    assert (an.tier_table["total_clv_upper"] >= inner["total_clv_upper"]).all()
