"""influence_widgets: which training examples made my model say that? Influence functions in the notebook."""

from .core import (
    ArnoldiOptions,
    CGOptions,
    ConvergenceWarning,
    EKFACOptions,
    ExactOptions,
    InfluenceExplainer,
    InfluenceInputError,
    KFACOptions,
    LBFGSRetrain,
    LissaOptions,
    LOOResult,
    NonConvexWarning,
    NotStationaryWarning,
    RetrainingError,
    SmoothHinge,
    SolverDivergedError,
    StationarityReport,
    StepsRetrain,
    measurements,
)

__version__ = "0.1.0"


def __getattr__(name: str):
    # the notebook views import ipywidgets and anywidget: load them on first use so that the core stays headless
    if name in ("explore", "Explorer"):
        from . import widgets

        return getattr(widgets, name)
    raise AttributeError(f"module 'influence_widgets' has no attribute {name!r}")


__all__ = [
    "ArnoldiOptions",
    "CGOptions",
    "ConvergenceWarning",
    "EKFACOptions",
    "ExactOptions",
    "Explorer",
    "InfluenceExplainer",
    "InfluenceInputError",
    "KFACOptions",
    "LBFGSRetrain",
    "LOOResult",
    "LissaOptions",
    "NonConvexWarning",
    "NotStationaryWarning",
    "RetrainingError",
    "SmoothHinge",
    "SolverDivergedError",
    "StationarityReport",
    "StepsRetrain",
    "__version__",
    "explore",
    "measurements",
]
