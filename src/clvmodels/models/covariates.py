"""Time-invariant covariates in BG/NBD and MBG/NBD (issue 17, item 1).

Fader, P. S. & Hardie, B. G. S. (2007), "Incorporating time-invariant covariates into the
Pareto/NBD and BG/NBD models" (note at brucehardie.com), after Gupta (1991): a customer's
covariates ``z`` (acquisition channel, region, plan, ...) scale the mixing distributions,

* purchase rate: ``alpha_i = alpha_0 exp(-gamma_p' z_i)`` - the mean rate ``r / alpha_i`` is
  ``exp(gamma_p' z_i)`` times the reference customers';
* dropout: ``a_i = a_0 exp(gamma_a' z_i)``, ``b_i = b_0 exp(gamma_b' z_i)``;

with separate covariate sets for the purchase and the dropout process. Given ``z`` the
model is BG/NBD (MBG/NBD) with those parameters, so the likelihood is the usual closed form
evaluated per row; it is fitted on compressed statistics - one row per distinct (history,
covariate row) - by maximum likelihood with an analytic gradient, optionally with an L2
penalty on the coefficients. Categorical covariates are one-hot encoded against a stated
reference level (the most frequent). Predictions reuse the plain models: each distinct covariate
row is a BG/NBD with its own parameters (:meth:`CovariateBetaGeoModel.submodels`).
"""

from __future__ import annotations

import html
import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from clvmodels._compress import compress
from clvmodels._validation import check_number, check_rfm
from clvmodels.exceptions import (
    ConvergenceError,
    DataValidationError,
    ModelError,
    ModelFileError,
    NotFittedError,
    ParameterError,
)
from clvmodels.models._base import FORMAT_NAME, FORMAT_VERSION, Z95
from clvmodels.models.beta_geo import BetaGeoModel
from clvmodels.models.gamma_gamma import GammaGammaModel, conditional_spend
from clvmodels.models.modified_beta_geo import ModifiedBetaGeoModel
from clvmodels.models.pareto_nbd import ParetoNBDModel
from clvmodels.models.pareto_nbd import _prepare as prepare_pareto
from clvmodels.models.pareto_nbd import _terms as pareto_terms

__all__ = ["CovariateBetaGeoModel", "CovariateParetoNBDModel", "CovariateGammaGammaModel", "design_matrix",
           "likelihood_ratio_test"]


@dataclass
class Design:
    """Covariates as numbers: the matrix, its column names, and how categories were coded."""

    matrix: np.ndarray
    names: list[str]
    reference: dict[str, str]


#: levels a categorical covariate may have (each but the reference is a coefficient; a column of
#: 20,000 levels asked for a 3.5 GiB design before this limit)
MAX_LEVELS = 100


def design_matrix(covariates: pd.DataFrame, columns: list[str], reference: dict[str, str] | None = None,
                  levels: dict[str, list[str]] | None = None) -> tuple[Design, dict[str, list[str]]]:
    """Numeric columns as they are; a text, category or boolean column one-hot encoded with its
    most frequent level as the reference (or the one ``reference`` names). Returns the design
    and the levels of each categorical column (to encode new data the same way)."""
    if not isinstance(covariates, pd.DataFrame):
        raise DataValidationError(f"covariates must be a pandas DataFrame, got {type(covariates).__name__}.")
    missing = [c for c in columns if c not in covariates.columns]
    if missing:
        raise DataValidationError(f"covariates lack column(s) {missing}; they have {list(covariates.columns)}.")
    blocks, names = [], []
    ref_out: dict[str, str] = {}
    levels_out: dict[str, list[str]] = {}
    for col in columns:
        v = covariates[col]
        if v.isna().any():
            raise DataValidationError(f"Covariate {col!r} is missing for {int(v.isna().sum())} customer(s); fill or "
                                      "drop them (a missing value is not a level).")
        if pd.api.types.is_numeric_dtype(v) and not pd.api.types.is_bool_dtype(v):
            x = v.to_numpy(float)
            if not np.all(np.isfinite(x)):
                raise DataValidationError(f"Covariate {col!r} has values that are not finite.")
            blocks.append(x[:, None])
            names.append(col)
            continue
        text = v.astype(str)
        counts = text.value_counts()
        if levels is None and len(counts) > MAX_LEVELS:
            raise DataValidationError(
                f"Covariate {col!r} has {len(counts):,} levels (e.g. {counts.index[:3].tolist()}); a covariate may have at "
                f"most {MAX_LEVELS} (each level but one is a coefficient to estimate). Group rare levels into "
                "'other', use a coarser column, or summarise the forecast by it with segment_col instead.")
        lv = (levels or {}).get(col) or sorted(counts.index.tolist(), key=lambda s: (-int(counts[s]), s))
        ref = (reference or {}).get(col, lv[0])
        if ref not in lv:
            raise ParameterError(f"Reference level {ref!r} of covariate {col!r} is not among its levels {lv}.")
        unseen = sorted(set(text.unique()) - set(lv))
        if unseen:
            raise DataValidationError(f"Covariate {col!r} has level(s) {unseen} the model was not fitted with "
                                      f"(known: {lv}).")
        others = [s for s in lv if s != ref]
        for level in others:
            blocks.append((text == level).to_numpy(float)[:, None])
            names.append(f"{col}={level}")
        ref_out[col] = ref
        levels_out[col] = lv
    matrix = np.hstack(blocks) if blocks else np.zeros((len(covariates), 0))
    return Design(matrix, names, ref_out), levels_out


def _rows(theta: np.ndarray, kp: int, kd: int, Zp, Zd):
    """Per-row (r, alpha, a, b) from the parameter vector: 4 log-parameters, then gamma_p,
    gamma_a, gamma_b."""
    r, alpha0, a0, b0 = np.exp(theta[:4])
    gp, ga, gb = theta[4:4 + kp], theta[4 + kp:4 + kp + kd], theta[4 + kp + kd:4 + kp + 2 * kd]
    alpha = alpha0 * np.exp(-(Zp @ gp))
    a = a0 * np.exp(Zd @ ga)
    b = b0 * np.exp(Zd @ gb)
    return r, alpha, a, b


