"""RFM summaries and calibration/holdout tables, written once in Ibis.

The aggregation runs on the embedded DuckDB for DataFrames and files, and on the table's own
backend (Spark, ...) for Ibis tables; only the one-row-per-customer result comes back to pandas.

Definitions (Fader, Hardie & Lee 2005; identical to lifetimes'
``summary_data_from_transaction_data``): purchases on the same calendar day merge into one
purchase period; ``frequency`` is the number of purchase days minus one (repeat purchases),
``recency`` the time from the first to the last purchase day, ``T`` the time from the first
purchase day to the end of observation and ``monetary_value`` the mean value of the repeat
purchase days (0 when ``frequency`` is 0). Time is measured in the table's unit: days
(``"D"``) or weeks of exactly 7 days (``"W"``), fractional.

Weeks are elapsed days / 7, not calendar weeks: a purchase 10 days after the first has
``recency`` 1.43 weeks, as in the papers (CDNOW customer 1: t_x = 30.43, T = 38.86). Purchase
periods are always calendar days, whatever the unit. lifetimes' ``freq="W"`` instead counts
calendar (Monday-Sunday) weeks and merges purchases in the same week; ``freq="D",
freq_multiplier=7`` is what equals ``time_unit="W"`` here.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from clvmodels._validation import (
    DAYS_PER_UNIT,
    TimeUnit,
    check_choice,
    check_time_unit,
    check_timestamp,
)
from clvmodels.engine import (
    engine_of,
    execute,
    is_remote,
    keep_table,
    kept_table,
    materialise,
    parquet_files,
)
from clvmodels.exceptions import DataValidationError, ParameterError
from clvmodels.transactions import (
    NO_PURCHASES,
    CheckedLog,
    date_range,
    is_csv,
    is_validated,
    load_transactions,
    log_facts,
    net_day,
    open_checked,
    remember_facts,
)

__all__ = ["rfm_summary", "calibration_holdout", "discrete_rfm", "purchase_calendar", "PurchaseCalendar",
           "HOLDOUT_COLUMNS"]

HOLDOUT_COLUMNS = (
    "frequency_holdout", "monetary_value_holdout", "revenue_holdout", "duration_holdout"
)


def _transactions(source: Any, columns: dict[str, str] | None) -> ir.Table:
    return load_transactions(source, **(columns or {}))


def date_literal(ts: pd.Timestamp) -> ir.Value:
    return ibis.date(ts.year, ts.month, ts.day)


def max_date(t: ir.Table) -> pd.Timestamp:
    return date_range(t)[1]


@ibis.udf.agg.builtin(name="min_by")
def _min_by(value: float, key: datetime.date) -> float:  # type: ignore[empty-body]
    """The engine's own ``min_by`` (DuckDB ``arg_min``, Spark ``min_by``): the value at the
    smallest key, in one hash aggregation (Ibis' ``argmin`` becomes an ordered aggregate,
    ``FIRST(x ORDER BY k)``, which sorts within each group: 15% of the RFM query at 10M rows)."""


def per_customer_days(t: ir.Table, end: pd.Timestamp) -> ir.Table:
    """Customer-level RFM of the purchases on or before ``end`` with times in whole days:
    ``customer_id, frequency, recency_days, T_days, monetary_value`` (not ordered)."""
    daily = t.group_by(["customer_id", "date"]).aggregate(amount=t.amount.sum())
    per = daily.group_by("customer_id").aggregate(
        first=daily.date.min(),
        last=daily.date.max(),
        n_days=daily.date.count(),
        total=daily.amount.sum(),
        first_amount=_min_by(daily.amount.cast("float64"), daily.date),
    )
    return _rfm_days(per, end)


def _rfm_days(per: ir.Table, end: pd.Timestamp, *, some_without: bool = False) -> ir.Table:
    """RFM in whole days from per-customer ``first, last, n_days, total, first_amount`` (of the
    customers with at least one purchase day, when ``some_without`` says some have none)."""
    if some_without:
        per = per.filter(per.n_days > 0)
    repeat = per.n_days - 1
    return per.select(
        "customer_id",
        frequency=repeat.cast("int64"),
        recency_days=per.last.delta(per.first, unit="day").cast("int64"),
        T_days=date_literal(end).delta(per.first, unit="day").cast("int64"),
        monetary_value=ibis.ifelse(
            repeat > 0, (per.total - per.first_amount) / repeat.cast("float64"), 0.0
        ),
    )


#: later than any purchase: a day outside the window never gives a customer's first day's spend
_NEVER = datetime.date(9999, 12, 31)


def _checked_aggregates(log: CheckedLog, end: pd.Timestamp | None) -> ir.Table:
    """One aggregation of the raw log that is both its validation and its customer table: per
    customer ``first, last, n_days, total, first_amount`` of the purchase days up to ``end``
    (all when None), ``bad`` (rows any check of :func:`load_transactions` fails, to be
    examined only when not 0) and ``first_all, last_all`` (the purchase days of the whole log).
    Refunds are handled per day as :func:`load_transactions` does."""
    raw = log.raw
    base = raw.select(customer_id=log.cid, date=log.date, amount=log.amount, bad=log.any_bad().cast("int64"))
    by_day = base.group_by(["customer_id", "date"])
    if log.refunds == "drop":  # the refunds are left out; a day of refunds only is no purchase
        daily = by_day.aggregate(amount=base.amount.sum(where=base.amount >= 0),
                                 keep=(base.amount >= 0).any(), bad=base.bad.sum())
        amount, keep = daily.amount.fill_null(0.0), daily.keep.fill_null(False)
    elif log.refunds == "net":  # netted within the day; a day whose net is not positive is no purchase
        daily = by_day.aggregate(amount=base.amount.sum(), refund=(base.amount < 0).any(), bad=base.bad.sum())
        amount, keep = net_day(daily.amount, daily.refund)
        keep = keep.fill_null(False)
    else:
        daily = by_day.aggregate(amount=base.amount.sum(), bad=base.bad.sum())
        amount, keep = daily.amount, daily.date.notnull()
    keep = keep & daily.date.notnull()
    window = keep if end is None else keep & (daily.date <= date_literal(end))
    day = ibis.ifelse(window, daily.date, ibis.date(_NEVER.year, _NEVER.month, _NEVER.day))
    whole_log = {} if end is None else {"first_all": daily.date.min(where=keep), "last_all": daily.date.max(where=keep)}
    per = daily.group_by("customer_id").aggregate(
        first=daily.date.min(where=window),
        last=daily.date.max(where=window),
        n_days=window.cast("int64").sum(),
        total=amount.cast("float64").sum(where=window),
        first_amount=_min_by(amount.cast("float64"), day),
        bad=daily.bad.sum(),
        **whole_log,
    )
    return per if end is not None else per.mutate(first_all=per.first, last_all=per["last"])


@dataclass
class LogSummary:
    """What the first pass over a log (:func:`summarise_log`) learnt."""

    log: ir.Table
    """The validated log, for the passes that follow (backtest, calendar, ...)."""
    observation_end: pd.Timestamp
    first_day: pd.Timestamp
    last_day: pd.Timestamp
    customers: int
    """Customers with a purchase on or before the observation end (exact)."""
    rfm: pd.DataFrame | None
    """The customer table as :func:`rfm_summary` returns it when it came to memory; None when the
    engine keeps it (the scoring functions of :mod:`clvmodels.scoring` find it there for this log
    and end)."""


def summarise_log(source: Any, *, observation_end: Any = None, time_unit: TimeUnit = "D", keep: str = "memory",
                  engine_above: int = 0, **load_options: Any) -> LogSummary:
    """Load, validate and summarise a log per customer, reading the raw log as few times as pays.

    A log whose every pass costs a parse (CSV text, an Ibis or Spark table) is read **once**:
    the checks of :func:`load_transactions` ride along in the customer aggregation (each row
    counts as bad or not; only a log with bad rows is examined again, for the message with
    counts and examples), the aggregation is kept by the engine, and the first and last purchase
    day and the exact number of customers come from that table. A DataFrame or Parquet files,
    whose three columns the engine scans in a fraction of the aggregation's time, get
    :func:`load_transactions`' validation pass and then the customer query: carrying the checks
    through the aggregation cost more there than the scan (measured in benchmarks/README.md,
    "one pass or two").

    ``keep``: where the customer table goes: ``"memory"`` (pandas, in ``time_unit``), ``"engine"``
    (kept by the engine for :mod:`clvmodels.scoring`, in days) or ``"auto"``: memory for at most
    ``engine_above`` customers. Raises what :func:`load_transactions` raises, with the same messages.
    """
    check_choice("keep", keep, ("memory", "engine", "auto"))
    unit = check_time_unit(time_unit)
    end = None if observation_end is None else check_timestamp("observation_end", observation_end)
    if is_validated(source) and not load_options:
        checked, rows = None, None
    else:
        checked = open_checked(source, **load_options)
        rows = _rows_at_most(checked)
    if checked is None or rows is not None:  # columns the engine scans in a fraction of the aggregation's time
        log = source if checked is None else checked.validated()
        first_day, last_day = date_range(log)
        end = last_day if end is None else end
        approx = 0
        if keep == "auto" and (rows is None or rows > engine_above):
            # about how many customers: from the validation pass when it counted them
            facts = log_facts(log)
            approx = facts["customers_approx"] if facts else int(execute(log.customer_id.approx_nunique()))
        if keep == "engine" or approx > engine_above:
            per = engine_customer_table(log, "D", end, None, "duckdb")[0]
            customers = int(execute(per.count()))
            return LogSummary(log, end, first_day, last_day, customers, None)
        frame = _customer_frame(_per_customer(log.filter(log.date <= date_literal(end)), end, unit)
                                .order_by("customer_id"))
        return LogSummary(log, end, first_day, last_day, len(frame), _memory_table(frame, unit, end))
    # one pass: the customer table with the checks, kept by the engine
    per, drop = None, None
    try:
        per, drop = materialise(_checked_aggregates(checked, end))
        stats = execute(per.aggregate(
            bad=per.bad.sum(), rows=per.count(), customers=(per.n_days > 0).cast("int64").sum(),
            first_all=per.first_all.min(), last_all=per.last_all.max())).iloc[0]
    except Exception as exc:  # the engine reads files lazily: a bad file shows up here
        if drop is not None:
            drop()
        raise checked.read_error(exc) from None
    if not stats["rows"] or stats["bad"] or pd.isna(stats["first_all"]):
        drop()
        checked.raise_problems()  # an empty log or bad rows: the message with counts and examples
        raise DataValidationError(NO_PURCHASES)
    log = checked.table()
    first_day, last_day = pd.Timestamp(stats["first_all"]), pd.Timestamp(stats["last_all"])
    customers = int(stats["customers"])
    end = last_day if end is None else end
    remember_facts(log, first_day, last_day, customers)
    table = _rfm_days(per, end, some_without=True)
    if keep == "engine" or (keep == "auto" and customers > engine_above):
        keep_table(log, end, table, drop)
        return LogSummary(log, end, first_day, last_day, customers, None)
    frame = _customer_frame(_in_unit(table, unit).order_by("customer_id"))
    drop()
    return LogSummary(log, end, first_day, last_day, customers, _memory_table(frame, unit, end))


def engine_customer_table(transactions: Any, time_unit: Any, observation_end: Any, columns: dict[str, str] | None,
                          engine: str) -> tuple[ir.Table, str, pd.Timestamp]:
    """The per-customer table of a log (whole days), materialised in the log's engine once and
    reused by the next calls on the same log and observation end (one aggregation of the log
    instead of one per query; :func:`clvmodels.engine.kept_table`)."""
    unit = check_time_unit(time_unit)
    if not is_validated(transactions):
        # a log not yet read: read, validated and aggregated in one pass
        summary = summarise_log(transactions, observation_end=observation_end or None, keep="engine",
                                engine=engine, **(columns or {}))
        return kept_table(), unit, summary.observation_end
    t = load_transactions(transactions, engine=engine, **(columns or {}))
    end = max_date(t) if observation_end is None or observation_end == "" else check_timestamp(
        "observation_end", observation_end)
    table = kept_table(t, end)
    if table is not None:
        return table, unit, end
    table, drop = materialise(per_customer_days(t.filter(t.date <= date_literal(end)), end))
    keep_table(t, end, table, drop)
    return table, unit, end


def _memory_table(frame: pd.DataFrame, unit: str, end: pd.Timestamp) -> pd.DataFrame:
    out = _finish(frame)
    out.attrs.update({"time_unit": unit, "observation_end": str(end.date())})
    return out


def _rows_at_most(log: CheckedLog) -> int | None:
    """The log's number of rows when it is known without reading it (a DataFrame, Parquet
    files' metadata); None otherwise."""
    source = log.source
    if isinstance(source, pd.DataFrame):
        return len(source)
    if isinstance(source, (str, os.PathLike)) and not is_csv(source) and not is_remote(str(source)):
        try:
            import pyarrow.parquet as pq

            return sum(pq.ParquetFile(f).metadata.num_rows for f in parquet_files(Path(source)))
        except Exception:
            return None
    return None


