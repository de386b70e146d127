"""The one interface every inverse-Hessian solver keeps, and the diagnostics it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from ..curvature import EigenvalueEstimate, HessianOperator


@dataclass
class SolveDiagnostics:
    """What a solve did, as data that a report or widget can draw.

    residuals: CG's relative residual ||H x - b|| / ||b|| per iteration, the worst column; the
        last entry is the true residual, recomputed from x (exact: one entry, of the float64 solve).
    estimate_norms: LiSSA's ||h_j / scale|| per recorded step, averaged over columns.
    preconditioner: what preconditioned CG (``"gauss-newton"``), if anything.
    reused_directions: Krylov directions of earlier solves that this block CG solve started from.
    """

    solver: str
    n_rhs: int
    converged: bool
    iterations: int = 0
    seconds: float = 0.0
    hessian_vector_products: int = 0
    residuals: np.ndarray = field(default_factory=lambda: np.zeros(0))
    estimate_norms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    eigenvalues: EigenvalueEstimate | None = None
    scale: float | None = None
    preconditioner: str | None = None
    reused_directions: int = 0
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line in plain words."""
        parts = [f"{self.solver}: {self.n_rhs} right-hand side(s), {self.seconds:.2f} s"]
        if self.iterations:
            parts.append(f"{self.iterations} iterations")
        if self.hessian_vector_products:
            parts.append(f"{self.hessian_vector_products} Hessian-vector products")
        if self.preconditioner:
            parts.append(f"{self.preconditioner} preconditioner")
        if self.reused_directions:
            parts.append(f"started from {self.reused_directions} earlier directions")
        if self.residuals.size:
            parts.append(f"final relative residual {self.residuals[-1]:.1e}")
        if self.scale is not None:
            parts.append(f"scale {self.scale:.3g}")
        if self.eigenvalues is not None:
            parts.append(f"eigenvalues in [{self.eigenvalues.lambda_min:.3g}, {self.eigenvalues.lambda_max:.3g}]")
        parts.append("converged" if self.converged else "NOT converged")
        return ", ".join(parts) + "".join(f"\n  warning: {w}" for w in self.warnings)


class Solver(Protocol):
    """Approximates H^-1 @ rhs for rhs of shape [p, m]; returns the [p, m] solution and diagnostics."""

    name: str

    def solve(self, operator: HessianOperator, rhs: torch.Tensor) -> tuple[torch.Tensor, SolveDiagnostics]: ...
