"""Notebook plots straight from a fitted model and its data (issue 30, item 4)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import clvmodels  # noqa: E402
from clvmodels import plots  # noqa: E402
from clvmodels.exceptions import DataValidationError, ParameterError  # noqa: E402
from clvmodels.tiers import TIERS  # noqa: E402


@pytest.fixture(scope="module")
def fitted():
    log = clvmodels.load_cdnow("sample")
    rfm = clvmodels.rfm_summary(log, time_unit="W", observation_end="1997-09-30")
    return log, rfm, clvmodels.BetaGeoModel().fit(rfm)


def test_period_transactions_and_the_matrices_take_the_model(fitted):
    log, rfm, model = fitted
    ax = plots.plot_period_transactions(model, rfm)
    table = model.expected_customers_by_frequency(rfm)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(table.index)
    heights = sorted(round(p.get_height(), 6) for p in ax.patches if p.get_height() > 0)
    assert sorted(round(v, 6) for v in table.to_numpy().ravel() if v > 0) == heights
    assert "P(alive)" in plots.plot_probability_alive_matrix(model, T=30).get_title()
    assert "Expected purchases in next 10" in plots.plot_frequency_recency_matrix(model, t=10, T=30).get_title()
    plt.close("all")


def test_history_alive_agrees_with_the_rfm_table_at_every_date(fitted):
    """Each point of a customer's P(alive) history is the model's P(alive) for the RFM row the log
    gives at that date: checked against rfm_summary at three dates."""
    log, _, model = fitted
    counts = log.groupby("customer_id")["date"].nunique()
    who = counts[counts >= 4].index[0]
    first = pd.to_datetime(log.loc[log["customer_id"] == who, "date"]).min().normalize()
    history = plots.history_alive(model, log, who, end=first + pd.Timedelta(weeks=40))
    assert len(history) == 41 and history["frequency"].is_monotonic_increasing
    for weeks in (5, 20, 40):
        end = first + pd.Timedelta(weeks=weeks)
        row = clvmodels.rfm_summary(log[log["date"] <= end], time_unit="W", observation_end=str(end.date())).loc[[who]]
        at = history[history["T"] == weeks].iloc[0]
        assert at["frequency"] == row["frequency"].iloc[0]
        assert at["recency"] == pytest.approx(row["recency"].iloc[0])
        assert at["p_alive"] == pytest.approx(float(model.probability_alive(row).iloc[0]), rel=1e-12)
    # from the second repeat purchase on, a purchase lifts the belief (BG/NBD: before the first
    # repeat purchase a customer cannot have left yet, P(alive) = 1); a silence lowers it
    buy = history[(history["frequency"].diff() > 0) & (history["frequency"].shift() >= 1)]
    assert len(buy)
    quiet = history[(history["frequency"].diff() == 0) & (history["frequency"] >= 1)]
    assert (quiet["p_alive"].to_numpy() <= history["p_alive"].shift().loc[quiet.index].to_numpy() + 1e-12).all()
    assert (buy["p_alive"].to_numpy() >= history["p_alive"].shift().loc[buy.index].to_numpy() - 1e-12).all()
    ax = plots.plot_history_alive(model, log, who, end=first + pd.Timedelta(weeks=40))
    assert ax.get_ylabel() == "P(alive)"
    plt.close("all")


def test_history_alive_names_what_is_wrong(fitted):
    log, _, model = fitted
    with pytest.raises(DataValidationError, match="no purchase"):
        plots.history_alive(model, log, "no such customer")
    with pytest.raises(DataValidationError, match="no column 'when'"):
        plots.history_alive(model, log, "1", date_col="when")
    with pytest.raises(ParameterError, match="time unit"):
        plots.history_alive(clvmodels.BetaGeoModel.from_params(dict(model.params_)), log, log["customer_id"].iloc[0])


def test_calibration_vs_holdout(fitted):
    log, _, _ = fitted
    cal = clvmodels.calibration_holdout(log, calibration_end="1997-09-30", observation_end="1998-06-30", time_unit="W")
    model = clvmodels.BetaGeoModel().fit(cal)
    ax = plots.plot_calibration_purchases_vs_holdout_purchases(model, cal)
    actual = ax.get_lines()[0].get_ydata()
    expected = cal.groupby(np.minimum(cal["frequency"], 7))["frequency_holdout"].mean().to_numpy()
    np.testing.assert_allclose(actual, expected)
    plt.close("all")


def test_retention_what_if_shows_the_lifetime_beside_the_horizon(fitted):
    """Issue 28, item 2: the what-if chart shows what less dropout is worth over the remaining
    lifetime beside the horizon, each bar labelled with its own change in percent."""
    _, rfm, model = fitted
    spend = clvmodels.GammaGammaModel().fit(rfm)
    tiers = clvmodels.assign_tiers(clvmodels.forecast(model, spend, rfm, horizon=26))
    wi = clvmodels.retention_what_if(model, spend, rfm, tiers, dropout_reduction=0.2, horizon=26)
    assert (wi.loc[list(TIERS), "lifetime_change"] > wi.loc[list(TIERS), "change"]).all()
    ax = plots.plot_retention_what_if(wi, money=" (USD)")
    bars = [p for p in ax.patches]
    assert len(bars) == 8 and "lifetime" in ax.get_title() and "(USD)" in ax.get_ylabel()
    labels = {t.get_text() for t in ax.texts}
    for tier in TIERS:
        for col in ("change_pct", "lifetime_change_pct"):
            assert f"{wi.loc[tier, col]:+.1f}%" in labels
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["over the horizon", "over the lifetime"]
    plt.close("all")
    # a table without the lifetime columns: the horizon alone
    ax = plots.plot_retention_what_if(wi.drop(columns=[c for c in wi.columns if c.startswith("lifetime")]))
    assert len(ax.patches) == 4 and ax.get_legend() is None
    plt.close("all")
