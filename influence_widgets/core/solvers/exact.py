"""Exact solve: the explicit Hessian, factorised once in float64 and reused."""

from __future__ import annotations

import time

import torch

from ..caches import KeyedCache
from ..curvature import EigenvalueEstimate, HessianOperator
from ..errors import InfluenceInputError
from ..memory import check_fits
from .base import SolveDiagnostics, SolverDefaults, SolverWork
from .options import ExactOptions

NEAR_SINGULAR_PIVOT = 1e-12  # relative to the largest: condition numbers above 1e12 leave float64 with 4 digits
SINGULAR_RELATIVE = 1e-6  # the damping suggested for a singular H: lambda_max x this (condition number ~1e6)


def not_invertible_error(eigenvalues: EigenvalueEstimate, operator: HessianOperator) -> InfluenceInputError:
    """The error for an H that Cholesky cannot factorise: singular (lambda_min ~ 0, e.g. softmax regression
    without weight decay, whose logits can all shift together) or indefinite (a non-convex model), with the
    total damping that makes it positive definite: damping + 1.1 max(0, -lambda_min) + 1e-6 lambda_max."""
    lam_min, lam_max = eigenvalues.lambda_min, eigenvalues.lambda_max
    damping = operator.damping or 0.0
    weight_decay = operator.shift - damping if operator.damping is not None else 0.0
    suggested = damping + 1.1 * max(0.0, -lam_min) + SINGULAR_RELATIVE * max(abs(lam_max), 1e-12)
    kind = "singular" if lam_min > -SINGULAR_RELATIVE * abs(lam_max) else "indefinite (the model is not convex here)"
    return InfluenceInputError(
        f"the Hessian is {kind}: its eigenvalues run from {lam_min:.3g} to {lam_max:.3g} with weight_decay="
        f"{weight_decay:g} and damping={damping:g}, so it has no reliable inverse. Pass damping={suggested:.3g} "
        "(or more), or the weight_decay the model was trained with; InfluenceExplainer.positive_definite() "
        "picks the damping for you"
    )


class ExactSolver(SolverDefaults):
    """x = H^-1 b through a Cholesky factor of H (float64); a singular or indefinite H is refused with the
    damping that fixes it (``not_invertible_error``).

    The explicit Hessian is kept in ``cache`` under the operator's ``key`` (the model, the training set,
    the weight decay) with the damping it was built at: another operator with the same key (the same H
    on a Dask cluster, or with another damping) reuses it, shifted by the difference in damping.
    """

    name = "exact"

    def __init__(
        self, options: ExactOptions | None = None, progress: bool = False, cache: KeyedCache | None = None
    ) -> None:
        self.options = options or ExactOptions()
        self.progress = progress
        self.cache = KeyedCache() if cache is None else cache
        self._hessian: tuple[tuple, torch.Tensor] | None = None  # (cache key with damping, H)
        self._factor: tuple[tuple, torch.Tensor] | None = None
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

    def check_feasible(self, size: int, itemsize: int, device: torch.device) -> None:
        self.check_size(size)
        self.check_memory(size, itemsize, device)

    @staticmethod
    def _key(operator: HessianOperator) -> tuple:
        key = operator.key if operator.key is not None else ("operator", id(operator))
        return ("explicit hessian", key)

    def _damped_key(self, operator: HessianOperator) -> tuple:
        return (*self._key(operator), float(operator.damping or 0.0))

    def explicit_hessian(self, operator: HessianOperator) -> torch.Tensor:
        """The explicit float64 Hessian, damping included: built once per key, shifted for another damping."""
        self.check_size(operator.size)
        damped_key = self._damped_key(operator)
        if self._hessian is not None and self._hessian[0] == damped_key:
            return self._hessian[1]
        stored = self.cache.get(self._key(operator))
        if stored is None:
            self.check_memory(operator.size, operator.dtype.itemsize, operator.device)
            hessian = operator.dense(self.options.columns_per_pass).to(torch.float64)
            self.cache.put(self._key(operator), (float(operator.damping or 0.0), hessian))
        else:
            built_at, hessian = stored
            damping = float(operator.damping or 0.0)
            if built_at != damping:
                hessian = hessian.clone()  # one p x p copy; no identity matrix formed
                hessian.diagonal().add_(damping - built_at)
        self._hessian = damped_key, hessian
        return hessian

    hessian = explicit_hessian  # the name the solver has had since the start

    def holds_explicit_hessian(self, operator: HessianOperator) -> bool:
        return (self._hessian is not None and self._hessian[0] == self._damped_key(operator)) or (
            self._key(operator) in self.cache
        )

    has_hessian = holds_explicit_hessian

    def work(self, operator: HessianOperator, n_rhs: int, n_train: int) -> SolverWork:
        p = operator.size
        memory = {"explicit Hessian": 2 * p * p * 8}  # the float64 Hessian and its factor
        if self.holds_explicit_hessian(operator):
            return SolverWork(memory_bytes=memory)
        curved = operator.curved_count()
        return SolverWork(
            hvp_points=n_train * curved,
            explicit_hessian=True,
            gauss_newton_points=0 if curved == p else n_train,
            memory_bytes=memory,
        )

    def _factorise(self, operator: HessianOperator) -> torch.Tensor:
        hessian = self.explicit_hessian(operator)
        if self._factor is None or self._factor[0] != self._damped_key(operator):
            chol, info = torch.linalg.cholesky_ex(hessian)
            pivots = chol.diagonal().square() if int(info) == 0 else None
            # each pivot lies in [lambda_min, lambda_max]: a pivot near rounding level flags a numerically
            # singular H that Cholesky got through by rounding; then the eigenvalues decide
            suspicious = pivots is not None and float(pivots.min()) < NEAR_SINGULAR_PIVOT * float(pivots.max())
            if suspicious:
                eigs = torch.linalg.eigvalsh(hessian)
                suspicious = float(eigs[0]) <= NEAR_SINGULAR_PIVOT * float(eigs[-1])
            if int(info) == 0 and not suspicious:
                self._factor = self._damped_key(operator), chol
            else:
                eigs = torch.linalg.eigvalsh(hessian)
                self.eigenvalues = EigenvalueEstimate(float(eigs[0]), float(eigs[-1]), "eigvalsh", hessian.shape[0])
                raise not_invertible_error(self.eigenvalues, operator)
        return self._factor[1]

    def solve(self, operator: HessianOperator, rhs: torch.Tensor) -> tuple[torch.Tensor, SolveDiagnostics]:
        start = time.perf_counter()
        factor = self._factorise(operator)
        b = rhs.to(torch.float64)
        x = torch.cholesky_solve(b, factor)
        residual = torch.linalg.vector_norm(self._hessian[1] @ x - b, dim=0)
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
