"""Does Gamma-Gamma need stronger pooling? Spend models judged on the report's revenue per tier,
in hindsight (issue 27, item 5; not a CI test: about a minute).

    .venv/bin/python validation/spend_pooling.py [--customers 3000] [--only NAME ...]

Gamma-Gamma's expected spend of a repeat buyer is a weighted mean, ``w m + (1 - w) mu`` with
``w = x / (x + k)``, ``k = (q - 1) / p`` (Fader & Hardie 2013): ``k`` is how strongly a customer's
own mean ``m`` of ``x`` repeat purchases is pooled toward the population mean ``mu``. If customers
ranked top by their past spend regress further than the model allows (heavy tails, one-off big
baskets, spend levels that move between years), a larger ``k`` would forecast the top tier's
revenue better. Three spend models, with the purchases of one purchase model (BG/NBD) so that only
the spend differs:

* ``gamma-gamma``: maximum likelihood on the calibration window (what the report uses);
* ``pooled, squared error``: Gamma-Gamma's ``mu`` with ``k`` chosen on an earlier backtest (the
  calibration window split again, its holdout half the history or the horizon, whichever is
  shorter) to minimise the repeat buyers' squared revenue error there, ``sum (r - n s)^2 / n``;
* ``pooled, tier revenue``: the same with ``k`` the multiple 1, 2, 4, 8 or 16 of Gamma-Gamma's
  that gave the smallest revenue errors per tier and in total on that earlier backtest.

Each is then scored as of the cut on what happened after it: the mean absolute error of the 8 tier
cells (customers tiered by each forecast's own value) and the revenue total. Writes the table in
``validation/README.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize

import clvmodels
from clvmodels.models import BetaGeoModel, GammaGammaModel
from clvmodels.selection import holdout_scores
from clvmodels.tiers import TIERS

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _readme import write_section  # noqa: E402
from real_logs import run_each  # noqa: E402

#: multiples of Gamma-Gamma's k tried by the tier-revenue rule
MULTIPLES = (1, 2, 4, 8, 16)


def pooled_spend(gg: GammaGammaModel, cal: pd.DataFrame, k: float) -> np.ndarray:
    """Gamma-Gamma's population mean with pooling ``k``: ``w m + (1 - w) mu``, ``w = x / (x + k)``."""
    x = cal["frequency"].to_numpy(float)
    m = cal["monetary_value"].to_numpy(float)
    w = x / (x + k)
    return np.where(x > 0, w * m + (1 - w) * gg.mean_spend, gg.mean_spend)


def _pooling(gg: GammaGammaModel) -> float:
    return float((gg.params_["q"] - 1) / gg.params_["p"])


def revenue_error(scores: dict) -> float:
    return float(np.mean([abs(scores[f"revenue_{t}_pct"]) for t in TIERS]) + abs(scores["revenue_total_pct"]))


def k_by_squared_error(bt: pd.DataFrame, gg: GammaGammaModel) -> float:
    x, n = bt["frequency"].to_numpy(float), bt["frequency_holdout"].to_numpy(float)
    m, r = bt["monetary_value"].to_numpy(float), bt["revenue_holdout"].to_numpy(float)
    sel = (x > 0) & (n > 0)
    x, m, n, r = x[sel], m[sel], n[sel], r[sel]

    def loss(log_k: float) -> float:
        w = x / (x + np.exp(log_k))
        return float(np.sum((r - n * (w * m + (1 - w) * gg.mean_spend)) ** 2 / n))

    return float(np.exp(optimize.minimize_scalar(loss, bounds=(-8.0, 8.0), method="bounded").x))


def k_by_tier_revenue(bt: pd.DataFrame, gg: GammaGammaModel) -> float:
    t = float(bt["duration_holdout"].iloc[0])
    pred = BetaGeoModel().fit(bt).expected_purchases(bt, t).to_numpy(float)
    k0 = _pooling(gg)
    errors = [revenue_error(holdout_scores(bt, pred, pooled_spend(gg, bt, k0 * f))) for f in MULTIPLES]
    best = int(np.argmin(errors))
    # a larger pooling must beat Gamma-Gamma's own by half a point to be taken
    return k0 * MULTIPLES[best] if errors[best] < errors[0] - 0.5 else k0


def check(name: str, log: pd.DataFrame, cut: str, end: str) -> dict:
    cal = clvmodels.calibration_holdout(log, calibration_end=cut, observation_end=end, time_unit="W")
    t = float(cal["duration_holdout"].iloc[0])
    before = log[log["date"] <= pd.Timestamp(cut)]
    span = (pd.Timestamp(cut) - before["date"].min()).days / 7
    bt_cut = str((pd.Timestamp(cut) - pd.Timedelta(weeks=min(t, span / 2))).date())
    bt = clvmodels.calibration_holdout(before, calibration_end=bt_cut, observation_end=cut, time_unit="W")
    gg_bt = GammaGammaModel().fit(bt)
    gg = GammaGammaModel().fit(cal)
    pred = BetaGeoModel().fit(cal).expected_purchases(cal, t).to_numpy(float)
    k0 = _pooling(gg)
    ks = {"gamma-gamma": k0, "pooled, squared error": k_by_squared_error(bt, gg_bt),
          "pooled, tier revenue": k0 * k_by_tier_revenue(bt, gg_bt) / _pooling(gg_bt)}
    row: dict = {"log": name, "cut": cut}
    for label, k in ks.items():
        s = gg.expected_spend(cal).to_numpy(float) if label == "gamma-gamma" else pooled_spend(gg, cal, k)
        scores = holdout_scores(cal, pred, s)
        row[f"{label}: k"] = k
        row[f"{label}: tier"] = scores["tier_pct"]
        row[f"{label}: platinum revenue"] = scores["revenue_Platinum_pct"]
        row[f"{label}: revenue total"] = scores["revenue_total_pct"]
    return row


def to_markdown(table: pd.DataFrame) -> str:
    labels = ("gamma-gamma", "pooled, squared error", "pooled, tier revenue")
    head = "| log | " + " | ".join(f"{lab}: k, tier error, Platinum revenue" for lab in labels) + " |"
    lines = [head, "|---|" + "---|" * len(labels)]
    for _, r in table.iterrows():
        cells = []
        for lab in labels:
            k = r[f"{lab}: k"]
            ktext = f"{k:.2f}" if k < 1e3 else "constant"
            cells.append(f"{ktext}, {r[f'{lab}: tier']:.1f}%, {r[f'{lab}: platinum revenue']:+.0f}%")
        lines.append(f"| {r['log']} | " + " | ".join(cells) + " |")
    means = [table[f"{lab}: tier"].mean() for lab in labels]
    lines.append("| **mean tier error** | " + " | ".join(f"**{m:.2f}%**" for m in means) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=3000)
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args()
    start = time.perf_counter()
    table = pd.DataFrame(run_each(args.customers, args.only, check))
    pd.set_option("display.width", 250)
    print(table.filter(regex="log|tier$|k$").to_string())
    if args.only:
        return
    block = ("### Spend: does Gamma-Gamma need stronger pooling? (`validation/spend_pooling.py`)\n\n"
             "BG/NBD purchases with three spend models, scored in hindsight on the 8 tier cells (see the "
             f"script's notes). Worlds of {args.customers:,} customers. Run time "
             f"{time.perf_counter() - start:.0f} s.\n\n" + to_markdown(table))
    write_section("spend-pooling", block)


if __name__ == "__main__":
    main()