def _per_customer(t: ir.Table, end: pd.Timestamp, unit: str) -> ir.Table:
    """Customer-level RFM of the purchases on or before ``end``, in ``unit`` (not ordered: the
    callers sort once, at the end)."""
    return _in_unit(per_customer_days(t, end), unit)


def _in_unit(per: ir.Table, unit: str) -> ir.Table:
    """A table of :func:`_rfm_days` with its times in ``unit``."""
    days = DAYS_PER_UNIT[unit]
    # whole days divided by 7.0 in IEEE doubles: the same numbers numpy or lifetimes compute
    return per.select(
        "customer_id", "frequency",
        recency=per.recency_days.cast("float64") / days,
        T=per.T_days.cast("float64") / days,
        monetary_value=per.monetary_value,
    )


def _with_regularity(per: ir.Table, t: ir.Table, unit: str) -> ir.Table:
    """``per`` with ``litt``: each customer's sum of the logs of the times between consecutive
    purchase days, in ``unit`` (0 with fewer than two purchase days), as MBG/CNBD-k needs to
    choose its regularity (Platzer & Reutterer 2016; BTYDplus calls it ``litt``)."""
    litt = _litt(t, unit)
    return per.left_join(litt, "customer_id").select(per, litt=litt.litt.fill_null(0.0))