@dataclass
class _Prepared:
    """Rows (distinct history x covariate row) with weights, the distinct covariate rows, and
    each row's index into the distinct (x, row), (T, row) and (t_x, row) pairs: the gamma, beta
    and log terms are evaluated once per pair, not per row."""

    x: np.ndarray
    w: np.ndarray
    code: np.ndarray
    Zp: np.ndarray
    Zd: np.ndarray
    xs: np.ndarray
    xs_code: np.ndarray
    ix: np.ndarray
    Ts: np.ndarray
    Ts_code: np.ndarray
    iT: np.ndarray
    txs: np.ndarray
    txs_code: np.ndarray
    itx: np.ndarray


def _pairs(values: np.ndarray, code: np.ndarray):
    inverse, uniques = pd.factorize(pd.MultiIndex.from_arrays([values, code]))
    arr = np.asarray(uniques.tolist(), float).reshape(-1, 2)
    return arr[:, 0], arr[:, 1].astype(np.int64), inverse


def _prepare(x, tx, T, w, code, Zp_rows, Zd_rows) -> _Prepared:
    """``Zp_rows``/``Zd_rows``: the design of each distinct covariate row (indexed by ``code``)."""
    code = np.asarray(code, np.int64)
    xs, xs_code, ix = _pairs(np.asarray(x, float), code)
    Ts, Ts_code, iT = _pairs(np.asarray(T, float), code)
    txs, txs_code, itx = _pairs(np.asarray(tx, float), code)
    return _Prepared(np.asarray(x, float), np.asarray(w, float), code, Zp_rows, Zd_rows, xs, xs_code, ix,
                     Ts, Ts_code, iT, txs, txs_code, itx)


def _loglik(theta, x, tx, T, w, Zp, Zd, shift: int, grad: bool):
    """:func:`_loglik_prepared` on per-row designs (each row its own covariate row)."""
    Z = np.hstack([Zp, Zd])
    code = pd.factorize(pd.MultiIndex.from_arrays(Z.T))[0] if Z.shape[1] else np.zeros(len(x), np.int64)
    first = pd.Series(np.arange(len(code))).groupby(code).first().to_numpy()
    return _loglik_prepared(theta, _prepare(x, tx, T, w, code, Zp[first], Zd[first]), shift, grad)


