"""Check a fast answer on the user's own model: the configured solver against a reference (CG to a tight
tolerance, or exact) on a few test points, with the agreement as data."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InfluenceInputError
from .inputs import as_real
from .solvers import CGOptions
from .statistics import pearson as linear_correlation
from .statistics import spearman as rank_correlation

if TYPE_CHECKING:
    from .explainer_view import ExplainerView

REFERENCES = ("cg", "exact")
REFERENCE_RTOL = 1e-8


@dataclass(frozen=True)
class ApproximationReport:
    """Per test point (rows of the influence matrices): Pearson and Spearman correlation (average ranks for
    ties) of the approximate I_up,loss row with the reference's, their relative error ||a - r|| / ||r||, and
    the overlap of the 10 largest |influence| training points. Seconds are each solver's time for these points
    (what was cached before, such as the training gradients, is not counted again)."""

    solver: str
    reference: str
    pearson: np.ndarray
    spearman: np.ndarray
    relative_error: np.ndarray
    top10_overlap: np.ndarray
    seconds: float
    reference_seconds: float

    def summary(self) -> str:
        return (
            f"{self.solver} against {self.reference} on {len(self.pearson)} test point(s): Pearson "
            f"{self.pearson.min():.4f} (worst) / {self.pearson.mean():.4f} (mean), Spearman {self.spearman.min():.4f}"
            f" / {self.spearman.mean():.4f}, relative error {self.relative_error.max():.2g} (worst), top-10 overlap "
            f"{self.top10_overlap.mean():.2f}; {self.seconds:.2f} s against {self.reference_seconds:.2f} s"
        )


def check_approximation(
    explainer: ExplainerView, X_test: Any, y_test: Any, reference: str = "cg", n_points: int = 3
) -> ApproximationReport:
    """Influence of the first ``n_points`` test points by the explainer's solver and by ``reference`` (CG at
    relative residual 1e-8, or the exact solve), on the same H and the same training gradients."""
    if reference not in REFERENCES:
        raise InfluenceInputError(f"reference must be one of {REFERENCES}, got {reference!r}")
    x, y = explainer.coerce_test(X_test, y_test)
    n_points = as_real(n_points, "n_points", minimum=1, integer=True, fix="pass e.g. n_points=3")
    x, y = x[:n_points], y[:n_points]
    options = CGOptions(rtol=REFERENCE_RTOL) if reference == "cg" else None
    checker = explainer.with_settings(solver=reference, solver_options=options)
    start = time.perf_counter()
    approximate = explainer.influence(x, y).double().numpy()
    middle = time.perf_counter()
    exact = checker.influence(x, y).double().numpy()
    end = time.perf_counter()
    pearson = np.array([linear_correlation(a, r) for a, r in zip(approximate, exact)])
    spearman = np.array([rank_correlation(a, r) for a, r in zip(approximate, exact)])
    error = np.linalg.norm(approximate - exact, axis=1) / np.maximum(np.linalg.norm(exact, axis=1), 1e-300)
    k = min(10, approximate.shape[1])
    overlap = np.array(
        [len(set(np.argsort(-np.abs(a))[:k]) & set(np.argsort(-np.abs(r))[:k])) / k for a, r in zip(approximate, exact)]
    )
    return ApproximationReport(
        explainer.solver_name, reference, pearson, spearman, error, overlap, middle - start, end - middle
    )