def _litt(t: ir.Table, unit: str) -> ir.Table:
    """``customer_id, litt`` of the customers with at least two purchase days in ``t``."""
    days = t.select("customer_id", "date").distinct()
    prev = days.date.lag().over(ibis.window(group_by="customer_id", order_by="date"))
    gaps = days.mutate(prev=prev)
    gaps = gaps.filter(gaps.prev.notnull())
    gaps = gaps.mutate(lg=(gaps.date.delta(gaps.prev, unit="day").cast("float64") / DAYS_PER_UNIT[unit]).ln())
    return gaps.group_by("customer_id").aggregate(litt=gaps.lg.sum())


@dataclass(frozen=True)
class PurchaseCalendar:
    """Repeat purchase days per calendar day, of the customers of one RFM table: what a model
    with a calendar (:class:`clvmodels.SeasonalBetaGeoModel`) needs beside the table (the
    likelihood of purchase times on a seasonal clock has a factor per repeat purchase, which
    depends on its day). A few thousand numbers, whatever the number of customers.

    ``start``: the first day counted (ISO date); ``counts[i]``: repeat purchase days of all
    customers on day ``start + i``; ``end``: the table's observation end (its "as of" date).
    Carried in the table's ``attrs["purchase_calendar"]``; immutable (copied by reference).
    """

    start: str
    end: str
    counts: tuple[int, ...]

    def __deepcopy__(self, memo: Any) -> PurchaseCalendar:
        return self

    @property
    def total(self) -> int:
        """Repeat purchase days counted (the table's sum of ``frequency``)."""
        return int(sum(self.counts))

    def series(self) -> pd.Series:
        """The counts by date."""
        idx = pd.date_range(self.start, periods=len(self.counts), freq="D")
        return pd.Series(self.counts, index=idx, name="repeat_purchases", dtype="int64")


