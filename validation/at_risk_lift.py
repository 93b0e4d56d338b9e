"""Does the at-risk list find risk? (issue 28, item 1) Lift of rankings of Platinum and Gold
customers on CDNOW master cut in the past.

For each cut (1997-09-30, 1997-12-31) and purchase model (BG/NBD, Pareto/NBD): the report's
forecast over 26 weeks, its tiers, then for each ranking the 50 customers it lists and how often
they made no purchase in the 26 weeks after the cut, against the Platinum and Gold average (the
lift; the issue's goal is at least 2), and the value the earlier forecast gave them. Writes
``validation/at_risk_lift.csv`` and prints the table.

    .venv/bin/python validation/at_risk_lift.py      # about 30 s
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import clvmodels
from clvmodels.datasets import load_cdnow

CUTS = ("1997-09-30", "1997-12-31")
HORIZON_WEEKS = 26
LISTED = 50


def rankings(active: pd.DataFrame) -> dict[str, pd.Series]:
    """Scores of the valuable customers (higher: listed first)."""
    if_retained = active["clv"] / active["p_alive"]
    return {
        "value at stake (the report's list until December 2026)":
            active["churn_probability_during_horizon"] / active["p_alive"] * active["clv"],
        "P(no purchase in the horizon)": 1 - active["p_any_purchase"],
        "value if retained x P(no purchase)": if_retained * (1 - active["p_any_purchase"]),
        "value if retained x P(gone now)": if_retained * (1 - active["p_alive"]),
    }


def main() -> pd.DataFrame:
    log = load_cdnow("master")
    rows = []
    for cut in CUTS:
        rfm = clvmodels.rfm_summary(log, time_unit="W", observation_end=cut)
        end = pd.Timestamp(cut) + pd.Timedelta(weeks=HORIZON_WEEKS)
        after = log[(log["date"] > cut) & (log["date"] <= end)]
        bought = rfm.index.astype(str).isin(after["customer_id"].astype(str).unique())
        for cls in (clvmodels.BetaGeoModel, clvmodels.ParetoNBDModel):
            model, spend = cls().fit(rfm), clvmodels.GammaGammaModel().fit(rfm)
            fc = clvmodels.forecast(model, spend, rfm, horizon=HORIZON_WEEKS)
            tiers = clvmodels.assign_tiers(fc).astype(str)
            df = rfm.join(fc).assign(tier=tiers, bought=bought)
            valuable = df[df["tier"].isin(["Platinum", "Gold"])]
            base = 1 - valuable["bought"].mean()
            for min_p_alive in (0.0, 0.3, 0.5):
                active = valuable[valuable["p_alive"] >= min_p_alive]
                for name, score in rankings(active).items():
                    top = score.sort_values(ascending=False, kind="stable").index[:LISTED]
                    rate = 1 - valuable.loc[top, "bought"].mean()
                    rows.append({"cut": cut, "model": model._long_name, "min_p_alive": min_p_alive, "ranking": name,
                                 "no_purchase_listed": round(rate, 3), "no_purchase_platinum_gold": round(base, 3),
                                 "lift": round(rate / base, 2), "value_listed": round(float(active.loc[top, "clv"].sum()))})
    out = pd.DataFrame(rows)
    out.to_csv(Path(__file__).with_suffix(".csv"), index=False)
    return out


if __name__ == "__main__":
    with pd.option_context("display.width", 200, "display.max_rows", 200, "display.max_colwidth", 60):
        print(main().to_string(index=False))
