"""influence_widgets: which training examples made my model say that? Influence functions in the notebook."""

from .core import (
    CGOptions,
    ConvergenceWarning,
    ExactOptions,
    InfluenceExplainer,
    InfluenceInputError,
    LBFGSRetrain,
    LissaOptions,
    LOOResult,
    NonConvexWarning,
    RetrainingError,
    SmoothHinge,
    SolverDivergedError,
    StepsRetrain,
    measurements,
)

__version__ = "0.1.0"

__all__ = [
    "CGOptions",
    "ConvergenceWarning",
    "ExactOptions",
    "InfluenceExplainer",
    "InfluenceInputError",
    "LBFGSRetrain",
    "LOOResult",
    "LissaOptions",
    "NonConvexWarning",
    "RetrainingError",
    "SmoothHinge",
    "SolverDivergedError",
    "StepsRetrain",
    "__version__",
    "measurements",
]
