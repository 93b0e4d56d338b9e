"""Every model class of the package, in one place: name -> class, with what the rest of the
package needs to know of each (its name in the papers, the command line's key, what it models,
where the model choice tries it). Loading a saved model, the model choice, the command line and
the customer table all read this table; a new model family is one file under ``models/`` and one
line here (``tests/models/test_contract.py`` then checks it like every other).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clvmodels.exceptions import ModelFileError
from clvmodels.models._base import BaseModel
from clvmodels.models.beta_geo import BetaGeoModel
from clvmodels.models.beta_geo_beta_binom import BetaGeoBetaBinomModel
from clvmodels.models.contractual import BetaDiscreteWeibullModel, ShiftedBetaGeometricModel
from clvmodels.models.covariates import (
    CovariateBetaGeoModel,
    CovariateGammaGammaModel,
    CovariateParetoNBDModel,
)
from clvmodels.models.gamma_gamma import GammaGammaModel
from clvmodels.models.mbg_cnbd import MBGCNBDModel
from clvmodels.models.modified_beta_geo import ModifiedBetaGeoModel
from clvmodels.models.pareto_nbd import ParetoNBDModel
from clvmodels.models.seasonal import SeasonalBetaGeoModel
from clvmodels.models.seasonal_pareto import SeasonalParetoNBDModel

__all__ = ["ModelInfo", "MODELS", "model_class", "models_where", "info_of", "load_model"]

#: what a model describes
KINDS = ("purchase", "spend", "discrete", "contractual")
#: where the purchase model choice tries a model: always, with each customer's regularity
#: (``litt``), with the repeat purchases per calendar day
CHOICE_GROUPS = ("base", "regularity", "calendar")


@dataclass(frozen=True)
class ModelInfo:
    """One registered model class and what the package needs to know of it."""

    cls: type
    label: str
    """Its name in the papers and in reports ("BG/NBD")."""
    kind: str
    """One of :data:`KINDS`."""
    key: str | None = None
    """The command line's name for it (``clvmodels score --model``, which fits on the distinct
    (frequency, recency, T) rows the engine returns); None: not offered there (it needs more of
    each customer than those rows: regularity, calendar days or covariates)."""
    choice: str | None = None
    """Where the model choice tries it (one of :data:`CHOICE_GROUPS`); None: not a candidate."""
    covariate_family: str | None = None
    """The covariate model closest to it ("BG/NBD", "MBG/NBD", "Pareto/NBD"), for purchase models."""
    inputs: str = "rfm"
    """What ``fit`` takes: ``"rfm"`` (an RFM table), ``"rfm+litt"`` (with each customer's
    regularity, ``rfm_summary(regularity=True)``), ``"rfm+calendar"`` (with the repeat purchases
    per calendar day, ``calendar=True``), ``"rfm+covariates"`` (with the covariate
    columns the model names; a separate covariate table is accepted too),
    ``"discrete"`` (:func:`discrete_rfm`), ``"periods"`` (:func:`subscription_periods`)."""

    @property
    def name(self) -> str:
        return self.cls.__name__


_INFOS = (
    ModelInfo(BetaGeoModel, "BG/NBD", "purchase", key="bgnbd", choice="base", covariate_family="BG/NBD"),
    ModelInfo(ModifiedBetaGeoModel, "MBG/NBD", "purchase", key="mbgnbd", choice="base", covariate_family="MBG/NBD"),
    ModelInfo(ParetoNBDModel, "Pareto/NBD", "purchase", key="paretonbd", choice="base",
              covariate_family="Pareto/NBD"),
    ModelInfo(MBGCNBDModel, "MBG/CNBD-k", "purchase", choice="regularity", covariate_family="MBG/NBD",
              inputs="rfm+litt"),
    ModelInfo(SeasonalBetaGeoModel, "BG/NBD + season", "purchase", choice="calendar", covariate_family="BG/NBD",
              inputs="rfm+calendar"),
    ModelInfo(SeasonalParetoNBDModel, "Pareto/NBD + season", "purchase", choice="calendar",
              covariate_family="Pareto/NBD", inputs="rfm+calendar"),
    ModelInfo(CovariateBetaGeoModel, "BG/NBD with covariates", "purchase", inputs="rfm+covariates"),
    ModelInfo(CovariateParetoNBDModel, "Pareto/NBD with covariates", "purchase", inputs="rfm+covariates"),
    ModelInfo(GammaGammaModel, "Gamma-Gamma", "spend"),
    ModelInfo(CovariateGammaGammaModel, "Gamma-Gamma with covariates", "spend", inputs="rfm+covariates"),
    ModelInfo(BetaGeoBetaBinomModel, "BG/BB", "discrete", inputs="discrete"),
    ModelInfo(ShiftedBetaGeometricModel, "sBG", "contractual", inputs="periods"),
    ModelInfo(BetaDiscreteWeibullModel, "BdW", "contractual", inputs="periods"),
)

#: every model class by its class name
MODELS: dict[str, ModelInfo] = {info.name: info for info in _INFOS}


def model_class(name: str) -> type:
    """The class registered as ``name`` (a class name, or a command-line key such as "bgnbd")."""
    for info in _INFOS:
        if name in (info.name, info.key):
            return info.cls
    raise KeyError(name)


def models_where(**criteria: Any) -> dict[str, type]:
    """The classes whose :class:`ModelInfo` matches every criterion, by label (e.g.
    ``models_where(choice="base")``: the purchase models the model choice always tries)."""
    return {info.label: info.cls for info in _INFOS
            if all(getattr(info, k) == v for k, v in criteria.items())}


def info_of(model: Any) -> ModelInfo | None:
    """The registry's entry for a model (instance or class); None for an unregistered one."""
    cls = model if isinstance(model, type) else type(model)
    info = MODELS.get(cls.__name__)
    return info if info is not None and info.cls is cls else None


def load_model(path: str | Path) -> BaseModel:
    """Read any model written by ``save``, whatever its class (named in the file)."""
    classes = {info.name: info.cls for info in _INFOS}
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ModelFileError(f"Model file '{path}' does not exist.") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ModelFileError(f"Model file '{path}' is not valid JSON ({type(exc).__name__}).") from None
    name = data.get("model") if isinstance(data, dict) else None
    if not isinstance(name, str) or name not in classes:
        raise ModelFileError(f"Model file '{path}' names model {name!r}; known models: {sorted(classes)}.")
    return classes[name].load(path)
