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
from .losses import SmoothHinge
from .solvers import CGOptions, ExactOptions, LissaOptions, SolveDiagnostics, make_solver
from .validation import LBFGSRetrain, LOOResult, RetrainingError, StepsRetrain

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
    "LBFGSRetrain",
    "LOOResult",
    "LissaOptions",
    "ModelModeWarning",
    "NonConvexWarning",
    "RetrainingError",
    "SmoothHinge",
    "SolveDiagnostics",
    "SolverDivergedError",
    "StepsRetrain",
    "TrainingHessian",
    "lanczos_extremes",
    "make_solver",
    "measurements",
]
