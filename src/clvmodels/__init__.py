"""clvmodels: customer lifetime value from a transaction log.

BG/NBD and Gamma-Gamma models fitted on compressed sufficient statistics, per-customer churn
and value forecasts, the customer pyramid, holdout scorecards and HTML reports.
"""

from clvmodels._version import __version__
from clvmodels.covariate_forecast import covariate_what_if
from clvmodels.datasets import load_cdnow, simulate_transactions
from clvmodels.engine import spark_connection
from clvmodels.evaluate import Scorecard, evaluate
from clvmodels.exceptions import (
    ConvergenceError,
    DataValidationError,
    ModelAssumptionWarning,
    NotFittedError,
    ParameterError,
)
from clvmodels.forecast import (
    acquisition_budget,
    annual_discount_rate,
    forecast,
)
from clvmodels.intervals import forecast_intervals, parameter_intervals, tier_intervals
from clvmodels.models import (
    BetaDiscreteWeibullModel,
    BetaGeoBetaBinomModel,
    BetaGeoModel,
    CovariateBetaGeoModel,
    CovariateGammaGammaModel,
    CovariateParetoNBDModel,
    GammaGammaModel,
    MBGCNBDModel,
    ModifiedBetaGeoModel,
    ParetoNBDModel,
    SeasonalBetaGeoModel,
    SeasonalParetoNBDModel,
    ShiftedBetaGeometricModel,
    subscription_periods,
)
from clvmodels.rfm import (
    PurchaseCalendar,
    calibration_holdout,
    discrete_rfm,
    purchase_calendar,
    rfm_summary,
)
from clvmodels.selection import ModelSelection, select_model
from clvmodels.tiers import (
    assign_tiers,
    retention_what_if,
    tier_summary,
)
from clvmodels.transactions import load_transactions

__all__ = [
    "__version__",
    "covariate_what_if",
    "load_transactions",
    "spark_connection",
    "BetaGeoModel",
    "ModifiedBetaGeoModel",
    "MBGCNBDModel",
    "BetaGeoBetaBinomModel",
    "discrete_rfm",
    "CovariateBetaGeoModel",
    "CovariateGammaGammaModel",
    "CovariateParetoNBDModel",
    "SeasonalBetaGeoModel",
    "SeasonalParetoNBDModel",
    "ShiftedBetaGeometricModel",
    "BetaDiscreteWeibullModel",
    "subscription_periods",
    "ParetoNBDModel",
    "GammaGammaModel",
    "forecast",
    "forecast_intervals",
    "parameter_intervals",
    "acquisition_budget",
    "annual_discount_rate",
    "assign_tiers",
    "tier_summary",
    "tier_intervals",
    "retention_what_if",
    "evaluate",
    "select_model",
    "ModelSelection",
    "Scorecard",
    "rfm_summary",
    "calibration_holdout",
    "purchase_calendar",
    "PurchaseCalendar",
    "load_cdnow",
    "simulate_transactions",
    "DataValidationError",
    "ParameterError",
    "NotFittedError",
    "ConvergenceError",
    "ModelAssumptionWarning",
]
