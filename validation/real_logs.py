"""Forecasts checked against what then happened, the way a user would: run the report's whole
analysis as of a past date, forecast to the end of the data, compare per tier and per customer
(not a CI test: a few minutes).

    .venv/bin/python validation/real_logs.py [--customers 4000] [--only NAME ...]

Logs: CDNOW master cut at 1997-06-30, 1997-09-30 and 1997-12-31 (horizon: to 1998-06-30), and
the generated worlds of ``validation/worlds.py``, each of which breaks one assumption of the
models (left truncation, no dropout, seasonality, a trend, heavy-tailed spend, weak
identification), cut at week 78 of 130 (the weakly identified one at week 20 of 46).

Per log: the chosen model; the error of the tier totals of purchases and revenue; the mean
absolute tier error; how many of
the 8 tier cells (4 tiers x purchases, revenue) the report's 90% intervals cover and their
median half-width; the share of customers whose 90% predictive interval covers what they did;
crashes and NaN. Goal of issue 14: mean absolute tier error <= 10%, total within 10%, >= 7 of 8
cells covered with median half-width <= 25%, customer coverage 85-95%, no crash, no NaN.

Writes ``validation/real_logs.csv`` and the table in ``validation/README.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import pandas as pd

import clvmodels
from clvmodels import pipeline, reporting
from clvmodels.datasets import load_cdnow
from clvmodels.tiers import TIERS

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _readme import write_section  # noqa: E402
from worlds import worlds  # noqa: E402

CDNOW_END = "1998-06-30"


def check(name: str, log: pd.DataFrame, cut: str, end: str, n_draws: int = 100) -> dict:
    horizon = float(np.floor((pd.Timestamp(end) - pd.Timestamp(cut)).days / 7))
    end = str((pd.Timestamp(cut) + pd.Timedelta(days=7 * horizon)).date())
    row: dict = {"log": name, "cut": cut, "horizon_weeks": horizon}
    start = time.perf_counter()
    try:
        cfg = reporting.validate_parameters({"observation_end": cut, "horizon": horizon, "n_draws": n_draws,
                                             "scoring": "memory"})
        an = pipeline.run_analysis(cfg, clvmodels.load_transactions(log[log["date"] <= pd.Timestamp(cut)]))
    except Exception as exc:  # noqa: BLE001 - a crash is a result here
        row.update({"crash": f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"})
        traceback.print_exc()
        return row
    row["seconds"] = time.perf_counter() - start
    row["model"] = an.model_name
    row["crash"] = ""
    # what each customer of the report did after the cut: purchase days and revenue
    after = clvmodels.calibration_holdout(log, calibration_end=cut, observation_end=end, time_unit="W")
    act = pd.DataFrame({"purchases": after["frequency_holdout"], "revenue": after["revenue_holdout"]},
                       dtype=float).reindex(an.forecast.index, fill_value=0.0)
    tiers = an.tiers.astype(str)
    act_t = act.groupby(tiers).sum().reindex(TIERS)
    tt = an.tier_table
    nan = int(an.forecast.isna().to_numpy().sum()) + int(tt.isna().to_numpy().sum())
    row["nan_cells"] = nan
    covered, halfwidths = 0, []
    for q, col in (("purchases", "expected_purchases"), ("revenue", "expected_revenue")):
        pred = tt.loc[list(TIERS), col].to_numpy(float)
        actual = act_t[q].to_numpy(float)
        err = 100 * (pred - actual) / actual
        for tier, e in zip(TIERS, err, strict=True):
            row[f"{q}_{tier}_pct"] = e
        row[f"{q}_mean_abs_tier_pct"] = float(np.mean(np.abs(err)))
        total_pred, total_act = float(tt.loc["Total", col]), float(actual.sum())
        row[f"{q}_total_pct"] = 100 * (total_pred - total_act) / total_act
        lo, hi = f"{col}_lower", f"{col}_upper"
        if lo in tt.columns:
            lower = tt.loc[list(TIERS), lo].to_numpy(float)
            upper = tt.loc[list(TIERS), hi].to_numpy(float)
            covered += int(((lower <= actual) & (actual <= upper)).sum())
            halfwidths += list(100 * (upper - lower) / 2 / np.abs(pred))
    row["tier_cells_covered_of_8"] = covered
    row["median_halfwidth_pct"] = float(np.median(halfwidths)) if halfwidths else np.nan
    ci = an.customer_intervals
    if ci is not None and "purchases_lower" in ci.columns:
        a = act["purchases"].to_numpy(float)
        inside = (ci["purchases_lower"].to_numpy() <= a) & (a <= ci["purchases_upper"].to_numpy())
        row["customer_coverage_pct"] = 100 * float(inside.mean())
    elif ci is not None and "expected_purchases_lower" in ci.columns:
        # parameter intervals of the expected count, checked as if they were predictive
        a = act["purchases"].to_numpy(float)
        inside = (ci["expected_purchases_lower"].to_numpy() <= a) & (a <= ci["expected_purchases_upper"].to_numpy())
        row["customer_coverage_pct"] = 100 * float(inside.mean())
    trunc = getattr(an, "left_truncation", None)
    row["left_truncated"] = bool(trunc and trunc.detected)
    row["learned_from"] = ("" if not (trunc and trunc.usable_cohort) else
                           "the cohort" if trunc.fits_cohort else "everyone")
    return row


def logs(customers: int) -> list[tuple[str, pd.DataFrame, str, str]]:
    master = load_cdnow("master")
    out = [(f"CDNOW master {c}", master, c, CDNOW_END) for c in ("1997-06-30", "1997-09-30", "1997-12-31")]
    out += [(w.name, w.log, w.cut, w.end) for w in worlds(customers)]
    return out


def run_each(customers: int, only: list[str] | None, check_one) -> list[dict]:
    """``check_one(name, log, cut, end)`` on every log of :func:`logs` (or those named in ``only``),
    saying which as it goes; the log with ids as text and only the report's columns."""
    rows = []
    for name, log, cut, end in logs(customers):
        if only and name not in only:
            continue
        print(f"{name} ...", flush=True)
        log = log[["customer_id", "date", "amount"]].copy()
        log["customer_id"] = log["customer_id"].astype(str)
        rows.append(check_one(name, log, cut, end))
    return rows


