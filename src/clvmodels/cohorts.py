"""Left-truncated logs: customers who were customers before the log starts.

A log that starts in the middle of a customer base shows every existing customer's first purchase
*in the log* piled up near its start: the first purchase seen is not the customer's first
purchase. The models then treat long-standing customers as newly acquired - wrong ``T``, wrong
dropout, and an acquisition budget that prices a new customer from the habits of old ones.

Detection (:func:`detect_left_truncation`): new customers keep arriving at a steady rate late in
the log (the median weekly arrivals over its last third); far more first purchases than that
near the start means a pile-up of existing customers. A log with no late arrivals is a closed
cohort (CDNOW: everyone first bought in the first quarter of 1997) and is not truncated.

Treatment, as Google's FoCVS pipeline (Future-Customer-Value-Segments) does with its cohort
dates: the model's dynamics are learned from customers first seen after the pile-up (a real
cohort of new customers), then every customer is scored with them; the acquisition budget comes
from that cohort only. The customers of the pile-up still get forecasts, with their time as
customers counted from their first purchase in the log (a lower bound), which the report says.

References
----------
Schmittlein, Morrison & Colombo (1987), Counting your customers, *Management Science* 33(1): the
model's clock starts at the customer's first purchase (trial), which a left-truncated log does
not show. Google, Future-Customer-Value-Segments (FoCVS), a Dataflow pipeline that fits BTYD
models on a customer cohort and then predicts for all customers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from clvmodels._validation import DAYS_PER_UNIT, UNIT_NAMES
from clvmodels.exceptions import ClvModelsError
from clvmodels.selection import TOLERANCE, compare_forecasts, select_model

__all__ = ["LeftTruncation", "detect_left_truncation", "MIN_COHORT", "COMPARABLE_COHORT", "cohort_of",
           "cohort_or_everyone"]

#: customers first seen after the pile-up needed to fit on them alone
MIN_COHORT = 300
#: first purchases near the start at least this many times the steady arrival rate: a pile-up
PILE_UP_RATIO = 3.0


@dataclass(frozen=True)
class LeftTruncation:
    """What :func:`detect_left_truncation` found.

    ``cutoff_T``: customers with ``T`` below it (first seen after the pile-up) form the cohort the
    models learn from; ``pre_existing``: how many customers are estimated to have been customers
    before the log starts (first purchases in the pile-up beyond the steady arrival rate).
    """

    detected: bool
    customers: float
    pre_existing: float = 0.0
    cohort: float = 0.0
    cutoff_T: float = float("inf")
    cutoff_weeks: float = 0.0
    steady_per_week: float = 0.0
    reason: str = ""
    learn_from_cohort: bool = True
    """Whether the models learn from the cohort alone: the backtest's verdict when it compared that
    with learning from everyone (``backtest``); a usable cohort is learned from unless judged."""
    backtest: str = ""
    """How the two treatments did in the backtest, in words (empty: not compared)."""

    @property
    def usable_cohort(self) -> bool:
        """Enough customers first seen after the pile-up to learn from them alone."""
        return self.detected and self.cohort >= MIN_COHORT

    @property
    def fits_cohort(self) -> bool:
        """The models learn from the cohort alone (usable, and not beaten by everyone in the backtest)."""
        return self.usable_cohort and self.learn_from_cohort

    def describe(self) -> str:
        if not self.detected:
            return self.reason
        share = self.pre_existing / self.customers if self.customers else 0.0
        text = (f"The log looks left-truncated: about {self.pre_existing:,.0f} customers ({share:.0%}) were "
                f"probably customers before it starts - their first purchases pile up in the first "
                f"{self.cutoff_weeks:.0f} weeks, where new customers otherwise arrive at about "
                f"{self.steady_per_week:,.1f} a week. ")
        if self.fits_cohort:
            text += (f"Purchase and dropout rates are therefore learned from the {self.cohort:,.0f} customers first "
                     "seen after that, and applied to everyone; the acquisition budget comes from them alone. "
                     "For the earlier customers, time as a customer counts from their first purchase in the log, "
                     "so their churn figures are less certain.")
        elif self.usable_cohort:
            text += ("The models learn from every customer, each counted as new from their first purchase in the log; "
                     f"learning from the {self.cohort:,.0f} customers first seen after the pile-up alone was a "
                     "candidate in the backtest and was not taken. P(alive) and dropout of long-standing customers "
                     "may be understated, and the acquisition budget is not a new customer's value.")
        else:
            text += (f"Only {self.cohort:,.0f} customers arrived after that (at least {MIN_COHORT} are needed to "
                     "learn from them alone), so the models treat every customer as new from their first purchase "
                     "in the log: P(alive) and dropout of long-standing customers are understated, and the "
                     "acquisition budget is not a new customer's value.")
        if self.backtest:
            text += " " + self.backtest
        return text


def detect_left_truncation(T: np.ndarray, weights: np.ndarray | None = None, *, time_unit: str = "W",
                           ) -> LeftTruncation:
    """Whether first purchases pile up at the start of the log, from each customer's ``T``.

    Parameters
    ----------
    T : array
        Time from each customer's first purchase to the end of observation (RFM ``T``).
    weights : array, optional
        Customers per row (compressed rows).
    time_unit : {"D", "W"}

    Notes
    -----
    With first purchases at ``start + u`` (``u = max(T) - T``, in weeks, ``start`` the earliest
    first purchase), the steady arrival rate ``s`` is the median of the weekly counts over the last
    third of the span from ``start`` to the end of observation; the pile-up is
    there when ``s > 0`` and the first tenth of the span (at least two weeks) holds more than
    :data:`PILE_UP_RATIO` times ``s`` per week. The excess ``E(u) = arrivals(<= u) - s u`` rises
    through the pile-up and levels off after it; the cut-off is where ``E`` reaches 90% of its
    peak, and the pre-existing customers are estimated by that peak.
    """
    T = np.asarray(T, float)
    w = np.ones_like(T) if weights is None else np.asarray(weights, float)
    n = float(w.sum())
    weeks_per_unit = DAYS_PER_UNIT[time_unit] / 7.0
    # weeks from the log's start (the earliest first purchase) to the end of observation
    span = float(T.max()) * weeks_per_unit if len(T) else 0.0
    if span < 12:
        return LeftTruncation(False, n, reason="The log is too short (under 12 weeks) to tell new customers from "
                                               "existing ones.")
    # first purchases per whole week since the start (the last, partial week left out)
    weeks = int(np.floor(span))
    u = (T.max() - T) * weeks_per_unit
    counts = np.bincount(np.minimum(u.astype(np.int64), weeks), weights=w, minlength=weeks + 1)[:weeks]
    last_third = counts[int(len(counts) * 2 / 3):]
    steady = float(np.median(last_third)) if len(last_third) else 0.0
    if steady <= 0:
        return LeftTruncation(False, n, reason="No new customers arrive late in the log: it is a closed cohort "
                                               "(every customer's first purchase in the log is their first).")
    head = max(2, int(np.ceil(0.1 * len(counts))))
    per_week_head = float(counts[:head].sum()) / head
    if per_week_head <= PILE_UP_RATIO * steady:
        return LeftTruncation(False, n, steady_per_week=steady,
                              reason=(f"First purchases arrive at a steady rate ({steady:,.1f} a week late in the log, "
                                      f"{per_week_head:,.1f} at its start): no sign of customers from before it."))
    excess = np.cumsum(counts) - steady * np.arange(1, len(counts) + 1)
    peak = float(excess.max())
    cut_week = int(np.argmax(excess >= 0.9 * peak)) + 1
    cutoff_T = T.max() - cut_week / weeks_per_unit
    cohort = float(w[T < cutoff_T].sum())
    return LeftTruncation(True, n, pre_existing=peak, cohort=cohort, cutoff_T=float(cutoff_T),
                          cutoff_weeks=float(cut_week), steady_per_week=steady)


#: share of its age at the report's date a left-truncated log's cohort must have reached at a
#: backtest's calibration end for that backtest to judge learning from it (a younger cohort's
#: fit says little about the older one's: on the validation worlds a cohort at 41-45% of its age
#: forecast the backtest 26-31% off by tier while at the report's date it was 8-25% off)
COMPARABLE_COHORT = 0.5


def cohort_or_everyone(cohort_choice: Any, cal: pd.DataFrame, earlier_windows: list[tuple[pd.DataFrame, float]],
                       below_T: float, *, events: Any = None, tier_shares: dict[str, float] | None = None,
                       time_unit: str = "W") -> tuple[Any, tuple[bool, str]]:
    """Left truncation's treatment judged like a model (``cohort_choice``: the selection made on
    the cohort, :func:`clvmodels.select_model`; ``earlier_windows``: the earlier backtests with
    their distance to the observation end; ``below_T``: the cohort's age bound at the observation
    end): the model chosen on the cohort and
    learning from it alone, against the model chosen on everyone and learning from all, both
    forecasting every customer of the same backtests and scored by the choice's rule
    (:func:`clvmodels.selection.compare_forecasts`). The cohort wins only when it scores better
    by more than the choice's tolerance: a treatment must earn its place (a loyalty panel whose
    newcomers buy less than the long-standing customers is forecast worse from the newcomers).
    Only origins where the cohort has :data:`COMPARABLE_COHORT` of its age now are scored; with
    none, the models learn from everyone and the words say why. Measured on two left-truncated
    worlds at three dates each (``validation/truncation_treatment.py``): learning from everyone
    was as good or better at all six (mean tier error 8.9% against 19.1% from the cohort).
    Returns the selection to use and (learn from the cohort, the comparison in words)."""
    everyone = select_model(cal, events=events, earlier=[w for w, _ in earlier_windows], tier_shares=tier_shares)
    # the origins the choice on everyone scored (it skips a window where nobody bought), with
    # each one's distance to the observation end
    shift_of = {id(cal): 0.0, **{id(w): shift for w, shift in earlier_windows}}

    def cohort_forecast(origin: int, window: pd.DataFrame) -> Any:
        holdout, shift = float(window["duration_holdout"].iloc[0]), shift_of[id(window)]
        if below_T - holdout - shift < COMPARABLE_COHORT * below_T:
            return None  # the cohort is too young here to say how it forecasts at the report's date
        try:
            model = (cohort_choice.calibration_model if origin == 0 else
                     cohort_choice.new_model().fit(cohort_of(window, below_T, shift)))
            return model.expected_purchases(window, holdout).to_numpy(float)
        except ClvModelsError:
            return None

    def everyone_forecast(origin: int, window: pd.DataFrame) -> Any:
        # the choice on everyone already fitted its model on every window it scored
        return everyone.predictions[origin][everyone.chosen]

    try:
        scores = compare_forecasts(everyone.windows, {"cohort": cohort_forecast, "everyone": everyone_forecast},
                                   tier_shares)
    except ClvModelsError:
        oldest = below_T - float(cal["duration_holdout"].iloc[0])
        why = (f"at its latest origin the cohort's oldest customers had {max(oldest, 0):.0f} of the {below_T:.0f} "
               f"{UNIT_NAMES[time_unit]} they have now (at least {COMPARABLE_COHORT:.0%} are needed)"
               if oldest < COMPARABLE_COHORT * below_T else "the models could not be fitted on its backtests")
        return everyone, (False, f"The backtest could not judge learning from the cohort alone: {why}.")
    c, e = scores.loc["cohort"], scores.loc["everyone"]
    use_cohort = bool(c["score"] < e["score"] * (1 - TOLERANCE))
    origins = int(c["origins"])
    words = (f"In the backtest ({origins} origin{'s' if origins > 1 else ''}, every customer forecast), "
             f"{cohort_choice.chosen} learning from the cohort alone missed the tiers by {c['tier_pct']:.1f}% on "
             f"average (total purchases off by {c['total']:.1f}%); {everyone.chosen} learning from everyone by "
             f"{e['tier_pct']:.1f}% ({e['total']:.1f}%).")
    return (cohort_choice if use_cohort else everyone), (use_cohort, words)


def cohort_of(cal: pd.DataFrame, cohort_below_T: float | None, shift: float = 0.0) -> pd.DataFrame:
    """The customers of a backtest the models learn from: everyone, or a left-truncated log's
    cohort (age at the observation end below ``cohort_below_T``; their age then is their age at
    the calibration end plus the holdout plus ``shift``, the time from the window's end to the
    observation end) when it has enough customers who bought in the holdout."""
    if cohort_below_T is None:
        return cal
    in_cohort = cal[(cal["T"] + cal["duration_holdout"]).to_numpy() + shift < cohort_below_T - 1e-9]
    if len(in_cohort) >= MIN_COHORT and float(in_cohort["frequency_holdout"].sum()) > 0:
        in_cohort.attrs.update(cal.attrs)
        return in_cohort
    return cal
