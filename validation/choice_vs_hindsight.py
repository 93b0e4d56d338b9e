"""The model choice judged against hindsight (issue 27): on every validation log and CDNOW cut,
the report's rule of choice (:func:`clvmodels.select_model` on the backtests at rolling origins
before the cut, as the report builds them) against the best single model chosen after the fact,
the squared-error rule used until December 2026, and a forecast combination.

    .venv/bin/python validation/choice_vs_hindsight.py [--customers 4000] [--only NAME ...]   # about 10 min

For each log: every candidate is fitted on the history to the cut and scored on what then
happened over the horizon (:func:`clvmodels.selection.holdout_scores`: customers tiered by the
model's own predicted value, mean absolute error of the 8 tier cells, total errors); the best of
them is the best single model in hindsight. Each rule's pick is then looked up there. Writes
``validation/choice_vs_hindsight.csv`` and the table in ``validation/README.md``.

The combination (not in the report): each candidate's forecast weighted by
``1 / score^4`` (its relative error over the origins, the report's score), the weights fixed
before the cut. "The combination as a candidate": the same mix scored on the report's own
backtests against the choice (:func:`clvmodels.selection.compare_forecasts`), taken only when it
scores better by more than the tolerance - the rule the report would use if the combination were
one of its candidates.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import clvmodels
from clvmodels import pipeline, reporting
from clvmodels.exceptions import ClvModelsError
from clvmodels.models.calendar import MIN_SPAN_DAYS
from clvmodels.selection import (
    ROLLING_ORIGINS,
    TOLERANCE,
    candidate_classes,
    compare_forecasts,
    holdout_scores,
    holdout_spend,
    select_model,
)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _readme import write_section  # noqa: E402
from real_logs import run_each  # noqa: E402

WEEK = pd.Timedelta(days=7)


def window(log: pd.DataFrame, cal_end: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    part = log[log["date"] <= end]
    calendar = (cal_end - part["date"].min()).days >= MIN_SPAN_DAYS
    return clvmodels.calibration_holdout(part, calibration_end=str(cal_end.date()), observation_end=str(end.date()),
                                         time_unit="W", regularity=True, calendar=calendar)


def old_rule(table: pd.DataFrame, models: dict) -> str:
    """The rule until December 2026: lowest MSE at the latest origin, 0.5% ties to the fewest
    parameters, then the smaller absolute total error, then BIC."""
    ok = table.loc[list(models)]
    tied = ok[ok["mse"] <= ok["mse"].min() * 1.005]
    keys = tied.assign(a=tied["aggregate_pct_error"].abs().round(6), b=tied["bic"].round(6),
                       n=[models[m].n_free_params for m in tied.index])
    return str(keys.sort_values(["n", "a", "b"], kind="stable").index[0])


def report_windows(log: pd.DataFrame, cut: pd.Timestamp, horizon: float) -> list[pd.DataFrame]:
    """The backtests the report builds as of ``cut`` for ``horizon`` weeks, latest first: its latest
    window and the earlier origins (:func:`clvmodels.pipeline.earlier_backtests`)."""
    before = log[log["date"] <= cut]
    cfg = reporting.validate_parameters({"observation_end": str(cut.date()), "horizon": horizon})
    transactions = clvmodels.load_transactions(before)
    obs_end, cal_end = pipeline.resolve_windows(cfg, transactions)
    latest = window(before, pd.Timestamp(cal_end), pd.Timestamp(obs_end))
    calendar = latest.attrs.get("purchase_calendar") is not None
    return [latest] + [w for w, _ in pipeline.earlier_backtests(cfg, transactions, obs_end, cal_end, calendar)]


def hindsight_forecasts(hind: pd.DataFrame, names: Any) -> dict[str, np.ndarray]:
    """Each candidate in ``names`` fitted to the cut and its forecast of the holdout (those that
    cannot be fitted there left out)."""
    t = float(hind["duration_holdout"].iloc[0])
    out = {}
    for model_name, (cls, init) in candidate_classes(hind).items():
        if model_name not in names:
            continue
        try:
            out[model_name] = cls(**init).fit(hind).expected_purchases(hind, t).to_numpy(float)
        except ClvModelsError:
            continue
    return out


def check(name: str, log: pd.DataFrame, cut: str, end: str) -> dict:
    cut_t = pd.Timestamp(cut)
    horizon = float(np.floor((pd.Timestamp(end) - cut_t).days / 7))
    hind = window(log, cut_t, cut_t + horizon * WEEK)
    spend = holdout_spend(hind)
    # the report's own backtests as of the cut: its latest window and the earlier ones
    windows = report_windows(log, cut_t, horizon)
    started = time.perf_counter()
    sel = select_model(windows[0], earlier=windows[1:])
    seconds = time.perf_counter() - started
    preds = hindsight_forecasts(hind, sel.models)
    hindsight = {m: holdout_scores(hind, pred, spend) for m, pred in preds.items()}
    best = min(hindsight, key=lambda m: hindsight[m]["tier_pct"])
    score = sel.table["score"].dropna()
    w = (1 / score[list(preds)] ** 4)
    mix = holdout_scores(hind, sum(w[m] / w.sum() * preds[m] for m in preds), spend)
    # the combination as a candidate of the backtest: its weights and score from the same backtests,
    # chosen only when it scores better than the choice by more than the tolerance
    names = [m for m in preds if all(m in p for p in sel.predictions)]
    wb = (1 / score[names] ** 4)
    backtest = compare_forecasts(sel.windows, {
        "mix": lambda origin, win: sum(wb[m] / wb.sum() * sel.predictions[origin][m] for m in names),
        "chosen": lambda origin, win: sel.predictions[origin][sel.chosen]})
    mix_wins = bool(backtest.loc["mix", "score"] < backtest.loc["chosen", "score"] * (1 - TOLERANCE))
    old = old_rule(sel.table, sel.models)
    row = {"log": name, "origins": int(sel.origins["origin"].nunique()), "choice_seconds": seconds,
           "best": best, "best_tier_pct": hindsight[best]["tier_pct"], "best_total_pct": hindsight[best]["total_pct"],
           "chosen": sel.chosen, "chosen_tier_pct": hindsight[sel.chosen]["tier_pct"],
           "chosen_total_pct": hindsight[sel.chosen]["total_pct"],
           "old": old, "old_tier_pct": hindsight[old]["tier_pct"], "old_total_pct": hindsight[old]["total_pct"],
           "mix_tier_pct": mix["tier_pct"], "mix_total_pct": mix["total_pct"],
           "mix_backtest_score": float(backtest.loc["mix", "score"]),
           "chosen_backtest_score": float(backtest.loc["chosen", "score"]), "mix_wins_backtest": mix_wins,
           "with_mix_tier_pct": mix["tier_pct"] if mix_wins else hindsight[sel.chosen]["tier_pct"],
           "with_mix_total_pct": mix["total_pct"] if mix_wins else hindsight[sel.chosen]["total_pct"]}
    for m, sc in hindsight.items():
        row[f"hindsight {m}"] = sc["tier_pct"]
        row[f"total {m}"] = sc["total_pct"]
        if m in sel.table.index:
            row[f"bic {m}"] = float(sel.table.loc[m, "bic"])
            row[f"score {m}"] = float(sel.table.loc[m, "score"])
    return row


def bic_rule(t: pd.DataFrame) -> pd.DataFrame:
    """The candidate of lowest BIC at the report's latest origin (a rule tried against the report's,
    not in the report): its name, tier error and total error in hindsight, per log."""
    out = []
    for _, r in t.iterrows():
        bic = {c[4:]: r[c] for c in t.columns
               if c.startswith("bic ") and pd.notna(r[c]) and pd.notna(r.get(f"hindsight {c[4:]}"))}
        pick = min(bic, key=bic.get)
        out.append({"bic": pick, "bic_tier_pct": r[f"hindsight {pick}"], "bic_total_pct": r[f"total {pick}"]})
    return pd.DataFrame(out, index=t.index)


def to_markdown(t: pd.DataFrame) -> str:
    t = t.join(bic_rule(t))
    lines = ["| log | origins | best single model in hindsight | the report's choice | the rule until December 2026 | "
             "combination (1/score^4) | the choice with the combination as a candidate | lowest BIC |",
             "|---|---:|---|---|---|---|---|---|"]
    for _, r in t.iterrows():
        lines.append(f"| {r['log']} | {r['origins']} | {r['best']}: {r['best_tier_pct']:.1f}% ({r['best_total_pct']:+.0f}%) | "
                     f"{r['chosen']}: {r['chosen_tier_pct']:.1f}% ({r['chosen_total_pct']:+.0f}%) | "
                     f"{r['old']}: {r['old_tier_pct']:.1f}% ({r['old_total_pct']:+.0f}%) | "
                     f"{r['mix_tier_pct']:.1f}% ({r['mix_total_pct']:+.0f}%) | "
                     f"{'combination' if r['mix_wins_backtest'] else r['chosen']}: {r['with_mix_tier_pct']:.1f}% "
                     f"({r['with_mix_total_pct']:+.0f}%) | {r['bic']}: {r['bic_tier_pct']:.1f}% ({r['bic_total_pct']:+.0f}%) |")
    keys = ("chosen", "old", "mix", "with_mix", "bic")
    gap = {k: float((t[f"{k}_tier_pct"] - t["best_tier_pct"]).mean()) for k in keys}
    hits = {k: int((t[f"{k}_tier_pct"] <= t["best_tier_pct"] + 0.05).sum()) for k in keys}
    lines.append(f"| **mean gap to the best in hindsight** | | | **{gap['chosen']:+.2f} points** "
                 f"(as good on {hits['chosen']} of {len(t)}) | {gap['old']:+.2f} points ({hits['old']} of {len(t)}) | "
                 f"{gap['mix']:+.2f} points ({hits['mix']} of {len(t)}) | {gap['with_mix']:+.2f} points "
                 f"({hits['with_mix']} of {len(t)}) | {gap['bic']:+.2f} points ({hits['bic']} of {len(t)}) |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=4000)
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args()
    start = time.perf_counter()
    rows = run_each(args.customers, args.only, check)
    t = pd.DataFrame(rows)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(t.round(1).to_string())
    if args.only:
        return
    t.to_csv(HERE / "choice_vs_hindsight.csv", index=False)
    block = ("### The model choice against hindsight (`validation/choice_vs_hindsight.py`)\n\n"
             "Each log is cut as in the table above; every candidate is fitted to the cut and scored on what then "
             "happened (mean absolute error over the 8 tier cells, total purchases error in brackets, customers tiered "
             "by each model's own forecast). The report's choice is made before the cut on up to "
             f"{ROLLING_ORIGINS} backtests (rolling origins); the combination weights every candidate by "
             "1/score^4 (not in the report); as a candidate it is taken where it beats the choice on the report's "
             "own backtests by more than the tolerance; the last column takes the candidate of lowest BIC at the "
             "latest origin (a rule tried, not in the report). Run time "
             f"{time.perf_counter() - start:.0f} s.\n\n" + to_markdown(t))
    write_section("choice-vs-hindsight", block)


if __name__ == "__main__":
    main()
