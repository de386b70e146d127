"""The influence backend: pure PyTorch and numpy, usable headless."""

from . import measurements
from .curvature import DenseOperator, EigenvalueEstimate, TrainingHessian, lanczos_extremes
from .errors import (
    ConvergenceWarning,
    DistributedWorkError,
    FrozenParameterWarning,
    InfluenceInputError,
    InfluenceWarning,
    InsufficientMemoryError,
    ModelModeWarning,
    NonConvexWarning,
    NotStationaryWarning,
    SolverDivergedError,
)
from .explainer import ExplainerSettings, InfluenceExplainer
from .explainer_curvature import CurvatureReport, DampedExplainer
from .losses import SmoothHinge
from .retrain import LBFGSRetrain, StepsRetrain
from .solvers import (
    ArnoldiOptions,
    CGOptions,
    EKFACOptions,
    ExactOptions,
    KFACOptions,
    LissaOptions,
    SolveDiagnostics,
    make_solver,
)
from .stationarity import StationarityReport
from .validation import LOOResult, RetrainingError

__all__ = [
    "ArnoldiOptions",
    "CGOptions",
    "ConvergenceWarning",
    "CurvatureReport",
    "DampedExplainer",
    "DenseOperator",
    "DistributedWorkError",
    "EKFACOptions",
    "EigenvalueEstimate",
    "ExactOptions",
    "ExplainerSettings",
    "FrozenParameterWarning",
    "InfluenceExplainer",
    "InfluenceInputError",
    "InfluenceWarning",
    "InsufficientMemoryError",
    "KFACOptions",
    "LBFGSRetrain",
    "LOOResult",
    "LissaOptions",
    "ModelModeWarning",
    "NonConvexWarning",
    "NotStationaryWarning",
    "RetrainingError",
    "SmoothHinge",
    "SolveDiagnostics",
    "SolverDivergedError",
    "StationarityReport",
    "StepsRetrain",
    "TrainingHessian",
    "lanczos_extremes",
    "make_solver",
    "measurements",
]
