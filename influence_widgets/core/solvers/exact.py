"""Exact solve: the explicit Hessian, factorised once in float64 and reused."""

from __future__ import annotations

import time
import warnings

import torch

from ..curvature import EigenvalueEstimate, HessianOperator
from ..errors import InfluenceInputError, NonConvexWarning
from .base import SolveDiagnostics
from .options import ExactOptions


class ExactSolver:
    """x = H^-1 b through a Cholesky factor of H (float64); LU with a warning if H is indefinite."""

    name = "exact"

    def __init__(self, options: ExactOptions | None = None) -> None:
        self.options = options or ExactOptions()
        self._operator: HessianOperator | None = None
        self._factor: tuple[str, torch.Tensor, torch.Tensor | None] | None = None
        self._hessian: torch.Tensor | None = None
        self.eigenvalues: EigenvalueEstimate | None = None

    def check_size(self, size: int) -> None:
        if size > self.options.max_params:
            raise InfluenceInputError(
                f"solver='exact' forms a {size} x {size} Hessian, above its limit of "
                f"{self.options.max_params} parameters; use solver='cg' (or 'lissa' for very large models), "
                "select fewer parameters with params=[...], or raise ExactOptions(max_params=...)"
            )

    def hessian(self, operator: HessianOperator) -> torch.Tensor:
        """The explicit float64 Hessian, built once per operator."""
        self.check_size(operator.size)
        if self._operator is not operator or self._hessian is None:
            self._hessian = operator.dense(self.options.block).to(torch.float64)
            self._operator = operator
            self._factor = None
        return self._hessian

    def has_hessian(self, operator: HessianOperator) -> bool:
        return self._operator is operator and self._hessian is not None

    def seed_hessian(self, operator: HessianOperator, hessian: torch.Tensor) -> None:
        """Use an already-built explicit Hessian for ``operator`` (e.g. the same H with another damping)."""
        self.check_size(operator.size)
        self._operator, self._hessian, self._factor = operator, hessian.to(torch.float64), None

    def _factorise(self, operator: HessianOperator) -> tuple[str, torch.Tensor, torch.Tensor | None]:
        hessian = self.hessian(operator)
        if self._factor is None:
            chol, info = torch.linalg.cholesky_ex(hessian)
            if int(info) == 0:
                self._factor = ("cholesky", chol, None)
            else:
                eigs = torch.linalg.eigvalsh(hessian)
                self.eigenvalues = EigenvalueEstimate(float(eigs[0]), float(eigs[-1]), "eigvalsh", hessian.shape[0])
                lam_min = self.eigenvalues.lambda_min
                warnings.warn(
                    f"the Hessian is not positive definite (smallest eigenvalue {lam_min:.3g}); "
                    f"influence through an indefinite H is unreliable. Add damping >= {abs(lam_min):.3g} "
                    "(the paper's rule for non-convex models).",
                    NonConvexWarning,
                    stacklevel=4,
                )
                lu, pivots = torch.linalg.lu_factor(hessian)
                self._factor = ("lu", lu, pivots)
        return self._factor

    def solve(self, operator: HessianOperator, rhs: torch.Tensor) -> tuple[torch.Tensor, SolveDiagnostics]:
        start = time.perf_counter()
        kind, factor, pivots = self._factorise(operator)
        b = rhs.to(torch.float64)
        if kind == "cholesky":
            x = torch.cholesky_solve(b, factor)
        else:
            x = torch.linalg.lu_solve(factor, pivots, b)
        residual = torch.linalg.vector_norm(self._hessian @ x - b, dim=0)
        relative = residual / torch.linalg.vector_norm(b, dim=0).clamp_min(torch.finfo(torch.float64).tiny)
        diagnostics = SolveDiagnostics(
            solver=self.name,
            n_rhs=rhs.shape[1],
            converged=True,
            seconds=time.perf_counter() - start,
            residuals=relative.max().reshape(1).cpu().numpy(),
            eigenvalues=self.eigenvalues,
        )
        if kind == "lu":
            diagnostics.warnings.append("the Hessian is indefinite: add damping (see NonConvexWarning)")
        return x.to(rhs.dtype), diagnostics
