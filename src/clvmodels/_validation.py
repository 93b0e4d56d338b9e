"""Shared validation helpers: every check that turns bad input into a clear error lives here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

from clvmodels.exceptions import DataValidationError, ParameterError

TimeUnit = Literal["D", "W"]
TIME_UNITS: tuple[str, ...] = get_args(TimeUnit)
#: days in one unit of time; weeks are 7 days exactly (Fader, Hardie & Lee 2005 use days / 7)
DAYS_PER_UNIT: dict[str, float] = {"D": 1.0, "W": 7.0}
UNIT_NAMES: dict[str, str] = {"D": "days", "W": "weeks"}
DAYS_PER_YEAR = 365.25

MAX_EXAMPLES = 5


def check_time_unit(time_unit: Any) -> str:
    if time_unit not in TIME_UNITS:
        raise ParameterError(
            f"Unknown time_unit {time_unit!r}; expected one of "
            + ", ".join(repr(u) for u in TIME_UNITS)
            + " ('D' = days, 'W' = weeks of 7 days)."
        )
    return str(time_unit)


def check_choice(name: str, value: Any, allowed: Sequence[Any]) -> Any:
    if value not in allowed:
        raise ParameterError(
            f"Unknown {name} {value!r}; expected one of " + ", ".join(repr(a) for a in allowed) + "."
        )
    return value


def check_number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    min_inclusive: bool = True,
    max_inclusive: bool = True,
    integer: bool = False,
) -> float:
    """Return ``value`` as a float (or int) after checking it is finite and in range."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ParameterError(f"{name} must be a number, got {value!r} ({type(value).__name__}).")
    if not np.isfinite(value):
        raise ParameterError(f"{name} must be a finite number, got {value!r}.")
    if integer and float(value) != int(value):
        raise ParameterError(f"{name} must be a whole number, got {value!r}.")
    bounds = []
    if minimum is not None:
        ok = value >= minimum if min_inclusive else value > minimum
        bounds.append(f"{'>=' if min_inclusive else '>'} {minimum}")
        if not ok:
            raise ParameterError(f"{name} must be {' and '.join(bounds)}, got {value!r}.")
    if maximum is not None:
        ok = value <= maximum if max_inclusive else value < maximum
        if not ok:
            bounds.append(f"{'<=' if max_inclusive else '<'} {maximum}")
            raise ParameterError(f"{name} must be {' and '.join(bounds)}, got {value!r}.")
    return int(value) if integer else float(value)


def check_timestamp(name: str, value: Any) -> pd.Timestamp:
    """Parse a date parameter into a tz-naive midnight Timestamp, or raise naming the parameter."""
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ParameterError(
            f"{name} must be a date such as '1997-09-30', got {value!r} ({exc})."
        ) from None
    if ts is pd.NaT or pd.isna(ts):
        raise ParameterError(f"{name} must be a date such as '1997-09-30', got {value!r}.")
    if ts.tzinfo is not None:
        ts = ts.tz_localize(None)
    return ts.normalize()


def format_examples(values: Iterable[Any]) -> str:
    return ", ".join(repr(v.item() if hasattr(v, "item") else v) for v in list(values)[:MAX_EXAMPLES])


def raise_bad_rows(
    column: str, n_bad: int, n_total: int, examples: Iterable[Any], problem: str, fix: str
) -> None:
    raise DataValidationError(
        f"Column '{column}': {n_bad:,} of {n_total:,} rows {problem} "
        f"(examples: {format_examples(examples)}). {fix}"
    )


RFM_COLUMNS = ("frequency", "recency", "T")


