"""Load and validate a transaction log (``customer_id, date, amount``).

Every input -- a pandas DataFrame, a CSV or Parquet path, or an Ibis table -- becomes an Ibis
table with exactly three columns: ``customer_id`` (as given), ``date`` (a calendar day) and
``amount`` (float64). Validation runs as one aggregate query on the table's own backend, so a
Parquet file is checked and later aggregated without being loaded into pandas.
"""

from __future__ import annotations

import datetime
import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from clvmodels._validation import MAX_EXAMPLES, check_choice, format_examples
from clvmodels.engine import (
    ENGINES,
    engine_error_text,
    engine_named,
    engine_of,
    execute,
    is_remote,
)
from clvmodels.exceptions import DataValidationError

__all__ = ["load_transactions", "TRANSACTION_COLUMNS"]  # open_checked, CheckedLog: for clvmodels.rfm

TRANSACTION_COLUMNS = ("customer_id", "date", "amount")
RefundPolicy = Literal["error", "drop", "net"]
CSV_SUFFIXES = (".csv", ".csv.gz", ".txt", ".tsv")
REFUND_POLICIES = ("error", "drop", "net")

# tables produced here; rfm functions skip re-validating them
_validated: weakref.WeakValueDictionary[int, ir.Table] = weakref.WeakValueDictionary()


def _open_source(source: Any, csv_options: dict[str, Any] | None, engine: str = "duckdb",
                 date_column: str | None = None, id_column: str | None = None) -> ir.Table:
    if isinstance(source, ir.Table):
        return source
    eng = engine_named(engine)
    if isinstance(source, pd.DataFrame):
        return eng.from_arrow(_arrow_ready(source))
    if isinstance(source, str) and is_remote(source):
        if not eng.reads_remote:
            raise DataValidationError(
                f"Transaction log '{source}' is a remote address; read it with engine='spark' "
                "(command line: --engine spark), whose cluster can reach it, or copy it to this machine.")
        csv = source.lower().rstrip("/").endswith(CSV_SUFFIXES)
        try:
            return eng.read(source, parquet=not csv, csv_options=csv_options, date_column=date_column,
                            id_column=id_column)
        except Exception as exc:
            raise DataValidationError(
                f"Could not read transaction log '{source}' with {eng.label}: {engine_error_text(exc)}.") from None
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise DataValidationError(
                f"Transaction file '{path}' does not exist. Give the path of a CSV or Parquet file."
            )
        suffixes = "".join(path.suffixes[-2:]).lower()
        is_parquet = path.is_dir() or suffixes.endswith((".parquet", ".pq", ".parq"))
        is_csv = suffixes.endswith(CSV_SUFFIXES)
        if not (is_parquet or is_csv):
            raise DataValidationError(
                f"Transaction file '{path}' is neither CSV nor Parquet (suffix '{path.suffix}'); "
                "expected a name ending in .csv, .csv.gz, .txt, .tsv or .parquet."
            )
        try:
            return eng.read(path, parquet=is_parquet, csv_options=csv_options, date_column=date_column,
                            id_column=id_column)
        except DataValidationError:
            raise
        except Exception as exc:  # the engine's message is the useful part
            if "not utf-8 encoded" in str(exc).lower() or "invalid unicode" in str(exc).lower():
                raise DataValidationError(_NOT_UTF8.format(path=path, detail="")) from None
            raise DataValidationError(
                f"Could not read transaction file '{path}': {engine_error_text(exc)}. "
                "Check that it is a valid CSV or Parquet file."
            ) from None
    raise DataValidationError(
        f"Cannot read transactions from a {type(source).__name__}; expected a pandas DataFrame, "
        "a path to a CSV or Parquet file, or an Ibis table."
    )


_NOT_UTF8 = ("Transaction file '{path}' is not valid UTF-8 text{detail}: names such as José would be read "
             "wrongly. Save it as UTF-8, or give its encoding: csv_options={{'encoding': 'latin-1'}}.")

def is_csv(source: Any) -> bool:
    if not isinstance(source, (str, os.PathLike)) or Path(source).is_dir():
        return False
    return "".join(Path(source).suffixes[-2:]).lower().endswith(CSV_SUFFIXES)


