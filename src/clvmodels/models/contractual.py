"""Contractual models: subscribers whose churn is observed, renewing at discrete periods.

* sBG, the shifted-beta-geometric model (Fader & Hardie 2007, "How to project customer
  retention", *Journal of Interactive Marketing* 21(1)): at every renewal a subscriber leaves
  with their own probability ``theta``, ``theta ~ Beta(alpha, beta)`` across subscribers;
  retention rises with tenure only because those who stay are the loyal ones.
* BdW, the beta-discrete-Weibull model (Fader, Hardie, Liu, Davin & Steenburgh 2018, "How to
  project customer retention" revisited: the role of duration dependence, *Journal of
  Interactive Marketing* 43): a subscriber survives ``t`` periods with probability
  ``(1 - theta)^(t^c)``; ``c < 1`` means each subscriber's own churn propensity falls with
  tenure, ``c > 1`` that it rises; ``c = 1`` is sBG.

Both are fitted by maximum likelihood on compressed statistics - how many subscribers left
after each number of periods, and how many are still active after each - with analytic
gradients, from a subscription log (:func:`subscription_periods`) or from a table of survivors
per period as the papers print it (:meth:`ShiftedBetaGeometricModel.fit_survival`).

The discounted expected residual lifetime (DERL) is Fader & Hardie's (2010), "Customer-base
valuation in a contractual setting: the perils of ignoring heterogeneity", *Marketing Science*
29(1): the expected discounted number of renewals a subscriber who has renewed ``n`` times
has left, the next one counted in full.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from clvmodels._validation import check_number
from clvmodels.exceptions import DataValidationError, ParameterError
from clvmodels.models._base import BaseModel
from clvmodels.models._fitting import penalized_objective

__all__ = ["ShiftedBetaGeometricModel", "BetaDiscreteWeibullModel", "subscription_periods", "PERIODS"]

#: renewal periods, with their average length in days (to turn an annual discount rate into one
#: per period); periods themselves are counted on the calendar
PERIODS = {"week": 7.0, "month": 365.25 / 12, "quarter": 365.25 / 4, "year": 365.25}

#: renewals summed in DERL: beyond them the discount factor is below 1e-12 for any rate >= 1%
_DERL_TERMS = 3000


def _log_survival(alpha, beta, c, t):
    """ln S(t) = ln B(alpha, beta + t^c) - ln B(alpha, beta) (S(0) = 1)."""
    tc = np.power(np.asarray(t, float), c)
    return special.betaln(alpha, beta + tc) - special.betaln(alpha, beta)


def _terms(params, c_free: bool, t, churned, w, grad: bool):
    """Weighted log-likelihood of subscribers who left after ``t`` periods (``churned``) or are
    active after ``t`` (not churned), and its gradient in (alpha, beta[, c])."""
    alpha, beta = params[0], params[1]
    c = params[2] if c_free else 1.0
    t = np.asarray(t, float)
    lS = _log_survival(alpha, beta, c, t)
    lS_prev = _log_survival(alpha, beta, c, np.maximum(t - 1, 0))
    # ln P(T = t) = ln(S(t-1) - S(t)), from the larger term: no cancellation
    lP = lS_prev + np.log(-np.expm1(np.minimum(lS - lS_prev, -1e-300)))
    ll_rows = np.where(churned, lP, lS)
    total = float((w * ll_rows).sum())
    if not grad:
        return total, None

    def dlogS(tt):
        tc = np.power(tt, c)
        psi_ab = special.digamma(alpha + beta)
        psi_abt = special.digamma(alpha + beta + tc)
        d_alpha = psi_ab - psi_abt
        d_beta = special.digamma(beta + tc) - special.digamma(beta) + psi_ab - psi_abt
        with np.errstate(divide="ignore", invalid="ignore"):
            d_c = np.where(tt > 0, (special.digamma(beta + tc) - psi_abt) * tc * np.log(np.where(tt > 0, tt, 1.0)), 0.0)
        return np.stack([d_alpha, d_beta, d_c])

    dS = dlogS(t)
    dS_prev = dlogS(np.maximum(t - 1, 0))
    # d ln(S(t-1) - S(t)) = (S(t-1) dlnS(t-1) - S(t) dlnS(t)) / (S(t-1) - S(t))
    ratio = np.exp(lS - lS_prev)  # S(t) / S(t-1) < 1
    dP = (dS_prev - ratio * dS) / (1.0 - ratio)
    g = np.where(churned, dP, dS)
    out = (w * g).sum(axis=1)
    return total, out if c_free else out[:2]


class BetaDiscreteWeibullModel(BaseModel):
    """Beta-discrete-Weibull model of subscriber retention (Fader, Hardie, Liu, Davin &
    Steenburgh 2018).

    Parameters
    ----------
    penalizer_coef, tol, max_iter
        As for :class:`clvmodels.BetaGeoModel`.

    Attributes
    ----------
    params_ : pandas.Series
        ``alpha``, ``beta`` (the Beta distribution of churn propensities) and ``c`` (duration
        dependence: below 1 a subscriber's own churn propensity falls with tenure).
    n_customers_ : int
        Subscribers fitted on.

    Notes
    -----
    ``S(t) = B(alpha, beta + t^c) / B(alpha, beta)``, ``P(T = t) = S(t-1) - S(t)`` (``T``: the
    period after which the subscriber leaves), retention ``r(t) = S(t) / S(t-1)``. A
    subscriber who has renewed ``n`` times (survived ``n`` periods) survives ``h`` more with
    probability ``S(n+h) / S(n)``. Fitted on the counts of ``(T or periods survived, left or
    active)``: the likelihood of a subscriber who left after ``t`` periods is ``P(T = t)``, of
    one active after ``t`` periods ``S(t)``.
    """

    _param_names: tuple[str, ...] = ("alpha", "beta", "c")
    _limit_pairs = (("alpha", "beta"),)
    _long_name = "BdW"
    _reference = ("Fader, Hardie, Liu, Davin & Steenburgh (2018), \"How to project customer retention\" "
                  "revisited: the role of duration dependence, Journal of Interactive Marketing 43.")
    _c_free = True

    # ---------------------------------------------------------------- fitting
    def fit(self, periods: Any, churned: Any = None, *, weights: Any = None) -> BetaDiscreteWeibullModel:
        """Fit by maximum likelihood.

        Parameters
        ----------
        periods : array-like or DataFrame
            Per subscriber (or per row of counts): the number of periods after which they left,
            or, if still active, the number of periods survived so far. A DataFrame from
            :func:`subscription_periods` (columns ``periods`` and ``churned``) is accepted alone.
        churned : array-like of bool
            Whether the subscriber left (True) or is still active (False).
        weights : array-like, optional
            Subscribers each row stands for.
        """
        self._check_init_params()
        period = periods.attrs.get("period") if isinstance(periods, pd.DataFrame) else None
        if isinstance(periods, pd.DataFrame):
            if churned is not None or not {"periods", "churned"} <= set(periods.columns):
                raise DataValidationError("Give a table with columns 'periods' and 'churned' (subscription_periods), "
                                          "or the two arrays.")
            churned = periods["churned"].to_numpy()
            periods = periods["periods"].to_numpy()
        t = np.asarray(periods, float)
        ch = np.asarray(churned)
        if t.ndim != 1 or ch.shape != t.shape:
            raise DataValidationError(f"periods and churned must be 1-d and of one length, got {t.shape} and {ch.shape}.")
        if ch.dtype != bool:
            if not np.isin(ch, [0, 1]).all():
                raise DataValidationError("churned must be True/False (or 1/0) per subscriber.")
            ch = ch.astype(bool)
        if not np.all(np.isfinite(t)) or np.any(t < 0) or np.any(t != np.floor(t)):
            raise DataValidationError("periods must be whole numbers >= 0 (periods a subscriber stayed).")
        if np.any(ch & (t < 1)):
            raise DataValidationError("A subscriber who left stayed at least one period: periods must be >= 1 "
                                      "where churned is True.")
        w = self._fit_weights(weights, len(t))
        w = np.ones_like(t) if w is None else w
        # compressed: one row per (periods, churned)
        key = pd.DataFrame({"t": t, "c": ch, "w": w}).groupby(["t", "c"], sort=True)["w"].sum().reset_index()
        key = key[key["w"] > 0]
        t, ch, w = key["t"].to_numpy(float), key["c"].to_numpy(bool), key["w"].to_numpy(float)
        n = float(w.sum())
        if n <= 0:
            raise DataValidationError("No subscribers to fit on.")
        if not (w[ch].sum() > 0):
            raise DataValidationError("Nobody left in the data: churn cannot be estimated without a subscriber who "
                                      "ended their subscription.")
        if not (w[~ch & (t > 0)].sum() + w[ch & (t > 1)].sum() > 0):
            raise DataValidationError("Every subscriber left after their first period: nothing tells how retention "
                                      "changes with tenure.")
        penalizer = float(self.penalizer_coef)
        c_free = self._c_free

        def objective(theta):
            return penalized_objective(lambda p: _terms(p, c_free, t, ch, w, grad=True), theta, n, penalizer)

        k = len(self._param_names)
        starts = [np.zeros(k), np.log([0.5, 2.0, 1.0][:k]), np.log([2.0, 0.5, 0.7][:k])]
        self._maximise(objective, starts, n)
        self.log_likelihood_ = _terms(self._p(), c_free, t, ch, w, grad=False)[0]
        self.n_customers_ = int(round(n))
        self.time_unit_ = None
        if period:
            self.fit_info_["period"] = period
        return self

    def _unit_text(self) -> str:
        period = (getattr(self, "fit_info_", None) or {}).get("period")
        return f"renewal every {period}" if period else "discrete renewal periods"

    def fit_survival(self, alive: Any) -> BetaDiscreteWeibullModel:
        """Fit on the number of subscribers of one cohort still active at the start and after
        each period (``alive[0]`` acquired, ``alive[t]`` after ``t`` periods), as Fader & Hardie
        print them: ``alive[t-1] - alive[t]`` left after ``t`` periods, ``alive[-1]`` are active."""
        a = np.asarray(alive, float)
        if a.ndim != 1 or len(a) < 3 or np.any(np.diff(a) > 0) or np.any(a < 0) or a[0] <= 0:
            raise DataValidationError("alive must be a falling series of counts of at least three periods, "
                                      "starting with the cohort's size.")
        m = len(a) - 1
        left = a[:-1] - a[1:]
        periods = np.concatenate([np.arange(1, m + 1), [m]])
        churned = np.concatenate([np.ones(m, bool), [False]])
        return self.fit(periods, churned, weights=np.concatenate([left, [a[-1]]]))

    def _describe_limit(self, first: str, second: str, v1: float, v2: float) -> str:
        return (f"Churn propensities barely differ between subscribers (alpha and beta ran to infinity): every "
                f"subscriber leaves at a renewal with about the same probability, {v1 / (v1 + v2):.3g}.")

    # ---------------------------------------------------------------- predictions
    def _abc(self) -> tuple[float, float, float]:
        p = self._p()
        return p[0], p[1], (p[2] if self._c_free else 1.0)

    def survival(self, t: Any) -> np.ndarray:
        """S(t): share of a new cohort still subscribed after ``t`` periods (t = 0, 1, ...)."""
        alpha, beta, c = self._abc()
        return np.exp(_log_survival(alpha, beta, c, _periods("t", t)))

    def probability_churn_at(self, t: Any) -> np.ndarray:
        """P(T = t): probability a new subscriber leaves after exactly ``t`` periods (t >= 1)."""
        t = _periods("t", t, minimum=1)
        return self.survival(t - 1) - self.survival(t)

    def retention_rate(self, t: Any) -> np.ndarray:
        """r(t) = S(t) / S(t-1): share of those active after ``t-1`` periods who renew at ``t``."""
        t = _periods("t", t, minimum=1)
        alpha, beta, c = self._abc()
        return np.exp(_log_survival(alpha, beta, c, t) - _log_survival(alpha, beta, c, t - 1))

    def survival_after(self, renewals: Any, horizon: Any) -> np.ndarray:
        """P(still subscribed ``horizon`` periods from now | survived ``renewals`` periods) =
        S(n + h) / S(n); one minus it is churn by the horizon."""
        n = _periods("renewals", renewals)
        h = _periods("horizon", horizon)
        alpha, beta, c = self._abc()
        return np.exp(_log_survival(alpha, beta, c, n + h) - _log_survival(alpha, beta, c, n))

    def derl(self, renewals: Any, discount_rate: float) -> np.ndarray:
        """Discounted expected residual lifetime (Fader & Hardie 2010) of a subscriber who has
        survived ``renewals`` periods: ``sum_{k>=0} S(n+k+1)/S(n) / (1+d)^k``, the expected
        discounted number of payments still to come, the next renewal's counted in full. For
        sBG it equals ``(beta+n)/(alpha+beta+n) 2F1(1, beta+n+1; alpha+beta+n+1; 1/(1+d))``."""
        n = _periods("renewals", renewals)
        d = check_number("discount_rate", discount_rate, minimum=0.0, min_inclusive=False)
        alpha, beta, c = self._abc()
        k = np.arange(_DERL_TERMS, dtype=float)
        nn = np.atleast_1d(n).astype(float)
        base = _log_survival(alpha, beta, c, nn)[:, None]
        terms = np.exp(_log_survival(alpha, beta, c, nn[:, None] + k + 1) - base - k * np.log1p(d))
        out = terms.sum(axis=1)
        return out.reshape(np.shape(n)) if np.ndim(n) else float(out[0])

    def expected_lifetime_value(self, value_per_period: float, discount_rate: float) -> float:
        """Expected discounted value of a new subscriber who pays ``value_per_period`` at the start
        of each period: the first payment plus ``DERL(0)`` discounted by one period."""
        v = check_number("value_per_period", value_per_period)
        return float(v * (1.0 + self.derl(0, discount_rate) / (1.0 + discount_rate)))

    def projected_survivors(self, cohort_size: float, periods: int) -> pd.Series:
        """Expected subscribers of a new cohort still active after each of ``periods`` periods."""
        t = np.arange(int(check_number("periods", periods, minimum=1, integer=True)) + 1)
        return pd.Series(float(cohort_size) * self.survival(t), index=pd.Index(t, name="period"), name="survivors")


class ShiftedBetaGeometricModel(BetaDiscreteWeibullModel):
    """Shifted-beta-geometric model of subscriber retention (Fader & Hardie 2007): BdW with
    ``c = 1`` - a subscriber's churn probability ``theta`` is constant over their tenure,
    ``theta ~ Beta(alpha, beta)``.

    Notes
    -----
    ``P(T = t) = B(alpha+1, beta+t-1) / B(alpha, beta)``, ``S(t) = B(alpha, beta+t) / B(alpha, beta)``,
    retention ``r(t) = (beta+t-1) / (alpha+beta+t-1)``, rising with tenure.

    Examples
    --------
    Fader & Hardie (2007)'s "regular" cohort, fitted on its first seven years:

    >>> import clvmodels
    >>> m = clvmodels.ShiftedBetaGeometricModel().fit_survival([1000, 631, 468, 382, 326, 289, 262, 241])
    >>> m.params_.round(3).tolist()
    [0.704, 1.182]
    """

    _param_names = ("alpha", "beta")
    _long_name = "sBG"
    _reference = "Fader & Hardie (2007), How to project customer retention, Journal of Interactive Marketing 21(1)."
    _c_free = False

    def derl(self, renewals: Any, discount_rate: float) -> np.ndarray:
        """DERL in closed form (Fader & Hardie 2010): ``(beta+n)/(alpha+beta+n) 2F1(1, beta+n+1;
        alpha+beta+n+1; 1/(1+d))`` for a subscriber who has survived ``n`` periods."""
        n = _periods("renewals", renewals)
        d = check_number("discount_rate", discount_rate, minimum=0.0, min_inclusive=False)
        alpha, beta = self._p()
        nn = np.asarray(n, float)
        out = (beta + nn) / (alpha + beta + nn) * special.hyp2f1(1.0, beta + nn + 1, alpha + beta + nn + 1,
                                                                 1.0 / (1.0 + d))
        return out if np.ndim(out) else float(out)


def _periods(name: str, t: Any, minimum: int = 0) -> np.ndarray:
    arr = np.asarray(t, float)
    if not np.all(np.isfinite(arr)) or np.any(arr < minimum) or np.any(arr != np.floor(arr)):
        raise ParameterError(f"{name} must be whole numbers of periods >= {minimum}, got {t!r}.")
    return arr


#: an ISO date-time followed by a UTC offset or Z; group 1 is the part before the offset
_BEFORE_OFFSET = re.compile(r"^(.*[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.][0-9]+)?)?) ?(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)$")
#: an end date this many years after the latest start is a placeholder for "no end" (9999-12-31)
PLACEHOLDER_YEARS = 100


def _wall_clock_days(values: pd.Series) -> pd.Series:
    """Dates of a column as the days written: a UTC offset ('2024-01-31T23:30:00+01:00') or a
    time zone is dropped - the day on the subscriber's own clock, as the transaction log counts
    it - so offsets (even mixed ones) never meet the naive observation end; empty stays NaT."""
    def one(v: Any) -> Any:
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NaT:
            return pd.NaT
        if isinstance(v, str):
            m = _BEFORE_OFFSET.match(v.strip())  # an offset only after a time, never a date's "-15"
            v = m.group(1) if m else v.strip()
        try:
            ts = pd.Timestamp(v)
        except (ValueError, TypeError, OverflowError):
            return pd.NaT
        if ts is pd.NaT:
            return pd.NaT
        return ts.tz_localize(None) if ts.tzinfo is not None else ts
    out = values.map(one)
    return pd.to_datetime(out, errors="coerce").astype("datetime64[s]")


def subscription_periods(subscriptions: pd.DataFrame, *, period: str = "month", observation_end: Any = None,
                         customer_id: str = "customer_id", start: str = "start", end: str = "end",
                         amount: str | None = "amount") -> pd.DataFrame:
    """Per subscriber, what the contractual models need, from a subscription log.

    Periods are calendar periods from each subscriber's start (a monthly subscription started on
    31 January renews on 28 or 29 February, 31 March, ...).

    Parameters
    ----------
    subscriptions : DataFrame
        One row per subscriber: ``customer_id``, ``start`` (date), ``end`` (date the subscription
        ended; empty for active subscribers) and optionally ``amount`` (paid per period).
    period : {"week", "month", "quarter", "year"}
        Renewal period.
    observation_end : date-like, optional
        The date the log describes (default: the latest start or end date). Subscriptions that
        began later are left out and ends after it count as not yet known (active), so a log
        can be read as of a past date.

    Returns
    -------
    DataFrame indexed by customer: ``cohort`` (the calendar period the subscriber started in, as
    its first day),
    ``periods`` (for one who left, the periods paid for: those that began before the end date, at
    least 1; for one who is active, the periods completed by ``observation_end``), ``churned`` and ``amount`` when given.
    """
    if period not in PERIODS:
        raise ParameterError(f"period must be one of {sorted(PERIODS)}, got {period!r}.")
    if not isinstance(subscriptions, pd.DataFrame):
        raise DataValidationError(f"subscriptions must be a pandas DataFrame, got {type(subscriptions).__name__}.")
    need = [customer_id, start, end] + ([amount] if amount and amount in subscriptions.columns else [])
    missing = [c for c in (customer_id, start, end) if c not in subscriptions.columns]
    if missing:
        raise DataValidationError(f"subscriptions lacks column(s) {missing}; it has {list(subscriptions.columns)}. "
                                  "Needed: one row per subscriber with its start and end (empty if active); name "
                                  "your columns with customer_id=, start=, end= (report parameters customer_col, "
                                  "start_col, end_col; command line --customer-col, --start-col, --end-col).")
    df = subscriptions[need].copy()
    if df[customer_id].isna().any():
        raise DataValidationError(f"Column {customer_id!r} has missing ids in {int(df[customer_id].isna().sum())} rows.")
    if df[customer_id].duplicated().any():
        dup = df.loc[df[customer_id].duplicated(), customer_id].astype(str).head(3).tolist()
        raise DataValidationError(f"Column {customer_id!r} must have one row per subscriber; repeated: {dup}.")
    for col, allow_empty in ((start, False), (end, True)):
        given = df[col].notna() & (df[col].astype(str).str.strip() != "")
        parsed = _wall_clock_days(df[col].where(given))
        bad = parsed.isna() & (given if allow_empty else True)
        if bad.any():
            raise DataValidationError(f"Column {col!r} has {int(bad.sum())} value(s) that are not dates"
                                      f"{' (empty means active)' if allow_empty else ''}, e.g. "
                                      f"{df.loc[bad, col].astype(str).head(3).tolist()}.")
        df[col] = parsed
    # an end date a database writes for "no end" (9999-12-31, 2999-01-01, ...): active, as empty
    placeholder = df[end] > df[start].max() + pd.DateOffset(years=PLACEHOLDER_YEARS)
    df.loc[placeholder, end] = pd.NaT
    obs = pd.Timestamp(observation_end) if observation_end is not None else max(df[start].max(), df[end].max())
    if (df[end] < df[start]).any():
        raise DataValidationError(f"{int((df[end] < df[start]).sum())} subscription(s) end before they start.")
    # as of a past date: the subscriptions that began by then, ends after it not yet known
    df = df[df[start] <= obs]
    if len(df) == 0:
        raise DataValidationError(f"No subscription began on or before observation_end {obs.date()}.")
    churned = df[end].notna() & (df[end] <= obs)
    # a subscriber who left paid for every period that began before their end date; an active
    # one has renewed at the end of every period completed by the observation end
    paid = _completed(df[start], df[end].where(churned, df[start]) - pd.Timedelta(days=1), period) + 1
    renewed = _completed(df[start], pd.Series(obs, index=df.index), period)
    periods = np.where(churned, np.maximum(paid, 1), renewed)
    calendar = {"week": "W", "month": "M", "quarter": "Q", "year": "Y"}[period]
    out = pd.DataFrame({
        "cohort": df[start].dt.to_period(calendar).dt.start_time.to_numpy(),
        "periods": periods.astype(np.int64),
        "churned": churned.to_numpy(bool),
    }, index=pd.Index(df[customer_id].to_numpy(), name="customer_id"))
    if amount and amount in df.columns:
        values = pd.to_numeric(df[amount], errors="coerce").to_numpy(float)
        bad = ~np.isfinite(values) | (values < 0)
        if bad.any():
            examples = df.loc[bad, amount].astype(str).head(3).tolist()
            raise DataValidationError(f"Column {amount!r} must be an amount per period >= 0 for every subscriber; "
                                      f"{int(bad.sum())} are not (e.g. {examples}).")
        out["amount"] = values
    out.attrs.update({"period": period, "observation_end": str(obs.date())})
    return out


def _completed(start: pd.Series, until: pd.Series, period: str) -> np.ndarray:
    """Whole calendar periods from ``start`` completed by ``until`` (0 if ``until`` is earlier):
    ``start + k periods <= until`` for the largest such k (month ends clipped as pandas does:
    31 January + 1 month = 28/29 February)."""
    s, u = pd.DatetimeIndex(start), pd.DatetimeIndex(until)
    if period == "week":
        out = np.floor((u - s).days.to_numpy(float) / 7.0)
    else:
        months = (u.year - s.year).to_numpy() * 12 + (u.month - s.month).to_numpy()
        # the anniversary in until's month falls on start's day, or that month's last day
        anniversary = np.minimum(s.day.to_numpy(), u.days_in_month.to_numpy())
        months = months - (u.day.to_numpy() < anniversary)
        out = np.floor(months / {"month": 1, "quarter": 3, "year": 12}[period])
    return np.maximum(out, 0).astype(np.int64)