def read_table_file(path: Any, what: str, text_col: str) -> pd.DataFrame:
    """A side table (the customer table, the events table) from a CSV or Parquet file or a
    folder of Parquet files, ``text_col`` read as text; a file that cannot be read is one
    ``DataValidationError`` naming ``what`` and the reader's first line."""
    from pathlib import Path

    path = Path(path)
    try:
        if path.suffix.lower() in (".parquet", ".pq") or path.is_dir():
            return pd.read_parquet(path)
        # text is read as written, as the transaction log is: 'NA' (North America), 'None' or
        # 'null' are values, only an empty cell is missing (pandas' default would make 'NA' a
        # missing value: a region 'NA' vanished from the segments, a customer 'NA' had no row)
        table = pd.read_csv(path, dtype={text_col: str}, keep_default_na=False, na_values=[""])
    except Exception as exc:  # noqa: BLE001 - the reader's words are the useful part
        raise DataValidationError(f"Could not read the {what} '{path}': {type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else ''}.") from None
    for col in table.columns:
        if col == text_col or not (table[col].dtype == object or pd.api.types.is_string_dtype(table[col].dtype)):
            continue
        values = table[col].dropna().astype(str).str.strip()
        numbers = pd.to_numeric(values, errors="coerce")
        words = values[numbers.isna()]
        if numbers.notna().any() and len(words) and set(words.str.lower()) <= _MISSING_WORDS:
            raise DataValidationError(
                f"Column {col!r} of the {what} '{path}' holds numbers and, in {len(words):,} row(s), "
                f"{sorted(set(words))[:3]}: is that a missing value? Leave missing values empty (or drop the rows); "
                "text is read as written, so a column of numbers with such words would be taken as categories.")
    return table


#: words that mark a missing value in some exports; in a column of numbers they are refused by name
_MISSING_WORDS = frozenset({"na", "n/a", "nan", "none", "null", "nil", "-", "?", "#n/a"})


def check_rfm(rfm: Any, *, monetary: bool = False, name: str = "rfm") -> pd.DataFrame:
    """Check an RFM summary table: the columns exist, are finite and consistent."""
    if not isinstance(rfm, pd.DataFrame):
        raise DataValidationError(
            f"{name} must be a pandas DataFrame from clvmodels.rfm_summary or "
            f"clvmodels.calibration_holdout, got {type(rfm).__name__}."
        )
    needed = list(RFM_COLUMNS) + (["monetary_value"] if monetary else [])
    missing = [c for c in needed if c not in rfm.columns]
    if missing:
        raise DataValidationError(
            f"{name} is missing column(s) {missing}; it has {list(rfm.columns)}. "
            "Build it with clvmodels.rfm_summary(transactions, time_unit=...)."
        )
    if len(rfm) == 0:
        raise DataValidationError(f"{name} has no rows (no customers).")
    n = len(rfm)
    for col in needed:
        values = pd.to_numeric(rfm[col], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            raise_bad_rows(
                col, int(bad.sum()), n, rfm[col][bad].head(MAX_EXAMPLES), "are missing, not numeric or infinite",
                "Every customer needs a finite value; rebuild the table with clvmodels.rfm_summary.",
            )
        neg = values < 0
        if neg.any():
            raise_bad_rows(
                col, int(neg.sum()), n, values[neg], "are negative", "Values must be >= 0."
            )
    freq = rfm["frequency"].to_numpy(dtype=float)
    if (freq != np.floor(freq)).any():
        bad = freq != np.floor(freq)
        raise_bad_rows(
            "frequency", int(bad.sum()), n, freq[bad], "are not whole numbers",
            "frequency counts repeat purchase periods.",
        )
    rec = rfm["recency"].to_numpy(dtype=float)
    T = rfm["T"].to_numpy(dtype=float)
    bad = rec > T * (1 + 1e-12) + 1e-12
    if bad.any():
        raise_bad_rows(
            "recency", int(bad.sum()), n, rec[bad], "are larger than T",
            "recency (first to last purchase) cannot exceed T (first purchase to the end of observation).",
        )
    bad = (freq == 0) & (rec > 0)
    if bad.any():
        raise_bad_rows(
            "recency", int(bad.sum()), n, rec[bad], "are > 0 while frequency is 0",
            "A customer without repeat purchases has recency 0.",
        )
    return rfm
