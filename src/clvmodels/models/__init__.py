"""Probabilistic "buy till you die" models."""

from clvmodels.models._base import BaseModel
from clvmodels.models.beta_geo import BetaGeoModel, bgnbd_log_likelihood
from clvmodels.models.beta_geo_beta_binom import BetaGeoBetaBinomModel, bgbb_log_likelihood
from clvmodels.models.contractual import (
    BetaDiscreteWeibullModel,
    ShiftedBetaGeometricModel,
    subscription_periods,
)
from clvmodels.models.covariates import (
    CovariateBetaGeoModel,
    CovariateGammaGammaModel,
    CovariateParetoNBDModel,
    likelihood_ratio_test,
)
from clvmodels.models.gamma_gamma import GammaGammaModel, gamma_gamma_log_likelihood
from clvmodels.models.mbg_cnbd import MBGCNBDModel, mbgcnbd_log_likelihood
from clvmodels.models.modified_beta_geo import ModifiedBetaGeoModel, mbgnbd_log_likelihood
from clvmodels.models.pareto_nbd import ParetoNBDModel, pareto_nbd_log_likelihood
from clvmodels.models.registry import MODELS, load_model
from clvmodels.models.seasonal import SeasonalBetaGeoModel
from clvmodels.models.seasonal_pareto import SeasonalParetoNBDModel

# BG/BB's table from a transaction log is data preparation (clvmodels.rfm); kept importable from here
from clvmodels.rfm import discrete_rfm

__all__ = [
    "BaseModel", "BetaGeoModel", "ModifiedBetaGeoModel", "ParetoNBDModel", "MBGCNBDModel", "GammaGammaModel",
    "BetaGeoBetaBinomModel", "discrete_rfm", "CovariateBetaGeoModel", "CovariateGammaGammaModel",
    "CovariateParetoNBDModel", "SeasonalBetaGeoModel", "SeasonalParetoNBDModel",
    "likelihood_ratio_test",
    "ShiftedBetaGeometricModel", "BetaDiscreteWeibullModel", "subscription_periods",
    "bgnbd_log_likelihood", "mbgnbd_log_likelihood", "mbgcnbd_log_likelihood", "bgbb_log_likelihood",
    "pareto_nbd_log_likelihood", "gamma_gamma_log_likelihood", "load_model", "MODELS",
]
