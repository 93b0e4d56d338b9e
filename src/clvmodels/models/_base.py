"""What every model shares: its settings and parameters, the fitted state and its checks,
standard errors and summaries, persistence and display; the fitting itself (maximum likelihood
on log-parameters with an analytic gradient, fallbacks, limits) is :mod:`._fitting`'s.

Each model file holds only its own math: the negative log-likelihood and its gradient as a pure
function of the parameters and the compressed data, and its predictions.
"""

from __future__ import annotations

import functools
import html
import inspect
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from clvmodels._validation import TIME_UNITS, UNIT_NAMES, check_number
from clvmodels._version import __version__
from clvmodels.exceptions import (
    DataValidationError,
    ModelFileError,
    NotFittedError,
    ParameterError,
)
from clvmodels.models._fitting import MaximumLikelihood

FORMAT_NAME = "clvmodels.model"
FORMAT_VERSION = 1
Z95 = 1.959963984540054


class BaseModel(MaximumLikelihood):
    """Common base of clvmodels' models (scikit-learn estimator contract)."""

    _param_names: ClassVar[tuple[str, ...]] = ()
    _long_name: ClassVar[str] = ""
    _reference: ClassVar[str] = ""
    #: pairs (shape, scale) of a gamma or beta mixing distribution whose joint run to infinity
    #: is a legitimate limiting model (no heterogeneity); see :meth:`_describe_limit`
    _limit_pairs: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: shape parameters whose run to zero is a legitimate limit (the mixing distribution piles
    #: up at zero: e.g. nobody drops out)
    _vanishing: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, penalizer_coef: float = 0.0, tol: float = 1e-9, max_iter: int = 2000):
        self.penalizer_coef = penalizer_coef
        self.tol = tol
        self.max_iter = max_iter

    # ---------------------------------------------------------------- configurations
    #: what each form of a family adds to it: ``"covariates"`` (time-invariant covariates of the
    #: customers) or ``"calendar"`` (a calendar clock: season, trend, events)
    TERMS: ClassVar[tuple[str, ...]] = ("covariates", "calendar")
    #: the family a configured class is a form of (its first in ``configures``); None: a family
    _family: ClassVar[type | None] = None

    def __init_subclass__(cls, *, configures: Mapping[type, Mapping[str, Any]] | None = None,
                          terms: str | None = None, **kwargs: Any) -> None:
        """A class that is a family with terms declares it: ``class CovariateBetaGeoModel(...,
        terms="covariates", configures={BetaGeoModel: {}, ModifiedBetaGeoModel: {"modified": True}})``
        makes ``BetaGeoModel.with_covariates(...)`` build it (with the settings each family fixes)."""
        super().__init_subclass__(**kwargs)
        if configures is None:
            return
        if terms not in BaseModel.TERMS:
            raise TypeError(f"{cls.__name__}: terms must be one of {BaseModel.TERMS}, got {terms!r}")
        cls._family = next(iter(configures))
        for family, fixed in configures.items():
            own = family.__dict__.get("_configured")
            if own is None:
                own = {}
                family._configured = own
            own[terms] = (cls, dict(fixed))

    @classmethod
    def _configuration(cls, terms: str) -> tuple[type, dict[str, Any]]:
        found = cls.__dict__.get("_configured", {}).get(terms)
        if found is None:
            have = sorted(c.__name__ for c in _families(BaseModel) if terms in c.__dict__.get("_configured", {}))
            raise ParameterError(f"{cls.__name__} has no form with {terms}; these families have one: "
                                 f"{', '.join(have)}.")
        return found

    @classmethod
    def with_covariates(cls, *args: Any, **settings: Any) -> BaseModel:
        """This family with time-invariant covariates of the customers (a configuration of it):
        ``BetaGeoModel.with_covariates(purchase=["channel"], dropout=["channel"])`` is
        :class:`~clvmodels.CovariateBetaGeoModel` with those settings, ``ModifiedBetaGeoModel``'s
        the same with ``modified=True``; ``GammaGammaModel.with_covariates(spend=[...])``."""
        target, fixed = cls._configuration("covariates")
        return target(*args, **fixed, **settings)

    @classmethod
    def with_calendar(cls, *args: Any, **settings: Any) -> BaseModel:
        """This family on a calendar clock (a configuration of it): ``BetaGeoModel.with_calendar(
        harmonics=2)`` is :class:`~clvmodels.SeasonalBetaGeoModel`, ``ParetoNBDModel``'s
        :class:`~clvmodels.SeasonalParetoNBDModel`."""
        target, fixed = cls._configuration("calendar")
        return target(*args, **fixed, **settings)

    # ---------------------------------------------------------------- parameters
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The settings ``__init__`` takes, by name, as stored (scikit-learn's contract: every
        setting is an argument of ``__init__`` kept under its own name)."""
        return {name: getattr(self, name) for name in _init_names(type(self))}

    def set_params(self, **params: Any) -> BaseModel:
        for k, v in params.items():
            if k not in self.get_params():
                raise ParameterError(
                    f"Unknown parameter {k!r} for {type(self).__name__}; expected one of "
                    + ", ".join(repr(p) for p in self.get_params())
                )
            setattr(self, k, v)
        return self

    _FITTED = ("params_", "log_likelihood_", "n_customers_", "converged_", "covariance_log_",
               "fit_info_", "time_unit_")

    def _forget(self) -> None:
        """Drop what an earlier fit learned, so a failed (re)fit never leaves usable-looking
        parameters behind."""
        for name in (*self._FITTED, "_covariance_log", "_covariance_pending"):
            self.__dict__.pop(name, None)

    def _check_init_params(self) -> None:
        self._forget()
        check_number("penalizer_coef", self.penalizer_coef, minimum=0.0)
        check_number("tol", self.tol, minimum=0.0, min_inclusive=False)
        check_number("max_iter", self.max_iter, minimum=1, integer=True)

    @classmethod
    def _check_params(cls, params: Mapping[str, Any]) -> dict[str, float]:
        missing = [p for p in cls._param_names if p not in params]
        extra = [p for p in params if p not in cls._param_names]
        if missing or extra:
            raise ParameterError(
                f"{cls.__name__} needs parameters {list(cls._param_names)}; "
                f"missing {missing}, unknown {extra}."
            )
        out = {}
        for name in cls._param_names:
            out[name] = check_number(name, params[name], minimum=0.0, min_inclusive=False)
        return out

    @classmethod
    def from_params(
        cls,
        params: Mapping[str, float] | pd.Series,
        *,
        time_unit: str | None = None,
        covariance: np.ndarray | None = None,
        **init: Any,
    ):
        """Build a model from known parameters (published, saved or for what-ifs).

        Parameters
        ----------
        params : mapping
            Every parameter of the model, by its name in the paper.
        time_unit : {"D", "W"}, optional
            Unit the rate parameters are expressed in; predictions on RFM tables of another
            unit are refused.
        covariance : array, optional
            Covariance of the log-parameters (for intervals).
        """
        model = cls(**init)
        values = cls._check_params(dict(params))
        if time_unit is not None and time_unit not in TIME_UNITS:
            raise ParameterError(f"Unknown time_unit {time_unit!r}; expected one of 'D', 'W'.")
        model.params_ = pd.Series(values, name="estimate", dtype=float)
        model.time_unit_ = time_unit
        model.log_likelihood_ = None
        model.n_customers_ = None
        model.converged_ = None
        model.fit_info_ = {"source": "from_params"}
        k = len(cls._param_names)
        if covariance is not None:
            cov = np.asarray(covariance, dtype=float)
            if cov.shape != (k, k) or not np.isfinite(cov).all():
                raise ParameterError(f"covariance must be a finite {k}x{k} matrix, got shape {cov.shape}.")
            model.covariance_log_ = cov
        else:
            model.covariance_log_ = None
        model._after_params_set()
        return model

    def _after_params_set(self) -> None:
        """Hook for models that validate their parameters beyond positivity."""

    def _defining(self) -> dict[str, Any]:
        """Settings that are part of the fitted model, not of how it is fitted (MBG/CNBD-k's
        regularity ``k``): kept when a model is rebuilt from other parameters."""
        return {}

    def _with_params(self, params: Mapping[str, float]) -> BaseModel:
        """The same model with other parameters (a draw, a perturbation for derivatives)."""
        return type(self).from_params(params, time_unit=getattr(self, "time_unit_", None), **self._defining())

    @staticmethod
    def _fit_weights(weights: object, n: int) -> np.ndarray | None:
        """``weights`` as floats, checked: one finite non-negative number per row, or None."""
        if weights is None:
            return None
        w = np.asarray(weights, float)
        if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0):
            raise DataValidationError(f"weights must be {n} finite non-negative numbers, one per row of rfm.")
        if not np.isfinite(w.sum()):
            raise DataValidationError(
                f"weights add up to more than the largest number a float holds (each is finite, their sum "
                f"is not; largest {w.max():.3g}); weights count customers - rescale them.")
        return w

    # ---------------------------------------------------------------- fitting
    def _is_fitted(self) -> bool:
        return hasattr(self, "params_")

    def _check_fitted(self) -> None:
        if not self._is_fitted():
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet; call fit(rfm) or build it with "
                f"{type(self).__name__}.from_params(...) first."
            )

    def _p(self) -> tuple[float, ...]:
        self._check_fitted()
        return tuple(float(self.params_[n]) for n in self._param_names)

    # ---------------------------------------------------------------- results
    @property
    def n_free_params(self) -> int:
        """Parameters chosen to fit the data (a model's own settings chosen by likelihood, such
        as MBG/CNBD-k's k, count too): what the model choice's tie-break counts."""
        return self.n_estimated

    @property
    def n_estimated(self) -> int:
        """Numbers the likelihood estimated: the model's parameters, and the coefficients of its
        covariates or calendar terms (those in ``params_`` and those a model keeps apart)."""
        return len(self._param_names) + self._n_coefficients()

    def _n_coefficients(self) -> int:
        """Coefficients after the parameters: in ``params_`` (covariates) or kept apart (a
        calendar's); 0 for a plain model."""
        return len(self.params_) - len(self._param_names) if self._is_fitted() else 0

    @property
    def aic(self) -> float:
        """Akaike information criterion, ``2k - 2 log L`` (``k``: :attr:`n_estimated`)."""
        self._require_fit("aic")
        return 2 * self.n_estimated - 2 * self.log_likelihood_

    @property
    def bic(self) -> float:
        """Bayesian information criterion, ``k log n - 2 log L``."""
        self._require_fit("bic")
        return self.n_estimated * np.log(self.n_customers_) - 2 * self.log_likelihood_

    def _require_fit(self, what: str) -> None:
        self._check_fitted()
        if self.log_likelihood_ is None:
            raise NotFittedError(f"{what} needs a model fitted to data; this one was built from parameters.")

    def _se_log(self) -> np.ndarray:
        """Standard errors on the estimation scale: of the parameters' logs, then of the
        coefficients (which are on the log scale already); NaN without a covariance, and where its
        diagonal is negative (not a variance: no error is better than a false zero)."""
        cov = self.covariance_log_
        if cov is None:
            return np.full(len(self.params_), np.nan)
        var = np.diag(np.asarray(cov, float))
        return np.sqrt(np.where(var >= 0, var, np.nan))

    @property
    def standard_errors_(self) -> pd.Series:
        """Standard errors of the parameters (delta method from the log-scale covariance) and of
        any coefficients (on their own, log, scale)."""
        self._check_fitted()
        est, se = self.params_.to_numpy(float), self._se_log()
        base = np.arange(len(est)) < len(self._param_names)
        return pd.Series(np.where(base, est * se, se), index=self.params_.index, name="std_error")

    @property
    def summary(self) -> pd.DataFrame:
        """Estimates, standard errors and 95% intervals computed on the log scale (parameters)
        or on their own scale (coefficients of covariates, which are logs of multipliers)."""
        self._check_fitted()
        est, se = self.params_.to_numpy(float), self._se_log()
        base = np.arange(len(est)) < len(self._param_names)
        with np.errstate(over="ignore", invalid="ignore"):
            return pd.DataFrame(
                {
                    "estimate": est,
                    "std_error": np.where(base, est * se, se),
                    "lower_95": np.where(base, est * np.exp(-Z95 * se), est - Z95 * se),
                    "upper_95": np.where(base, est * np.exp(Z95 * se), est + Z95 * se),
                },
                index=pd.Index(list(self.params_.index), name="parameter"),
            )

    def sample_params(self, n_draws: int, *, seed: int | None = 0) -> pd.DataFrame:
        """Draws from the estimates' asymptotic sampling distribution (normal on the log scale)."""
        self._check_fitted()
        if self.covariance_log_ is None or not np.all(np.isfinite(self.covariance_log_)):
            raise ParameterError(
                f"{type(self).__name__} has no parameter covariance (built from parameters "
                "without one, or the information matrix was singular); intervals need a fit."
            )
        rng = np.random.default_rng(seed)
        draws = rng.multivariate_normal(np.log(self.params_.to_numpy()), self.covariance_log_, n_draws)
        return pd.DataFrame(np.exp(draws), columns=list(self._param_names))

    def _unit_text(self) -> str:
        unit = getattr(self, "time_unit_", None)
        return UNIT_NAMES.get(unit, "unspecified time unit") if unit else "unspecified time unit"

    def __repr__(self) -> str:
        name = type(self).__name__
        if not self._is_fitted():
            args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
            return f"{name}({args})"
        params = ", ".join(f"{k}={v:.4g}" for k, v in self.params_.items())
        if self.log_likelihood_ is None:
            return f"<{name} ({self._long_name}) from parameters, {self._unit_text()}: {params}>"
        return (
            f"<{name} ({self._long_name}) fitted on {self.n_customers_:,} customers, "
            f"{self._unit_text()}: {params}; log-likelihood {self.log_likelihood_:,.2f}>"
        )

    def _repr_html_(self) -> str:
        name = type(self).__name__
        if not self._is_fitted():
            return f"<p><b>{name}</b> (not fitted)</p>"
        head = f"<p><b>{name}</b> &mdash; {html.escape(self._long_name)}, {self._unit_text()}"
        if self.log_likelihood_ is not None:
            head += (
                f"; {self.n_customers_:,} customers; log-likelihood {self.log_likelihood_:,.2f}; "
                f"AIC {self.aic:,.1f}; BIC {self.bic:,.1f}"
            )
        head += "</p>"
        table = self.summary.rename(columns={"estimate": "Estimate", "std_error": "Std. error",
                                             "lower_95": "Lower 95%", "upper_95": "Upper 95%"})
        table.index.name = None
        table.columns.name = "Parameter"
        table = table.to_html(float_format=lambda v: f"{v:.4g}", na_rep="n/a")
        return head + table + self._html_note() + f"<p><small>{html.escape(self._reference)}</small></p>"

    def _html_note(self) -> str:
        """What the display says of the model besides its table (covariates: the scale of their
        coefficients)."""
        return ""

    # ---------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        """The model as the JSON :meth:`save` writes: what every model file holds (format,
        model, settings, time unit, fit metadata), then the model's own state (:meth:`_state`)."""
        self._check_fitted()
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "model": type(self).__name__,
            "library_version": __version__,
            "init_params": self.get_params(),
            **self._state(),
            "time_unit": getattr(self, "time_unit_", None),
            "log_likelihood": self.log_likelihood_,
            "n_customers": self.n_customers_,
            "converged": getattr(self, "converged_", None),
            "fit_info": getattr(self, "fit_info_", {}),
        }

    def _state(self) -> dict[str, Any]:
        """The fitted numbers of a model file: the parameters and their log-scale covariance."""
        cov = None if self.covariance_log_ is None else np.asarray(self.covariance_log_).tolist()
        return {"params": {k: float(v) for k, v in self.params_.items()}, "covariance_log": cov}

    def save(self, path: str | Path) -> Path:
        """Write the model as versioned JSON (parameters, covariance, time unit, fit metadata),
        readable by :meth:`load` and :func:`clvmodels.models.load_model`; written to a temporary
        file and moved into place, so a failed write never leaves half a model."""
        path = Path(path)
        text = json.dumps(self.to_dict(), indent=2, allow_nan=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path):
        """Read a model written by :meth:`save`; refuses other models, unknown versions and
        files that are not what :meth:`save` writes (always with :class:`ModelFileError`)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelFileError(f"Model file '{path}' does not exist.") from None
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise ModelFileError(f"Model file '{path}' is not valid JSON ({type(exc).__name__}).") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise ModelFileError(f"'{path}' is not a clvmodels model file (no format '{FORMAT_NAME}').")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ModelFileError(
                f"Model file '{path}' has format_version {version!r}; this clvmodels reads "
                f"version {FORMAT_VERSION}. Refit the model or upgrade clvmodels."
            )
        if data.get("model") != cls.__name__:
            raise ModelFileError(
                f"Model file '{path}' holds a {data.get('model')}, not a {cls.__name__}; "
                f"load it with clvmodels.{data.get('model')}.load."
            )
        try:
            init = data.get("init_params") or {}
            if not isinstance(init, dict) or set(init) - set(cls().get_params()):
                raise ValueError(f"init_params must be a mapping of {sorted(cls().get_params())}")
            unit = data.get("time_unit")
            if unit not in (None, *TIME_UNITS):
                raise ValueError(f"time_unit must be one of {', '.join(TIME_UNITS)}, got {unit!r}")
            model = cls._from_state(data, init)
            model.log_likelihood_ = _optional_float(data.get("log_likelihood"))
            n = data.get("n_customers")
            model.n_customers_ = None if n is None else int(n)
            model.converged_ = data.get("converged")
            info = data.get("fit_info", {})
            model.fit_info_ = info if isinstance(info, dict) else {}
        except ModelFileError:
            raise
        except (ParameterError, KeyError, TypeError, ValueError, RecursionError) as exc:
            raise ModelFileError(f"Model file '{path}' is damaged or was not written by clvmodels: "
                                 f"{type(exc).__name__}: {exc}") from None
        return model

    @classmethod
    def _from_state(cls, data: dict[str, Any], init: dict[str, Any]) -> BaseModel:
        """A model of this class from a model file's settings and fitted numbers (the file is
        hostile input: anything wrong raises ValueError, TypeError, KeyError or ParameterError)."""
        params = data["params"]
        if not isinstance(params, dict):
            raise ValueError("params must be a mapping of parameter to value")
        cov = data.get("covariance_log")
        cov_arr = None if cov is None else np.array(cov, dtype=float)
        if cov_arr is not None and not np.all(np.isfinite(cov_arr)):
            cov_arr = None  # the fit could not estimate it (singular information): no intervals
        return cls.from_params(params, time_unit=data.get("time_unit"), covariance=cov_arr, **init)

    # ---------------------------------------------------------------- time units
    def _check_unit(self, rfm: pd.DataFrame) -> None:
        unit = rfm.attrs.get("time_unit") if hasattr(rfm, "attrs") else None
        mine = getattr(self, "time_unit_", None)
        if unit and mine and unit != mine:
            raise ParameterError(
                f"The RFM table is in time unit {unit!r} but {type(self).__name__} was fitted in "
                f"{mine!r}; rebuild the table with time_unit={mine!r} or refit."
            )


def _families(cls: type) -> list[type]:
    """``cls`` and every class below it."""
    out = [cls]
    for sub in cls.__subclasses__():
        out += _families(sub)
    return out


@functools.cache
def _init_names(cls: type) -> tuple[str, ...]:
    """The names of ``cls.__init__``'s settings."""
    return tuple(n for n, p in inspect.signature(cls.__init__).parameters.items()
                 if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))


def _optional_float(value: Any) -> float | None:
    if value is None:
        return None
    out = float(value)
    if not np.isfinite(out):
        raise ValueError(f"log_likelihood must be finite, got {value!r}")
    return out


