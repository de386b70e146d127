"""``solver="auto"`` where the explicit Hessian is not cheap: the first answers by block CG, then exact.

An explorer asks about one test point per click. Building the explicit Hessian of a network (one
column of Hessian-vector products per parameter outside the affine last layer) takes several CG
solves' worth of work, and the first click waits for all of it. So the first few right-hand sides
are solved by block CG (Gauss-Newton preconditioned, its Krylov directions recycled), and once
``CG_TEST_POINTS`` have been answered that way, or a solve asks for more than ``CG_MAX_RHS`` at once,
the explicit Hessian is built and factorised: every later click is then a triangular solve. The
work wasted is at most those CG solves (a ski-rental rule: at most about twice the better choice in
hindsight). The diagnostics' ``note`` says which path answered and when the switch comes.
"""

from __future__ import annotations

import torch

from ..caches import KeyedCache
from ..curvature import HessianOperator
from .base import SolveDiagnostics, SolverWork
from .cg import CGSolver
from .exact import ExactSolver
from .options import CGOptions, ExactOptions

CG_MAX_RHS = 2  # a solve with more right-hand sides builds the explicit Hessian at once
CG_TEST_POINTS = 4  # right-hand sides answered by CG before the explicit Hessian is built


class FirstAnswerExactSolver(ExactSolver):
    """An ``ExactSolver`` whose first few small solves, before its Hessian exists, run block CG."""

    def __init__(
        self, options: ExactOptions | None = None, progress: bool = False, cache: KeyedCache | None = None
    ) -> None:
        super().__init__(options, progress, cache)
        self.cg = CGSolver(CGOptions(), progress=progress)
        self.answered_by_cg = 0

    def _cg_answers(self, operator: HessianOperator, m: int) -> bool:
        return (
            not self.holds_explicit_hessian(operator)
            and m <= CG_MAX_RHS
            and self.answered_by_cg + m <= CG_TEST_POINTS
            and operator.has_gauss_newton
        )

    def work(self, operator: HessianOperator, n_rhs: int, n_train: int) -> SolverWork:
        """Block CG's work while it answers, then the exact solver's."""
        if self._cg_answers(operator, n_rhs):
            return self.cg.work(operator, n_rhs, n_train)
        return super().work(operator, n_rhs, n_train)

    def solve(self, operator: HessianOperator, rhs: torch.Tensor) -> tuple[torch.Tensor, SolveDiagnostics]:
        m = rhs.shape[1]
        if self._cg_answers(operator, m):
            x, diagnostics = self.cg.solve(operator, rhs)
            if diagnostics.converged:
                self.answered_by_cg += m
                left = CG_TEST_POINTS - self.answered_by_cg
                diagnostics.note = (
                    f"the first answers by block CG (faster than building the explicit Hessian for a first answer); "
                    f"{left} more test point(s) by CG, then the explicit Hessian is built once and every later "
                    "one is a triangular solve"
                )
                return x, diagnostics
        x, diagnostics = super().solve(operator, rhs)
        if self.answered_by_cg:
            diagnostics.note = (
                f"the explicit Hessian built after {self.answered_by_cg} test point(s) answered by "
                "block CG; every later test point is a triangular solve"
            )
        return x, diagnostics
