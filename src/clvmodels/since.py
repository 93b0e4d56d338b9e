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

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from clvmodels._text import md_escape, slug
from clvmodels._validation import DAYS_PER_UNIT, UNIT_NAMES
from clvmodels.engine import engine_error_text, engine_of, execute, upload
from clvmodels.exceptions import ModelFileError
from clvmodels.models import GammaGammaModel, load_model
from clvmodels.rfm import date_literal, per_customer_days
from clvmodels.tiers import TIERS, group_spend
from clvmodels.transactions import load_transactions

__all__ = ["SinceLastRun", "find_previous_run", "compare_runs", "RUN_FILE"]

#: what a run records about itself for the next one
RUN_FILE = "run.json"

#: lost valuable customers named at most (the CSV; the page shows the first 20)
LOST_LISTED = 5000
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
    lost_customers: pd.DataFrame = field(default_factory=pd.DataFrame)
    """The Platinum and Gold customers of the earlier run who are probably gone now, by their value
    then (most first, up to :data:`LOST_LISTED`): ``tier_then``, ``value_then``, ``p_alive_now``."""
    accuracy: pd.DataFrame = field(default_factory=pd.DataFrame)
    value_then: float = 0.0
    value_now: float = 0.0
    folder: str = ""
    """The earlier run's folder (its path), when it was compared."""

    def changes(self) -> dict[str, Any]:
        """The counts both the summary and the first screen's line say: customers who moved down
        and up the pyramid, Platinum and Gold customers lost (and their value then), the change in
        total value in words (" (+3.1%)", or "" when there was no value then)."""
        # rows: tier then, columns: tier now, both Platinum first; right of the diagonal is down
        grid = self.migration.loc[list(TIERS), list(TIERS)].to_numpy()
        change = self.value_now - self.value_then
        return {"down": int(np.triu(grid, 1).sum()), "up": int(np.tril(grid, -1).sum()),
                "lost": int(self.lost["customers"].sum()) if len(self.lost) else 0,
                "value_lost": float(self.lost["value_then"].sum()) if len(self.lost) else 0.0,
                "pct": f" ({100 * change / abs(self.value_then):+.1f}%)" if self.value_then else ""}

    def summary(self) -> str:
        """The comparison in plain sentences (Markdown)."""
        if not self.available:
            return md_escape(self.reason)
        unit = UNIT_NAMES.get(self.time_unit, "time units")
        c = self.changes()
        if len(self.accuracy):
            acc = self.accuracy.loc["Total"]
            how = (f"for the {self.elapsed:g} {unit} since, it expected {acc['predicted_purchases']:,.0f} purchases "
                   f"and customers made {acc['actual_purchases']:,.0f} ({acc['purchases_pct_error']:+.1f}%); "
                   f"revenue {acc['revenue_pct_error']:+.1f}%.")
        else:
            how = ("not measured: the earlier run forecast with the customer table's covariates, whose model "
                   "the comparison does not reuse yet.")
        return "\n".join([
            f"Compared with the run as of **{md_escape(self.previous_end)}**, {self.elapsed:g} {unit} earlier:",
            "",
            f"* **Tier moves**: {c['down']:,} customers moved down the pyramid and {c['up']:,} moved up "
            "(the migration table below; rows are the earlier tier, columns the tier now).",
            f"* **Valuable customers lost**: {c['lost']:,} customers who were Platinum or Gold then are now "
            f"probably gone (less than an even chance of being active); the earlier run valued them at "
            f"{c['value_lost']:,.0f}.",
            f"* **How the last forecast did**: {how}",
            f"* **Total customer value** over the horizon is {self.value_now:,.0f} now against "
            f"{self.value_then:,.0f} then{c['pct']}.",
        ])


