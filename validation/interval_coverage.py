"""Calibration check of the per-tier 90% intervals (not a CI test: it takes a few minutes).

    .venv/bin/python validation/interval_coverage.py [--datasets 100] [--customers 3000]

For each of N generated data sets with known truth (CDNOW-like BG/NBD and Gamma-Gamma
parameters, 78 weeks, first purchases over the first 12 weeks): fit both models on the first
39 weeks, assign tiers, compute the 90% tier-total intervals for the 39-week holdout with
:func:`clvmodels.tier_intervals`, and check whether the realised holdout purchases and revenue
of each tier fall inside. Writes the coverage table to validation/README.md.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

import clvmodels
from clvmodels.datasets import simulate_transactions
from clvmodels.tiers import TIERS

HERE = Path(__file__).resolve().parent


def one(seed: int, n: int, level: float, draws: int) -> pd.DataFrame:
    sim = simulate_transactions(n, seed=seed, period=78.0, acquisition_period=12.0)
    cal = clvmodels.calibration_holdout(sim.transactions, calibration_end="2020-09-30",
                                        observation_end=sim.truth.attrs["observation_end"], time_unit="W")
    h = float(cal["duration_holdout"].iloc[0])
    bg = clvmodels.BetaGeoModel().fit(cal)
    gg = clvmodels.GammaGammaModel().fit(cal)
    fc = clvmodels.forecast(bg, gg, cal, horizon=h, discount_rate=0.0)
    tiers = clvmodels.assign_tiers(fc)
    iv = clvmodels.tier_intervals(bg, gg, cal, tiers, horizon=h, discount_rate=0.0, level=level,
                                  n_draws=draws, seed=seed)
    actual = pd.DataFrame({"tier": tiers.astype(str), "purchases": cal["frequency_holdout"],
                           "revenue": cal["revenue_holdout"]}).groupby("tier")[["purchases", "revenue"]].sum()
    actual.loc["Total"] = actual.sum()
    rows = []
    for tier in [*TIERS, "Total"]:
        for what, col in (("purchases", "expected_purchases"), ("revenue", "expected_revenue")):
            lo, hi = iv.loc[tier, f"{col}_lower"], iv.loc[tier, f"{col}_upper"]
            val = actual.loc[tier, what] if tier in actual.index else 0.0
            rows.append({"seed": seed, "tier": tier, "quantity": what, "covered": lo <= val <= hi,
                         "below": val < lo, "above": val > hi})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", type=int, default=100)
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--level", type=float, default=0.90)
    parser.add_argument("--draws", type=int, default=200)
    args = parser.parse_args()
    t0 = time.perf_counter()
    results = pd.concat([one(s, args.customers, args.level, args.draws) for s in range(args.datasets)])
    cov = results.groupby(["quantity", "tier"], sort=False).agg(
        coverage=("covered", "mean"), realised_below=("below", "mean"), realised_above=("above", "mean"))
    table = cov.reset_index()
    lines = [
        "### Coverage of the per-tier intervals (`validation/interval_coverage.py`)",
        "",
        f"{args.datasets} generated data sets of {args.customers:,} customers (CDNOW-like parameters, weeks), "
        f"39-week calibration and 39-week holdout; nominal level {args.level:.0%}, {args.draws} draws; "
        f"run time {time.perf_counter() - t0:.0f} s.",
        "",
        "| quantity | tier | coverage | realised below interval | realised above interval |",
        "|---|---|---:|---:|---:|",
        *[f"| {r.quantity} | {r.tier} | {r.coverage:.0%} | {r.realised_below:.0%} | {r.realised_above:.0%} |"
          for r in table.itertuples()],
    ]
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
