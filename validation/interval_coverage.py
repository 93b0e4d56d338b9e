"""Coverage of the per-tier 90% intervals, with and without the backtest's model error
(not a CI test: it takes several minutes).

    .venv/bin/python validation/interval_coverage.py [--datasets 40] [--customers 3000]

Three windows, as a report uses them: the models are chosen and scored on a backtest (fit to
week 39, holdout weeks 39-65), refitted on everything to week 65, and the tier intervals for
the next 26 weeks (to week 91) are checked against what customers then did. Two intervals are
checked: the model's own (:func:`clvmodels.tier_intervals`: parameter uncertainty and the
randomness of purchases) and the one the report shows, widened by the backtest's error
(:func:`clvmodels.backtest_ranges.widen_intervals`).

Worlds:

* ``BG/NBD``: generated from BG/NBD and Gamma-Gamma with CDNOW-like parameters (the model is right);
* ``drifting``: the same, but every repeat purchase is kept with a probability falling from 1
  at week 0 to 0.5 at week 91 (purchase rates decline over time, which no model here knows);
* ``CDNOW``: the CDNOW master log, fitted to 1997-06-30, backtest to 1997-12-31, checked on
  1998-01-01 to 1998-06-30 (one data set: each tier is covered or not).

Writes the coverage table to validation/README.md.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

import clvmodels
from clvmodels.backtest_ranges import backtest_error, widen_intervals
from clvmodels.datasets import load_cdnow, simulate_transactions
from clvmodels.tiers import TIERS

HERE = Path(__file__).resolve().parent


def drift(log: pd.DataFrame, seed: int, weeks: float = 91.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed + 10_000)
    age = (log["date"] - log["date"].min()).dt.days / 7.0
    first = ~log.duplicated("customer_id")
    keep = first | (rng.random(len(log)) < 1.0 - 0.5 * age / weeks)
    return log[keep.to_numpy()]


def one(log: pd.DataFrame, cal1: str, cal2: str, end: str, level: float, draws: int, seed: int) -> pd.DataFrame:
    backtest = clvmodels.calibration_holdout(log, calibration_end=cal1, observation_end=cal2, time_unit="W")
    sel = clvmodels.select_model(backtest)
    sc = clvmodels.evaluate(backtest, sel.calibration_model, clvmodels.GammaGammaModel().fit(backtest),
                            baselines=False)
    err = backtest_error(sc)
    cal = clvmodels.calibration_holdout(log, calibration_end=cal2, observation_end=end, time_unit="W")
    h = float(cal["duration_holdout"].iloc[0])
    model = sel.refit(cal)
    gg = clvmodels.GammaGammaModel().fit(cal)
    fc = clvmodels.forecast(model, gg, cal, horizon=h, discount_rate=0.0)
    tiers = clvmodels.assign_tiers(fc)
    iv = clvmodels.tier_intervals(model, gg, cal, tiers, horizon=h, discount_rate=0.0, level=level,
                                  n_draws=draws, seed=seed)
    table = clvmodels.tier_summary(fc, tiers, intervals=iv)
    wide = widen_intervals(table, err, level=level)
    actual = pd.DataFrame({"tier": tiers.astype(str), "purchases": cal["frequency_holdout"],
                           "revenue": cal["revenue_holdout"]}).groupby("tier")[["purchases", "revenue"]].sum()
    actual.loc["Total"] = actual.sum()
    rows = []
    for tier in [*TIERS, "Total"]:
        for what, col in (("purchases", "expected_purchases"), ("revenue", "expected_revenue")):
            val = actual.loc[tier, what] if tier in actual.index else 0.0
            for kind, t in (("model only", table), ("with backtest error", wide)):
                lo, hi = t.loc[tier, f"{col}_lower"], t.loc[tier, f"{col}_upper"]
                rows.append({"model": sel.chosen, "tier": tier, "quantity": what, "interval": kind,
                             "covered": lo <= val <= hi, "below": val < lo, "above": val > hi,
                             "rel_width": (hi - lo) / table.loc[tier, col]})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", type=int, default=40)
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--level", type=float, default=0.90)
    parser.add_argument("--draws", type=int, default=100)
    args = parser.parse_args()
    t0 = time.perf_counter()
    results = []
    for world in ("BG/NBD", "drifting"):
        for s in range(args.datasets):
            sim = simulate_transactions(args.customers, seed=s, period=91.0, acquisition_period=12.0)
            log = sim.transactions if world == "BG/NBD" else drift(sim.transactions, s)
            res = one(log, "2020-09-30", "2021-03-31", sim.truth.attrs["observation_end"], args.level, args.draws, s)
            results.append(res.assign(world=world, dataset=s))
    cdnow = one(load_cdnow("master"), "1997-06-30", "1997-12-31", "1998-06-30", args.level, args.draws, 0)
    results.append(cdnow.assign(world="CDNOW", dataset=0))
    res = pd.concat(results)
    cov = res.groupby(["world", "quantity", "tier", "interval"], sort=False).agg(
        coverage=("covered", "mean"), below=("below", "mean"), above=("above", "mean"),
        width=("rel_width", "median")).reset_index()
    picks = res.drop_duplicates(["world", "dataset"])
    chosen = picks.groupby("world", sort=False)["model"].agg(
        lambda m: ", ".join(f"{k} {v}x" for k, v in m.value_counts().items()))
    wide = cov.pivot_table(index=["world", "quantity", "tier"], columns="interval",
                           values=["coverage", "width"], sort=False)
    lines = [
        "### Coverage of the per-tier intervals (`validation/interval_coverage.py`)",
        "",
        f"Generated worlds: {args.datasets} data sets each of {args.customers:,} customers (CDNOW-like "
        "parameters, weeks, first purchases over 12 weeks). Backtest: fit to week 39, holdout to week 65; "
        "forecast: refit to week 65, 26-week horizon checked against weeks 65-91. CDNOW: backtest "
        "1997-06-30 / 1997-12-31, forecast checked on the first half of 1998 (one data set). "
        f"Nominal level {args.level:.0%}, {args.draws} draws; run time {time.perf_counter() - t0:.0f} s. "
        "Width is the median of (upper - lower) / point forecast.",
        "",
        "Models chosen by the backtest: " + "; ".join(f"{w}: {c}" for w, c in chosen.items()) + ".",
        "",
        "| world | quantity | tier | coverage, model only | coverage, with backtest error | width, model only | width, with backtest error |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for (world, q, tier), r in wide.iterrows():
        lines.append(
            f"| {world} | {q} | {tier} | {r[('coverage', 'model only')]:.0%} | {r[('coverage', 'with backtest error')]:.0%} "
            f"| {r[('width', 'model only')]:.0%} | {r[('width', 'with backtest error')]:.0%} |")
    text = "\n".join(lines)
    readme = HERE / "README.md"
    start, end = "<!-- coverage:start -->", "<!-- coverage:end -->"
    body = readme.read_text() if readme.exists() else "# Validation\n\nChecks too slow for CI, run by hand.\n"
    block = f"{start}\n{text}\n{end}"
    body = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, body, flags=re.S) if start in body else body.rstrip() + "\n\n" + block + "\n"
    readme.write_text(body)
    print(text)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
