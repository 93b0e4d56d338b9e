"""Whether the report forecasts with a customer table's covariates, judged against hindsight
(issue 27, item 4: treatments are candidates that win only on the backtest, by the choice's rule).

    .venv/bin/python validation/covariates_choice.py     # about 3 minutes

Two worlds of 4,000 customers in two channels (``web``, ``store``) of 2,000 each, BG/NBD within a
channel, 130 weeks: **dropout differs** (web a=0.3, b=6; store a=4, b=1.5; the same purchase rates
r=0.8, alpha=4) and **dropout and rate differ** (store alpha=16 as well: a quarter of the rate).
Each is reported on as of week 78 with horizons of 26 and 52 weeks, three seeds each. The
report's decision is made on its own backtests before the cut (the model choice's windows, the
chosen family with the channel as a covariate of purchase rate and dropout): by the rule until
December 2026 (lower holdout mean squared error at the latest origin, beyond the tolerance) and by
the model choice's own rule (the 8 tier cells and the totals at every origin:
:func:`clvmodels.attributes.covariate_backtest`). Both models are then fitted to the cut and scored
on what happened (customers tiered by each model's own forecast, mean absolute error of the 8 tier
cells, total purchases error). Writes ``validation/covariates_choice.csv`` and a table in
``validation/README.md``.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from clvmodels.attributes import _family, _purchase_model, covariate_backtest
from clvmodels.datasets import simulate_transactions
from clvmodels.selection import (
    TOLERANCE,
    candidate_classes,
    holdout_scores,
    holdout_spend,
    select_model,
)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _readme import write_section  # noqa: E402
from choice_vs_hindsight import report_windows, window  # noqa: E402

WEEK = pd.Timedelta(days=7)
WORLDS = {"dropout differs": {"web": (0.8, 4.0, 0.3, 6.0), "store": (0.8, 4.0, 4.0, 1.5)},
          "dropout and rate differ": {"web": (0.8, 4.0, 0.3, 6.0), "store": (0.8, 16.0, 4.0, 1.5)}}
CUT, SPAN = 78, 130


def world_log(spec: dict, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    logs = []
    for i, (channel, (r, alpha, a, b)) in enumerate(spec.items()):
        sim = simulate_transactions(2000, r=r, alpha=alpha, a=a, b=b, seed=seed + i, period=float(SPAN))
        logs.append(sim.transactions.assign(customer_id=channel[0] + sim.transactions["customer_id"].astype(str)))
    log = pd.concat(logs)[["customer_id", "date", "amount"]]
    ids = log["customer_id"].drop_duplicates()
    channel = pd.Series(np.where(ids.str[0] == "w", "web", "store"), index=ids.to_numpy(), name="channel")
    return log, channel


def check(world: str, seed: int, horizon: int) -> dict:
    log, channel = world_log(WORLDS[world], seed)
    start = log["date"].min()
    cut = start + CUT * WEEK
    windows = report_windows(log, cut, horizon)
    sel = select_model(windows[0], earlier=windows[1:])
    table = channel.to_frame()
    modified, pareto = _family(type(sel.models[sel.chosen]))
    b = covariate_backtest(sel, table, ["channel"], modified, pareto)
    new = b["score"] < b["chosen_score"] * (1 - TOLERANCE)
    old = b["mse"] < b["chosen_mse"] * (1 - TOLERANCE)
    # hindsight: both fitted to the cut, scored on what then happened
    hind = window(log, cut, cut + horizon * WEEK)
    t = float(hind["duration_holdout"].iloc[0])
    spend = holdout_spend(hind)
    cls, init = candidate_classes(hind)[sel.chosen]
    plain = cls(**init).fit(hind).expected_purchases(hind, t).to_numpy(float)
    tab = table.loc[hind.index]
    cov = _purchase_model(["channel"], modified, pareto).fit(hind, tab)
    with_cov = cov.predict("expected_purchases", hind, tab, t).reindex(hind.index).to_numpy(float)
    sp, sc = holdout_scores(hind, plain, spend), holdout_scores(hind, with_cov, spend)
    return {"world": world, "seed": seed, "horizon": horizon, "chosen": sel.chosen, "origins": b["origins"],
            "backtest_score": b["score"], "backtest_chosen_score": b["chosen_score"],
            "backtest_mse": b["mse"], "backtest_chosen_mse": b["chosen_mse"],
            "rule_uses": bool(new), "mse_rule_uses": bool(old),
            "plain_tier_pct": sp["tier_pct"], "covariates_tier_pct": sc["tier_pct"],
            "plain_total_pct": sp["total_pct"], "covariates_total_pct": sc["total_pct"],
            "plain_mse": sp["mse"], "covariates_mse": sc["mse"]}


def main() -> None:
    warnings.simplefilter("ignore")
    started = time.perf_counter()
    rows = [check(world, seed, h) for world in WORLDS for seed in (70, 170, 270) for h in (26, 52)]
    t = pd.DataFrame(rows)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(t.round(3).to_string(index=False))
    t.to_csv(HERE / "covariates_choice.csv", index=False)

    def picked(uses: pd.Series, what: str) -> pd.Series:
        return np.where(uses, t[f"covariates_{what}"], t[f"plain_{what}"])

    best = np.minimum(t["plain_tier_pct"], t["covariates_tier_pct"])
    lines = ["| world | seed | horizon | backtest: score with / without (rule), MSE with / without | the rule uses "
             "them | the MSE rule uses them | in hindsight: tier error without / with, total without / with |",
             "|---|---:|---:|---|---|---|---|"]
    for r in t.itertuples():
        lines.append(f"| {r.world} | {r.seed} | {r.horizon} | {r.backtest_score:.2f} / {r.backtest_chosen_score:.2f}, "
                     f"{r.backtest_mse:.3f} / {r.backtest_chosen_mse:.3f} | {'yes' if r.rule_uses else 'no'} | "
                     f"{'yes' if r.mse_rule_uses else 'no'} | {r.plain_tier_pct:.1f}% / {r.covariates_tier_pct:.1f}%, "
                     f"{r.plain_total_pct:+.1f}% / {r.covariates_total_pct:+.1f}% |")
    summary = {name: (float(np.mean(picked(t[col], 'tier_pct'))), float(np.mean(np.abs(picked(t[col], 'total_pct')))),
                      int((picked(t[col], "tier_pct") <= best + 1e-9).sum()))
               for name, col in (("the rule", "rule_uses"), ("the MSE rule", "mse_rule_uses"))}
    lines.append("")
    for name, (tier, total, hits) in summary.items():
        lines.append(f"* {name}: mean tier error in hindsight {tier:.1f}%, mean |total| {total:.1f}%, the better of "
                     f"the two on {hits} of {len(t)}")
    lines.append(f"* always with the covariates: {t['covariates_tier_pct'].mean():.1f}%, "
                 f"{t['covariates_total_pct'].abs().mean():.1f}%; never: {t['plain_tier_pct'].mean():.1f}%, "
                 f"{t['plain_total_pct'].abs().mean():.1f}%; the better in hindsight {best.mean():.1f}%")
    block = ("### Covariates as a candidate (`validation/covariates_choice.py`)\n\n"
             "Whether the report forecasts with a customer table's channel, decided on its own backtests, against "
             "what then happened (the module docstring gives the worlds). Run time "
             f"{time.perf_counter() - started:.0f} s.\n\n" + "\n".join(lines))
    write_section("covariates-choice", block)


if __name__ == "__main__":
    main()
