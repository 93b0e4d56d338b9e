"""Does the at-risk list find risk? (issue 28, item 1) Lift of rankings of Platinum and Gold
customers on CDNOW master cut in the past.

For each cut of CDNOW master (1997-06-30, 1997-09-30, 1997-12-31, 1998-01-31; the issue names the middle two)
and of three generated worlds (:data:`WORLDS`, at their cut in ``worlds.py``), and each purchase model (BG/NBD, MBG/NBD, Pareto/NBD): the
forecast over 26 weeks, its tiers, then for each ranking the 50 customers it lists and

* ``lift``: how often they made no purchase in the 26 weeks after the cut, against their own
  tiers' average (each listed customer compared with the no-purchase rate of their tier; the
  issue's goal is at least 2);
* ``loss_share``: the share of the Platinum and Gold customers' lost value (value if retained
  of those who then bought nothing) that the 50 listed customers held.

"the report's list" is :func:`clvmodels.retention.at_risk_customers` itself. Writes
``validation/at_risk_lift.csv`` and prints the tables.

    .venv/bin/python validation/at_risk_lift.py      # about 40 s
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

import clvmodels
from clvmodels.datasets import load_cdnow
from clvmodels.retention import at_risk_customers

CUTS = ("1997-06-30", "1997-09-30", "1997-12-31", "1998-01-31")
HORIZON_WEEKS = 26
LISTED = 50
#: longer cuts of the report's list, to see how much of its lift at 50 is chance
LONGER = (100, 200)
MODELS = (clvmodels.BetaGeoModel, clvmodels.ModifiedBetaGeoModel, clvmodels.ParetoNBDModel)


#: generated worlds the list is measured on too (``worlds.py``), at their cut
WORLDS = ("BG/NBD", "regular buyers", "left-truncated")


def world_cuts() -> list[tuple[str, pd.DataFrame, str]]:
    """(name, log, cut) of the generated worlds in :data:`WORLDS` (4,000 customers each)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from worlds import worlds

    return [(f"world: {w.name}", w.log[["customer_id", "date", "amount"]].astype({"customer_id": str}), w.cut)
            for w in worlds() if w.name in WORLDS]


def rankings(v: pd.DataFrame) -> dict[str, pd.Series]:
    """Other scores of the valuable customers (higher: listed first)."""
    if_retained = v["kept"] / v["p_alive"]
    p_no = 1 - v["p_any_purchase"]
    return {
        # the report's list from its first version of issue 28 until the risk against the tier
        "value at risk, P(no purchase) >= 0.5": (v["kept"] * p_no).where(p_no >= 0.5, -1.0),
        "value at stake (the report's list until December 2026)": v["churn_probability_during_horizon"]
        / v["p_alive"] * v["clv"],
        "P(no purchase in the horizon)": p_no,
        "1 - P(alive)": 1 - v["p_alive"],
        "value if retained x P(no purchase)": if_retained * p_no,
        "silence / usual gap": (v["T"] - v["recency"]) / (v["recency"] / v["frequency"].clip(lower=1)),
        # the report's score with a stricter bar (it lists more Gold, whose own rate of buying nothing is higher)
        "value at risk, P(no purchase) >= 0.6": (v["kept"] * p_no).where(p_no >= 0.6, -1.0),
        "value at risk, P(no purchase) >= 0.7": (v["kept"] * p_no).where(p_no >= 0.7, -1.0),
        "value at risk x P(no purchase), P(no purchase) >= 0.5": (v["kept"] * p_no ** 2).where(p_no >= 0.5, -1.0),
        "value if kept x (P(no purchase) - its tier mean)": v["kept"] * (p_no - p_no.groupby(v["tier"]).transform(
            "mean")),
        # risk against the tier's own: what the lift measures
        "P(no purchase) / its tier mean": p_no / p_no.groupby(v["tier"]).transform("mean"),
        "value at risk, P(no purchase) >= 2 x its tier mean": (v["kept"] * p_no).where(
            p_no >= 2 * p_no.groupby(v["tier"]).transform("mean"), -1.0),
        "risk against the tier x (value if retained)^0.25": (p_no / p_no.groupby(v["tier"]).transform("mean"))
        * if_retained ** 0.25,
        "risk against the tier x (value if retained)^0.5": (p_no / p_no.groupby(v["tier"]).transform("mean"))
        * if_retained ** 0.5,
        "value at risk, P(no purchase) >= 1.5 x its tier mean": (v["kept"] * p_no).where(
            p_no >= 1.5 * p_no.groupby(v["tier"]).transform("mean"), -1.0),
    }


def main() -> pd.DataFrame:
    cdnow = load_cdnow("master")
    rows = []
    for source, log, cut in [("CDNOW master", cdnow, c) for c in CUTS] + world_cuts():
        rfm = clvmodels.rfm_summary(log, time_unit="W", observation_end=cut)
        end = pd.Timestamp(cut) + pd.Timedelta(weeks=HORIZON_WEEKS)
        after = log[(log["date"] > cut) & (log["date"] <= end)]
        bought = rfm.index.astype(str).isin(after["customer_id"].astype(str).unique())
        for cls in MODELS:
            model, spend = cls().fit(rfm), clvmodels.GammaGammaModel().fit(rfm)
            settings = dict(horizon=HORIZON_WEEKS, discount_rate=0.1, margin=1.0, cost_to_serve=0.0)
            fc = clvmodels.forecast(model, spend, rfm, **settings)
            kept = clvmodels.forecast(model, spend, rfm, dropout_scale=1e-9, **settings)["clv"]
            tiers = clvmodels.assign_tiers(fc).astype(str)
            df = rfm.join(fc).assign(tier=tiers, bought=bought, kept=kept)
            v = df[df["tier"].isin(["Platinum", "Gold"])]
            tier_rate = 1 - v.groupby("tier")["bought"].mean()
            lost_value = (v["kept"] / v["p_alive"]) * (1 - v["bought"])
            listed = at_risk_customers(df, model, spend, settings, observation_end=cut, time_unit="W")
            tops = {"the report's list: risk against the tier (P(no purchase) >= 0.5 and >= 2x the tier's)":
                    listed.index[:LISTED]}
            # the same list longer: is its lift a property of the ranking or of 50 draws?
            tops.update({f"the report's list, first {k}": listed.index[:k] for k in LONGER})
            tops.update({name: s.sort_values(ascending=False, kind="stable").index[:LISTED]
                         for name, s in rankings(v).items()})
            for name, top in tops.items():
                rate = 1 - v.loc[top, "bought"].mean()
                expected = tier_rate.reindex(v.loc[top, "tier"]).mean()
                rows.append({"log": source, "cut": cut, "model": model._long_name, "ranking": name, "listed": len(top),
                             "no_purchase_listed": round(rate, 3), "no_purchase_their_tiers": round(expected, 3),
                             "lift": round(rate / expected, 2),
                             "loss_share": round(float(lost_value[top].sum() / lost_value.sum()), 4),
                             "platinum_listed": int((v.loc[top, "tier"] == "Platinum").sum())})
    out = pd.DataFrame(rows)
    out.to_csv(Path(__file__).with_suffix(".csv"), index=False)
    return out


if __name__ == "__main__":
    with pd.option_context("display.width", 200, "display.max_rows", 200, "display.max_colwidth", 60):
        t = main()
        for value in ("lift", "loss_share"):
            print(t.pivot_table(index="ranking", columns=["log", "cut", "model"], values=value).to_string(), "\n")