def headline(since: SinceLastRun | None, currency: str = "") -> str:
    """What changed since the earlier run, in one plain line (no markup), or "" without one."""
    if since is None or not since.available:
        return ""
    unit = UNIT_NAMES.get(since.time_unit, "time units")
    c = since.changes()
    cur = f"{currency} " if currency else ""
    return (f"since the run as of {since.previous_end} ({since.elapsed:g} {unit} earlier), customer value moved from "
            f"{cur}{since.value_then:,.0f} to {cur}{since.value_now:,.0f}{c['pct']}; {c['down']:,} customers moved "
            f"down the pyramid and {c['up']:,} up; {c['lost']:,} who were Platinum or Gold are probably gone.")


def write_run_record(folder: str | Path, *, observation_end: str, calibration_end: str | None, time_unit: str,
                     horizon: float, title: str, model: str, currency: str = "") -> Path:
    """``run.json``: what the next run needs to compare with this one."""
    path = Path(folder) / RUN_FILE
    path.write_text(json.dumps({"observation_end": observation_end, "calibration_end": calibration_end,
                                "time_unit": time_unit, "horizon": horizon, "title": title, "model": model,
                                "currency": currency}, indent=2))
    return path


#: an earlier run is of this run's log when at least this share of its customers are in the log
#: (bought by the earlier run's observation end): a log that grew keeps every one of them
SAME_LOG_SHARE = 0.5


def record_problem(record: dict[str, Any], units: tuple[str, ...] = ("D", "W")) -> str | None:
    """Why an earlier run's ``run.json`` cannot be used (in words naming the field), or None."""
    end = record.get("observation_end")
    try:
        ts = pd.Timestamp(str(end))
        if pd.isna(ts):
            raise ValueError
    except (ValueError, TypeError, OverflowError):
        return f"its {RUN_FILE} has observation_end {str(end)[:40]!r}, which is not a date"
    unit = record.get("time_unit")
    if unit is not None and unit not in units:
        return f"its {RUN_FILE} has time unit {str(unit)[:20]!r}, not one of {list(units)}"
    horizon = record.get("horizon")
    if horizon is not None and (isinstance(horizon, bool) or not isinstance(horizon, (int, float))
                                or not np.isfinite(horizon) or horizon <= 0):
        return f"its {RUN_FILE} has horizon {str(horizon)[:20]!r}, not a positive number"
    return None


def currency_problem(record: dict[str, Any], currency: str) -> str | None:
    """Why two runs' values cannot be compared as one (different currencies), or None. A run that
    recorded no currency is compared (nothing says otherwise)."""
    then = record.get("currency")
    if isinstance(then, str) and then.strip() and currency.strip() and then.strip() != currency.strip():
        return f"its values are in {then.strip()[:20]}, this run's in {currency.strip()[:20]}"
    return None


def find_previous_run(root: str | Path, title: str) -> Path | None:
    """The latest finished run of the report ``title`` in ``root`` (a folder with ``run.json``
    of that title and a forecast), or None."""
    root = Path(root)
    if not root.is_dir():
        return None
    prefix = slug(title) + "-"
    found = []
    for folder in root.iterdir():
        if (not folder.name.startswith(prefix) or folder.name.endswith("-FAILED") or folder.is_symlink()
                or not folder.is_dir()):
            continue
        record = read_record(folder)
        if record is None or record.get("title") != title or not (folder / "forecast.parquet").exists():
            continue
        found.append((str(record.get("observation_end")), folder.stat().st_mtime, folder))
    return max(found, key=lambda f: (f[0], f[1]))[2] if found else None


