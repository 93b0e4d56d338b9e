"""The scorecard's gradient-boosting baseline with and without early stopping, on small logs
(issue 30, item 1: the baseline sized to the data).

    .venv/bin/python validation/baseline_early_stopping.py     # about 1 minute

scikit-learn stops boosting early by itself only above 10,000 training rows; below, the baseline
ran all 300 iterations (about 1 ms each however small the data: 0.6-1.6 s of a small report).
Here both ways - every iteration, and early stopping on a tenth of the training rows held out
(``early_stopping=True``, scikit-learn's default patience) - forecast the holdout of 13 logs: four
of the issue's random 400-customer logs (cut 2024-05-01) and random subsets of CDNOW master of
400, 1,500 and 5,000 customers, three seeds each (cut 1998-01-31, 26 weeks after). Scored as the
scorecard scores it: mean squared error of each customer's holdout purchases, and the total
holdout revenue. Writes ``validation/baseline_early_stopping.csv`` and a table in
``validation/README.md``.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _readme import write_section
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from clvmodels import load_transactions
from clvmodels.datasets import load_cdnow
from clvmodels.rfm import calibration_holdout

HERE = Path(__file__).resolve().parent
evaluate = importlib.import_module("clvmodels.evaluate")  # the module, not the function of that name


def random_log(customers: int, seed: int) -> pd.DataFrame:
    """The issue's small log: 1 + Poisson(2.5) purchase days each, uniform over 182 days, Gamma(2, 20) amounts."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(customers):
        days = np.sort(rng.choice(182, size=min(1 + rng.poisson(2.5), 182), replace=False))
        rows += [(f"C{i:04d}", pd.Timestamp("2024-01-01") + pd.Timedelta(days=int(d)), round(float(rng.gamma(2, 20)), 2))
                 for d in days]
    return pd.DataFrame(rows, columns=["customer_id", "date", "amount"])


def logs() -> list[tuple[str, pd.DataFrame, str]]:
    out = [(f"random 400, seed {s}", random_log(400, s), "2024-05-01") for s in range(4)]
    cdnow = load_cdnow("master")[["customer_id", "date", "amount"]]
    for seed in range(3):
        for n in (400, 1500, 5000):
            ids = np.random.default_rng(100 + seed).choice(cdnow["customer_id"].unique(), n, replace=False)
            out.append((f"CDNOW {n:,}, seed {seed}", cdnow[cdnow["customer_id"].isin(ids)], "1998-01-31"))
    return out


def _way(model, stop: str):
    """``model`` (a scikit-learn class) built with early stopping as the way says, whatever the
    baseline's code asks: never, always, or for the counts and the any-purchase classifier only
    (the spend regressor is the one without a Poisson loss among the regressors)."""
    def build(**kwargs):
        is_spend = model is HistGradientBoostingRegressor and kwargs.get("loss") != "poisson"
        kwargs["early_stopping"] = stop == "always" or (stop == "not spend" and not is_spend)
        return model(**kwargs)
    return build


def main() -> None:
    # "early, not spend" is what the baseline does since December 2026
    ways = {way: (_way(HistGradientBoostingClassifier, stop), _way(HistGradientBoostingRegressor, stop))
            for way, stop in (("every iteration", "never"), ("early stopping", "always"),
                              ("early, not spend", "not spend"))}
    rows = []
    for name, log, cut in logs():
        t = load_transactions(log)
        cal = calibration_holdout(t, calibration_end=cut, time_unit="W")
        row = {"log": name}
        for way, (classifier, regressor) in ways.items():
            start = time.perf_counter()
            out = evaluate._gradient_boosting(classifier, regressor, t, cal, 3, 0, None)
            row[f"{way} s"] = time.perf_counter() - start
            row[f"{way} MSE"] = float(((out["expected_purchases"] - cal["frequency_holdout"]) ** 2).mean())
            revenue = (out["expected_purchases"] * out["expected_spend"]).sum()
            row[f"{way} revenue error"] = float(revenue / cal["revenue_holdout"].sum() - 1)
        rows.append(row)
        print(row, flush=True)
    table = pd.DataFrame(rows).set_index("log")
    table.to_csv(HERE / "baseline_early_stopping.csv", float_format="%.4f")
    names = list(ways)
    lines = ["| log | MSE: " + " / ".join(names) + " | revenue error | seconds |", "|---|---|---|---|"]
    for name, r in table.iterrows():
        lines.append(f"| {name} | " + " / ".join(f"{r[f'{w} MSE']:.3f}" for w in names) + " | "
                     + " / ".join(f"{r[f'{w} revenue error']:+.1%}" for w in names) + " | "
                     + " / ".join(f"{r[f'{w} s']:.2f}" for w in names) + " |")
    every = table["every iteration MSE"]
    summary = "Against every iteration: " + "; ".join(
        f"{w}: MSE {(table[f'{w} MSE'] / every).mean():.3f}x on average (higher on "
        f"{int((table[f'{w} MSE'] / every > 1.0005).sum())} of {len(every)} logs), mean |revenue error| "
        f"{table['every iteration revenue error'].abs().mean():.1%} -> {table[f'{w} revenue error'].abs().mean():.1%}, "
        f"time {(table[f'{w} s'] / table['every iteration s']).mean():.2f}x" for w in names[1:]) + "."
    print(summary)
    write_section("baseline_early_stopping", "\n".join(lines) + "\n\n" + summary)


if __name__ == "__main__":
    main()
