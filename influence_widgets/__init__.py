"""influence_widgets: which training examples made my model say that? Influence functions in the notebook."""

from .core import (
    CGOptions,
    ConvergenceWarning,
    ExactOptions,
    InfluenceExplainer,
    InfluenceInputError,
    LissaOptions,
    NonConvexWarning,
    SolverDivergedError,
    measurements,
)

__version__ = "0.1.0"

__all__ = [
    "CGOptions",
    "ConvergenceWarning",
    "ExactOptions",
    "InfluenceExplainer",
    "InfluenceInputError",
    "LissaOptions",
    "NonConvexWarning",
    "SolverDivergedError",
    "__version__",
    "measurements",
]
