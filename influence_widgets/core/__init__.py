"""The influence backend: pure PyTorch and numpy, usable headless."""

from . import measurements
from .curvature import DenseOperator, EigenvalueEstimate, TrainingHessian, lanczos_extremes
from .errors import (
    ConvergenceWarning,
    InfluenceInputError,
    InfluenceWarning,
    ModelModeWarning,
    NonConvexWarning,
    SolverDivergedError,
)
from .explainer import CurvatureReport, InfluenceExplainer
from .solvers import CGOptions, ExactOptions, LissaOptions, SolveDiagnostics, make_solver

__all__ = [
    "CGOptions",
    "ConvergenceWarning",
    "CurvatureReport",
    "DenseOperator",
    "EigenvalueEstimate",
    "ExactOptions",
    "InfluenceExplainer",
    "InfluenceInputError",
    "InfluenceWarning",
    "LissaOptions",
    "ModelModeWarning",
    "NonConvexWarning",
    "SolveDiagnostics",
    "SolverDivergedError",
    "TrainingHessian",
    "lanczos_extremes",
    "make_solver",
    "measurements",
]