def _purchase_calendar(t: ir.Table, end: pd.Timestamp) -> PurchaseCalendar:
    """Repeat purchase days per date of the purchases of ``t`` (already cut at ``end``)."""
    daily = t.select("customer_id", "date").distinct()
    first = daily.date.min().over(ibis.window(group_by="customer_id"))
    repeat = daily.mutate(first=first)
    repeat = repeat.filter(repeat.date > repeat.first)
    per_day = execute(repeat.group_by("date").aggregate(n=repeat.count()))
    if len(per_day) == 0:
        return PurchaseCalendar(str(end.date()), str(end.date()), ())
    dates = pd.to_datetime(per_day["date"])
    start = dates.min()
    counts = np.zeros((end - start).days + 1, dtype=np.int64)
    np.add.at(counts, (dates - start).dt.days.to_numpy(), per_day["n"].to_numpy(np.int64))
    return PurchaseCalendar(str(start.date()), str(end.date()), tuple(int(c) for c in counts))


def purchase_calendar(transactions: Any, *, observation_end: Any = None,
                      columns: dict[str, str] | None = None) -> PurchaseCalendar:
    """Repeat purchase days per calendar day up to ``observation_end`` (see
    :class:`PurchaseCalendar`); :func:`rfm_summary` and :func:`calibration_holdout` attach it
    with ``calendar=True``."""
    t, end = _up_to(_transactions(transactions, columns), observation_end)
    return _purchase_calendar(t, end)


