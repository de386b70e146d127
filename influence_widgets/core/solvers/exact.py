"""Exact solve: the explicit Hessian, factorised once in float64 and reused."""

from __future__ import annotations

import time

import torch

from ..curvature import EigenvalueEstimate, HessianOperator
from ..errors import InfluenceInputError
from ..memory import check_fits
from .base import SolveDiagnostics
from .options import ExactOptions

NEAR_SINGULAR_PIVOT = 1e-12  # relative to the largest: condition numbers above 1e12 leave float64 with 4 digits
SINGULAR_RELATIVE = 1e-6  # the damping suggested for a singular H: lambda_max x this (condition number ~1e6)


def not_invertible_error(eigenvalues: EigenvalueEstimate, operator: HessianOperator) -> InfluenceInputError:
    """The error for an H that Cholesky cannot factorise: singular (lambda_min ~ 0, e.g. softmax regression
    without weight decay, whose logits can all shift together) or indefinite (a non-convex model), with the
    total damping that makes it positive definite: damping + 1.1 max(0, -lambda_min) + 1e-6 lambda_max."""
    lam_min, lam_max = eigenvalues.lambda_min, eigenvalues.lambda_max
    damping = float(getattr(operator, "damping", 0.0))
    weight_decay = float(getattr(operator, "weight_decay", 0.0))
    suggested = damping + 1.1 * max(0.0, -lam_min) + SINGULAR_RELATIVE * max(abs(lam_max), 1e-12)
    kind = "singular" if lam_min > -SINGULAR_RELATIVE * abs(lam_max) else "indefinite (the model is not convex here)"
    return InfluenceInputError(
        f"the Hessian is {kind}: its eigenvalues run from {lam_min:.3g} to {lam_max:.3g} with weight_decay="
        f"{weight_decay:g} and damping={damping:g}, so it has no reliable inverse. Pass damping={suggested:.3g} "
        "(or more), or the weight_decay the model was trained with; InfluenceExplainer.positive_definite() "
        "picks the damping for you"
    )


class ExactSolver:
    """x = H^-1 b through a Cholesky factor of H (float64); a singular or indefinite H is refused with the
    damping that fixes it (``not_invertible_error``)."""

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

    def check_memory(self, size: int, itemsize: int = 8, device: torch.device | str = "cpu") -> None:
        """Refuse before allocating when the p x p Hessian (float64, its factor, and its assembly in the
        model's dtype) would not fit in the free memory."""
        check_fits(
            size * size * (16 + itemsize),
            f"solver='exact' with {size} parameters (a {size} x {size} float64 Hessian and its factor)",
            "use solver='cg' (matrix-free, memory ~ batch_size x p) or select fewer parameters with params=[...] "
            "(for example the last layer)",
            device,
        )

    def hessian(self, operator: HessianOperator) -> torch.Tensor:
        """The explicit float64 Hessian, built once per operator."""
        self.check_size(operator.size)
        if self._operator is not operator or self._hessian is None:
            self.check_memory(
                operator.size, getattr(operator, "dtype", torch.float64).itemsize, getattr(operator, "device", "cpu")
            )
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
            pivots = chol.diagonal().square() if int(info) == 0 else None
            # each pivot lies in [lambda_min, lambda_max]: a pivot near rounding level flags a numerically
            # singular H that Cholesky got through by rounding; then the eigenvalues decide
            suspicious = pivots is not None and float(pivots.min()) < NEAR_SINGULAR_PIVOT * float(pivots.max())
            if suspicious:
                eigs = torch.linalg.eigvalsh(hessian)
                suspicious = float(eigs[0]) <= NEAR_SINGULAR_PIVOT * float(eigs[-1])
            if int(info) == 0 and not suspicious:
                self._factor = ("cholesky", chol, None)
            else:
                eigs = torch.linalg.eigvalsh(hessian)
                self.eigenvalues = EigenvalueEstimate(float(eigs[0]), float(eigs[-1]), "eigvalsh", hessian.shape[0])
                raise not_invertible_error(self.eigenvalues, operator)
        return self._factor

    def solve(self, operator: HessianOperator, rhs: torch.Tensor) -> tuple[torch.Tensor, SolveDiagnostics]:
        start = time.perf_counter()
        _, factor, _ = self._factorise(operator)
        b = rhs.to(torch.float64)
        x = torch.cholesky_solve(b, factor)
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
        return x.to(rhs.dtype), diagnostics
