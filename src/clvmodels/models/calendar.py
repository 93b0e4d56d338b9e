"""The calendar clock the seasonal models share (split from ``seasonal``; issue 17, item 3):
calendar covariates - the yearly Fourier terms, a trend, and events given by the user - their
checks, the compressed calendar-fitted table, and :class:`CalendarClock`, the mixin that moves a
purchase model's customers to the operational clock ``tau(t) = int m(u) du`` (see
:mod:`clvmodels.models.seasonal` for the model and the papers)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clvmodels._validation import DAYS_PER_UNIT, check_rfm, read_table_file
from clvmodels.exceptions import (
    ConvergenceError,
    DataValidationError,
    NotFittedError,
    ParameterError,
)

__all__ = ["CalendarClock", "CalendarRows", "check_events", "day_number", "fourier_terms", "needs_calendar",
           "read_events", "MIN_SPAN_DAYS", "MIN_DROPOUT_SPAN_DAYS", "MAX_EVENTS", "MAX_EVENT_DAYS"]

_YEAR = 365.25
_EPOCH = pd.Timestamp("1970-01-01")
#: history a season needs: 52 weeks, a full year but a day (measured: six months of CDNOW doubled the forecast)
MIN_SPAN_DAYS = 364
#: history a season in the dropout hazard needs: two years. Dropout is never seen, only inferred
#: from silence, and over a single year a dropout season is a customer's age by another name (a
#: cohort acquired in one quarter ages with the calendar): on CDNOW's 1997 cohort with 53 weeks of
#: calibration it won the backtest's squared error by 0.7% and missed the holdout total by -9.7%
MIN_DROPOUT_SPAN_DAYS = 728
#: largest calendar coefficient accepted from a model file (a multiplier of e^10 is no season)
_MAX_COEF = 10.0


#: event columns and listed days a model accepts at most (a calendar, not a second log)
MAX_EVENTS, MAX_EVENT_DAYS = 10, 20_000


def check_events(events: Any) -> dict[str, Any] | None:
    """Calendar covariates given by the user, as ``{"columns": [...], "days": [ISO dates],
    "values": [[...], ...]}`` (sorted, one row per listed day; days not listed are 0): from a
    DataFrame indexed by date (a column per event, e.g. ``holiday`` 1 on holidays) or that mapping
    (a saved model's: hostile input, checked)."""
    if events is None:
        return None
    if isinstance(events, pd.Series):
        events = events.to_frame()
    if isinstance(events, pd.DataFrame):
        try:
            idx = pd.DatetimeIndex(pd.to_datetime(events.index)).normalize()
        except (TypeError, ValueError):
            raise ParameterError("events must be indexed by date (one row per day listed), e.g. "
                                 f"'2021-12-24'; got index values such as {list(events.index[:3])!r}.") from None
        frame = events.set_axis(idx)
        columns, days, values = [str(c) for c in frame.columns], [str(d.date()) for d in idx], frame.to_numpy()
    elif isinstance(events, dict) and set(events) == {"columns", "days", "values"}:
        columns, days, values = events["columns"], events["days"], events["values"]
    else:
        raise ParameterError("events must be a DataFrame indexed by date with one column per event (e.g. 'holiday' "
                             f"1 on holidays), got {type(events).__name__}.")
    if not isinstance(columns, list) or not 1 <= len(columns) <= MAX_EVENTS or \
            not all(isinstance(c, str) and 0 < len(c) <= 100 for c in columns) or len(set(columns)) < len(columns):
        raise ParameterError(f"events must have 1 to {MAX_EVENTS} distinct named columns (names up to 100 "
                             f"characters), got {columns!r}.")
    if not isinstance(days, list) or not 1 <= len(days) <= MAX_EVENT_DAYS:
        raise ParameterError(f"events must list 1 to {MAX_EVENT_DAYS:,} days, got {len(days) if hasattr(days, '__len__') else days!r}.")
    try:
        arr = np.asarray(values, dtype=float).reshape(len(days), len(columns))
    except (TypeError, ValueError):
        raise ParameterError("events' values must be numbers, one per listed day and column.") from None
    if not np.all(np.isfinite(arr)) or np.any(np.abs(arr) > 1e3):
        raise ParameterError("events' values must be finite numbers between -1000 and 1000 (e.g. 1 on a holiday).")
    numbers = [day_number(d, "events") for d in days]
    if len(set(numbers)) < len(numbers):
        raise ParameterError("events list a day more than once; give one row per day.")
    order = np.argsort(numbers)
    return {"columns": list(columns), "days": [str((_EPOCH + pd.Timedelta(days=numbers[i])).date()) for i in order],
            "values": arr[order].tolist()}


def read_events(path: str | Path, date_col: str = "date") -> pd.DataFrame:
    """An events table from a CSV or Parquet file: a ``date`` column and one numeric column per
    event (e.g. ``holiday`` 1 on holidays, ``promotion`` its discount), one row per listed day;
    days not listed are 0. Returns it indexed by date, checked as ``events`` of the seasonal
    models are (``DataValidationError`` naming the file and what is wrong)."""
    path = Path(path)
    table = read_table_file(path, "events table", date_col)
    if date_col not in table.columns:
        raise DataValidationError(f"The events table '{path}' has no column {date_col!r}; it needs a '{date_col}' "
                                  f"column and one column per event, got columns {list(table.columns)[:12]}.")
    dates = pd.to_datetime(table[date_col], errors="coerce", format="ISO8601")
    if dates.isna().any():
        bad = table.loc[dates.isna(), date_col].head(3).tolist()
        raise DataValidationError(f"The events table '{path}': column {date_col!r} must hold dates like "
                                  f"'2021-12-24', got {bad}.")
    values = table.drop(columns=[date_col])
    for col in values.columns:
        numbers = pd.to_numeric(values[col], errors="coerce")
        if numbers.isna().any():
            bad = values.loc[numbers.isna(), col].head(3).tolist()
            raise DataValidationError(f"The events table '{path}': column {str(col)[:100]!r} must hold numbers "
                                      f"(e.g. 1 on the event's days), got {bad}.")
        values[col] = numbers.astype(float)
    values.index = pd.DatetimeIndex(dates)
    values.columns = [str(c) for c in values.columns]
    try:
        check_events(values)
    except ParameterError as exc:
        raise DataValidationError(f"The events table '{path}': {exc}") from None
    return values


def day_number(value: Any, name: str) -> int:
    """A date as its day number since 1970-01-01 (a whole day, 1900 to 2200)."""
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise ParameterError(f"calendar[{name!r}] must be a date like '1998-06-30', got {value!r}.") from None
    if ts is pd.NaT or not pd.Timestamp("1900-01-01") <= ts <= pd.Timestamp("2200-12-31"):
        raise ParameterError(f"calendar[{name!r}] must be a date from 1900 to 2200, got {value!r}.")
    return int((ts.normalize() - _EPOCH).days)


def fourier_terms(days: Any, harmonics: int, trend: bool, trend_origin: int) -> list[np.ndarray]:
    """Fourier terms of the yearly calendar (and a trend in years) of day numbers."""
    d = np.asarray(days, float)
    phase = 2 * np.pi * d / _YEAR
    cols = []
    for k in range(1, harmonics + 1):
        cols += [np.sin(k * phase), np.cos(k * phase)]
    if trend:
        cols.append((d - trend_origin) / _YEAR)
    return cols


@dataclass
class CalendarRows:
    """A calendar-fitted table, compressed: distinct ``(x, first day, last day)`` rows as day
    offsets before the as-of date, their weights, the table's days and the Jacobian's sum."""

    x: np.ndarray
    w: np.ndarray
    first: np.ndarray
    last: np.ndarray
    lo: int
    days: np.ndarray
    zsum: np.ndarray
    unit: float
    unit_name: str
    as_of: str
    table: pd.DataFrame  # the uncompressed (x, t_x, T) rows and weights, for the plain model's start
    table_w: np.ndarray


def needs_calendar(model: object) -> bool:
    """Whether a model (or the factory of one) reads each customer's repeat purchases per
    calendar day: a model with a calendar clock (the seasonal families)."""
    return isinstance(model, CalendarClock)


class CalendarClock:
    """What the seasonal models share: the calendar covariates, the clock they drive, saving,
    "as of" dates, and the season in words. Purchase covariates (``harmonics``, ``trend``,
    ``events``) come first in the coefficients, then any dropout covariates
    (``dropout_harmonics``, ``dropout_trend``; Pareto/NBD only)."""

    dropout_harmonics = 0
    dropout_trend = False
    dropout_events = False

    @property
    def _plain_name(self) -> str:
        """The family's class name (the model to use without the calendar)."""
        return self._family.__name__

    @property
    def _plain_long_name(self) -> str:
        """The family's name in the papers."""
        return self._family._long_name

    @property
    def _long_name(self) -> str:
        """The model in words, by what it has: e.g. "BG/NBD with a yearly season", "Pareto/NBD
        with a yearly season in purchases and dropout", "BG/NBD with calendar events"."""
        core = ([] if not self.harmonics else ["a yearly season"]) + (["a trend"] if self.trend else [])
        dropout = ([] if not self.dropout_harmonics else ["a yearly season"]) + (["a trend"] if self.dropout_trend else [])
        if dropout and dropout == core:
            parts = [f"{' and '.join(core)} in purchases and dropout"]
        else:
            parts = ([" and ".join(core) + (" in purchases" if dropout else "")] if core else []) + \
                ([" and ".join(dropout) + " in dropout"] if dropout else [])
        parts += [("calendar events in purchases and dropout" if self.dropout_events else "calendar events")] \
            if self.events else []
        if not parts:
            return f"{self._plain_long_name} on a calendar clock"
        text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        return f"{self._plain_long_name} with {text}"

    def _init_calendar(self, harmonics: Any, trend: Any, events: Any, calendar: Any,
                       dropout_harmonics: Any = 0, dropout_trend: Any = False, dropout_events: Any = False) -> None:
        for name, value in (("harmonics", harmonics), ("dropout_harmonics", dropout_harmonics)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= 6:
                raise ParameterError(f"{name} must be a whole number from 0 to 6, got {value!r}.")
        for name, value in (("trend", trend), ("dropout_trend", dropout_trend), ("dropout_events", dropout_events)):
            if not isinstance(value, (bool, np.bool_)):
                raise ParameterError(f"{name} must be True or False, got {value!r}.")
        self.harmonics, self.trend = int(harmonics), bool(trend)
        self.dropout_harmonics, self.dropout_trend = int(dropout_harmonics), bool(dropout_trend)
        self.events = check_events(events)
        if dropout_events and not self.events:
            raise ParameterError("dropout_events=True lets the events table's columns act on the dropout hazard "
                                 "too; give the table with events=...")
        self.dropout_events = bool(dropout_events)
        self._event_days = np.array([day_number(d, "events") for d in self.events["days"]], dtype=np.int64) \
            if self.events else np.zeros(0, np.int64)
        self._event_values = np.asarray(self.events["values"], float).reshape(len(self._event_days), -1) \
            if self.events else np.zeros((0, 0))
        self.calendar = calendar
        if calendar is not None:
            self._set_calendar(calendar)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The settings, with the fitted calendar once there is one (so a saved model keeps it)."""
        return {**super().get_params(deep), "calendar": getattr(self, "calendar_", None) or self.calendar}

    def _defining(self) -> dict[str, Any]:
        """What a new model like this one keeps (the calendar itself is learnt by each fit)."""
        return {"harmonics": self.harmonics, "trend": self.trend, "events": self.events}

    def _with_params(self, params: Any):
        return type(self).from_params(params, time_unit=getattr(self, "time_unit_", None), **self._defining(),
                                      calendar=self.calendar_)

    @property
    def min_span_days(self) -> int:
        """Days of history the fit needs: :data:`MIN_SPAN_DAYS` for a season or trend in the
        purchase rate, :data:`MIN_DROPOUT_SPAN_DAYS` for one in the dropout hazard, none for
        events alone."""
        if self.dropout_harmonics or self.dropout_trend:
            return MIN_DROPOUT_SPAN_DAYS
        return MIN_SPAN_DAYS if self.harmonics or self.trend else 0

    @property
    def n_purchase_coefficients(self) -> int:
        return 2 * self.harmonics + int(self.trend) + len(self.events.get("columns", []) if self.events else [])

    @property
    def n_coefficients(self) -> int:
        n_events = len(self.events["columns"]) if self.events and self.dropout_events else 0
        return self.n_purchase_coefficients + 2 * self.dropout_harmonics + int(self.dropout_trend) + n_events

    def coefficient_names(self) -> list[str]:
        names = []
        for k in range(1, self.harmonics + 1):
            names += [f"season sin {k}", f"season cos {k}"]
        names += ["trend per year"] if self.trend else []
        names += [f"event: {c}" for c in (self.events or {}).get("columns", [])]
        for k in range(1, self.dropout_harmonics + 1):
            names += [f"dropout season sin {k}", f"dropout season cos {k}"]
        names += ["dropout trend per year"] if self.dropout_trend else []
        return names + ([f"dropout event: {c}" for c in self.events["columns"]] if self.dropout_events else [])

    def _set_calendar(self, calendar: Any) -> None:
        """Check and keep a calendar (from :meth:`fit`, or a saved model's: hostile input)."""
        if not isinstance(calendar, dict) or "coefficients" not in calendar or "as_of" not in calendar:
            raise ParameterError("calendar must be a mapping with 'coefficients' and 'as_of' (and 'trend_origin' "
                                 f"with a trend), got {type(calendar).__name__}.")
        unknown = set(calendar) - {"coefficients", "as_of", "trend_origin"}
        if unknown:
            raise ParameterError(f"calendar has unknown keys {sorted(unknown)}; allowed: coefficients, as_of, "
                                 "trend_origin.")
        coef = calendar["coefficients"]
        try:
            gamma = np.asarray(coef, dtype=float)
        except (TypeError, ValueError):
            raise ParameterError(f"calendar['coefficients'] must be numbers, got {coef!r}.") from None
        if gamma.shape != (self.n_coefficients,) or not np.all(np.isfinite(gamma)) \
                or np.any(np.abs(gamma) > _MAX_COEF):
            raise ParameterError(
                f"calendar['coefficients'] must be {self.n_coefficients} finite numbers between -{_MAX_COEF:g} and "
                f"{_MAX_COEF:g} ({', '.join(self.coefficient_names()) or 'none'}), got {coef!r}.")
        as_of = day_number(calendar["as_of"], "as_of")
        origin = day_number(calendar.get("trend_origin", calendar["as_of"]), "trend_origin")
        self.calendar_ = {"coefficients": [float(g) for g in gamma],
                          "as_of": str((_EPOCH + pd.Timedelta(days=as_of)).date()),
                          "trend_origin": str((_EPOCH + pd.Timedelta(days=origin)).date())}
        k = self.n_purchase_coefficients
        self._gamma, self._delta, self._as_of, self._trend_origin = gamma[:k], gamma[k:], as_of, origin
        self._tau_cache: dict[tuple[Any, ...], np.ndarray] = {}

    # ---------------------------------------------------------------- the calendar
    def _z(self, days: np.ndarray, trend_origin: int) -> np.ndarray:
        """Purchase covariates of day numbers (days since 1970-01-01)."""
        cols = fourier_terms(days, self.harmonics, self.trend, trend_origin) + self._event_columns(days)
        return np.column_stack(cols) if cols else np.zeros((len(np.atleast_1d(days)), 0))

    def _zd(self, days: np.ndarray, trend_origin: int) -> np.ndarray:
        """Dropout covariates of day numbers."""
        cols = fourier_terms(days, self.dropout_harmonics, self.dropout_trend, trend_origin)
        cols += self._event_columns(days) if self.dropout_events else []
        return np.column_stack(cols) if cols else np.zeros((len(np.atleast_1d(days)), 0))

    def _event_columns(self, days: np.ndarray) -> list[np.ndarray]:
        """The events' values on each day (0 on days the table does not list), a column each."""
        if not len(self._event_days):
            return []
        day = np.floor(np.asarray(days, float)).astype(np.int64)
        pos = np.clip(np.searchsorted(self._event_days, day), 0, len(self._event_days) - 1)
        hit = self._event_days[pos] == day
        return list(np.where(hit[:, None], self._event_values[pos], 0.0).T)

    def _unit_days(self) -> float:
        unit = getattr(self, "time_unit_", None)
        return DAYS_PER_UNIT[unit] if unit in DAYS_PER_UNIT else 7.0

    def _clock(self, lo: int, hi: int, dropout: bool = False) -> np.ndarray:
        """The cumulative clock at the starts of days ``lo .. hi`` after the as-of date (the
        purchase clock, or the dropout clock), in time units, 0 at the as-of day's start."""
        key = (lo, hi, dropout)
        cum = self._tau_cache.get(key)
        if cum is None:
            days = np.arange(self._as_of + lo, self._as_of + hi)
            m = np.exp(self._zd(days, self._trend_origin) @ self._delta) if dropout else \
                np.exp(self._z(days, self._trend_origin) @ self._gamma)
            cum = np.concatenate([[0.0], np.cumsum(m)]) / self._unit_days()
            cum = cum - cum[-lo]  # 0 at the as-of day's start
            if len(self._tau_cache) > 64:
                self._tau_cache.clear()
            self._tau_cache[key] = cum
        return cum

    def _tau(self, offset_days: Any, dropout: bool = False) -> np.ndarray:
        """The operational clock at ``offset_days`` (fractional days after the as-of date; a
        day's rate holds all day), in time units, 0 at the as-of date."""
        if not hasattr(self, "_gamma"):
            raise NotFittedError(f"This {type(self).__name__} has no calendar yet; call fit(rfm) first.")
        o = np.asarray(offset_days, float)
        if o.size == 0:
            return o.copy()
        lo, hi = int(np.floor(min(o.min(), 0.0))), int(np.ceil(max(o.max(), 0.0))) + 1
        cum = self._clock(lo, hi, dropout)
        pos = o - lo
        i = np.clip(np.floor(pos).astype(np.int64), 0, len(cum) - 2)
        return cum[i] + (pos - i) * (cum[i + 1] - cum[i])

    def _op_horizon(self, t: Any) -> np.ndarray:
        return self._tau(np.asarray(t, float) * self._unit_days())

    def _op_T(self, T: Any) -> np.ndarray:
        return -self._tau(-np.asarray(T, float) * self._unit_days())

    def _operational(self, x: Any, tx: Any, T: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(t_x, T)`` of customers seen at the as-of date, on the operational clock."""
        unit = self._unit_days()
        first = -np.asarray(T, float) * unit
        start = self._tau(first)
        return self._tau(first + np.asarray(tx, float) * unit) - start, -start


    def multiplier(self, dates: Any, *, dropout: bool = False) -> pd.Series:
        """The fitted calendar multiplier ``m(t)`` of the purchase rate on ``dates`` (with
        ``dropout``, ``d(t)`` of the dropout hazard)."""
        self._check_fitted()
        idx = pd.DatetimeIndex(pd.to_datetime(dates))
        days = (idx.normalize() - _EPOCH).days.to_numpy()
        value = self._zd(days, self._trend_origin) @ self._delta if dropout else \
            self._z(days, self._trend_origin) @ self._gamma
        return pd.Series(np.exp(value), index=idx, name="multiplier")

    def monthly_pattern(self, *, dropout: bool = False) -> pd.Series:
        """The season in words' terms: the mean multiplier of each calendar month over the
        year after the as-of date, relative to that year's mean (1 = an average month); of the
        purchase rate, or with ``dropout`` of the dropout hazard."""
        self._check_fitted()
        start = _EPOCH + pd.Timedelta(days=self._as_of)
        days = pd.date_range(start, periods=365, freq="D")
        m = self.multiplier(days, dropout=dropout)
        by_month = m.groupby(days.month).mean() / m.mean()
        by_month.index = [pd.Timestamp(2000, k, 1).strftime("%B") for k in by_month.index]
        return by_month.rename("relative_dropout_rate" if dropout else "relative_purchase_rate")

    def season_in_words(self) -> str:
        """The fitted season (and trend) in one or two sentences; empty without either (events
        alone: :meth:`events_in_words`)."""
        text = ""
        if self.harmonics or self.trend:
            p = self.monthly_pattern()
            hi, lo = str(p.idxmax()), str(p.idxmin())
            text = (f"Purchases follow the calendar: over the year after {self.calendar_['as_of']} the purchase rate "
                    f"of an active customer is highest in {hi} ({p[hi] - 1:+.0%} against an average month) and lowest "
                    f"in {lo} ({p[lo] - 1:+.0%})")
            if self.trend:
                g = float(self._gamma[2 * self.harmonics])
                text += f", with a trend of {np.expm1(g):+.1%} a year"
            text += "; the forecast follows this pattern."
        if self.dropout_harmonics or self.dropout_trend:
            p = self.monthly_pattern(dropout=True)
            hi, lo = str(p.idxmax()), str(p.idxmin())
            text += (f"{' ' if text else ''}Customers are most likely to leave in {hi} ({p[hi] - 1:+.0%} against an "
                     f"average month) and least in {lo} ({p[lo] - 1:+.0%})")
            if self.dropout_trend:
                text += f", with a trend of {np.expm1(float(self._delta[2 * self.dropout_harmonics])):+.1%} a year"
            text += "."
        return text

    def events_in_words(self) -> str:
        """Each event's effect on the purchase rate with its 95% interval, and the last day the
        events table lists (plain text; the event names are the user's)."""
        if not self.events or getattr(self, "calendar_effects_", None) is None:
            return ""
        def factor(name: str) -> str:
            est, se = self.calendar_effects_.loc[name, ["estimate", "std_error"]]
            ci = f", 95% interval {np.exp(est - 1.96 * se):.2f}-{np.exp(est + 1.96 * se):.2f}" if np.isfinite(se) else ""
            return f"{np.exp(est):.2f}{ci}"

        parts = []
        for col in self.events["columns"]:
            parts.append(f"each unit of '{col}' (1 on its days, for an event marked 1) multiplies the purchase rate "
                         f"by {factor(f'event: {col}')}")
            if self.dropout_events:
                parts.append(f"and the dropout hazard by {factor(f'dropout event: {col}')}")
        last = self.events["days"][-1]
        return ("Events: " + "; ".join(parts) + f". The events table lists days up to {last}; later days count "
                "as no event, in the forecast too.")

    def _html_note(self) -> str:
        """The calendar coefficients' table, after the parameters'."""
        if getattr(self, "calendar_effects_", None) is None:
            return ""
        eff = self.calendar_effects_.rename(columns={"estimate": "Estimate", "std_error": "Std. error"})
        eff.index.name = None
        dropout = self.dropout_harmonics or self.dropout_trend or self.dropout_events
        which = "purchase rate or dropout hazard" if dropout else "purchase rate"
        return (f"<p>Calendar coefficients (on the log of the {which}):</p>"
                + eff.to_html(float_format=lambda v: f"{v:.4g}", na_rep="n/a"))

    def plain_model(self) -> Any:
        """The family's plain model with the fitted parameters (every calendar multiplier 1): for
        BG/NBD exactly the customers on the operational clock; for Pareto/NBD, whose dropout has
        its own clock, the customers on one clock where the two agree."""
        self._check_fitted()
        return self._family.from_params(self.params_.to_dict(), time_unit=getattr(self, "time_unit_", None),
                                        covariance=self.covariance_log_)

    def as_of(self, date: Any):
        """The same fitted model predicting for tables as of ``date`` (their ``T`` counts back
        from it): a saved model scored on a later log."""
        self._check_fitted()
        out = self._with_params(self.params_)
        out.covariance_log_ = self.covariance_log_
        for name in ("log_likelihood_", "n_customers_", "converged_", "fit_info_"):
            setattr(out, name, getattr(self, name, None))
        out._set_calendar({**self.calendar_, "as_of": date})
        return out

    def _after_params_set(self) -> None:
        if getattr(self, "calendar_", None) is None and self.calendar is None:
            raise ParameterError(f"{type(self).__name__}.from_params needs calendar={{'coefficients': [...], "
                                 "'as_of': 'YYYY-MM-DD'}: the parameters mean nothing without the clock.")

    def _check_unit(self, rfm: pd.DataFrame) -> None:
        """Also: the table must be as of the model's date (its T counts back from it)."""
        super()._check_unit(rfm)
        end = rfm.attrs.get("observation_end") if hasattr(rfm, "attrs") else None
        if end and getattr(self, "calendar_", None) and str(pd.Timestamp(end).date()) != self.calendar_["as_of"]:
            raise ParameterError(
                f"The RFM table is as of {pd.Timestamp(end).date()} but this seasonal model predicts as of "
                f"{self.calendar_['as_of']} (its T counts back from that date); use model.as_of('{end}').")

    def _n_coefficients(self) -> int:
        """The calendar's coefficients, kept apart from ``params_`` (in ``calendar_``)."""
        return self.n_coefficients

    # ---------------------------------------------------------------- fitting, shared
    def _calendar_rows(self, rfm: pd.DataFrame, weights: Any) -> CalendarRows:
        """Check a table built with ``calendar=True`` and compress it to distinct
        ``(x, first day, last day)`` rows; the Jacobian's sum of the purchase covariates."""
        check_rfm(rfm)
        cal = rfm.attrs.get("purchase_calendar")
        unit_name = rfm.attrs.get("time_unit")
        if cal is None or unit_name not in DAYS_PER_UNIT:
            raise DataValidationError(
                "A seasonal model needs each repeat purchase's calendar day: build the table with "
                "rfm_summary(..., calendar=True) or calibration_holdout(..., calendar=True).")
        unit = DAYS_PER_UNIT[unit_name]
        x = rfm["frequency"].to_numpy(float)
        w = self._fit_weights(weights, len(x))
        w = np.ones(len(x)) if w is None else w
        T_days = np.rint(rfm["T"].to_numpy(float) * unit).astype(np.int64)
        tx_days = np.rint(rfm["recency"].to_numpy(float) * unit).astype(np.int64)
        if abs(float((w * x).sum()) - cal.total) > 0.5:
            raise DataValidationError(
                f"The purchase calendar counts {cal.total:,} repeat purchases but the table's customers made "
                f"{float((w * x).sum()):,.0f}: it describes other customers (a subset of the table?). Build both "
                "from the same log with calendar=True.")
        keep = w > 0
        x, w, T_days, tx_days = x[keep], w[keep], T_days[keep], tx_days[keep]
        if len(x) == 0:
            raise DataValidationError("rfm has no customers with positive weight.")
        span = int(T_days.max())
        if span < self.min_span_days:
            dropout = self.min_span_days > MIN_SPAN_DAYS
            raise DataValidationError(
                f"The table spans {span} days before its observation end ({cal.end}); "
                + ("a season (or trend) in the dropout hazard needs at least "
                   f"{MIN_DROPOUT_SPAN_DAYS} days of history: over one year it cannot be told from the customers' "
                   "age (a cohort ages with the calendar). Use dropout_harmonics=0, or a longer log."
                   if dropout else
                   f"a yearly season (or a trend) needs at least {MIN_SPAN_DAYS} days of history, or it is "
                   "extrapolated from part of one year (on CDNOW cut after six months it doubled the forecast). "
                   f"Use {self._plain_name}, or a longer log."))
        as_of = day_number(cal.end, "as_of")
        # distinct rows (x, first, last) as day offsets before the as-of date
        rows, inv = np.unique(np.column_stack([x, -T_days, tx_days - T_days]), axis=0, return_inverse=True)
        rw = np.bincount(inv.ravel(), weights=w, minlength=len(rows))
        first, last = rows[:, 1].astype(np.int64), rows[:, 2].astype(np.int64)
        lo = int(first.min())
        days = np.arange(as_of + lo, as_of + 1)  # the table's days, as day numbers
        start = pd.Timestamp(cal.start)
        cal_days = int((start - _EPOCH).days) + np.arange(len(cal.counts))
        counts = np.asarray(cal.counts, float)
        inside = (cal_days >= days[0]) & (cal_days <= days[-1])
        if counts[~inside].sum() > 0:
            raise DataValidationError("The purchase calendar has repeat purchases outside the table's window; "
                                      "build both from the same log and dates with calendar=True.")
        zsum = counts[inside] @ self._z(cal_days[inside], as_of)
        table = pd.DataFrame({"frequency": x, "recency": tx_days / unit, "T": T_days / unit})
        return CalendarRows(rows[:, 0], rw, first, last, lo, days, zsum, unit, unit_name, cal.end, table, w)

    def _finish_fit(self, theta: np.ndarray, res: Any, parts: Any, data: CalendarRows, plain: Any,
                    method: str) -> None:
        """Keep a fit: parameters, calendar, log-likelihood, and the covariance from the observed
        information (central differences of the analytic gradient)."""
        k0 = len(self._param_names)
        if np.any(np.abs(theta[k0:]) > _MAX_COEF):
            raise ConvergenceError("The calendar coefficients ran away (a multiplier beyond e^10): the log cannot "
                                   f"tell a season from its customers' rates; use {self._plain_name}.")
        self.params_ = pd.Series(np.exp(theta[:k0]), index=list(self._param_names), name="estimate")
        self._set_calendar({"coefficients": theta[k0:].tolist(), "as_of": data.as_of, "trend_origin": data.as_of})
        self.time_unit_ = data.unit_name
        self.log_likelihood_ = parts(theta, False)[0]
        self.plain_log_likelihood_ = float(plain.log_likelihood_)
        self.n_customers_ = int(round(float(data.w.sum())))
        self.converged_ = bool(res.success or np.linalg.norm(res.jac) < 1e-5)
        self.fit_info_ = {"method": method, "iterations": int(res.nit)}
        k = len(theta)
        h = 1e-5
        hess = np.empty((k, k))
        for i in range(k):
            e = np.zeros(k)
            e[i] = h
            hess[i] = (parts(theta + e, True)[1] - parts(theta - e, True)[1]) / (2 * h)
        hess = -(hess + hess.T) / 2
        try:
            cov = np.linalg.inv(hess)
            ok = np.all(np.isfinite(cov)) and np.all(np.diag(cov) > 0)
        except np.linalg.LinAlgError:
            ok = False
        self.covariance_log_ = cov[:k0, :k0] if ok else None
        se = np.sqrt(np.diag(cov)[k0:]) if ok else np.full(k - k0, np.nan)
        self.calendar_effects_ = pd.DataFrame({"estimate": theta[k0:], "std_error": se},
                                              index=pd.Index(self.coefficient_names(), name="coefficient"))

    def _penalised(self, parts: Any, n_total: float):
        """The mean negative log-likelihood (plus the L2 penalty on the model's own parameters)
        and its gradient, guarded against overflow."""
        pen = float(self.penalizer_coef)
        k0 = len(self._param_names)

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            with np.errstate(all="ignore"):
                total, g = parts(theta, True)
            p = np.exp(theta[:k0])
            value = -total / n_total + pen * float((p ** 2).sum())
            grad = -g / n_total
            grad[:k0] += pen * 2 * p * p
            if not np.isfinite(value) or not np.all(np.isfinite(grad)):
                return 1e300, np.zeros_like(theta)
            return value, grad

        return objective