def _up_to(t: ir.Table, observation_end: Any) -> tuple[ir.Table, pd.Timestamp]:
    """The purchases on or before ``observation_end`` (default: the last purchase day) and that day."""
    if observation_end is None:
        return t, max_date(t)
    end = check_timestamp("observation_end", observation_end)
    return t.filter(t.date <= date_literal(end)), end


def _customer_frame(expr: ir.Table) -> pd.DataFrame:
    """A one-row-per-customer result as pandas (:meth:`clvmodels.engine.Engine.to_frame`)."""
    return engine_of(expr).to_frame(expr)


def _finish(df: pd.DataFrame) -> pd.DataFrame:
    out = df.set_index("customer_id")
    if not out.index.is_monotonic_increasing:  # a backend that ignores the ordering
        out = out.sort_index()
    return out


def rfm_summary(
    transactions: Any,
    *,
    time_unit: TimeUnit = "D",
    observation_end: Any = None,
    columns: dict[str, str] | None = None,
    regularity: bool = False,
    calendar: bool = False,
) -> pd.DataFrame:
    """One row per customer: frequency, recency, T and monetary value.

    Parameters
    ----------
    transactions : DataFrame, path or Ibis table
        A log accepted by :func:`clvmodels.load_transactions` (validated here if it was not
        already).
    time_unit : {"D", "W"}
        Unit of ``recency`` and ``T``: days, or weeks of 7 days (fractional).
    observation_end : date-like, optional
        End of the observation window (inclusive). Later purchases are ignored. Defaults to
        the last purchase date in the log.
    columns : dict, optional
        Column mapping passed to :func:`load_transactions`, e.g.
        ``{"customer_id": "cust", "date": "day", "amount": "value"}``.
    regularity : bool, default False
        Add ``litt``: the sum of the logs of each customer's times between purchase days (in
        ``time_unit``), which :class:`clvmodels.MBGCNBDModel` uses to choose its regularity.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``customer_id`` (sorted) with ``frequency`` (int), ``recency``, ``T`` and
        ``monetary_value`` (and ``litt``). ``attrs`` records ``time_unit`` and ``observation_end``.

    Raises
    ------
    ParameterError
        Unknown ``time_unit`` or an unparseable ``observation_end``.
    DataValidationError
        Bad transactions, or no purchase on or before ``observation_end``.

    See Also
    --------
    calibration_holdout : the same table for a calibration window plus holdout counts.

    Examples
    --------
    >>> from clvmodels.datasets import load_cdnow
    >>> rfm = rfm_summary(load_cdnow("sample"), time_unit="W", observation_end="1997-09-30")
    >>> rfm.loc[1, ["frequency", "recency", "T"]].round(2).tolist()
    [2.0, 30.43, 38.86]
    """
    unit = check_time_unit(time_unit)
    summary = summarise_log(transactions, observation_end=observation_end, time_unit=unit, **(columns or {}))
    end = summary.observation_end
    out = summary.rfm
    if len(out) == 0:
        raise DataValidationError(
            f"No purchases on or before observation_end={end.date()}; "
            "choose a later observation_end."
        )
    t = summary.log.filter(summary.log.date <= date_literal(end))
    if regularity:
        litt = _customer_frame(_litt(t, unit)).set_index("customer_id")["litt"]
        out["litt"] = litt.reindex(out.index).fillna(0.0).to_numpy(float)
    if calendar:
        out.attrs["purchase_calendar"] = _purchase_calendar(t, end)
    return out