def _loglik_prepared(theta, d: _Prepared, shift: int, grad: bool):
    """Weighted log-likelihood of BG/NBD (shift 0) or MBG/NBD (shift 1) with per-covariate-row
    alpha, a, b, and its gradient in the parameter vector (4 log-parameters, gamma_p, gamma_a,
    gamma_b)."""
    kp, kd = d.Zp.shape[1], d.Zd.shape[1]
    r, alpha_g, a_g, b_g = _rows(theta, kp, kd, d.Zp, d.Zd)  # per covariate row
    x, w = d.x, d.w
    # per (x, row)
    a_x, b_x, xs = a_g[d.xs_code], b_g[d.xs_code], d.xs
    lnB = special.betaln(a_x, b_x)
    lb2 = special.betaln(a_x, b_x + xs + shift) - lnB
    has3_x = (xs > 0) | (shift > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        lb3 = np.where(has3_x, special.betaln(a_x + 1, np.maximum(b_x + xs - 1 + shift, 1e-300)) - lnB, -np.inf)
    a1 = special.gammaln(r + xs) - special.gammaln(r) + r * np.log(alpha_g[d.xs_code])
    # per (T, row) and (t_x, row)
    lT = np.log(alpha_g[d.Ts_code] + d.Ts)
    ltx = np.log(alpha_g[d.txs_code] + d.txs)
    rx = r + x
    A2 = lb2[d.ix] - rx * lT[d.iT]
    A3 = lb3[d.ix] - rx * ltx[d.itx]
    both = np.logaddexp(A2, A3)
    ll = a1[d.ix] + both
    total = float((w * ll).sum())
    if not grad:
        return total, None
    w3 = np.exp(A3 - both)
    w2 = 1.0 - w3
    alpha = alpha_g[d.code]
    # per (x, row) pieces of the a and b derivatives
    psi_ab = special.digamma(a_x + b_x)
    psi_abx = special.digamma(a_x + b_x + xs + shift)
    da2, da3 = psi_ab - psi_abx, special.digamma(a_x + 1) - special.digamma(a_x) + psi_ab - psi_abx
    with np.errstate(invalid="ignore"):
        db3 = np.where(has3_x, special.digamma(np.maximum(b_x + xs - 1 + shift, 1e-300)), 0.0)
    db2 = special.digamma(b_x + xs + shift) - special.digamma(b_x) + psi_ab - psi_abx
    db3 = db3 - special.digamma(b_x) + psi_ab - psi_abx
    nx = len(xs)
    s2 = np.bincount(d.ix, weights=w * w2, minlength=nx)
    s3 = np.bincount(d.ix, weights=w * w3, minlength=nx)
    d_a_x = s2 * da2 + s3 * da3      # summed over the rows of each (x, row), times a below
    d_b_x = s2 * db2 + s3 * db3
    G = len(alpha_g)
    d_a_g = np.bincount(d.xs_code, weights=d_a_x, minlength=G) * a_g
    d_b_g = np.bincount(d.xs_code, weights=d_b_x, minlength=G) * b_g
    wx_sum = np.bincount(d.ix, weights=w, minlength=nx)
    d_r = float((wx_sum * (special.digamma(r + xs) - special.digamma(r) + np.log(alpha_g[d.xs_code]))).sum()
                - (w * (w2 * lT[d.iT] + w3 * ltx[d.itx])).sum())
    # d ll / d alpha per row, times alpha: r - (r+x) alpha (w2/(alpha+T) + w3/(alpha+tx))
    row_alpha = w * (r - rx * alpha * (w2 / np.exp(lT[d.iT]) + w3 / np.exp(ltx[d.itx])))
    d_alpha_g = np.bincount(d.code, weights=row_alpha, minlength=G)
    g = [d_r * r, float(d_alpha_g.sum()), float(d_a_g.sum()), float(d_b_g.sum())]
    g += list(-(d.Zp.T @ d_alpha_g))
    g += list(d.Zd.T @ d_a_g)
    g += list(d.Zd.T @ d_b_g)
    return total, np.array(g)


def _penalized(total_and_grad, n: float, penalizer: float, n_base: int):
    """Mean negative log-likelihood plus an L2 penalty on the coefficients (the parameters after
    the first ``n_base``), with its gradient; non-finite values become a wall for the optimiser."""
    def objective(theta):
        with np.errstate(all="ignore"):  # a wild step of the optimiser is a wall, not a warning
            total, g = total_and_grad(theta)
        coef = theta[n_base:]
        value = -total / n + penalizer * float((coef**2).sum())
        grad = -g / n
        grad[n_base:] += 2 * penalizer * coef
        if not np.isfinite(value) or not np.all(np.isfinite(grad)):
            return 1e300, np.zeros_like(theta)
        return value, grad

    return objective


def _covariance(objective, theta: np.ndarray, n: float) -> np.ndarray:
    """The inverse observed information: central differences of the analytic gradient (of the
    mean objective, times the customers), inverted; NaN where it is singular."""
    k = len(theta)
    hess = np.empty((k, k))
    for j in range(k):
        e = np.zeros(k)
        e[j] = 1e-5
        hess[j] = (objective(theta + e)[1] - objective(theta - e)[1]) / 2e-5 * n
    try:
        cov = np.linalg.inv((hess + hess.T) / 2)
    except np.linalg.LinAlgError:
        return np.full((k, k), np.nan)
    return cov if np.all(np.diag(cov) >= 0) else np.full((k, k), np.nan)


def _standard_errors(cov: np.ndarray, names: list[str]) -> pd.Series:
    return pd.Series(np.sqrt(np.clip(np.diag(cov), 0, None)), index=names, name="std_error")


def _multiplier_row(model: Any, key: str, name: str, process: str, verb: str, level: float) -> dict:
    """The coefficient ``key`` of ``model`` as a multiplier ``exp(gamma)`` with its interval, and in
    words: "customers with NAME " + ``verb`` (formatted with the multiplier ``m``)."""
    z = float(stats.norm.ppf(0.5 + level / 2))
    g, se = model.params_[key], model.standard_errors_[key]
    lo, hi = np.exp(g - z * se), np.exp(g + z * se)
    return {"covariate": name, "process": process, "estimate": np.exp(g), "lower": lo, "upper": hi,
            "words": f"customers with {name} {verb.format(m=np.exp(g))} ({level:.0%} interval {lo:.2f}-{hi:.2f})"}


#: the most parameters (base and coefficients) a model file may hold: a design of 20,000 dummy
#: columns is not a model file of this package, and reading one must cost nothing
MAX_FILE_PARAMS = 2_000


class _CovariateContract:
    """What every covariate model shares with the plain models: ``get_params``/``set_params``,
    ``summary`` (a property), ``covariance_log_``, ``repr``, ``save``/``load`` (versioned JSON,
    no pickle). Subclasses give ``_n_base`` (parameters before the coefficients) and
    ``_name_lists`` (the fitted lists of coefficient names they keep)."""

    _n_base: ClassVar[int] = 4
    _name_lists: ClassVar[tuple[str, ...]] = ()
    _long_name: Any = ""

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        names = [n for n in inspect.signature(type(self).__init__).parameters if n != "self"]
        return {n: getattr(self, n) for n in names}

    def set_params(self, **params: Any) -> Any:
        known = self.get_params()
        for k, v in params.items():
            if k not in known:
                raise ParameterError(f"Unknown parameter {k!r} for {type(self).__name__}; expected one of "
                                     + ", ".join(repr(p) for p in known))
            setattr(self, k, v)
        return self

    def _check(self) -> None:
        if not hasattr(self, "params_"):
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet; call fit(rfm, covariates) first.")

    @property
    def covariance_log_(self) -> np.ndarray:
        """Covariance of ``theta_`` (the base parameters' logs, then the coefficients, which are on
        the log scale already): the same quantity as the plain models' ``covariance_log_``."""
        self._check()
        return self.covariance_

    @property
    def summary(self) -> pd.DataFrame:
        """Estimates with standard errors (base parameters as estimated, coefficients on the log
        scale) and 95% intervals."""
        self._check()
        est, se = self.params_, self.standard_errors_
        base = np.arange(len(est)) < self._n_base
        log_est = np.where(base, np.log(np.where(base, est, 1.0)), est)
        lo, hi = log_est - Z95 * se, log_est + Z95 * se
        return pd.DataFrame({"estimate": est, "std_error": np.where(base, est * se, se),
                             "lower_95": np.where(base, np.exp(lo), lo), "upper_95": np.where(base, np.exp(hi), hi)},
                            index=pd.Index(est.index, name="parameter"))

    def __repr__(self) -> str:
        name = type(self).__name__
        if not hasattr(self, "params_"):
            return f"{name}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"
        return (f"<{name} ({self._long_name}) fitted on {self.n_customers_:,} customers: "
                + ", ".join(f"{k}={v:.4g}" for k, v in self.params_.items())
                + f"; log-likelihood {self.log_likelihood_:,.2f}>")

    def _repr_html_(self) -> str:
        if not hasattr(self, "params_"):
            return f"<p><b>{type(self).__name__}</b> (not fitted)</p>"
        table = self.summary.rename(columns={"estimate": "Estimate", "std_error": "Std. error",
                                             "lower_95": "Lower 95%", "upper_95": "Upper 95%"})
        table.index.name = None
        return (f"<p><b>{type(self).__name__}</b> &mdash; {html.escape(self._long_name)}; {self.n_customers_:,} "
                f"customers; log-likelihood {self.log_likelihood_:,.2f}. Coefficients are on the log scale "
                "(a coefficient g multiplies the rate by e<sup>g</sup>).</p>"
                + table.to_html(float_format=lambda v: f"{v:.4g}", na_rep="n/a"))

    # ---------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        self._check()
        return {
            "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "model": type(self).__name__,
            "init_params": self.get_params(),
            "params": [str(n) for n in self.params_.index], "theta": [float(v) for v in self.theta_],
            "covariance_log": np.asarray(self.covariance_, float).tolist(),
            "levels": self.levels_, "reference": self.reference_,
            "names": {k: list(getattr(self, k)) for k in self._name_lists},
            "time_unit": getattr(self, "time_unit_", None), "log_likelihood": float(self.log_likelihood_),
            "n_customers": int(self.n_customers_),
        }

    def save(self, path: str | Path) -> Path:
        """Write the model as versioned JSON (its coefficients, covariance and how covariates are
        coded), readable by :meth:`load` and :func:`clvmodels.models.load_model`."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Any:
        """Read a model written by :meth:`save`; anything else is a :class:`ModelFileError`."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelFileError(f"Model file '{path}' does not exist.") from None
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise ModelFileError(f"Model file '{path}' is not valid JSON ({type(exc).__name__}).") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise ModelFileError(f"'{path}' is not a clvmodels model file (no format '{FORMAT_NAME}').")
        if data.get("format_version") != FORMAT_VERSION:
            raise ModelFileError(f"Model file '{path}' has format_version {data.get('format_version')!r}; this "
                                 f"clvmodels reads version {FORMAT_VERSION}. Refit the model or upgrade clvmodels.")
        if data.get("model") != cls.__name__:
            raise ModelFileError(f"Model file '{path}' holds a {data.get('model')}, not a {cls.__name__}.")
        try:
            return cls._from_dict(data)
        except ModelFileError:
            raise
        except (ParameterError, KeyError, TypeError, ValueError, RecursionError) as exc:
            raise ModelFileError(f"Model file '{path}' is damaged or was not written by clvmodels: "
                                 f"{type(exc).__name__}: {exc}") from None

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> Any:
        def texts(value: Any, what: str) -> list[str]:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{what} must be a list of text")
            return value

        init = data.get("init_params") or {}
        if not isinstance(init, dict) or set(init) - set(cls().get_params()):
            raise ValueError(f"init_params must be a mapping of {sorted(cls().get_params())}")
        model = cls(**init)
        names = texts(data["params"], "params")
        theta = np.asarray(data["theta"], dtype=float)
        k = len(names)
        if not (model._n_base <= k <= MAX_FILE_PARAMS) or theta.shape != (k,) or not np.all(np.isfinite(theta)):
            raise ValueError(f"theta must be {k} finite numbers, one per parameter (at most {MAX_FILE_PARAMS})")
        if np.any(np.abs(theta) > 700):
            raise ValueError("theta holds values whose exponential overflows")
        cov = np.asarray(data["covariance_log"], dtype=float)
        if cov.shape != (k, k) or not np.all(np.isfinite(cov)):
            raise ValueError(f"covariance_log must be a finite {k}x{k} matrix")
        levels = data.get("levels") or {}
        reference = data.get("reference") or {}
        if not isinstance(levels, dict) or not all(isinstance(c, str) for c in levels):
            raise ValueError("levels must map covariates to their levels")
        levels = {c: texts(v, f"levels[{c!r}]") for c, v in levels.items()}
        if not isinstance(reference, dict) or not all(isinstance(c, str) and isinstance(v, str)
                                                       for c, v in reference.items()):
            raise ValueError("reference must map covariates to a level")
        unit = data.get("time_unit")
        if unit not in (None, "D", "W"):
            raise ValueError(f"time_unit must be 'D' or 'W', got {unit!r}")
        lists = data.get("names") or {}
        if not isinstance(lists, dict):
            raise ValueError("names must be a mapping")
        for key in cls._name_lists:
            setattr(model, key, texts(lists.get(key, []), key))
        model.theta_ = theta
        model.params_ = pd.Series(np.concatenate([np.exp(theta[:model._n_base]), theta[model._n_base:]]),
                                  index=names, name="estimate")
        model.covariance_ = cov
        model.standard_errors_ = _standard_errors(cov, names)
        model.levels_, model.reference_ = levels, reference
        model.time_unit_ = unit
        model.n_params_ = k
        ll = float(data["log_likelihood"])
        if not np.isfinite(ll):
            raise ValueError("log_likelihood must be finite")
        model.log_likelihood_ = ll
        model.n_customers_ = int(data["n_customers"])
        return model


class _PerCovariateRow(_CovariateContract):
    """Predictions of a covariate model through the plain model of each distinct covariate row
    (every prediction of the plain models then applies). Subclasses give ``_plain_cls()`` and
    ``_plain_params(Zp, Zd)`` (a frame of the plain model's parameters per design row)."""

    def _models_for(self, Zp: np.ndarray, Zd: np.ndarray) -> tuple[np.ndarray, list[Any]]:
        params = self._plain_params(Zp, Zd).round(14)
        codes, uniques = pd.factorize(pd.MultiIndex.from_frame(params))
        cls = self._plain_cls()
        models = [cls.from_params(dict(zip(params.columns, row, strict=True)), time_unit=self.time_unit_)
                  for row in uniques]
        return np.asarray(codes), models

    def submodels(self, covariates: pd.DataFrame) -> tuple[np.ndarray, list[Any]]:
        """Each customer's plain model: a code per customer and one plain model per code, with
        the parameters of that covariate row."""
        self._check()
        dp, dd, _ = self._designs(covariates)
        return self._models_for(dp.matrix, dd.matrix)

    def predict(self, method: str, rfm: pd.DataFrame, covariates: pd.DataFrame, *args: Any) -> pd.Series:
        """A plain model's prediction (``"probability_alive"``, ``"expected_purchases"``,
        ``"probability_alive_after"``, ...) per customer, each with their covariates' model."""
        codes, models = self.submodels(covariates.loc[rfm.index])
        parts = [getattr(m, method)(rfm[codes == i], *args) for i, m in enumerate(models)]
        return pd.concat(parts).reindex(rfm.index)

    def _forecast_groups(self, codes, models, spend_model, rfm, settings) -> pd.DataFrame:
        import clvmodels

        parts = [clvmodels.forecast(m, spend_model, rfm[codes == i], **settings) for i, m in enumerate(models)]
        return pd.concat(parts).reindex(rfm.index)

    def forecast(self, spend_model: Any, rfm: pd.DataFrame, covariates: pd.DataFrame, **settings: Any) -> pd.DataFrame:
        """:func:`clvmodels.forecast` per covariate group, joined back in the order of ``rfm``."""
        codes, models = self.submodels(covariates.loc[rfm.index])
        return self._forecast_groups(codes, models, spend_model, rfm, settings)

    def what_if(self, spend_model: Any, rfm: pd.DataFrame, covariates: pd.DataFrame, dropout_like: dict[str, Any],
                **settings: Any) -> pd.DataFrame:
        """CLV as forecast and if the dropout covariates were as ``dropout_like`` says (e.g.
        ``{"channel": "A"}``: channel B customers dropping out like channel A's), purchases
        unchanged."""
        self._check()
        cov = covariates.loc[rfm.index]
        changed = cov.copy()
        for k, v in dropout_like.items():
            if k not in self.dropout:
                raise ParameterError(f"{k!r} is not a dropout covariate of this model ({self.dropout}).")
            changed[k] = v
        dp, _, _ = self._designs(cov)
        _, dd2, _ = self._designs(changed)
        after = self._forecast_groups(*self._models_for(dp.matrix, dd2.matrix), spend_model, rfm, settings)
        before = self.forecast(spend_model, rfm, covariates, **settings)
        return pd.DataFrame({"clv": before["clv"], "clv_what_if": after["clv"],
                             "p_alive": before["p_alive"], "p_alive_what_if": after["p_alive"]}, index=rfm.index)

    def _designs(self, covariates: pd.DataFrame):
        levels = getattr(self, "levels_", None)
        dp, lp = design_matrix(covariates, self.purchase, self.reference, levels)
        dd, ld = design_matrix(covariates, self.dropout, self.reference, levels)
        return dp, dd, {**lp, **ld}


class CovariateBetaGeoModel(_PerCovariateRow):
    """BG/NBD or MBG/NBD with time-invariant covariates of the purchase and the dropout process.

    Parameters
    ----------
    purchase : list of str
        Covariates of the purchase rate (columns of the covariate table).
    dropout : list of str
        Covariates of dropout (they enter ``a`` and ``b``).
    modified : bool, default False
        MBG/NBD (dropout possible right after the first purchase too) instead of BG/NBD.
    penalizer_coef : float, default 0
        L2 penalty on the coefficients (not on r, alpha_0, a_0, b_0), added to the mean negative
        log-likelihood.
    reference : dict, optional
        Reference level per categorical covariate (default: its most frequent level).

    Attributes
    ----------
    params_ : pandas.Series
        ``r, alpha, a, b`` (the reference customers': every covariate 0 or at its reference level),
        then ``purchase: NAME``, ``dropout a: NAME``, ``dropout b: NAME`` coefficients.
    standard_errors_ : pandas.Series
        From the observed information (log scale for the four base parameters).
    covariance_ : ndarray
        Inverse observed information of ``theta_`` (log base parameters, then coefficients).
    log_likelihood_ : float
    """

    _name_lists = ("purchase_names_", "dropout_names_")

    def __init__(self, purchase: list[str] | None = None, dropout: list[str] | None = None, *, modified: bool = False,
                 penalizer_coef: float = 0.0, reference: dict[str, str] | None = None):
        self.purchase = list(purchase or [])
        self.dropout = list(dropout or [])
        self.modified = bool(modified)
        self.penalizer_coef = penalizer_coef
        self.reference = dict(reference or {})

    @property
    def _long_name(self) -> str:
        return ("MBG/NBD" if self.modified else "BG/NBD") + " with covariates"

    # ---------------------------------------------------------------- fitting
    def fit(self, rfm: pd.DataFrame, covariates: pd.DataFrame) -> CovariateBetaGeoModel:
        """Fit on an RFM table and a covariate table indexed like it (one row per customer)."""
        check_rfm(rfm)
        pen = check_number("penalizer_coef", self.penalizer_coef, minimum=0.0)
        if not covariates.index.equals(rfm.index):
            try:
                covariates = covariates.loc[rfm.index]
            except KeyError:
                raise DataValidationError("covariates must have a row for every customer of rfm (same index).") from None
        for name in self.purchase + self.dropout:
            if name not in covariates.columns:
                raise DataValidationError(f"Covariate {name!r} is not a column of covariates {list(covariates.columns)}.")
        self.levels_ = None
        dp, dd, levels = self._designs(covariates)
        # compressed: one row per distinct (history, covariate row)
        Z = np.hstack([dp.matrix, dd.matrix])
        zcode = pd.factorize(pd.MultiIndex.from_arrays(Z.T) if Z.shape[1] else np.zeros(len(rfm)))[0] \
            if Z.shape[1] else np.zeros(len(rfm), np.int64)
        x, tx, T = (rfm[c].to_numpy(float) for c in ("frequency", "recency", "T"))
        c = compress(x, tx, T, zcode.astype(np.int64))
        ux, utx, uT, ucode = c.columns
        first = pd.Series(np.arange(len(zcode))).groupby(zcode).first().to_numpy()
        w = c.weights
        data = _prepare(ux, utx, uT, w, ucode, dp.matrix[first], dd.matrix[first])
        n = float(w.sum())
        if float(w[ux > 0].sum()) == 0:
            raise DataValidationError("No customer made a repeat purchase: nothing to learn rates or dropout from.")
        kp, kd = data.Zp.shape[1], data.Zd.shape[1]
        shift = int(self.modified)

        objective = _penalized(lambda th: _loglik_prepared(th, data, shift, grad=True), n, pen, 4)

        mean_x, mean_T = float((w * ux).sum() / n), float((w * uT).sum() / n)
        # start at the plain model's estimates (no covariate effect)
        base = (ModifiedBetaGeoModel if self.modified else BetaGeoModel)().fit(
            pd.DataFrame({"frequency": ux, "recency": utx, "T": uT}), weights=w)
        starts = [np.concatenate([np.log(base.params_.to_numpy()), np.zeros(kp + 2 * kd)]),
                  np.concatenate([np.log([1.0, max(mean_T / max(mean_x, 1e-3), 1e-3), 1.0, 1.0]), np.zeros(kp + 2 * kd)])]
        best = None
        for s0 in starts:
            res = optimize.minimize(objective, s0, jac=True, method="BFGS", options={"gtol": 1e-9, "maxiter": 5000})
            if best is None or res.fun < best.fun:
                best = res
            if np.linalg.norm(res.jac) < 1e-5:
                break
        if best is None or not np.isfinite(best.fun) or np.linalg.norm(best.jac) > 1e-3:
            raise ConvergenceError(f"{self._long_name} did not converge (gradient norm "
                                   f"{np.linalg.norm(best.jac):.2g}); add a small penalizer_coef, use fewer covariates, "
                                   "or rescale numeric ones (e.g. thousands instead of units).")
        theta = best.x
        names = (["r", "alpha", "a", "b"] + [f"purchase: {v}" for v in dp.names]
                 + [f"dropout a: {v}" for v in dd.names] + [f"dropout b: {v}" for v in dd.names])
        self.theta_ = theta
        self.params_ = pd.Series(np.concatenate([np.exp(theta[:4]), theta[4:]]), index=names, name="estimate")
        self.log_likelihood_ = _loglik_prepared(theta, data, shift, grad=False)[0]
        self.n_customers_ = int(round(n))
        self.n_params_ = len(theta)
        self.levels_ = levels
        self.reference_ = {**dp.reference, **dd.reference}
        self.purchase_names_, self.dropout_names_ = dp.names, dd.names
        self.time_unit_ = rfm.attrs.get("time_unit")
        self.covariance_ = _covariance(objective, theta, n)
        self.standard_errors_ = _standard_errors(self.covariance_, names)
        return self

    # ---------------------------------------------------------------- reading
    def effects(self, level: float = 0.95) -> pd.DataFrame:
        """Each covariate's effect in words and numbers: the purchase-rate multiplier
        ``exp(gamma_p)`` with its interval, and the dropout probability per purchase
        ``a/(a+b)`` for a customer with the covariate against the reference customer."""
        self._check()
        r, alpha, a, b = self.params_.iloc[:4]
        rows = [_multiplier_row(self, f"purchase: {name}", name, "purchase rate", "buy {m:.2f}x as often", level)
                for name in self.purchase_names_]
        base = a / (a + b)
        for name in self.dropout_names_:
            ga, gb = self.params_[f"dropout a: {name}"], self.params_[f"dropout b: {name}"]
            aa, bb = a * np.exp(ga), b * np.exp(gb)
            p = aa / (aa + bb)
            rows.append({"covariate": name, "process": "dropout", "estimate": p / base, "lower": np.nan,
                         "upper": np.nan, "words": f"customers with {name} leave after a purchase with probability "
                                                   f"{p:.3f} against {base:.3f} for the reference ({p / base:.2f}x)"})
        out = pd.DataFrame(rows)
        out.attrs["reference"] = dict(self.reference_)
        return out

    def _plain_cls(self):
        return ModifiedBetaGeoModel if self.modified else BetaGeoModel

    def _plain_params(self, Zp: np.ndarray, Zd: np.ndarray) -> pd.DataFrame:
        r, alpha, a, b = _rows(self.theta_, len(self.purchase_names_), len(self.dropout_names_), Zp, Zd)
        return pd.DataFrame({"r": r, "alpha": alpha, "a": a, "b": b})


class CovariateParetoNBDModel(_PerCovariateRow):
    """Pareto/NBD with time-invariant covariates (Fader & Hardie's covariates note): the purchase
    rate's scale ``alpha_i = alpha_0 exp(-gamma_p' z_i)`` and the dropout rate's ``beta_i =
    beta_0 exp(-gamma_d' z_i)``, so the mean purchase rate ``r/alpha_i`` and the mean dropout rate
    ``s/beta_i`` are ``exp(gamma' z_i)`` times the reference customers'.

    Parameters
    ----------
    purchase, dropout : list of str
        Covariates of the purchase and of the dropout process.
    same_effect : bool, default False
        Constrain each covariate to the same coefficient in both processes (``gamma_p = gamma_d``;
        ``purchase`` and ``dropout`` must then name the same covariates).
    penalizer_coef, reference
        As for :class:`CovariateBetaGeoModel`.

    Notes
    -----
    Given its covariates a customer is a Pareto/NBD customer, so the likelihood of each distinct
    covariate row's customers is the plain model's (its dropout integral included), fitted on
    compressed histories; the gradient comes from the plain model's analytic one by the chain rule
    through ``alpha_i`` and ``beta_i``.
    """

    _name_lists = ("purchase_names_", "dropout_names_")

    def __init__(self, purchase: list[str] | None = None, dropout: list[str] | None = None, *,
                 same_effect: bool = False, penalizer_coef: float = 0.0, reference: dict[str, str] | None = None):
        self.purchase = list(purchase or [])
        self.dropout = list(dropout or [])
        self.same_effect = bool(same_effect)
        self.penalizer_coef = penalizer_coef
        self.reference = dict(reference or {})
        if self.same_effect and self.purchase != self.dropout:
            raise ParameterError("same_effect needs the same covariates for purchase and dropout, got "
                                 f"{self.purchase} and {self.dropout}.")

    _long_name = "Pareto/NBD with covariates"

    def _plain_cls(self):
        return ParetoNBDModel

    def _split(self, theta):
        kp = len(self.purchase_names_)
        gp = theta[4:4 + kp]
        gd = gp if self.same_effect else theta[4 + kp:]
        return np.exp(theta[:4]), gp, gd

    def _plain_params(self, Zp: np.ndarray, Zd: np.ndarray) -> pd.DataFrame:
        (r, alpha0, s, beta0), gp, gd = self._split(self.theta_)
        return pd.DataFrame({"r": r, "alpha": alpha0 * np.exp(-(Zp @ gp)), "s": s, "beta": beta0 * np.exp(-(Zd @ gd))})

    def _total_and_grad(self, theta, groups, Zp_g, Zd_g):
        """Log-likelihood over the covariate rows' compressed histories and its gradient: each
        row's Pareto/NBD terms with its alpha_i, beta_i, chained to alpha_0, beta_0 and gamma."""
        (r, alpha0, s, beta0), gp, gd = self._split(theta)
        alpha = alpha0 * np.exp(-(Zp_g @ gp))
        beta = beta0 * np.exp(-(Zd_g @ gd))
        total, g_r, g_s = 0.0, 0.0, 0.0
        d_alpha, d_beta = np.zeros(len(groups)), np.zeros(len(groups))
        for i, d in enumerate(groups):
            ll, g = pareto_terms((r, float(alpha[i]), s, float(beta[i])), d, grad=True)
            total += float((d.w * ll).sum())
            g_r += g[0]
            g_s += g[2]
            d_alpha[i], d_beta[i] = g[1] * alpha[i], g[3] * beta[i]  # d/d log alpha_i, d/d log beta_i
        grad = [g_r * r, d_alpha.sum(), g_s * s, d_beta.sum()]
        if self.same_effect:
            grad += list(-(Zp_g.T @ d_alpha) - (Zd_g.T @ d_beta))
        else:
            grad += list(-(Zp_g.T @ d_alpha)) + list(-(Zd_g.T @ d_beta))
        return total, np.array(grad)

    def fit(self, rfm: pd.DataFrame, covariates: pd.DataFrame) -> CovariateParetoNBDModel:
        check_rfm(rfm)
        pen = check_number("penalizer_coef", self.penalizer_coef, minimum=0.0)
        covariates = covariates.loc[rfm.index]
        for name in self.purchase + self.dropout:
            if name not in covariates.columns:
                raise DataValidationError(f"Covariate {name!r} is not a column of covariates {list(covariates.columns)}.")
        self.levels_ = None
        dp, dd, levels = self._designs(covariates)
        self.purchase_names_, self.dropout_names_ = dp.names, dd.names
        Z = np.hstack([dp.matrix, dd.matrix])
        code = pd.factorize(pd.MultiIndex.from_arrays(Z.T))[0] if Z.shape[1] else np.zeros(len(rfm), np.int64)
        first = pd.Series(np.arange(len(code))).groupby(code).first().to_numpy()
        Zp_g, Zd_g = dp.matrix[first], dd.matrix[first]
        x, tx, T = (rfm[c].to_numpy(float) for c in ("frequency", "recency", "T"))
        groups = [prepare_pareto(x[code == g], tx[code == g], T[code == g]) for g in range(len(first))]
        n = float(len(rfm))
        kp = Zp_g.shape[1]

        def total_and_grad(theta):
            return self._total_and_grad(theta, groups, Zp_g, Zd_g)

        objective = _penalized(total_and_grad, n, pen, 4)

        base = ParetoNBDModel().fit(rfm)
        k_coef = kp if self.same_effect else kp + Zd_g.shape[1]
        start = np.concatenate([np.log(base.params_.to_numpy()), np.zeros(k_coef)])
        res = optimize.minimize(objective, start, jac=True, method="BFGS", options={"gtol": 1e-9, "maxiter": 5000})
        for _ in range(3):  # BFGS can stop on a loss of precision short of the optimum: restart from there
            if not np.isfinite(res.fun) or np.linalg.norm(res.jac) <= 1e-5:
                break
            again = optimize.minimize(objective, res.x, jac=True, method="L-BFGS-B",
                                      options={"gtol": 1e-10, "ftol": 1e-15, "maxiter": 5000})
            if not again.fun <= res.fun:
                break
            res = again
        if not np.isfinite(res.fun) or np.linalg.norm(res.jac) > 1e-3:
            raise ConvergenceError(f"{self._long_name} did not converge (gradient norm {np.linalg.norm(res.jac):.2g}); "
                                   "add a small penalizer_coef, use fewer covariates, "
                                   "or rescale numeric ones (e.g. thousands instead of units).")
        theta = res.x
        names = ["r", "alpha", "s", "beta"] + [f"purchase: {v}" for v in dp.names]
        names += ([] if self.same_effect else [f"dropout: {v}" for v in dd.names])
        self.theta_ = theta
        self.params_ = pd.Series(np.concatenate([np.exp(theta[:4]), theta[4:]]), index=names, name="estimate")
        self.log_likelihood_ = total_and_grad(theta)[0]
        self.n_customers_ = int(n)
        self.n_params_ = len(theta)
        self.levels_ = levels
        self.reference_ = {**dp.reference, **dd.reference}
        self.time_unit_ = rfm.attrs.get("time_unit")
        self.covariance_ = _covariance(objective, theta, n)
        self.standard_errors_ = _standard_errors(self.covariance_, names)
        return self

    def effects(self, level: float = 0.95) -> pd.DataFrame:
        """Multipliers of the mean purchase rate and of the mean dropout rate, with intervals."""
        self._check()
        rows = []
        for process, prefix, verb in (("purchase rate", "purchase", "buy {m:.2f}x as often"),
                                      ("dropout rate", "dropout" if not self.same_effect else "purchase",
                                       "leave at {m:.2f}x the rate")):
            names = self.purchase_names_ if prefix == "purchase" else self.dropout_names_
            rows += [_multiplier_row(self, f"{prefix}: {name}", name, process, verb, level) for name in names]
        out = pd.DataFrame(rows)
        out.attrs["reference"] = dict(self.reference_)
        return out


def likelihood_ratio_test(restricted: Any, full: Any) -> dict[str, float]:
    """Likelihood-ratio test of a model against a larger one it is nested in (e.g. without and
    with a covariate): ``2 (LL_full - LL_restricted)`` against chi-squared with the difference in
    parameters as degrees of freedom."""
    def n_params(m):
        return getattr(m, "n_params_", None) or len(m.params_)

    df = n_params(full) - n_params(restricted)
    if df <= 0:
        raise ParameterError("The full model must have more parameters than the restricted one.")
    stat = 2.0 * (float(full.log_likelihood_) - float(restricted.log_likelihood_))
    return {"statistic": stat, "df": float(df), "p_value": float(stats.chi2.sf(max(stat, 0.0), df))}


def _gg_loglik(theta, x, m, w, Z, grad: bool):
    """Gamma-Gamma with ``v_i = v_0 exp(gamma' z_i)``: weighted log-likelihood of repeat buyers'
    mean spends and its gradient in (log p, log q, log v_0, gamma)."""
    p, q, v0 = np.exp(theta[:3])
    v = v0 * np.exp(Z @ theta[3:])
    px = p * x
    ll = (special.gammaln(px + q) - special.gammaln(px) - special.gammaln(q) + q * np.log(v)
          + (px - 1) * np.log(m) + px * np.log(x) - (px + q) * np.log(x * m + v))
    total = float((w * ll).sum())
    if not grad:
        return total, None
    lxm = np.log(x * m + v)
    d_p = x * (special.digamma(px + q) - special.digamma(px) + np.log(m) + np.log(x) - lxm)
    d_q = special.digamma(px + q) - special.digamma(q) + np.log(v) - lxm
    d_v = q / v - (px + q) / (x * m + v)
    g = [float((w * d_p).sum()) * p, float((w * d_q).sum()) * q, float((w * d_v * v).sum())]
    g += list(Z.T @ (w * d_v * v))
    return total, np.array(g)


class CovariateGammaGammaModel(_CovariateContract):
    """Gamma-Gamma spend with time-invariant covariates on the spend scale: ``v_i = v_0
    exp(gamma' z_i)``, so a customer's expected spend per purchase ``p v_i / (q - 1)`` is
    ``exp(gamma' z_i)`` times the reference customers' (and their own history updates it as in
    Gamma-Gamma: ``p (v_i + x zbar) / (p x + q - 1)``). Fitted like :class:`CovariateBetaGeoModel`
    on repeat buyers with positive mean spend, compressed to distinct (x, zbar, covariate row).

    Parameters
    ----------
    spend : list of str
        Covariates of the spend scale.
    penalizer_coef : float, default 0
        L2 penalty on the coefficients.
    reference : dict, optional
        Reference level per categorical covariate (default: the most frequent).
    """

    _n_base = 3
    _name_lists = ("spend_names_",)
    _long_name = "Gamma-Gamma with covariates"

    def __init__(self, spend: list[str] | None = None, *, penalizer_coef: float = 0.0,
                 reference: dict[str, str] | None = None):
        self.spend = list(spend or [])
        self.penalizer_coef = penalizer_coef
        self.reference = dict(reference or {})

    def _design(self, covariates: pd.DataFrame) -> Design:
        return design_matrix(covariates, self.spend, self.reference, getattr(self, "levels_", None))

    def fit(self, rfm: pd.DataFrame, covariates: pd.DataFrame) -> CovariateGammaGammaModel:
        check_rfm(rfm)
        pen = check_number("penalizer_coef", self.penalizer_coef, minimum=0.0)
        for name in self.spend:
            if name not in covariates.columns:
                raise DataValidationError(f"Covariate {name!r} is not a column of covariates {list(covariates.columns)}.")
        self.levels_ = None
        design, levels = self._design(covariates.loc[rfm.index])
        x = rfm["frequency"].to_numpy(float)
        mv = rfm["monetary_value"].to_numpy(float)
        keep = (x > 0) & (mv > 0)
        if keep.sum() < 10:
            raise DataValidationError(f"Only {int(keep.sum())} repeat buyers with positive spend: too few to fit spend.")
        Zall = design.matrix[keep]
        k = Zall.shape[1]
        zcode = pd.factorize(pd.MultiIndex.from_arrays(Zall.T))[0] if k else np.zeros(int(keep.sum()), np.int64)
        c = compress(x[keep], mv[keep], zcode.astype(np.int64))
        ux, um, ucode = c.columns
        first = pd.Series(np.arange(len(zcode))).groupby(zcode).first().to_numpy()
        Z = Zall[first][ucode.astype(np.int64)]
        w = c.weights
        n = float(w.sum())

        objective = _penalized(lambda th: _gg_loglik(th, ux, um, w, Z, grad=True), n, pen, 3)

        base = GammaGammaModel().fit(pd.DataFrame({"frequency": ux, "recency": 0.0, "T": 1.0, "monetary_value": um}),
                                     weights=w)
        start = np.concatenate([np.log(base.params_.to_numpy()), np.zeros(k)])
        res = optimize.minimize(objective, start, jac=True, method="BFGS", options={"gtol": 1e-9, "maxiter": 5000})
        if not np.isfinite(res.fun) or np.linalg.norm(res.jac) > 1e-3:
            raise ConvergenceError(f"Gamma-Gamma with covariates did not converge (gradient norm "
                                   f"{np.linalg.norm(res.jac):.2g}); add a small penalizer_coef.")
        theta = res.x
        if np.exp(theta[1]) <= 1:
            raise ModelError("Gamma-Gamma q <= 1: the mean spend is undefined (spend too heavy-tailed).")
        names = ["p", "q", "v"] + [f"spend: {v}" for v in design.names]
        self.theta_ = theta
        self.params_ = pd.Series(np.concatenate([np.exp(theta[:3]), theta[3:]]), index=names, name="estimate")
        self.log_likelihood_ = _gg_loglik(theta, ux, um, w, Z, grad=False)[0]
        self.n_customers_ = int(round(n))
        self.n_params_ = len(theta)
        self.levels_ = levels
        self.reference_ = design.reference
        self.spend_names_ = design.names
        self.covariance_ = _covariance(objective, theta, n)
        self.standard_errors_ = _standard_errors(self.covariance_, names)
        return self

    def effects(self, level: float = 0.95) -> pd.DataFrame:
        """Each covariate's spend multiplier ``exp(gamma)`` with its interval, in words."""
        return pd.DataFrame([_multiplier_row(self, f"spend: {name}", name, "spend per purchase",
                                             "spend {m:.2f}x as much per purchase", level)
                             for name in self.spend_names_])

    def expected_spend(self, rfm: pd.DataFrame, covariates: pd.DataFrame) -> pd.Series:
        """Conditional expected spend per purchase ``p (v_i + x zbar) / (p x + q - 1)`` (the
        population mean of the customer's covariate group without a repeat purchase)."""
        self._check()
        design = self._design(covariates.loc[rfm.index])[0]
        p, q, v0 = np.exp(self.theta_[:3])
        v = v0 * np.exp(design.matrix @ self.theta_[3:])
        out = conditional_spend(p, q, v, rfm["frequency"].to_numpy(float), rfm["monetary_value"].to_numpy(float))
        return pd.Series(out, index=rfm.index, name="expected_spend")
