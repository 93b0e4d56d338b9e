"""Exceptions and warning categories raised by clvmodels."""

from __future__ import annotations

__all__ = [
    "ClvModelsError",
    "DataValidationError",
    "ParameterError",
    "NotFittedError",
    "ConvergenceError",
    "ModelFileError",
    "ReportError",
    "ModelError",
    "ClvModelsWarning",
    "ModelAssumptionWarning",
]


class ClvModelsError(Exception):
    """Base class of every error raised on purpose by clvmodels."""


class DataValidationError(ClvModelsError, ValueError):
    """Input data breaks the contract: names the column, the rows affected and what to do."""


class ParameterError(ClvModelsError, ValueError):
    """A function or report parameter has a value outside what is allowed."""


class NotFittedError(ClvModelsError, AttributeError):
    """A predictive method was called on a model before ``fit`` (or ``from_params``)."""


class ConvergenceError(ClvModelsError, RuntimeError):
    """Maximum-likelihood fitting failed with every strategy tried."""


class ModelFileError(ClvModelsError, ValueError):
    """A saved model file cannot be read: wrong model, unknown format version or corrupt."""


class ReportError(ClvModelsError, RuntimeError):
    """A report run failed; the message carries the failing cell's error."""


class ClvModelsWarning(UserWarning):
    """Base category of the warnings clvmodels emits."""


class ModelAssumptionWarning(ClvModelsWarning):
    """The data look like they violate an assumption of the model being fitted."""


class ModelError(ClvModelsError, ValueError):
    """The fitted or given parameters make the model unusable (e.g. Gamma-Gamma with q <= 1)."""
