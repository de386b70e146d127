"""Matrix-free conjugate gradients on several right-hand sides at once: block CG (one shared Krylov
space, optionally preconditioned) or one recursion per column."""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch

from ..curvature import HessianOperator, lanczos_extremes
from ..errors import ConvergenceWarning, InfluenceInputError, SolverDivergedError
from ..progress import progress_counter
from .base import SolveDiagnostics, SolverDefaults, SolverWork, curvature_fix
from .block_cg import BASIS_BYTES, KrylovBasis, block_conjugate_gradients
from .options import CGOptions

_MAX_RESTARTS = 2


def default_rtol(dtype: torch.dtype) -> float:
    return 1e-8 if dtype == torch.float64 else 1e-5


class CGSolver(SolverDefaults):
    """Block CG by default: every right-hand side shares one Krylov space, each iteration is one
    batched pass of Hessian-vector products, and the damped Gauss-Newton matrix preconditions it.
    Operators whose product differs per column (``matvec_columns``) get one CG recursion per column,
    their products batched into one pass over the training set."""

    name = "cg"

    def __init__(self, options: CGOptions | None = None, progress: bool = False, cache: object = None) -> None:
        self.options = options or CGOptions()
        self.progress = progress
        self._basis: KrylovBasis | None = None
        self._basis_operator: HessianOperator | None = None

    def uses_preconditioner(self, operator: HessianOperator) -> bool:
        """Whether block CG preconditions ``operator`` with its Gauss-Newton matrix (the options allow it)."""
        choice = self.options.preconditioner
        available = operator.has_gauss_newton
        if choice == "gauss-newton" and not available:
            raise InfluenceInputError(
                f"CGOptions(preconditioner='gauss-newton') needs the training Hessian; this operator "
                f"({type(operator).__name__}) has no Gauss-Newton matrix. Use preconditioner='none'"
            )
        if choice == "auto":
            return available and operator.size <= self.options.preconditioner_max_params
        return choice == "gauss-newton"

    def preconditioner_points(self, operator: HessianOperator, n_rhs: int) -> int:
        """Training points of the Gauss-Newton preconditioner for a solve with ``n_rhs`` right-hand sides."""
        if self.options.preconditioner_points is not None:
            return self.options.preconditioner_points
        return operator.preconditioner_points(n_rhs)

    def matrix_free_options(self) -> CGOptions:
        return self.options

    def work(self, operator: HessianOperator, n_rhs: int, n_train: int) -> SolverWork:
        """At most ``max_iter`` products per right-hand side; block CG keeps directions for reuse, and the
        Gauss-Newton preconditioner, when it is used and not yet built, costs one pass of Jacobians."""
        p, itemsize = operator.size, operator.dtype.itemsize
        memory, gauss_newton_points = {}, 0
        if self.options.block and not operator.per_column:
            memory["Krylov directions"] = min(BASIS_BYTES, 2 * (p // 2) * p * itemsize)
            points = self.preconditioner_points(operator, n_rhs) if self.uses_preconditioner(operator) else 0
            if points and not operator.has_preconditioner(points):
                gauss_newton_points = min(n_train, points)
                memory["preconditioner"] = 2 * p * p * 8  # the float64 Gauss-Newton matrix and its factor
        return SolverWork(
            hvp_points=self.options.max_iter * n_rhs * n_train,
            gauss_newton_points=gauss_newton_points,
            memory_bytes=memory,
            upper_bound=True,
        )

    def _preconditioner(self, operator: HessianOperator, n_rhs: int):
        if not self.uses_preconditioner(operator):
            return None
        return operator.gauss_newton_preconditioner(self.preconditioner_points(operator, n_rhs))

    def _basis_for(self, operator: HessianOperator) -> KrylovBasis:
        if not self.options.recycle or self._basis_operator is not operator or self._basis is None:
            self._basis, self._basis_operator = KrylovBasis(), operator
        return self._basis

    def solve(self, operator: HessianOperator, rhs: torch.Tensor) -> tuple[torch.Tensor, SolveDiagnostics]:
        """H^-1 rhs to the relative residual ``rtol`` per column (``converged`` says whether it was met).

        Raises ``SolverDivergedError`` naming the ``damping`` (or ``weight_decay``) that makes H positive
        definite when CG meets negative curvature, or when it stalls on an H without weight decay and
        damping that is singular."""
        try:
            if not self.options.block or operator.per_column:
                x, diagnostics = self._solve_columns(operator, rhs)
            else:
                x, diagnostics = self._solve_block(operator, rhs)
        except SolverDivergedError as error:
            estimate = lanczos_extremes(operator)
            raise SolverDivergedError(
                f"{error} {curvature_fix(operator, estimate.lambda_min, estimate.lambda_max)}."
            ) from None
        if not diagnostics.converged and operator.shift <= 0:
            estimate = lanczos_extremes(operator)
            if estimate.lambda_min <= 1e3 * torch.finfo(operator.dtype).eps * abs(estimate.lambda_max):
                raise SolverDivergedError(
                    f"CG did not converge (relative residual {float(diagnostics.residuals[-1]):.2e}) and "
                    + curvature_fix(operator, estimate.lambda_min, estimate.lambda_max)
                    + ". Influence through a singular H is undefined."
                )
        return x, diagnostics

    def _solve_block(self, operator: HessianOperator, rhs: torch.Tensor) -> tuple[torch.Tensor, SolveDiagnostics]:
        start = time.perf_counter()
        rtol = self.options.rtol if self.options.rtol is not None else default_rtol(rhs.dtype)
        precondition = self._preconditioner(operator, rhs.shape[1])
        basis = self._basis_for(operator)
        bar = progress_counter(enabled=self.progress, desc="block conjugate gradients", total=self.options.max_iter)

        def run(start_from: KrylovBasis | None):
            return block_conjugate_gradients(
                operator.matvec,
                rhs,
                rtol=rtol,
                max_iter=self.options.max_iter,
                precondition=precondition,
                basis=start_from,
                max_restarts=_MAX_RESTARTS,
                on_iteration=lambda: bar.update(1),
            )

        reused, products = basis.size, 0
        try:
            result = run(basis)
            if not result.converged and reused:  # the stored directions did not help: solve afresh
                products, reused = result.products, 0
                result = run(None)
        finally:
            bar.close()
        if self.options.recycle:  # keep only directions that led to a converged solve
            self._basis = result.basis if result.converged else KrylovBasis()
        diagnostics = SolveDiagnostics(
            solver=self.name,
            n_rhs=rhs.shape[1],
            converged=result.converged,
            iterations=result.iterations,
            seconds=time.perf_counter() - start,
            hessian_vector_products=products + result.products,
            residuals=np.asarray(result.history),
            preconditioner="gauss-newton" if precondition is not None else None,
            reused_directions=reused,
        )
        self._warn_unless_converged(diagnostics, rtol, stacklevel=6)
        return result.solution, diagnostics

    def _warn_unless_converged(self, diagnostics: SolveDiagnostics, rtol: float, stacklevel: int) -> None:
        if diagnostics.converged:
            return
        worst = float(diagnostics.residuals[-1])
        message = (
            f"CG stopped after {diagnostics.iterations} iterations at relative residual {worst:.2e} > rtol {rtol:.1e}; "
            "raise CGOptions(max_iter=...), add damping to improve the conditioning, or use solver='exact'"
        )
        diagnostics.warnings.append(message)
        warnings.warn(message, ConvergenceWarning, stacklevel=stacklevel)

    def _solve_columns(self, operator: HessianOperator, rhs: torch.Tensor) -> tuple[torch.Tensor, SolveDiagnostics]:
        """One CG recursion per column; the products of the unconverged columns are batched."""
        start = time.perf_counter()
        rtol = self.options.rtol if self.options.rtol is not None else default_rtol(rhs.dtype)
        x = torch.zeros_like(rhs)
        rhs_norm = torch.linalg.vector_norm(rhs, dim=0)
        safe_norm = rhs_norm.clamp_min(torch.finfo(rhs.dtype).tiny)
        residual = rhs.clone()
        active = rhs_norm > 0
        history: list[torch.Tensor] = []
        iterations = products = 0
        bar = progress_counter(enabled=self.progress, desc="conjugate gradients", total=self.options.max_iter)
        try:
            for _ in range(_MAX_RESTARTS + 1):
                start_iterations = iterations
                iterations, products = self._iterate(
                    operator, x, residual, active, safe_norm, rtol, history, iterations, products, bar
                )
                # The recursive residual drifts from b - Hx in finite precision: check the true one.
                residual = rhs - operator.matvec(x)  # every column, in order
                products += rhs.shape[1]
                relative = torch.linalg.vector_norm(residual, dim=0) / safe_norm
                history.append(relative.max())
                active = relative > rtol
                if not bool(active.any()) or iterations >= self.options.max_iter or iterations == start_iterations:
                    break
        finally:
            bar.close()
        residuals = torch.stack(history).cpu().numpy() if history else np.zeros(0)
        converged = not bool(active.any())
        diagnostics = SolveDiagnostics(
            solver=self.name,
            n_rhs=rhs.shape[1],
            converged=converged,
            iterations=iterations,
            seconds=time.perf_counter() - start,
            hessian_vector_products=products,
            residuals=residuals,
        )
        self._warn_unless_converged(diagnostics, rtol, stacklevel=6)
        return x, diagnostics

    def _iterate(self, operator, x, residual, active, safe_norm, rtol, history, iterations, products, bar):
        """CG from the current x and residual (both updated in place) until every column converges."""
        direction = residual.clone()
        rs = (residual * residual).sum(0)
        # operators whose product differs per column (one removed point each) say which columns they get
        matvec_columns = operator.matvec_columns if operator.per_column else None
        while bool(active.any()) and iterations < self.options.max_iter:
            cols = active.nonzero().squeeze(1)
            p_active = direction[:, cols]
            hp = matvec_columns(p_active, cols) if matvec_columns else operator.matvec(p_active)
            products += cols.numel()
            curvature = (p_active * hp).sum(0)
            if bool((curvature <= 0).any()):
                raise SolverDivergedError(
                    f"CG met non-positive curvature p^T H p = {float(curvature.min()):.3g} at iteration "
                    f"{iterations + 1}: the Hessian is not positive definite. Add damping (at least the "
                    "magnitude of the smallest eigenvalue, see InfluenceExplainer.curvature()) or raise "
                    "weight_decay."
                )
            alpha = rs[cols] / curvature
            x[:, cols] += alpha * p_active
            residual[:, cols] -= alpha * hp
            rs_new = (residual[:, cols] ** 2).sum(0)
            direction[:, cols] = residual[:, cols] + (rs_new / rs[cols]) * p_active
            rs[cols] = rs_new
            iterations += 1
            relative = torch.sqrt(rs) / safe_norm
            history.append(relative.max())
            active &= relative > rtol
            bar.update(1)
        return iterations, products
