"""Notebook views over what ``core`` computed: ranked points, influence versus distance, leave-one-out."""

from .explorer import Explorer, PointResult, explore
from .panels import DiagnosticsPanel, LOOPanel
from .plots import diagnostics_figure, figure_png, loo_figure
from .triage import TriagePanel
from .verdict import loo_verdict
from .views import LOOView, RankedView, ScatterView, SolveView, TestStrip

__all__ = [
    "DiagnosticsPanel",
    "Explorer",
    "LOOPanel",
    "LOOView",
    "PointResult",
    "RankedView",
    "ScatterView",
    "SolveView",
    "TestStrip",
    "TriagePanel",
    "diagnostics_figure",
    "explore",
    "figure_png",
    "loo_figure",
    "loo_verdict",
]
