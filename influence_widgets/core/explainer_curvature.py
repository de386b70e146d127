"""The explainer's curvature: the extreme eigenvalues of H, and the damping that makes it positive definite."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import torch

from .curvature import EigenvalueEstimate, lanczos_extremes
from .errors import NonConvexWarning
from .explainer_solves import SolveMethods
from .inputs import as_real

if TYPE_CHECKING:
    from .explainer_view import ExplainerView


@dataclass(frozen=True)
class CurvatureReport:
    """Extreme eigenvalues of H (weight decay and damping included) and the damping they call for.

    suggested_damping: the total damping that makes H positive definite with a 10 % margin,
    damping + 1.1 |lambda_min| when lambda_min <= 0, else the current damping.
    """

    eigenvalues: EigenvalueEstimate
    weight_decay: float
    damping: float

    @property
    def is_positive_definite(self) -> bool:
        return self.eigenvalues.lambda_min > 0

    @property
    def suggested_damping(self) -> float:
        lam_min = self.eigenvalues.lambda_min
        return self.damping if lam_min > 0 else self.damping + 1.1 * abs(lam_min)


class DampedExplainer(NamedTuple):
    """What ``positive_definite()`` returns: the explainer to use and the curvature report it was chosen on."""

    explainer: ExplainerView
    curvature: CurvatureReport


class CurvatureMethods(SolveMethods):
    """``curvature()`` and ``positive_definite()`` (which uses the explainer's ``with_damping``)."""

    def positive_definite(self) -> DampedExplainer:
        """This explainer if H is positive definite, else one damped as ``curvature()`` suggests.

        The paper's rule for non-convex models: damping at least the magnitude of the smallest
        eigenvalue. Returns ``DampedExplainer(explainer, curvature)``, the explainer to use and the
        curvature report it was decided on (a named tuple: ``explainer, report = ...`` works).
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NonConvexWarning)
            report = self.curvature()
        if report.is_positive_definite:
            return DampedExplainer(self, report)  # type: ignore[arg-type]
        return DampedExplainer(self.with_damping(report.suggested_damping), report)

    def curvature(self, steps: int | None = None, seed: int = 0) -> CurvatureReport:
        """Extreme eigenvalues of H (weight decay and damping included); warns when H is not positive definite.

        From the explicit Hessian where the solver works from one (exact), otherwise from Lanczos iterations
        (each one Hessian-vector product over the training set): ``steps`` of them, or by default as
        many as the extreme Ritz pairs need to converge (at most 200).
        """
        if steps is not None:
            steps = as_real(steps, "steps", minimum=1, integer=True, fix="pass e.g. steps=50, or None")
        seed = as_real(seed, "seed", integer=True, fix="pass an integer seed")
        explicit = self.solver.explicit_hessian(self.hessian)
        if explicit is not None:
            eigs = torch.linalg.eigvalsh(explicit)
            estimate = EigenvalueEstimate(float(eigs[0]), float(eigs[-1]), "eigvalsh", self.n_params)
        else:
            estimate = lanczos_extremes(self.hessian, steps=steps, seed=seed)
        report = CurvatureReport(estimate, self.weight_decay, self.damping)
        if not report.is_positive_definite:
            warnings.warn(
                f"the Hessian has a negative eigenvalue (about {estimate.lambda_min:.3g}): the model is not convex "
                f"at these parameters. Use damping >= {report.suggested_damping:.3g} (the paper's rule: at least "
                "the magnitude of the smallest eigenvalue).",
                NonConvexWarning,
                stacklevel=2,
            )
        return report
