"""Fitting and scoring inside the engine, for customer tables that do not fit in memory.

The engine (DuckDB, or Spark on a cluster) aggregates the log per customer and keeps that
table; this process only ever holds *distinct* rows:

* :func:`compressed_rfm` - the distinct ``(frequency, recency, T)`` histories with their
  customer counts (what a purchase model is fitted on) and the distinct ``(frequency,
  monetary_value)`` pairs of repeat buyers (Gamma-Gamma);
* :func:`score_customers` - the per-customer forecast and tier of every customer, written by
  the engine as Parquet: the purchase model is evaluated once per distinct history here, that
  small table is joined back to the customers in the engine, where the spend, CLV and tier
  columns are computed. Nothing customer-sized passes through Python.

The numbers are those of :func:`clvmodels.forecast` and :func:`clvmodels.assign_tiers` on the
in-memory table (tested to 1e-11).
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from clvmodels._validation import DAYS_PER_UNIT, TimeUnit
from clvmodels.engine import engine_of, execute, release, upload
from clvmodels.exceptions import DataValidationError, ModelError, ParameterError
from clvmodels.forecast import FORECAST_COLUMNS, combine_parts, forecast_settings, purchase_arrays
from clvmodels.models._purchase import PurchaseModel
from clvmodels.models.seasonal import as_of
from clvmodels.retention import approximate_value_at_risk
from clvmodels.rfm import engine_customer_table
from clvmodels.tiers import TIERS, TierGroups, check_shares
from clvmodels.transactions import mark_validated

__all__ = ["CompressedRFM", "compressed_rfm", "ScoreResult", "score_customers", "MAX_SPEND_ROWS", "release"]

#: repeat buyers whose (frequency, monetary value) the driver receives at most: mean spend is a
#: continuous number, so these rows hardly compress; above this many, a random sample of
#: about this many repeat buyers (drawn by the engine) is what Gamma-Gamma is fitted on
MAX_SPEND_ROWS = 2_000_000


@dataclass
class CompressedRFM:
    """Distinct rows of an RFM table and how many customers share each."""

    purchases: pd.DataFrame
    """``frequency, recency, T, weight``: fit a purchase model with ``fit(purchases, weights=purchases["weight"])``."""
    spend: pd.DataFrame
    """``frequency, monetary_value, weight`` of repeat buyers: ``GammaGammaModel().fit(spend, weights=spend["weight"])``."""
    customers: int
    time_unit: str
    observation_end: str
    spend_sample: float = 1.0
    """Share of repeat buyers in ``spend`` (1.0 = all; below when there were more than :data:`MAX_SPEND_ROWS`)."""

    def fit(self, purchase_model: Any, spend_model: Any = None, *, below_T: float | None = None) -> tuple[Any, Any]:
        """Fit ``purchase_model`` (and ``spend_model``) on the distinct rows; returns both.
        ``below_T``: the purchase model learns only from rows with ``T`` below it (the customers
        first seen after a left-truncated log's pile-up, :mod:`clvmodels.cohorts`)."""
        rows = self.purchases if below_T is None else self.purchases[self.purchases["T"] < below_T]
        purchase_model.fit(rows, weights=rows["weight"].to_numpy(float))
        if spend_model is not None:
            spend_model.fit(self.spend, weights=self.spend["weight"].to_numpy(float))
        return purchase_model, spend_model


_HISTORY = ["frequency", "recency_days", "T_days"]


def _histories(per: ir.Table, end: pd.Timestamp) -> pd.DataFrame:
    """The distinct purchase histories (whole days) and how many customers have each."""
    hist = execute(per.group_by(_HISTORY).aggregate(weight=per.count()).order_by(_HISTORY))
    if len(hist) == 0:
        raise DataValidationError(
            f"No purchases on or before observation_end={end.date()}; choose a later observation_end.")
    return hist


def compressed_rfm(transactions: Any, *, time_unit: TimeUnit = "D", observation_end: Any = None,
                   columns: dict[str, str] | None = None, engine: str = "duckdb",
                   max_spend_rows: int = MAX_SPEND_ROWS) -> CompressedRFM:
    """The RFM table reduced to distinct rows with customer counts, aggregated in the engine.

    A purchase model fitted on ``purchases`` with its weights has exactly the parameters it has
    on the full RFM table (the likelihood is a sum over customers); Gamma-Gamma likewise on
    ``spend``. Use it when the customer table is too large to bring into memory.

    Parameters are those of :func:`clvmodels.rfm_summary` (plus ``engine`` for files and
    DataFrames, see :func:`clvmodels.load_transactions`). With more than ``max_spend_rows``
    repeat buyers, ``spend`` holds a random sample of about that many (by the engine's hash of
    the customer id, so a run is repeatable on one engine); the sampling error of the
    Gamma-Gamma parameters is then of order ``1/sqrt(max_spend_rows)`` relative (the usual
    rate of a maximum-likelihood estimate; not measured here beyond a 3,000-row test).
    """
    per, unit, end = engine_customer_table(transactions, time_unit, observation_end, columns, engine)
    days = DAYS_PER_UNIT[unit]
    hist = _histories(per, end)
    purchases = pd.DataFrame({"frequency": hist["frequency"], "recency": hist["recency_days"] / days,
                              "T": hist["T_days"] / days, "weight": hist["weight"]})
    repeat = per.filter(per.frequency > 0)
    n_repeat = int(purchases.loc[purchases["frequency"] > 0, "weight"].sum())
    share = 1.0
    if n_repeat > max_spend_rows:
        share = np.ceil(max_spend_rows / n_repeat * 1_000_000) / 1_000_000
        repeat = _hash_keep(repeat, share)
    spend = repeat.group_by(["frequency", "monetary_value"]).aggregate(weight=repeat.count())
    spend_rows = execute(spend.order_by(["frequency", "monetary_value"]))[["frequency", "monetary_value", "weight"]]
    for table in (purchases, spend_rows):
        table.attrs.update({"time_unit": unit, "observation_end": str(end.date())})
    return CompressedRFM(purchases, spend_rows,
                         int(purchases["weight"].sum()), unit, str(end.date()), share)


@dataclass
class ScoreResult:
    """What :func:`score_customers` wrote."""

    path: Path
    """The Parquet dataset: one folder per tier (``tier=Platinum/...``)."""
    tier_table: pd.DataFrame
    """Per tier (and in total): customers, CLV, purchases, revenue, churn - as :func:`clvmodels.tier_summary`."""
    customers: int
    distinct_histories: int
    """Rows the purchase model was evaluated on in this process."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Where the time went: ``histories`` (distinct histories and their forecast), ``cut-offs``
    (:func:`tier_cutoffs`), ``columns and write`` (every customer's columns and tier, written),
    ``tier table`` (read back and summed)."""


def _hash_keep(table: ir.Table, share: float, salt: str = "") -> ir.Table:
    """About ``share`` of the customers of ``table``, chosen by the engine's hash of the id."""
    buckets = 1_000_000
    keep = int(np.ceil(min(max(share, 0.0), 1.0) * buckets))
    if keep >= buckets:
        return table
    key = table.customer_id.cast("string") + salt if salt else table.customer_id
    return table.filter((key.hash() % buckets).abs() < keep)


def sample_log(transactions: ir.Table, share: float) -> ir.Table:
    """The log of about ``share`` of the customers (every purchase of each chosen customer),
    drawn by the engine; validated like its source."""
    return mark_validated(_hash_keep(transactions, share))


def sample_scores(scores: ir.Table, share: float) -> pd.DataFrame:
    """About ``share`` of the scored customers, in memory, indexed by customer id (sorted)."""
    return execute(_hash_keep(scores, share, "figures").order_by("customer_id")).set_index("customer_id")


def at_risk_candidates(scores: ir.Table, min_p_no_purchase: float, min_ratio: float, limit: int,
                       tiers_considered: tuple[str, ...] = ("Platinum", "Gold")) -> pd.DataFrame:
    """The customers :func:`clvmodels.retention.at_risk_customers` ranks, pre-selected by the
    engine by its own criteria (tiers considered, chance of no purchase in the horizon >=
    ``min_p_no_purchase`` and >= ``min_ratio`` times the tier's mean; the ``limit`` with the highest
    ratio, then approximate value at risk), with their history and forecast; each tier's mean
    chance of no purchase (over all its customers) in ``attrs["tier_p_no_purchase"]``."""
    p_no = 1 - scores.p_any_purchase
    means = execute(scores.group_by("tier").aggregate(mean_p_no=p_no.mean()))
    tier_means = {str(t): float(m) for t, m in zip(means["tier"], means["mean_p_no"], strict=True)}
    mean_of = ibis.cases(*[(scores.tier == t, m) for t, m in tier_means.items()], else_=ibis.null("float64")) \
        if tier_means else ibis.null("float64")
    ratio = p_no / mean_of
    fc = scores.mutate(_ratio=ratio)
    fc = fc.filter(fc.tier.isin(list(tiers_considered)) & ((1 - fc.p_any_purchase) >= min_p_no_purchase)
                   & (fc._ratio >= min_ratio))
    approx = approximate_value_at_risk(fc.clv, fc.p_any_purchase)
    out = execute(fc.order_by([fc._ratio.desc(), approx.desc(), fc.customer_id]).limit(int(limit))
                  .drop("_ratio")).set_index("customer_id")
    # how many qualify in all, so the page can say the list holds the first ``limit`` of them
    out.attrs["qualified"] = len(out) if len(out) < int(limit) else int(execute(fc.count()))
    out.attrs["tier_p_no_purchase"] = tier_means
    return out


def engine_overview(scores: ir.Table) -> dict[str, Any]:
    """The numbers of :func:`clvmodels.reporting.overview_table` for every scored customer,
    aggregated by the engine."""
    fc = scores
    repeat = fc.frequency > 0
    row = execute(fc.aggregate(
        n=fc.count(), repeat=repeat.cast("int64").sum(), purchases=fc.frequency.sum(), mean_T=fc["T"].mean(),
        mean_freq=fc.frequency.cast("float64").mean(),
        spend=ibis.ifelse(repeat, fc.monetary_value, ibis.null("float64")).mean())).iloc[0]
    return {"customers": int(row["n"]), "repeat_buyers": int(row["repeat"]), "repeat_purchases": int(row["purchases"]),
            "mean_T": float(row["mean_T"]), "mean_frequency": float(row["mean_freq"]),
            "mean_spend": None if pd.isna(row["spend"]) else float(row["spend"])}


def _spend_expr(spend_model: Any, x: ir.Column, m: ir.Column) -> ir.Column:
    """Gamma-Gamma's conditional expected spend as an engine expression: the formula of
    :func:`clvmodels.models.gamma_gamma.conditional_spend` (population mean without a repeat
    purchase or with zero spend)."""
    p, q, v = (float(spend_model.params_[k]) for k in ("p", "q", "v"))
    xf = x.cast("float64")
    return ibis.ifelse((x > 0) & (m > 0), p * (v + xf * m) / (p * xf + (q - 1.0)), p * v / (q - 1.0))


def score_customers(
    transaction_model: Any,
    spend_model: Any,
    transactions: Any,
    output: str | Path,
    *,
    horizon: float,
    discount_rate: float = 0.10,
    margin: float = 1.0,
    cost_to_serve: float = 0.0,
    time_unit: TimeUnit | None = None,
    observation_end: Any = None,
    tier_shares: Mapping[str, float] | None = None,
    columns: dict[str, str] | None = None,
    engine: str = "duckdb",
) -> ScoreResult:
    """Forecast and tier every customer of a log inside the engine; write them as Parquet.

    Parameters
    ----------
    transaction_model, spend_model
        Fitted purchase model (BG/NBD, MBG/NBD, Pareto/NBD) and Gamma-Gamma model, e.g. from
        :meth:`CompressedRFM.fit` or loaded from a report's ``purchase_model.json`` and
        ``gamma_gamma.json``.
    transactions
        A log as for :func:`clvmodels.load_transactions`: on Spark (an Ibis table on a Spark
        session, or a path with ``engine="spark"``) the work runs on the cluster.
    output : path
        A new folder: the forecast is written there as a Parquet dataset partitioned by tier,
        columns ``customer_id``, ``frequency``, ``recency``, ``T``, ``monetary_value`` and
        those of :func:`clvmodels.forecast`. It must not exist yet; a failed run leaves nothing.
    horizon, discount_rate, margin, cost_to_serve
        As for :func:`clvmodels.forecast`.
    time_unit : {"D", "W"}, optional
        Defaults to the model's unit.
    observation_end : date-like, optional
        Defaults to the last purchase in the log.
    tier_shares : mapping, optional
        As for :func:`clvmodels.assign_tiers` (same ranking and tie-break: value descending,
        then customer id ascending; negative CLV is Lead).

    Returns
    -------
    ScoreResult
        The path, the tier table and counts.

    Notes
    -----
    Memory in this process grows with the number of distinct purchase histories, not with
    customers. The tiers need no global ranking: the cut-off rows come from
    :func:`tier_cutoffs` (approximate quantiles, then an exact ranking of the few customers near
    each cut-off), and each customer is compared with them.
    """
    if not isinstance(transaction_model, PurchaseModel) or getattr(transaction_model, "params_", None) is None:
        raise ParameterError("transaction_model must be a fitted BG/NBD, MBG/NBD or Pareto/NBD model.")
    if getattr(spend_model, "params_", None) is None:
        raise ParameterError("spend_model must be a fitted GammaGammaModel.")
    unit = time_unit or getattr(transaction_model, "time_unit_", None)
    s = forecast_settings(transaction_model, None, horizon, discount_rate, margin, cost_to_serve, unit, lifetime=True)
    shares = check_shares(tier_shares)
    out = Path(output)
    if out.exists():
        raise ParameterError(f"Parameter 'output': {str(out)!r} already exists; give a new folder.")

    per, unit, end = engine_customer_table(transactions, s.time_unit, observation_end, columns, engine)
    clock = [time.perf_counter()]
    seconds: dict[str, float] = {}

    def lap(name: str) -> None:
        now = time.perf_counter()
        seconds[name] = now - clock[0]
        clock[0] = now

    days = DAYS_PER_UNIT[unit]
    hist = _histories(per, end)
    n = int(hist.pop("weight").sum())
    transaction_model = as_of(transaction_model, end)  # a seasonal clock counts back from this log's end
    x = hist["frequency"].to_numpy(float)
    parts = purchase_arrays(transaction_model, x, hist["recency_days"].to_numpy(float) / days,
                             hist["T_days"].to_numpy(float) / days, s)
    bad = [k for k, v in parts.items() if not np.all(np.isfinite(v))]
    if bad:
        raise ModelError(f"The forecast's {bad[0]!r} is not finite for some purchase histories with these "
                         "parameters; refit with a small penalizer_coef or choose another purchase model.")
    terms = upload(hist.assign(**{f"_{k}": v for k, v in parts.items()}), per)

    def scores_of(customers: ir.Table) -> ir.Table:
        j = customers.inner_join(terms, _HISTORY)
        spend = _spend_expr(spend_model, j.frequency, j.monetary_value)
        cols = combine_parts({k: j[f"_{k}"] for k in parts}, spend, s)
        return j.select(
            "customer_id", "frequency",
            recency=j.recency_days.cast("float64") / days, T=j.T_days.cast("float64") / days,
            monetary_value=j.monetary_value,
            **{name: cols[name].cast("float64") for name in FORECAST_COLUMNS},
        )

    scored = scores_of(per)
    bounds = np.rint(np.cumsum([shares[t] for t in TIERS]) * n).astype(int)
    bounds[-1] = n
    lap("histories")
    # the cut-offs' estimate from a sample drawn before the join (the join is most of a pass)
    # (any sample will do: the cut-offs are exact whatever it holds; Spark's has no seed in Ibis)
    seed = engine_of(per).sample_seed
    sample = (scores_of(per.sample(CUTOFF_SAMPLE / n, method="row", seed=seed)) if n > 2 * CUTOFF_SAMPLE
              else None)
    cuts = tier_cutoffs(scored, [int(b) for b in bounds[:-1]], n, sample=sample)
    lap("cut-offs")
    tier = ibis.cases(
        (scored.clv < 0, "Lead"),
        *((_inside(scored, cut), name) for cut, name in zip(cuts, TIERS[:-1], strict=True)),
        else_="Lead",
    )
    result = scored.mutate(tier=tier)

    # written under a neutral name (an engine reads brackets or stars in a path as a pattern),
    # checked, then renamed into place: a failed or non-finite scoring is never left at ``out``
    tmp = out.parent / f".clvmodels-scores-{uuid.uuid4().hex[:8]}.tmp"
    try:
        _write_partitioned(result, tmp)
        lap("columns and write")
        table = _tier_table(tmp, like=per)
        lap("tier table")
        values = table.select_dtypes("number").to_numpy(float)
        if not np.isfinite(values).all():
            raise ModelError(
                "The forecast is not a finite number for some tiers (CLV or revenue overflowed): the settings "
                f"or model parameters are out of range (cost_to_serve {s.cost_to_serve:g}, margin {s.margin:g}; "
                + ", ".join(f"{k}={v:.4g}" for k, v in {**transaction_model.params_, **spend_model.params_}.items())
                + "). No forecast was published.")
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ScoreResult(out, table, n, len(hist), seconds)


#: customers of the bands around the cut-offs brought to this process at most (beyond: the
#: engine picks the cut-off row itself, a top-N within the band)
MAX_BAND_ROWS = 2_000_000


def _inside(scored: ir.Table, cut: tuple[Any, Any] | None) -> Any:
    """Ranked before or at the cut-off row ``(clv, customer_id)`` (value descending, then id
    ascending); None: nobody."""
    if cut is None:
        return ibis.literal(False)
    value, cid = cut
    return (scored.clv > value) | ((scored.clv == value) & (scored.customer_id <= cid))


#: customers the cut-offs' first estimate is made from (a hash sample of the scored customers)
CUTOFF_SAMPLE = 200_000


def tier_cutoffs(scored: ir.Table, counts: list[int], n: int, *, sample: ir.Table | None = None,
                 band: float = 0.002) -> list[tuple[Any, Any] | None]:
    """The rows at which the tiers end, without ranking every customer: for each ``count``,
    the ``(clv, customer_id)`` of the customer ranked ``count``-th by value descending then id
    ascending (the ranking a global sort gives; None when ``count`` is 0).

    Instead of a sort (which on Spark is a window over a single partition): the quantiles of
    ``clv`` around each cut-off are estimated on ``sample`` (a random share of the customers, e.g.
    :func:`_hash_keep` of the table the scores are computed from; the scores themselves when
    None), then one pass over every customer counts those above each band and collects the band's
    customers - about ``band`` of them - which are ranked exactly here. A band that misses its
    cut-off (the estimate off by more than the band) is widened and counted again; a band that
    would bring more than :data:`MAX_BAND_ROWS` customers here (a value shared by very many) is
    ranked by the engine instead."""
    wanted = [(k, c) for k, c in enumerate(counts) if 0 < c]
    out: list[tuple[Any, Any] | None] = [None] * len(counts)
    src = scored if sample is None else sample
    width = max(band, 50.0 / max(n, 1))
    while wanted:
        qs = {}
        for k, c in wanted:
            q = 1.0 - (c - 0.5) / n  # the cut-off's quantile of clv, ascending
            qs[f"lo{k}"] = max(0.0, q - width)
            qs[f"hi{k}"] = min(1.0, q + width)
        # exact quantiles of a sample (approximate ones of everyone when there is no sample)
        quantile = src.clv.quantile if sample is not None else src.clv.approx_quantile
        est = execute(src.aggregate(n_sample=src.count(), **{name: quantile(q) for name, q in qs.items()})).iloc[0]
        lo = {k: float(est[f"lo{k}"]) if qs[f"lo{k}"] > 0 and pd.notna(est[f"lo{k}"]) else -np.inf for k, _ in wanted}
        hi = {k: float(est[f"hi{k}"]) if qs[f"hi{k}"] < 1 and pd.notna(est[f"hi{k}"]) else np.inf for k, _ in wanted}
        # about how many customers each band holds (a value shared by many makes it larger)
        share = float(est["n_sample"]) / n if float(est["n_sample"]) else 1.0
        sizes = execute(src.aggregate(**{f"b{k}": _in_band(src, lo[k], hi[k]).cast("int64").sum()
                                         for k, _ in wanted})).iloc[0]
        collect = {k for k, _ in wanted if float(sizes[f"b{k}"]) / share <= MAX_BAND_ROWS / max(len(wanted), 1)}
        sums: dict[str, Any] = {}
        for k, _ in wanted:
            sums[f"above{k}"] = (scored.clv > hi[k]).cast("int64").sum() if np.isfinite(hi[k]) else ibis.literal(0)
            sums[f"upto{k}"] = (scored.clv >= lo[k]).cast("int64").sum() if np.isfinite(lo[k]) else ibis.literal(n)
            if k in collect:
                row = ibis.struct({"clv": scored.clv, "customer_id": scored.customer_id})
                sums[f"band{k}"] = row.collect(where=_in_band(scored, lo[k], hi[k]))
        got = execute(scored.aggregate(**sums)).iloc[0]
        missed = []
        for k, c in wanted:
            above, upto = int(got[f"above{k}"]), int(got[f"upto{k}"])
            if not above < c <= upto:
                missed.append((k, c))
                continue
            if k in collect:
                rows = pd.DataFrame(list(got[f"band{k}"]), columns=["clv", "customer_id"])
                rows = rows.sort_values(["clv", "customer_id"], ascending=[False, True], kind="stable")
                row = rows.iloc[c - above - 1]
            else:
                in_band = scored.filter(_in_band(scored, lo[k], hi[k]))
                row = execute(in_band.select("clv", "customer_id").order_by(
                    [in_band.clv.desc(), in_band.customer_id.asc()]).limit(1, offset=c - above - 1)).iloc[0]
            cid = row["customer_id"]
            out[k] = (float(row["clv"]), cid.item() if hasattr(cid, "item") else cid)
        wanted = missed
        if width >= 1.0:
            break
        width = min(1.0, width * 10)
    return out


def _in_band(scored: ir.Table, lo: float, hi: float) -> Any:
    cond = scored.clv.notnull()
    if np.isfinite(lo):
        cond = cond & (scored.clv >= lo)
    if np.isfinite(hi):
        cond = cond & (scored.clv <= hi)
    return cond


def _write_partitioned(table: ir.Table, path: Path) -> None:
    engine_of(table).write_partitioned(table, path, "tier")


def read_scores(path: str | Path, like: ir.Table | None = None) -> ir.Table:
    """The forecast written by :func:`score_customers`, as a table of the engine of ``like``
    (DuckDB when None), with its ``tier`` column."""
    return engine_of(like).read_parquet(Path(path), like)


def engine_tier_groups(scores: ir.Table, *, max_simulated: int, seed: int = 0) -> Any:
    """:class:`clvmodels.tiers.TierGroups` of a scored table (:func:`read_scores`), grouped by
    the engine: the customers simulated for the process noise are all of them when there are at
    most ``max_simulated``, else a random sample of about that many (by the engine's hash of the
    customer id, salted with ``seed``), in customer-id order."""
    fc = scores
    valid = (fc.frequency > 0) & (fc.monetary_value > 0)
    keys = ["tier", "frequency", "recency", "T"]
    groups = execute(fc.group_by(keys).aggregate(
        n=fc.count(), n_valid=valid.cast("int64").sum(),
        sum_m=ibis.ifelse(valid, fc.monetary_value, 0.0).sum()))
    n = int(groups["n"].sum())
    sim = fc if n <= max_simulated else _hash_keep(fc, max_simulated / n, f"simulated{seed}")
    sim_rows = execute(sim.select("customer_id", *keys, "monetary_value").order_by("customer_id"))
    groups = groups.reset_index(drop=True)
    groups["group"] = np.arange(len(groups))
    sim_rows = sim_rows.merge(groups[[*keys, "group"]], on=keys, how="left", sort=False)
    code = {t: i for i, t in enumerate(TIERS)}
    g_code = groups["tier"].map(code).to_numpy(np.int64)
    return TierGroups(
        groups["frequency"].to_numpy(float), groups["recency"].to_numpy(float), groups["T"].to_numpy(float), g_code,
        groups["n"].to_numpy(float), groups["n_valid"].to_numpy(float), groups["sum_m"].to_numpy(float),
        sim_rows["frequency"].to_numpy(float), sim_rows["T"].to_numpy(float), sim_rows["monetary_value"].to_numpy(float),
        sim_rows["tier"].map(code).to_numpy(np.int64), sim_rows["group"].to_numpy(np.int64),
        np.bincount(g_code, weights=groups["n"].to_numpy(float), minlength=len(TIERS)))


def _tier_table(path: Path, *, like: ir.Table) -> pd.DataFrame:
    """The tier table of the written forecast, aggregated by the engine that wrote it (the
    backend of ``like``)."""
    fc = read_scores(path, like)
    sums = dict(
        customers=fc.count(), total_clv=fc.clv.sum(), expected_purchases=fc.expected_purchases.sum(),
        expected_revenue=fc.expected_revenue.sum(), churn=fc.churn_probability.sum(),
        churn_h=fc.churn_probability_by_horizon.sum(), alive=fc.p_alive.sum(),
        leave=fc.churn_probability_during_horizon.sum(), lifetime=fc.lifetime_clv.sum(),
    )
    g = execute(fc.group_by("tier").aggregate(**sums)).set_index("tier")
    # every tier has a row, empty ones too (all customers can be Lead when serving costs more)
    g = g.reindex(list(TIERS), fill_value=0)
    total = g.sum().to_frame("Total").T
    table = pd.concat([g, total])
    total_clv = float(total["total_clv"].iloc[0])
    out = pd.DataFrame({
        "customers": table["customers"].astype(int),
        "share_of_customers": table["customers"] / total["customers"].iloc[0],
        "total_clv": table["total_clv"],
        "mean_clv": (table["total_clv"] / table["customers"].where(table["customers"] > 0)).fillna(0.0),
        "share_of_clv": table["total_clv"] / total_clv if total_clv != 0 else np.nan,
        "expected_purchases": table["expected_purchases"],
        "expected_revenue": table["expected_revenue"],
        "mean_churn_probability": (table["churn"] / table["customers"].where(table["customers"] > 0)).fillna(0.0),
        "mean_churn_by_horizon": (table["churn_h"] / table["customers"].where(table["customers"] > 0)).fillna(0.0),
        "expected_gone_now": table["churn"],
        "expected_active_now": table["alive"],
        "expected_to_leave": table["leave"],
        "share_of_active_leaving": (table["leave"] / table["alive"].where(table["alive"] > 0)).fillna(0.0),
        "total_lifetime_clv": table["lifetime"],
        "mean_lifetime_clv": (table["lifetime"] / table["customers"].where(table["customers"] > 0)).fillna(0.0),
    })
    out.index.name = "tier"
    return out
