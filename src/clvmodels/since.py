"""Since the last run: what changed between two reports on the same customer base.

Scheduled runs (papermill, cron) produce a report per period; a manager reading this one wants
to know what moved since the last: which customers changed tier, which valuable customers were
lost, how the last run's forecast for the time that has since passed compares with what
happened (the running accuracy of the tool), and how total value changed.

The earlier run is a report folder: its ``forecast.parquet`` (customer, tier, CLV), its models
(``purchase_model.json``, ``gamma_gamma.json``) and ``run.json`` (its observation end, time
unit, horizon). Its forecast for the elapsed period is recomputed with its own models on the
histories as they were at its observation end (from the current log cut there), so the
comparison holds for any horizon.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clvmodels._validation import DAYS_PER_UNIT, UNIT_NAMES
from clvmodels.tiers import TIERS

__all__ = ["SinceLastRun", "find_previous_run", "compare_runs", "RUN_FILE"]

#: what a run records about itself for the next one
RUN_FILE = "run.json"

#: P(alive) below which a customer counts as lost
LOST_BELOW = 0.5


@dataclass
class SinceLastRun:
    """What :func:`compare_runs` found; ``available`` False with ``reason`` when there was no
    usable earlier run."""

    available: bool
    reason: str = ""
    previous: str = ""
    previous_end: str = ""
    elapsed: float = 0.0
    time_unit: str = "W"
    migration: pd.DataFrame = field(default_factory=pd.DataFrame)
    lost: pd.DataFrame = field(default_factory=pd.DataFrame)
    accuracy: pd.DataFrame = field(default_factory=pd.DataFrame)
    value_then: float = 0.0
    value_now: float = 0.0

    def summary(self) -> str:
        """The comparison in plain sentences (Markdown)."""
        from clvmodels.reporting import md_escape

        if not self.available:
            return md_escape(self.reason)
        unit = UNIT_NAMES.get(self.time_unit, "time units")
        lost = self.lost
        n_lost = int(lost["customers"].sum()) if len(lost) else 0
        value_lost = float(lost["value_then"].sum()) if len(lost) else 0.0
        acc = self.accuracy.loc["Total"]
        change = self.value_now - self.value_then
        pct = f" ({100 * change / abs(self.value_then):+.1f}%)" if self.value_then else ""
        # rows: tier then, columns: tier now, both Platinum first; right of the diagonal is down
        grid = self.migration.loc[list(TIERS), list(TIERS)].to_numpy()
        moved_down = int(np.triu(grid, 1).sum())
        moved_up = int(np.tril(grid, -1).sum())
        return "\n".join([
            f"Compared with the run as of **{md_escape(self.previous_end)}**, {self.elapsed:g} {unit} earlier:",
            "",
            f"* **Tier moves**: {moved_down:,} customers moved down the pyramid and {moved_up:,} moved up "
            "(the migration table below; rows are the earlier tier, columns the tier now).",
            f"* **Valuable customers lost**: {n_lost:,} customers who were Platinum or Gold then are now "
            f"probably gone (less than an even chance of being active); the earlier run valued them at "
            f"{value_lost:,.0f}.",
            f"* **How the last forecast did**: for the {self.elapsed:g} {unit} since, it expected "
            f"{acc['predicted_purchases']:,.0f} purchases and customers made {acc['actual_purchases']:,.0f} "
            f"({acc['purchases_pct_error']:+.1f}%); revenue {acc['revenue_pct_error']:+.1f}%.",
            f"* **Total customer value** over the horizon is {self.value_now:,.0f} now against "
            f"{self.value_then:,.0f} then{pct}.",
        ])


def write_run_record(folder: str | Path, *, observation_end: str, calibration_end: str | None, time_unit: str,
                     horizon: float, title: str, model: str) -> Path:
    """``run.json``: what the next run needs to compare with this one."""
    path = Path(folder) / RUN_FILE
    path.write_text(json.dumps({"observation_end": observation_end, "calibration_end": calibration_end,
                                "time_unit": time_unit, "horizon": horizon, "title": title, "model": model},
                               indent=2))
    return path


def find_previous_run(root: str | Path, title: str) -> Path | None:
    """The latest finished run of the report ``title`` in ``root`` (a folder with ``run.json``
    of that title and a forecast), or None."""
    from clvmodels.reporting import _slug

    root = Path(root)
    if not root.is_dir():
        return None
    prefix = _slug(title) + "-"
    found = []
    for folder in root.iterdir():
        if (not folder.name.startswith(prefix) or folder.name.endswith("-FAILED") or folder.is_symlink()
                or not folder.is_dir()):
            continue
        record = _read_record(folder)
        if record is None or record.get("title") != title or not (folder / "forecast.parquet").exists():
            continue
        found.append((str(record.get("observation_end")), folder.stat().st_mtime, folder))
    return max(found, key=lambda f: (f[0], f[1]))[2] if found else None


def _read_record(folder: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((folder / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "observation_end" in record else None


def compare_runs(previous: str | Path, *, log: Any, forecast: pd.DataFrame, tiers: pd.Series,
                 observation_end: str) -> SinceLastRun:
    """Compare this run (``forecast``, ``tiers`` as of ``observation_end`` on ``log``) with the
    report folder ``previous``.

    Returns the tier migration matrix (earlier tier x tier now, with "new" customers), the
    Platinum and Gold customers of then who are probably gone now (P(alive) < 0.5) with the value
    the earlier run gave them, the earlier run's forecast of purchases and revenue for the elapsed
    period per earlier tier against what happened, and total value then and now.
    """
    import clvmodels
    from clvmodels.models import load_model

    folder = Path(previous)
    record = _read_record(folder)
    if record is None:
        return SinceLastRun(False, f"The earlier run '{folder.name}' has no readable {RUN_FILE}; no comparison.")
    prev_end = str(record["observation_end"])
    unit = str(record.get("time_unit") or "W")
    days = (pd.Timestamp(observation_end) - pd.Timestamp(prev_end)).days
    if days <= 0:
        return SinceLastRun(False, f"The earlier run '{folder.name}' is as of {prev_end}, not before this one "
                                   f"({observation_end}); no comparison.", previous=folder.name)
    try:
        then = pd.read_parquet(folder / "forecast.parquet", columns=["customer_id", "tier", "clv", "p_alive"])
        model = load_model(folder / "purchase_model.json")
        spend = load_model(folder / "gamma_gamma.json")
    except Exception as exc:  # noqa: BLE001 - a damaged earlier run is a note, not a failure
        return SinceLastRun(False, f"The earlier run '{folder.name}' could not be read ({type(exc).__name__}); "
                                   "no comparison.", previous=folder.name)
    then = then.assign(customer_id=then["customer_id"].astype(str)).set_index("customer_id")
    then["tier"] = then["tier"].astype(str)
    now_tier = tiers.astype(str)
    now_tier.index = now_tier.index.astype(str)
    p_alive_now = forecast["p_alive"].copy()
    p_alive_now.index = p_alive_now.index.astype(str)
    elapsed = days / DAYS_PER_UNIT[unit]

    # tier migration (earlier tier x tier now), customers new since then in their own row
    both = pd.DataFrame({"then": then["tier"]}).join(now_tier.rename("now"), how="outer")
    both["then"] = both["then"].fillna("new")
    both = both.dropna(subset=["now"])
    migration = pd.crosstab(both["then"], both["now"]).reindex(index=[*TIERS, "new"], columns=list(TIERS),
                                                              fill_value=0)
    migration.index.name, migration.columns.name = "tier then", "tier now"

    # valuable customers of then who are probably gone now
    valuable = then[then["tier"].isin(["Platinum", "Gold"])]
    gone = valuable[p_alive_now.reindex(valuable.index).fillna(0.0) < LOST_BELOW]
    lost = gone.groupby("tier").agg(customers=("clv", "size"), value_then=("clv", "sum")).reindex(
        ["Platinum", "Gold"], fill_value=0)

    # the earlier forecast for the elapsed period, recomputed on the histories as they were; one
    # calibration/holdout table gives those histories and what each customer did since
    horizon = min(elapsed, float(record.get("horizon") or elapsed))
    end = str((pd.Timestamp(prev_end) + pd.Timedelta(days=horizon * DAYS_PER_UNIT[unit])).date())
    cal = clvmodels.calibration_holdout(log, calibration_end=prev_end, observation_end=end, time_unit=unit)
    cal.index = cal.index.astype(str)
    cal = cal.loc[cal.index.intersection(then.index)]
    expected = model.expected_purchases(cal, horizon)
    table = pd.DataFrame({"tier": then.loc[cal.index, "tier"], "predicted_purchases": expected,
                          "actual_purchases": cal["frequency_holdout"].astype(float),
                          "predicted_revenue": expected * spend.expected_spend(cal),
                          "actual_revenue": cal["revenue_holdout"].astype(float)})
    acc = table.groupby("tier").sum().reindex(list(TIERS), fill_value=0.0)
    acc.loc["Total"] = acc.sum()
    for q in ("purchases", "revenue"):
        act = acc[f"actual_{q}"].where(acc[f"actual_{q}"] != 0)
        acc[f"{q}_pct_error"] = (100 * (acc[f"predicted_{q}"] - acc[f"actual_{q}"]) / act).fillna(0.0)
    acc.index.name = "tier then"
    return SinceLastRun(True, previous=folder.name, previous_end=prev_end, elapsed=round(horizon, 2),
                        time_unit=unit, migration=migration, lost=lost, accuracy=acc,
                        value_then=float(then["clv"].sum()), value_now=float(forecast["clv"].sum()))