def read_record(folder: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((folder / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "observation_end" in record else None


def compare_runs(previous: str | Path, *, log: Any, observation_end: str, forecast: pd.DataFrame | None = None,
                 tiers: pd.Series | None = None, scores: Any = None, currency: str = "") -> SinceLastRun:
    """Compare this run with the report folder ``previous``.

    This run is either ``forecast`` and ``tiers`` (in memory, indexed by customer) or ``scores``
    (an engine table with ``customer_id, tier, p_alive, clv``, as :func:`clvmodels.scoring.read_scores`
    gives); ``log`` is its transaction log (an Ibis table or anything
    :func:`clvmodels.load_transactions` reads). The work is done in the log's engine (DuckDB
    or Spark): only the counts and a table of distinct histories come back, so it holds for a
    customer base of any size.

    Returns the tier migration matrix (earlier tier x tier now, with "new" customers), the
    Platinum and Gold customers of then who are probably gone now (P(alive) < 0.5) with the value
    the earlier run gave them, the earlier run's forecast of purchases and revenue for the elapsed
    period per earlier tier against what happened, and total value then and now.
    """
    folder = Path(previous)
    record = read_record(folder)
    if record is None:
        return SinceLastRun(False, f"The earlier run '{folder.name}' has no readable {RUN_FILE}; no comparison.")
    problem = record_problem(record) or currency_problem(record, currency)
    if problem:
        return SinceLastRun(False, f"The run in '{folder.name}' could not be compared: {problem}.", previous=folder.name)
    prev_end = str(pd.Timestamp(str(record["observation_end"])).date())
    unit = str(record.get("time_unit") or "W")
    days = (pd.Timestamp(observation_end) - pd.Timestamp(prev_end)).days
    if days <= 0:
        return SinceLastRun(False, f"The earlier run '{folder.name}' is as of {prev_end}, not before this one "
                                   f"({observation_end}); no comparison.", previous=folder.name)
    if not isinstance(log, ir.Table):
        log = load_transactions(log)
    if scores is None:
        if forecast is None or tiers is None:
            raise TypeError("compare_runs needs this run's forecast and tiers, or its scores table")
        scores = upload(pd.DataFrame({"customer_id": forecast.index.astype(str), "tier": tiers.astype(str).to_numpy(),
                                       "p_alive": forecast["p_alive"].to_numpy(float),
                                       "clv": forecast["clv"].to_numpy(float)}), log)
    try:
        return _compare(folder, record, log, scores, prev_end, unit, days)
    except _NotComparable as exc:
        return SinceLastRun(False, f"The run in '{folder.name}' could not be compared: {exc}.", previous=folder.name)
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign earlier run is a note, never the report's end
        return SinceLastRun(False, f"The run in '{folder.name}' could not be compared: {failure_words(exc)}.",
                            previous=folder.name)


class _NotComparable(Exception):
    """An earlier run that cannot be compared with this one, and why (in words)."""


def failure_words(exc: BaseException) -> str:
    """One line for an unforeseen failure reading an earlier run."""
    text = engine_error_text(exc).splitlines()[0][:200]
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


def _compare(folder: Path, record: dict[str, Any], log: Any, scores: Any, prev_end: str, unit: str,
             days: int) -> SinceLastRun:
    try:
        then = _forecast_table(folder / "forecast.parquet", like=log)
    except FileNotFoundError:
        raise _NotComparable("it has no forecast.parquet") from None
    # a run with a customer table forecast with covariates: no single purchase model file (its
    # coefficients are in covariate_parameters.csv); tier moves, lost customers and value compare
    # all the same, the earlier forecast's accuracy needs the earlier model
    covariate_run = (folder / "covariate_parameters.csv").exists() and not (folder / "purchase_model.json").exists()
    model = spend = None
    if not covariate_run:
        for name in ("purchase_model.json", "gamma_gamma.json"):
            if not (folder / name).exists():
                raise _NotComparable(f"it has no {name}")
        try:
            model = load_model(folder / "purchase_model.json")
            spend = load_model(folder / "gamma_gamma.json")
        except ModelFileError as exc:
            raise _NotComparable(str(exc).splitlines()[0].rstrip(".")) from None
        if not hasattr(model, "expected_purchases") or not isinstance(spend, GammaGammaModel):
            raise _NotComparable("its purchase_model.json or gamma_gamma.json holds another kind of model")
    # the same log: the earlier run's customers bought by its end in this log (another shop's run
    # in the same folder, or a damaged table, share almost none of them)
    bought = log.filter(log.date <= date_literal(pd.Timestamp(prev_end)))
    known = bought.select(customer_id=bought.customer_id.cast("string")).distinct()
    n_then, found = int(execute(then.count())), int(execute(then.semi_join(known, "customer_id").count()))
    if n_then == 0:
        raise _NotComparable("its forecast.parquet has no customers")
    if found < SAME_LOG_SHARE * n_then:
        raise _NotComparable(f"it is of another log: {found:,} of its {n_then:,} customers are in this log by "
                             f"its end ({prev_end})")
    now = scores.select(customer_id=scores.customer_id.cast("string"), tier_now=scores.tier.cast("string"),
                        p_alive=scores.p_alive, clv_now=scores.clv)
    elapsed = days / DAYS_PER_UNIT[unit]

    # tier migration (earlier tier x tier now), customers new since then in their own row
    j = now.left_join(then, "customer_id")
    moves = execute(j.group_by(tier_then=j.tier.fill_null("new"), tier_now=j.tier_now).aggregate(n=j.count()))
    migration = moves.pivot_table(index="tier_then", columns="tier_now", values="n", aggfunc="sum").reindex(
        index=[*TIERS, "new"], columns=list(TIERS)).fillna(0).astype(int)
    migration.index.name, migration.columns.name = "tier then", "tier now"

    # valuable customers of then who are probably gone now (not in this run: gone)
    valuable = then.filter(then.tier.isin(["Platinum", "Gold"]))
    v = valuable.left_join(now, "customer_id")
    gone = v.filter(v.p_alive.fill_null(0.0) < LOST_BELOW)
    lost = execute(gone.group_by("tier").aggregate(customers=gone.count(), value_then=gone.clv.sum()))
    lost = lost.set_index("tier").reindex(["Platinum", "Gold"], fill_value=0)
    named = execute(gone.select(customer_id=gone.customer_id, tier_then=gone.tier, value_then=gone.clv,
                                p_alive_now=gone.p_alive.fill_null(0.0))
                    .order_by([ibis.desc("value_then"), "customer_id"]).limit(LOST_LISTED)).set_index("customer_id")
    values = execute(then.aggregate(v=then.clv.sum())).iloc[0, 0], execute(now.aggregate(v=now.clv_now.sum())).iloc[0, 0]

    # the earlier forecast for the elapsed period, recomputed on the histories as they were at its
    # end, grouped by earlier tier and distinct history in the engine
    horizon = min(elapsed, float(record.get("horizon") or elapsed))
    end = str((pd.Timestamp(prev_end) + pd.Timedelta(days=horizon * DAYS_PER_UNIT[unit])).date())
    acc = pd.DataFrame() if model is None else _accuracy(log, then, model, spend, prev_end, end, unit, horizon)
    return SinceLastRun(True, previous=folder.name, folder=str(folder), previous_end=prev_end, elapsed=round(horizon, 2),
                        time_unit=unit, migration=migration, lost=lost, accuracy=acc, lost_customers=named,
                        value_then=float(values[0] or 0.0), value_now=float(values[1] or 0.0))


def _forecast_table(path: Path, *, like: Any) -> Any:
    """An earlier run's ``forecast.parquet`` (one file, or a folder partitioned by tier) as a
    table of the engine of ``like``: ``customer_id`` (text), ``tier`` (text), ``clv``."""
    if not path.exists():
        raise FileNotFoundError(path)
    table = engine_of(like).read_parquet(path, like)
    schema = table.schema()
    missing = [c for c in ("customer_id", "tier", "clv") if c not in schema]
    if missing:
        raise _NotComparable(f"its forecast.parquet has no column {missing[0]!r}")
    if not schema["clv"].is_numeric():
        raise _NotComparable(f"its forecast.parquet's column 'clv' holds {schema['clv']}, not numbers")
    return table.select(customer_id=table.customer_id.cast("string"), tier=table.tier.cast("string"),
                        clv=table.clv.cast("float64"))


def _accuracy(log: Any, then: Any, model: Any, spend: Any, prev_end: str, end: str, unit: str,
              horizon: float) -> pd.DataFrame:
    """Per earlier tier: the earlier models' expected purchases and revenue for ``horizon`` after
    ``prev_end`` against what the customers did up to ``end``. The engine returns one row per
    (tier, distinct history) with the customers' count, how many have a spend to condition on,
    the sum of their mean spends and what they did; expected purchases depend only on the
    history and the group's spend comes from :func:`clvmodels.tiers.group_spend` (Gamma-Gamma's
    conditional spend is linear in the mean spend), so the sums are exact."""
    cal_lit, end_lit = date_literal(pd.Timestamp(prev_end)), date_literal(pd.Timestamp(end))
    cal = per_customer_days(log.filter(log.date <= cal_lit), pd.Timestamp(prev_end))
    cal = cal.mutate(customer_id=cal.customer_id.cast("string"))
    hold = log.filter((log.date > cal_lit) & (log.date <= end_lit))
    hold = hold.mutate(customer_id=hold.customer_id.cast("string"))
    after = hold.group_by("customer_id").aggregate(purchases=hold.date.nunique(), revenue=hold.amount.sum())
    j = cal.inner_join(then, "customer_id").left_join(after, "customer_id")
    has_m = (j.frequency > 0) & (j.monetary_value > 0)
    g = execute(j.group_by(["tier", "frequency", "recency_days", "T_days"]).aggregate(
        n=j.count(), n_valid=has_m.cast("int64").sum(), m_sum=ibis.ifelse(has_m, j.monetary_value, 0.0).sum(),
        actual_purchases=j.purchases.fill_null(0).sum(), actual_revenue=j.revenue.fill_null(0.0).sum()))
    days = DAYS_PER_UNIT[unit]
    hist = pd.DataFrame({"frequency": g["frequency"].to_numpy(float), "recency": g["recency_days"].to_numpy(float) / days,
                         "T": g["T_days"].to_numpy(float) / days})
    per_customer = model.expected_purchases(hist, horizon).to_numpy(float)
    n = g["n"].to_numpy(float)
    spend_sum = group_spend(*(float(spend.params_[k]) for k in ("p", "q", "v")), n, g["n_valid"].to_numpy(float),
                             g["frequency"].to_numpy(float), g["m_sum"].to_numpy(float))
    table = pd.DataFrame({"tier": g["tier"].astype(str).to_numpy(), "predicted_purchases": per_customer * n,
                          "actual_purchases": g["actual_purchases"].to_numpy(float),
                          "predicted_revenue": per_customer * spend_sum,
                          "actual_revenue": g["actual_revenue"].to_numpy(float)})
    acc = table.groupby("tier").sum().reindex(list(TIERS), fill_value=0.0)
    acc.loc["Total"] = acc.sum()
    for q_ in ("purchases", "revenue"):
        act = acc[f"actual_{q_}"].where(acc[f"actual_{q_}"] != 0)
        acc[f"{q_}_pct_error"] = (100 * (acc[f"predicted_{q_}"] - acc[f"actual_{q_}"]) / act).fillna(0.0)
    acc.index.name = "tier then"
    return acc


def earlier_p_alive(since: SinceLastRun, ids: Any, *, like: Any) -> pd.Series:
    """The P(alive) the earlier run gave the customers ``ids`` (text ids; those it did not know,
    or an earlier run without a numeric ``p_alive`` column, are missing), read by the engine of
    ``like`` from its ``forecast.parquet``. Never fatal: an earlier run that cannot be read gives
    an empty Series (the comparison itself said why)."""
    wanted = [str(v) for v in ids]
    empty = pd.Series(dtype=float, name="p_alive_last_run")
    if not since.available or not since.folder or not wanted:
        return empty
    try:
        table = engine_of(like).read_parquet(Path(since.folder) / "forecast.parquet", like)
        schema = table.schema()
        if "p_alive" not in schema or "customer_id" not in schema or not schema["p_alive"].is_numeric():
            return empty
        t = table.select(customer_id=table.customer_id.cast("string"), p=table.p_alive.cast("float64"))
        got = execute(t.filter(t.customer_id.isin(wanted)))
    except Exception:  # noqa: BLE001 - a damaged earlier run is a missing column here, never the report's end
        return empty
    out = got.drop_duplicates("customer_id").set_index("customer_id")["p"].clip(0.0, 1.0)
    return out.rename("p_alive_last_run")