def calibration_holdout(
    transactions: Any,
    *,
    calibration_end: Any,
    observation_end: Any = None,
    time_unit: TimeUnit = "D",
    columns: dict[str, str] | None = None,
    regularity: bool = False,
    calendar: bool = False,
) -> pd.DataFrame:
    """RFM of a calibration window plus what each customer did in the holdout window after it.

    Parameters
    ----------
    transactions : DataFrame, path or Ibis table
        A log accepted by :func:`clvmodels.load_transactions`.
    calibration_end : date-like
        Last day of the calibration window (inclusive).
    observation_end : date-like, optional
        Last day of the holdout window (inclusive); defaults to the last purchase date.
    time_unit : {"D", "W"}
        Unit of ``recency``, ``T`` and ``duration_holdout``.
    columns : dict, optional
        Column mapping passed to :func:`load_transactions`.
    regularity : bool, default False
        Add ``litt`` of the calibration window (see :func:`rfm_summary`).

    Returns
    -------
    pandas.DataFrame
        One row per customer whose first purchase is on or before ``calibration_end``:
        ``frequency``, ``recency``, ``T``, ``monetary_value`` of the calibration window (so the
        table can be passed to a model's ``fit`` as is), then ``frequency_holdout`` (purchase
        days in the holdout), ``monetary_value_holdout`` (mean value per holdout purchase
        day, the same basis as ``monetary_value``; 0 if none), ``revenue_holdout`` (total
        spend in the holdout) and ``duration_holdout`` (holdout length in ``time_unit``). The
        calibration columns, ``frequency_holdout`` and ``duration_holdout`` equal lifetimes'
        ``calibration_and_holdout_data``; lifetimes' ``monetary_value_holdout`` is instead the
        mean of the raw holdout transactions, so it differs for customers with several
        transactions on one day.

    Raises
    ------
    ParameterError
        ``calibration_end`` not before ``observation_end``, unknown ``time_unit``.
    DataValidationError
        Bad transactions, or nobody bought on or before ``calibration_end``.
    """
    unit = check_time_unit(time_unit)
    cal_end = check_timestamp("calibration_end", calibration_end)
    t = _transactions(transactions, columns)
    obs_end = max_date(t) if observation_end is None else check_timestamp(
        "observation_end", observation_end
    )
    if cal_end >= obs_end:
        raise ParameterError(
            f"calibration_end ({cal_end.date()}) must be before observation_end "
            f"({obs_end.date()}); the holdout window would be empty."
        )
    cal_lit, obs_lit = date_literal(cal_end), date_literal(obs_end)
    cal = _per_customer(t.filter(t.date <= cal_lit), cal_end, unit)
    if regularity:
        cal = _with_regularity(cal, t.filter(t.date <= cal_lit), unit)
    hold = t.filter((t.date > cal_lit) & (t.date <= obs_lit))
    hold_cust = hold.group_by("customer_id").aggregate(
        frequency_holdout=hold.date.nunique(),
        revenue_holdout=hold.amount.sum(),
    )
    joined = cal.left_join(hold_cust, "customer_id").select(
        cal,
        frequency_holdout=hold_cust.frequency_holdout.fill_null(0).cast("int64"),
        # per purchase day, as the calibration monetary_value (same-day purchases are one)
        monetary_value_holdout=(hold_cust.revenue_holdout / hold_cust.frequency_holdout.cast("float64"))
        .fill_null(0.0).cast("float64"),
        revenue_holdout=hold_cust.revenue_holdout.fill_null(0.0).cast("float64"),
    ).order_by("customer_id")
    df = _customer_frame(joined)
    if len(df) == 0:
        raise DataValidationError(
            f"No purchases on or before calibration_end={cal_end.date()}; "
            "choose a later calibration_end."
        )
    out = _finish(df)
    out["duration_holdout"] = (obs_end - cal_end).days / DAYS_PER_UNIT[unit]
    out.attrs.update(
        {
            "time_unit": unit,
            "observation_end": str(cal_end.date()),
            "calibration_end": str(cal_end.date()),
            "holdout_end": str(obs_end.date()),
        }
    )
    if calendar:
        out.attrs["purchase_calendar"] = _purchase_calendar(t.filter(t.date <= cal_lit), cal_end)
    return out