def to_markdown(table: pd.DataFrame) -> str:
    def f(v, fmt="{:+.0f}%"):
        return "" if pd.isna(v) else fmt.format(v)

    lines = ["| log | model | purchases by tier (Platinum, Gold, Iron, Lead) | revenue by tier | "
             "mean abs tier error (purchases / revenue) | total (purchases / revenue) | cells covered | "
             "median half-width | customers covered | note |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---|"]
    for _, r in table.iterrows():
        if r.get("crash"):
            lines.append(f"| {r['log']} | crash | | | | | | | | {r['crash']} |")
            continue
        tiers_p = ", ".join(f(r[f"purchases_{t}_pct"]) for t in TIERS)
        tiers_r = ", ".join(f(r[f"revenue_{t}_pct"]) for t in TIERS)
        note = "left truncation detected" if r.get("left_truncated") else ""
        if r.get("learned_from") and not pd.isna(r.get("learned_from")):
            note += f"; learned from {r['learned_from']}"
        if r.get("nan_cells"):
            note += f" {int(r['nan_cells'])} NaN"
        lines.append(
            f"| {r['log']} | {r['model']} | {tiers_p} | {tiers_r} | "
            f"{r['purchases_mean_abs_tier_pct']:.0f}% / {r['revenue_mean_abs_tier_pct']:.0f}% | "
            f"{f(r['purchases_total_pct'])} / {f(r['revenue_total_pct'])} | {int(r['tier_cells_covered_of_8'])} | "
            f"{f(r['median_halfwidth_pct'], '{:.0f}%')} | {f(r.get('customer_coverage_pct'), '{:.0f}%')} | {note} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=4000)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    start = time.perf_counter()
    rows = run_each(args.customers, args.only, check)
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 250)
    print(table.filter(regex="log|model|mean_abs|total|covered|halfwidth|coverage|crash").to_string())
    if args.no_write or args.only:
        return
    table.to_csv(HERE / "real_logs.csv", index=False)
    block = (f"### Forecasts against what happened (`validation/real_logs.py`)\n\n"
             f"Each log is reported on as of a past date with the report's defaults (backtest model choice, "
             f"tiers 5/15/50/30%, 90% intervals) and the horizon running to the end of the data; the errors "
             f"are 100 (forecast - actual) / actual per tier. Generated worlds: {args.customers:,} customers "
             f"each (`validation/worlds.py`). Run time {time.perf_counter() - start:.0f} s.\n\n" + to_markdown(table))
    write_section("real-logs", block)


if __name__ == "__main__":
    main()
