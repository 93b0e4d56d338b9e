"""What the covariate models share (issue 17; issue 26, item 2): covariates as numbers
(:func:`design_matrix`), the penalised objective and its observed information, and the contract
every model of the package keeps - ``fit(data, weights=None)`` returning self with the covariates
read from ``data``'s own columns (or from a separate table), ``summary``, ``covariance_log_``,
``repr``, ``save``/``load``, and the common predictions (``probability_alive``,
``expected_purchases``, ``probability_purchases``, the residual lifetime), each customer through
the plain model of their covariate row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy import stats

from clvmodels._validation import check_number
from clvmodels.exceptions import DataValidationError, NotFittedError, ParameterError
from clvmodels.models._base import BaseModel

__all__ = ["Design", "design_matrix", "likelihood_ratio_test", "MAX_LEVELS"]


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



def penalized_mean(total_and_grad, n: float, penalizer: float, n_base: int):
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


def observed_covariance(objective, theta: np.ndarray, n: float) -> np.ndarray:
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


def multiplier_row(model: Any, key: str, name: str, process: str, verb: str, level: float) -> dict:
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


class CovariateContract(BaseModel):
    """The common base with covariates: ``params_`` holds the reference customer's parameters
    (``_param_names``: every covariate 0 or at its reference level), then the coefficients (on
    the log scale: a coefficient ``g`` multiplies its rate or scale by ``e^g``); ``theta_`` the
    same numbers as estimated (the parameters' logs, then the coefficients) and
    ``covariance_log_`` their covariance. Settings, summary, standard errors, display and the
    model file are the base's; this class adds reading covariates from the data, the coding of
    categories a file keeps (``levels_``, ``reference_``) and the fitted lists of coefficient
    names the subclasses name in ``_name_lists``."""

    _name_lists: ClassVar[tuple[str, ...]] = ()
    _FITTED = (*BaseModel._FITTED, "theta_", "levels_", "reference_")

    @classmethod
    def from_params(cls, params: Any, **kwargs: Any) -> Any:
        raise ParameterError(f"{cls.__name__} is built by fit(data) or read by load(path): its coefficients "
                             "mean nothing without the coding of the covariates the fit learnt.")

    def _check_fitted(self) -> None:
        if not self._is_fitted():
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet; call fit(data) first.")

    def _start_fit(self) -> float:
        """Forget an earlier fit (a failed refit never leaves usable-looking numbers behind) and
        check the penalty; returns it."""
        self._forget()
        for name in self._name_lists:
            self.__dict__.pop(name, None)
        return check_number("penalizer_coef", self.penalizer_coef, minimum=0.0)

    def _keep_fit(self, theta: np.ndarray, names: list[str], objective: Any, n: float, log_likelihood: float,
                  levels: dict[str, list[str]], reference: dict[str, str], time_unit: Any) -> None:
        """Keep a fit's numbers: ``theta`` (log parameters, then coefficients) as ``params_``, the
        inverse observed information as ``covariance_log_``, and how the covariates were coded."""
        k0 = len(self._param_names)
        self.theta_ = np.asarray(theta, float)
        self.params_ = pd.Series(np.concatenate([np.exp(theta[:k0]), theta[k0:]]), index=names, name="estimate")
        self.log_likelihood_ = float(log_likelihood)
        self.n_customers_ = int(round(n))
        self.levels_, self.reference_ = levels, reference
        self.time_unit_ = time_unit
        self.covariance_log_ = observed_covariance(objective, theta, n)
        self.converged_ = True
        self.fit_info_ = {"method": "BFGS (analytic gradient) from the plain model's fit"}

    @property
    def n_params_(self) -> int:
        """:attr:`n_estimated` by its former name: the base parameters and the coefficients."""
        self._check_fitted()
        return self.n_estimated

    @property
    def covariance_(self) -> np.ndarray:
        """``covariance_log_`` by its former name."""
        self._check_fitted()
        return self.covariance_log_

    def _covariate_columns(self) -> list[str]:
        return list(dict.fromkeys(self.purchase + self.dropout))

    def _table(self, data: pd.DataFrame, covariates: pd.DataFrame | None) -> pd.DataFrame:
        """The covariates of ``data``'s customers: ``data``'s own columns the model names, or
        ``covariates`` (a table with a row for each customer of ``data``, by index)."""
        if not isinstance(data, pd.DataFrame):
            raise DataValidationError(f"data must be a pandas DataFrame, got {type(data).__name__}.")
        names = self._covariate_columns()
        if covariates is None:
            missing = [c for c in names if c not in data.columns]
            if missing:
                raise DataValidationError(
                    f"{type(self).__name__} reads its covariates {names} from the data's columns; "
                    f"{missing} {'is' if len(missing) == 1 else 'are'} not among them ({list(data.columns)}). "
                    "Join them to the RFM table (rfm.join(customers)) or pass covariates=customers.")
            return data[names]
        if not isinstance(covariates, pd.DataFrame):
            raise DataValidationError(f"covariates must be a pandas DataFrame, got {type(covariates).__name__}.")
        for name in names:
            if name not in covariates.columns:
                raise DataValidationError(f"Covariate {name!r} is not a column of covariates {list(covariates.columns)}.")
        if covariates.index.equals(data.index):
            return covariates
        if not covariates.index.is_unique:
            dup = covariates.index[covariates.index.duplicated()]
            raise DataValidationError(f"covariates has {len(dup):,} repeated customer id(s), e.g. {list(dup[:3])}; "
                                      "it needs one row per customer.")
        missing_ids = data.index.difference(covariates.index)
        if len(missing_ids):
            raise DataValidationError(
                f"covariates must have a row for every customer of the data (same index); {len(missing_ids):,} "
                f"have none, e.g. {list(missing_ids[:3])}.")
        return covariates.loc[data.index]

    @staticmethod
    def _weights(weights: Any, n: int) -> np.ndarray:
        """``weights`` checked (one finite non-negative number per row), or ones."""
        w = BaseModel._fit_weights(weights, n)
        return np.ones(n) if w is None else w

    def _html_note(self) -> str:
        return ("<p>Coefficients are on the log scale (a coefficient g multiplies the rate by "
                "e<sup>g</sup>).</p>")

    # ---------------------------------------------------------------- persistence
    def _state(self) -> dict[str, Any]:
        return {"params": [str(n) for n in self.params_.index], "theta": [float(v) for v in self.theta_],
                "covariance_log": np.asarray(self.covariance_log_, float).tolist(),
                "levels": self.levels_, "reference": self.reference_,
                "names": {k: list(getattr(self, k)) for k in self._name_lists}}

    @classmethod
    def _from_state(cls, data: dict[str, Any], init: dict[str, Any]) -> Any:
        def texts(value: Any, what: str) -> list[str]:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{what} must be a list of text")
            return value

        model = cls(**init)
        names = texts(data["params"], "params")
        theta = np.asarray(data["theta"], dtype=float)
        k, k0 = len(names), len(cls._param_names)
        if not (k0 <= k <= MAX_FILE_PARAMS) or theta.shape != (k,) or not np.all(np.isfinite(theta)):
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
        lists = data.get("names") or {}
        if not isinstance(lists, dict):
            raise ValueError("names must be a mapping")
        for key in cls._name_lists:
            setattr(model, key, texts(lists.get(key, []), key))
        if data.get("log_likelihood") is None:
            raise ValueError("log_likelihood must be a finite number")
        model.theta_ = theta
        model.params_ = pd.Series(np.concatenate([np.exp(theta[:k0]), theta[k0:]]), index=names, name="estimate")
        model.covariance_log_ = cov
        model.levels_, model.reference_ = levels, reference
        model.time_unit_ = data.get("time_unit")
        return model


class PerCovariateRow(CovariateContract):
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
        self._check_fitted()
        dp, dd, _ = self._designs(covariates)
        return self._models_for(dp.matrix, dd.matrix)

    def customer_models(self, data: pd.DataFrame, covariates: pd.DataFrame | None = None,
                        dropout_like: dict[str, Any] | None = None) -> tuple[np.ndarray, list[Any]]:
        """:meth:`submodels` for the customers of ``data``, their covariates read from ``data``'s
        columns (or from ``covariates``, indexed like it). ``dropout_like`` (e.g.
        ``{"channel": "A"}``) sets dropout covariates for everyone, purchases unchanged: the
        what-if of channel B customers dropping out like channel A's."""
        self._check_fitted()
        table = self._table(data, covariates)
        dp, dd, _ = self._designs(table)
        if dropout_like:
            changed = table.copy()
            for k, v in dropout_like.items():
                if k not in self.dropout:
                    raise ParameterError(f"{k!r} is not a dropout covariate of this model ({self.dropout}).")
                changed[k] = v
            dd = self._designs(changed)[1]
        return self._models_for(dp.matrix, dd.matrix)

    def predict(self, method: str, rfm: pd.DataFrame, covariates: pd.DataFrame | None, *args: Any) -> pd.Series:
        """A plain model's prediction (``"probability_alive"``, ``"expected_purchases"``,
        ``"probability_alive_after"``, ...) per customer, each with their covariates' model
        (``covariates`` None: read from ``rfm``'s columns)."""
        codes, models = self.customer_models(rfm, covariates)
        parts = [getattr(m, method)(rfm[codes == i], *args) for i, m in enumerate(models)]
        return pd.concat(parts).reindex(rfm.index)

    # the common predictions of every purchase model, covariates read from the data's columns
    def probability_alive(self, data: pd.DataFrame, covariates: pd.DataFrame | None = None) -> pd.Series:
        """P(alive) per customer, with their covariate row's parameters."""
        return self.predict("probability_alive", data, covariates)

    def expected_purchases(self, data: pd.DataFrame, t: Any, covariates: pd.DataFrame | None = None) -> pd.Series:
        """Expected purchases per customer in the next ``t``."""
        return self.predict("expected_purchases", data, covariates, t)

    def probability_alive_after(self, data: pd.DataFrame, t: Any,
                                covariates: pd.DataFrame | None = None) -> pd.Series:
        """P(still active ``t`` from now) per customer."""
        return self.predict("probability_alive_after", data, covariates, t)

    def expected_discounted_residual_purchases(self, data: pd.DataFrame, discount_rate: float,
                                               covariates: pd.DataFrame | None = None) -> pd.Series:
        """DERT per customer (the residual lifetime's discounted purchases)."""
        return self.predict("expected_discounted_residual_purchases", data, covariates, discount_rate)

    def base_model(self) -> Any:
        """The plain model of the reference customer (every categorical covariate at its
        reference level, every numeric one 0): the base parameters."""
        self._check_fitted()
        kp = len(getattr(self, "purchase_names_", []))
        kd = len(getattr(self, "dropout_names_", []))
        return self._models_for(np.zeros((1, kp)), np.zeros((1, kd)))[1][0]

    def plain_model(self) -> Any:
        """:meth:`base_model` by the name every configured model uses for its family's plain
        model (a seasonal model's: the customers on its operational clock)."""
        return self.base_model()

    def probability_purchases(self, n: Any, t: float) -> Any:
        """P(X(t) = n) for a new reference customer (:meth:`base_model`)."""
        return self.base_model().probability_purchases(n, t)

    def expected_purchases_new_customer(self, t: Any) -> Any:
        """E[X(t)] for a new reference customer (:meth:`base_model`)."""
        return self.base_model().expected_purchases_new_customer(t)

    def _designs(self, covariates: pd.DataFrame):
        levels = getattr(self, "levels_", None)
        dp, lp = design_matrix(covariates, self.purchase, self.reference, levels)
        dd, ld = design_matrix(covariates, self.dropout, self.reference, levels)
        return dp, dd, {**lp, **ld}


def likelihood_ratio_test(restricted: Any, full: Any) -> dict[str, float]:
    """Likelihood-ratio test of a model against a larger one it is nested in (e.g. without and
    with a covariate): ``2 (LL_full - LL_restricted)`` against chi-squared with the difference in
    parameters as degrees of freedom."""
    df = full.n_estimated - restricted.n_estimated
    if df <= 0:
        raise ParameterError("The full model must have more parameters than the restricted one.")
    stat = 2.0 * (float(full.log_likelihood_) - float(restricted.log_likelihood_))
    return {"statistic": stat, "df": float(df), "p_value": float(stats.chi2.sf(max(stat, 0.0), df))}


