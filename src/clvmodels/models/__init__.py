"""Probabilistic "buy till you die" models."""

from clvmodels.models.beta_geo import BetaGeoModel, bgnbd_log_likelihood
from clvmodels.models.gamma_gamma import GammaGammaModel, gamma_gamma_log_likelihood
from clvmodels.models.modified_beta_geo import ModifiedBetaGeoModel
from clvmodels.models.pareto_nbd import ParetoNBDModel, pareto_nbd_log_likelihood

__all__ = [
    "BetaGeoModel", "ModifiedBetaGeoModel", "ParetoNBDModel", "GammaGammaModel",
    "bgnbd_log_likelihood", "pareto_nbd_log_likelihood", "gamma_gamma_log_likelihood",
]