def purchase_days_between(transactions: Any, windows: dict[str, tuple[Any, Any]], *,
                          columns: dict[str, str] | None = None) -> pd.DataFrame:
    """Per customer, the purchase days in each window ``(start, end]`` (start excluded), all
    windows in one pass over the log: one column per window name, indexed by ``customer_id``
    (sorted). A customer counts in a window only if their first purchase is on or before its
    start (a customer of the calibration table of :func:`calibration_holdout` with
    ``calibration_end=start``; their ``frequency_holdout`` there), else 0; customers of none of
    the windows are left out."""
    t = _transactions(transactions, columns)
    bounds = {name: (check_timestamp(f"{name} start", a), check_timestamp(f"{name} end", b))
              for name, (a, b) in windows.items()}
    if not bounds:
        raise ParameterError("purchase_days_between needs at least one window.")
    per = t.group_by("customer_id").aggregate(
        first=t.date.min(),
        **{name: t.date.nunique(where=(t.date > date_literal(a)) & (t.date <= date_literal(b)))
           for name, (a, b) in bounds.items()})
    counts = per.filter(per.first <= date_literal(max(a for a, _ in bounds.values()))).select(
        "customer_id",
        **{name: ibis.ifelse(per.first <= date_literal(a), per[name], 0).cast("int64")
           for name, (a, _) in bounds.items()})
    return _finish(_customer_frame(counts.order_by("customer_id")))


def discrete_rfm(transactions: pd.DataFrame, *, period: str = "Y", start: Any = None,
                 end: Any = None) -> pd.DataFrame:
    """Per-customer ``frequency``, ``recency``, ``n_periods`` for BG/BB
    (:class:`clvmodels.BetaGeoBetaBinomModel`) from a transaction log.

    Calendar periods (``period`` a pandas period alias: "Y" years, "Q", "M", "W") are the
    opportunities; a customer's first period with a purchase is their trial (opportunity 0);
    ``n_periods`` counts the periods after it up to ``end``'s period; ``frequency`` the ones of
    them with a purchase; ``recency`` the last such period (0 if none).
    """
    t = execute(load_transactions(transactions).select("customer_id", "date"))
    ordinal = pd.to_datetime(t["date"]).dt.to_period(period).map(lambda q: q.ordinal).to_numpy()
    lo = pd.Period(start, period).ordinal if start is not None else ordinal.min()
    hi = pd.Period(end, period).ordinal if end is not None else ordinal.max()
    keep = (ordinal >= lo) & (ordinal <= hi)
    df = pd.DataFrame({"customer_id": t["customer_id"].to_numpy()[keep], "k": ordinal[keep]}).drop_duplicates()
    g = df.groupby("customer_id")["k"]
    first = g.min()
    out = pd.DataFrame({"frequency": g.size() - 1, "recency": g.max() - first, "n_periods": hi - first})
    out = out.astype(int)
    out.attrs["period"] = period
    return out