def _arrow_ready(df: pd.DataFrame) -> pd.DataFrame:
    """A DataFrame's columns made what Arrow can always convert (for any engine)."""
    df = df.copy(deep=False)
    df.columns = [str(c) for c in df.columns]
    for col in df.columns:
        s = df[col]
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            # a calendar day in the timestamps' own time zone (wall-clock time)
            s = s.dt.tz_localize(None)
            df[col] = s
        if pd.api.types.is_datetime64_dtype(s.dtype):
            # Arrow refuses to drop nanoseconds silently; only the day matters here
            df[col] = s.dt.floor("us").astype("datetime64[us]")
        elif s.dtype == object:
            kinds = {type(v) for v in s.dropna().head(10_000)}
            if kinds and all(issubclass(k, (datetime.datetime, pd.Timestamp)) for k in kinds):
                df[col] = pd.to_datetime(s, utc=False, errors="coerce") if len(kinds) == 1 else s.astype("string")
            elif kinds and all(issubclass(k, datetime.date) for k in kinds):
                df[col] = pd.to_datetime(s, errors="coerce")
            else:
                df[col] = s.astype("string")
    return df


def _parquet_zone(source: Any, column: str) -> str | None:
    """The time zone a Parquet file (or the first file of a folder) records for a timestamp
    column; the engines read such columns as UTC instants."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    path = Path(source)
    if path.is_dir():
        path = next(path.rglob("*.parquet"), None)
        if path is None:
            return None
    if not str(path).lower().endswith((".parquet", ".pq", ".parq")):
        return None
    try:
        import pyarrow.parquet as pq

        field = pq.read_schema(str(path)).field(column)
    except Exception:
        return None
    zone = getattr(field.type, "tz", None)
    return None if not zone or zone.upper() in ("UTC", "Z", "ETC/UTC", "+00:00") else zone


def _parse_date(col: ir.Column, date_format: str | None, name: str, zone: str | None = None,
                engine: Any = "duckdb") -> ir.Column:
    """The calendar day of each value, the same on every engine: text by one explicit format
    (never guessed), timestamps on the wall clock of ``zone`` when the data record one (the
    engines otherwise read timestamps in UTC)."""
    dtype = col.type()
    eng = engine_named(engine)
    if dtype.is_date():
        return col
    if dtype.is_timestamp():
        if zone:
            # the calendar day on the wall clock of the zone the data were recorded in, as for
            # DataFrames; the engine would otherwise take the day in its session's zone (UTC)
            offset = _fixed_offset_minutes(zone)
            if offset is not None:  # "+05:30" (what pandas writes): not a zone name DuckDB knows
                return (col + ibis.interval(minutes=offset)).date()
            return eng.wall_clock(col, zone).date()
        return col.date()
    if date_format is not None and (dtype.is_string() or dtype.is_integer()):
        text = col.cast("string")
        return eng.text_to_timestamp(text, date_format).date()
    if dtype.is_string():
        # a UTC offset after the time ("2024-01-01T23:30:00-05:00") is dropped: the purchase's day is
        # the one written, on both engines (Spark would move it to the UTC day, DuckDB does not)
        # (the pattern only where an offset can be: a sign or Z after the 11th character - a
        # date of at least 8 and a time of 6 come first; the pattern costs most of the parse)
        tail = col.substr(11)
        maybe = tail.contains("+") | tail.contains("-") | tail.contains("Z")
        local = col.re_extract(_BEFORE_OFFSET, 1)
        text = (maybe & (local != "")).ifelse(local, col)
        return text.try_cast("timestamp").date()
    raise DataValidationError(
        f"Column '{name}' has type {dtype}, which is not a date. Pass dates, timestamps or "
        "ISO-8601 strings ('1997-01-31'), or give date_format (e.g. date_format='%Y%m%d' for "
        "19970131)."
    )


def _fixed_offset_minutes(zone: str) -> int | None:
    """Minutes east of UTC of a fixed-offset zone written as ``+05:30`` / ``-0800``, else None."""
    import re

    m = re.fullmatch(r"([+-])([0-9]{2}):?([0-9]{2})", zone.strip())
    if not m:
        return None
    minutes = int(m.group(2)) * 60 + int(m.group(3))
    return minutes if m.group(1) == "+" else -minutes


#: an ISO date-time followed by a UTC offset or Z; group 1 is the part before the offset
_BEFORE_OFFSET = r"^(.*[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.][0-9]+)?)?) ?(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)$"


def _parse_amount(col: ir.Column, name: str) -> ir.Column:
    dtype = col.type()
    if dtype.is_numeric() and not dtype.is_boolean():
        return col.cast("float64")
    if dtype.is_string():
        return col.try_cast("float64")
    raise DataValidationError(
        f"Column '{name}' has type {dtype}; amounts must be numbers (the purchase value)."
    )


def load_transactions(
    source: Any,
    *,
    customer_id: str = "customer_id",
    date: str = "date",
    amount: str = "amount",
    date_format: str | None = None,
    refunds: RefundPolicy = "error",
    csv_options: dict[str, Any] | None = None,
    engine: str = "duckdb",
) -> ir.Table:
    """Load a transaction log, map its columns and validate it.

    Parameters
    ----------
    source : pandas.DataFrame, str, os.PathLike or ibis Table
        The log: a DataFrame, the path of a CSV (``.csv``, ``.csv.gz``, ``.txt``, ``.tsv``) or
        Parquet file (or a folder of Parquet files), or an Ibis table on any backend.
    customer_id, date, amount : str
        The caller's names of the customer id, purchase date and purchase value columns.
    date_format : str, optional
        ``strptime`` format for dates stored as text or integers, e.g. ``"%Y%m%d"``. Without
        it, text dates must be ISO-8601.
    refunds : {"error", "drop", "net"}
        What to do with negative amounts. ``"error"`` (default) raises; ``"drop"`` removes the
        negative rows; ``"net"`` subtracts them from the same customer's purchases on the same
        day and keeps the days whose net amount is positive (a day where everything was
        refunded is not a purchase).
    csv_options : dict, optional
        Passed to the engine's CSV reader: DuckDB's (``delim``, ``header``, ``types`` ...) or
        Spark's (``sep``, ``header``, ``encoding`` ...).
    engine : {"duckdb", "spark"}
        Where a file or DataFrame is read and aggregated: the embedded DuckDB (default) or the
        active Spark session (started in local mode, or on ``$SPARK_MASTER``, when there is
        none; see :func:`clvmodels.spark_connection`). An Ibis table always stays on its own
        backend.

    Returns
    -------
    ibis Table
        Columns ``customer_id``, ``date`` (calendar day) and ``amount`` (float64). Call
        ``.to_pandas()`` to materialise it.

    Raises
    ------
    DataValidationError
        Missing columns (the message lists those present), an empty log, null customer ids,
        missing or unparseable dates, amounts that are missing, not numeric or infinite,
        negative amounts (with ``refunds="error"``), or a file that does not exist or is not
        CSV/Parquet. The message names the column, counts the rows and shows up to five
        examples.

    Notes
    -----
    Purchases with amount 0 are kept: they are purchases (a free sample, a fully discounted
    order) and count towards frequency; they lower the mean spend. Time-zone-aware timestamps
    are reduced to the calendar day on the wall clock of their own time zone (DataFrames, and
    Parquet files that record the zone; for other Ibis tables, the backend session's zone). Several purchases on the same day
    are merged later, when the RFM table is built.

    Examples
    --------
    >>> import pandas as pd, clvmodels
    >>> log = pd.DataFrame({"cust": [1, 1], "day": ["2024-01-02", "2024-02-03"], "eur": [10.0, 5.5]})
    >>> t = clvmodels.load_transactions(log, customer_id="cust", date="day", amount="eur")
    >>> t.columns
    ('customer_id', 'date', 'amount')
    """
    check_choice("refunds", refunds, REFUND_POLICIES)
    check_choice("engine", engine, ENGINES)
    if is_validated(source) and (customer_id, date, amount) == TRANSACTION_COLUMNS:
        return source
    checked = open_checked(source, customer_id=customer_id, date=date, amount=amount, date_format=date_format,
                           refunds=refunds, csv_options=csv_options, engine=engine)
    return checked.validated()


def open_checked(source: Any, *, customer_id: str = "customer_id", date: str = "date", amount: str = "amount",
                 date_format: str | None = None, refunds: RefundPolicy = "error",
                 csv_options: dict[str, Any] | None = None, engine: str = "duckdb") -> CheckedLog:
    """The log opened and its columns mapped and parsed, with the checks of
    :func:`load_transactions` built but not yet run (see :class:`CheckedLog`)."""
    check_choice("refunds", refunds, REFUND_POLICIES)
    check_choice("engine", engine, ENGINES)
    if date_format is not None and "%y" in date_format:
        raise DataValidationError(
            f"date_format {date_format!r} has a two-digit year (%y), which the engines read into different "
            "centuries (97 is 1997 on DuckDB, 2097 on Spark); use %Y with four-digit years "
            "(command line: --date-format).")
    raw = _open_source(source, csv_options, engine, date, customer_id)
    present = list(raw.columns)
    wanted = {"customer_id": customer_id, "date": date, "amount": amount}
    missing = [f"'{v}' ({k})" for k, v in wanted.items() if v not in present]
    if missing:
        raise DataValidationError(
            f"Missing column(s) {', '.join(missing)}; the input has columns {present}. "
            "Map your column names with customer_id=..., date=..., amount=... (command line: --customer-col, "
            "--date-col, --amount-col)."
        )
    cid_raw, date_raw, amount_raw = raw[customer_id], raw[date], raw[amount]
    cid_type = cid_raw.type()
    if not (cid_type.is_string() or cid_type.is_integer() or cid_type.is_floating() or cid_type.is_decimal()
            or cid_type.is_uuid()):
        raise DataValidationError(
            f"Column '{customer_id}' has type {cid_type}; customer ids must be text or numbers, one value per "
            "row (not a struct, list or map). Map the column that identifies a customer with customer_id=... "
            "(command line: --customer-col).")
    cid_missing = cid_raw.isnull()
    if cid_type.is_floating():
        # float ids (as Spark writes integer ids with gaps) with NaN: a missing id, not a customer.
        # Not by isnan alone: DuckDB 2.0 answers isnan() = false for a Parquet file's NaN ids
        # (seen: [1.0, 3.0, nan] accepted and two purchases became one 'nan' customer); NaN times 0
        # is NaN, which differs from 0 on both engines (an infinite id too: no customer either)
        cid_missing = cid_missing | cid_raw.isnan().fill_null(False) | ((cid_raw * 0.0) != 0.0).fill_null(False)
    parsed_date = _parse_date(date_raw, date_format, date, _parquet_zone(source, date), engine_of(raw))
    parsed_amount = _parse_amount(amount_raw, amount)
    amount_is_float = parsed_amount.type().is_floating()
    amount_missing = amount_raw.isnull()
    if amount_raw.type().is_floating():
        amount_missing = amount_missing | amount_raw.isnan()
    not_numeric = amount_raw.notnull() & parsed_amount.isnull()
    infinite = parsed_amount.isinf() if amount_is_float else ibis.literal(False)
    if amount_raw.type().is_string():
        # text such as "nan" or "NaN" parses to a float NaN: a missing amount, not a number
        amount_missing = amount_missing | parsed_amount.isnan().fill_null(False)
    negative = parsed_amount < 0
    checks: list[tuple[str, Any, Any, str, str]] = [
        (customer_id, cid_missing, cid_raw, "have no customer id",
         "Every purchase needs a customer id; drop or fill these rows."),
        (date, date_raw.isnull(), date_raw, "have no date",
         "Every purchase needs a date; drop or fill these rows."),
        (date, date_raw.notnull() & parsed_date.isnull(), date_raw, "have dates that do not parse",
         "Give ISO-8601 dates ('1997-01-31'), or pass date_format: e.g. '%Y%m%d' for 19970131, "
         "'%d/%m/%Y' for day first or '%m/%d/%Y' for month first (a date such as 01/02/2024 "
         "is ambiguous, so it is never guessed; command line: --date-format)."),
        (amount, amount_missing, amount_raw, "have no amount (null/NaN)",
         "Every purchase needs a value; use 0 for free purchases or drop the rows."),
        (amount, not_numeric, amount_raw, "have amounts that are not numbers",
         "Amounts must be numbers without currency symbols or thousands separators."),
        (amount, infinite.fill_null(False), amount_raw, "have infinite amounts",
         "Amounts must be finite numbers."),
    ]
    if engine_of(raw).replaces_bad_text and is_csv(source) and cid_type.is_string():
        # Spark decodes invalid UTF-8 bytes as U+FFFD without a word (José and Josè would become
        # one customer); DuckDB refuses such a file: refuse it here too, in the same pass
        checks.append(
            (customer_id, cid_raw.contains("\ufffd").fill_null(False), cid_raw,
             "hold text that is not valid UTF-8 (bytes that do not decode)",
             "Save the file as UTF-8, or give its encoding: csv_options={'encoding': 'latin-1'}.")
        )
    if refunds == "error":
        checks.append(
            (amount, negative.fill_null(False), amount_raw, "have negative amounts (refunds?)",
             "Pass refunds='drop' to ignore them or refunds='net' to subtract them from the "
             "same day's purchases (command line: --refunds drop or --refunds net).")
        )
    return CheckedLog(source, raw, checks, wanted, cid_raw, parsed_date, parsed_amount, refunds)


@dataclass
class CheckedLog:
    """A log opened and mapped, its validation checks not yet run: :meth:`validated` runs them
    in a pass of their own (what :func:`load_transactions` does); the first aggregation of the
    report can instead carry :meth:`any_bad` and ask :meth:`raise_problems` only when it counted
    a bad row (:func:`clvmodels.rfm.summarise_log`), so the log is read once for both."""

    source: Any
    raw: ir.Table
    checks: list[tuple[str, Any, Any, str, str]]
    wanted: dict[str, str]
    cid: Any
    date: Any
    amount: Any
    refunds: str

    def any_bad(self) -> Any:
        """Per raw row: whether any check fails it."""
        out = ibis.literal(False)
        for _, cond, *_ in self.checks:
            out = out | cond.fill_null(False)
        return out

    def _aggregate(self, **aggregates: Any) -> pd.Series:
        raw = self.raw
        try:
            return execute(raw.aggregate(n=raw.count(), **aggregates)).iloc[0]
        except Exception as exc:  # the engine reads files lazily: a bad file shows up here
            raise self.read_error(exc) from None

    def read_error(self, exc: BaseException) -> DataValidationError:
        """The message for a log the engine could not read (a file that turned out bad)."""
        name = str(self.source) if not isinstance(self.source, pd.DataFrame) else "DataFrame"
        return DataValidationError(
            f"Could not read the transaction log {name!r}: {engine_error_text(exc).rstrip('.')}. Check that every "
            f"file has the columns {sorted(set(self.wanted.values()))} with one type each.")

    def raise_problems(self, stats: pd.Series | None = None) -> None:
        """Raise the first problem the checks find (counted by ``stats`` when given, else by one
        aggregate pass): an empty log, or a column's bad rows with examples."""
        if stats is None:
            stats = self._aggregate(**{f"c{i}": c[1].cast("int64").sum() for i, c in enumerate(self.checks)})
        n_rows = int(stats["n"])
        if n_rows == 0:
            raise DataValidationError(
                "The transaction log is empty (0 rows); there is nothing to summarise."
            )
        for i, (col, cond, shown, problem, fix) in enumerate(self.checks):
            n_bad = stats[f"c{i}"]
            n_bad = 0 if pd.isna(n_bad) else int(n_bad)
            if n_bad:
                examples = _examples(self.raw, cond, shown, col, n_bad == n_rows)
                raise DataValidationError(
                    f"Column '{col}': {n_bad:,} of {n_rows:,} rows {problem} "
                    f"(examples: {examples}). {fix}"
                )

    def table(self) -> ir.Table:
        """The validated three-column table (refunds handled); call once the checks passed."""
        table = self.raw.select(customer_id=self.cid, date=self.date, amount=self.amount)
        if self.refunds == "drop":
            table = table.filter(table.amount >= 0)
        elif self.refunds == "net":
            daily = table.group_by(["customer_id", "date"]).aggregate(
                amount=table.amount.sum(), has_refund=(table.amount < 0).any()
            )
            amount, kept = net_day(daily.amount, daily.has_refund)
            table = daily.filter(kept).select("customer_id", "date", amount.name("amount"))
        _validated[id(table)] = table
        return table

    def validated(self) -> ir.Table:
        """Run the checks in one aggregate pass (raising on the first problem) and return the
        validated table, with the facts that pass learnt remembered for it (:func:`log_facts`)."""
        counts = {f"c{i}": c[1].cast("int64").sum() for i, c in enumerate(self.checks)}
        # facts later steps would each ask of the log in a pass of their own, asked in this pass:
        # the first and last purchase day (of the purchases kept) and about how many customers
        kept = (self.amount >= 0) if self.refunds == "drop" else None
        facts = {"first_day": self.date.min(where=kept), "last_day": self.date.max(where=kept),
                 "customers_approx": self.cid.approx_nunique()} if self.refunds in ("error", "drop") else {}
        stats = self._aggregate(**counts, **facts)
        self.raise_problems(stats)
        if self.refunds == "drop" and pd.isna(stats["first_day"]):
            raise DataValidationError(NO_PURCHASES)
        table = self.table()
        if facts:  # (a first day exists: the checks passed on a log with rows, and "drop" kept one)
            remember_facts(table, stats["first_day"], stats["last_day"], int(stats["customers_approx"]))
        return table


def net_day(total: Any, has_refund: Any) -> tuple[Any, Any]:
    """A customer's day under ``refunds="net"`` from its summed amount and whether it had a
    refund: (its amount - the net, at least 0 - and whether it counts as a purchase day - no
    refund, or a positive net)."""
    return total.clip(lower=0), ~has_refund | (total > 0)


def remember_facts(table: ir.Table, first_day: Any, last_day: Any, customers: int) -> None:
    """Record what a pass over the log learnt of a validated table (see :func:`log_facts`):
    its first and last purchase day and (about) how many customers."""
    if len(_facts) > 1000:  # forget the tables that are gone
        for key in [k for k, (ref, _) in _facts.items() if ref() is None]:
            del _facts[key]
    _facts[id(table)] = (weakref.ref(table), {"first_day": pd.Timestamp(first_day).normalize(),
                                              "last_day": pd.Timestamp(last_day).normalize(),
                                              "customers_approx": int(customers)})


#: what the validation pass learnt of each validated table (see :func:`log_facts`)
_facts: dict[int, tuple[Any, dict[str, Any]]] = {}


def log_facts(table: Any) -> dict[str, Any] | None:
    """The first and last purchase day and the approximate number of customers of a table
    :func:`load_transactions` returned, learnt in its validation pass (None for other tables,
    or after ``refunds="net"``, which changes the days)."""
    entry = _facts.get(id(table))
    if entry is None or entry[0]() is not table:
        return None
    return entry[1]


def date_range(table: Any) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First and last purchase day of a log: from its validation pass when known, else one query."""
    facts = log_facts(table)
    if facts is not None:
        return facts["first_day"], facts["last_day"]
    got = execute(table.aggregate(first=table.date.min(), last=table.date.max())).iloc[0]
    if pd.isna(got["first"]):
        raise DataValidationError(NO_PURCHASES)
    return pd.Timestamp(got["first"]), pd.Timestamp(got["last"])


#: a log whose every row is a refund (``refunds="drop"``) or whose every day nets to nothing (``"net"``)
NO_PURCHASES = ("The transaction log has no purchases: every amount is a refund (or every day's refunds cancel its "
                "purchases), so there is nothing to summarise.")


def _examples(raw: ir.Table, cond: Any, shown: ir.Column, col: str, whole_column: bool) -> str:
    rows = execute(raw.filter(cond).select(value=shown).limit(MAX_EXAMPLES))
    values = [None if (v is None or (isinstance(v, float) and np.isnan(v))) else v for v in rows["value"]]
    if pd.api.types.is_datetime64_any_dtype(rows["value"]):
        values = [str(v) for v in rows["value"]]
    return format_examples(values)


def mark_validated(table: ir.Table) -> ir.Table:
    """Record that ``table`` holds only rows of a validated log (a filter or sample of one), so
    the functions that take a log skip validating it again; returns it."""
    _validated[id(table)] = table
    return table


def is_validated(table: Any) -> bool:
    return isinstance(table, ir.Table) and _validated.get(id(table)) is table
