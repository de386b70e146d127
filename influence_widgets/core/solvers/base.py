"""The one interface every inverse-Hessian solver keeps, and the diagnostics it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

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
    note: in plain words, why ``solver="auto"`` chose this solver and path, and what an approximate solver
        approximated (None if neither).
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
    note: str | None = None

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
        if self.note:
            parts.append(self.note)
        return ", ".join(parts) + "".join(f"\n  warning: {w}" for w in self.warnings)


@dataclass(frozen=True)
class SolverWork:
    """The work of one solve with m right-hand sides, as counts that the cost preview times.

    hvp_points: point-vector Hessian products over the training set (iterative solvers: at their cap).
    explicit_hessian: the solve builds and factorises the explicit Hessian first (the preview times its
        columns as the operator builds them, and one p x p factorisation).
    gauss_newton_points: training points whose output Jacobians form a Gauss-Newton matrix (the
        explicit Hessian's affine block, or a preconditioner).
    memory_bytes: what the solver holds beyond the gradients, by name.
    upper_bound: the counts are caps; the solve stops earlier when it converges.
    """

    hvp_points: int = 0
    explicit_hessian: bool = False
    gauss_newton_points: int = 0
    memory_bytes: dict[str, int] = field(default_factory=dict)
    upper_bound: bool = False


class Solver(Protocol):
    """Approximates H^-1 @ rhs for rhs of shape [p, m]; returns the [p, m] solution and diagnostics.

    Besides ``solve``, a solver answers as data what the rest of the core needs to know about it, so
    that nothing outside ``solvers/`` asks for its class: its work for m right-hand sides (the cost
    preview), its explicit Hessian if it works from one (``curvature()``, Newton refinement), and the
    checks it makes before any work. ``SolverDefaults`` gives the answers of a matrix-free solver.
    """

    name: str
    options: Any

    def solve(self, operator: HessianOperator, rhs: torch.Tensor) -> tuple[torch.Tensor, SolveDiagnostics]: ...

    def check_feasible(self, size: int, itemsize: int, device: torch.device) -> None:
        """Refuse before any work when this solver cannot handle p = ``size`` parameters here."""
        ...

    def work(self, operator: HessianOperator, n_rhs: int) -> SolverWork:
        """The work of the next solve with ``n_rhs`` right-hand sides (what is already built is free)."""
        ...

    def explicit_hessian(self, operator: HessianOperator) -> torch.Tensor | None:
        """The explicit float64 H [p, p] that this solver works from (built on first use), or None."""
        ...

    def holds_explicit_hessian(self, operator: HessianOperator) -> bool:
        """Whether the explicit H for ``operator`` is already built (solves then need no more products)."""
        ...

    def matrix_free_options(self) -> Any:
        """The ``CGOptions`` for solves with related matrix-free operators (the removed-point Hessians of
        Newton refinement): a CG solver's own, else None (the defaults)."""
        ...


class SolverDefaults:
    """The capability answers of a matrix-free solver without an explicit Hessian; subclass and override."""

    def check_feasible(self, size: int, itemsize: int, device: torch.device) -> None:
        return None

    def explicit_hessian(self, operator: HessianOperator) -> torch.Tensor | None:
        return None

    def holds_explicit_hessian(self, operator: HessianOperator) -> bool:
        return False

    def matrix_free_options(self) -> Any:
        return None


def curvature_fix(operator: HessianOperator, lambda_min: float, lambda_max: float) -> str:
    """The sentence that tells how to make H positive definite: the ``damping`` (or ``weight_decay``)
    that would do it, from an estimate of the extreme eigenvalues (Lanczos: its lambda_min is an upper
    bound of the true one, hence "at least")."""
    eps = torch.finfo(operator.dtype).eps
    if lambda_min < -1e3 * eps * abs(lambda_max):
        extra = 1.1 * abs(lambda_min)
        what = f"its smallest eigenvalue is about {lambda_min:.3g} (at most)"
    else:  # zero to the products' precision: enough damping for a condition number of at most 1 / sqrt(eps)
        extra = max(eps**0.5 * abs(lambda_max), 1e-12)
        what = f"it is singular to working precision (eigenvalues in [{lambda_min:.3g}, {lambda_max:.3g}])"
    damping = operator.damping
    weight_decay = operator.shift - damping if damping is not None else None
    if damping is None or weight_decay is None:
        return (
            f"the Hessian is not positive definite: {what}. Add at least {extra:.3g} to its diagonal: "
            f"raise damping (or weight_decay) by {extra:.3g}"
        )
    return (
        f"the Hessian is not positive definite: {what}. Set damping={damping + extra:.3g} (now {damping:.3g}) "
        f"or weight_decay={weight_decay + extra:.3g} (now {weight_decay:.3g}); InfluenceExplainer.positive_definite() "
        "does this for you"
    )
