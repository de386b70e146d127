"""Beyond first order: one Newton step of the leave-one-out objective per removed point.

Removing z turns R into R_-z(theta) = R(theta) - loss(z, theta) / n. One Newton step from the
trained parameters gives

    theta_-z = theta_hat + (H - (1/n) nabla^2 loss(z))^-1 nabla loss(z) / n,

and the refined prediction evaluates the test loss at theta_-z instead of linearising it. The
first-order formula drops the point's own curvature, which matters most for the points with the
largest influence. For a quadratic objective (least squares) the step is exact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .curvature import HessianOperator
from .solvers import CGSolver

if TYPE_CHECKING:
    from .explainer_view import ExplainerView


class RemovedPointsHessian:
    """Column j maps v to (H - (1/n) nabla^2 loss(z_j)) v: one removed point per right-hand side.

    The products with H are batched over all columns; ``matvec_columns`` tells CG which columns
    (and so which removed points) the vectors belong to.
    """

    damping = None
    key = None
    has_gauss_newton = False
    per_column = True

    def __init__(self, base: HessianOperator, objective, x: torch.Tensor, y: torch.Tensor, n: int) -> None:
        self.base = base
        self.objective = objective
        self.x = x
        self.y = y
        self.n = n
        self.size = base.size
        self.dtype = base.dtype
        self.device = base.device
        self.shift = 0.0

    def matvec_columns(self, vectors: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
        own = self.objective.per_point_hessian_matvec(self.x[columns], self.y[columns], vectors)
        return self.base.matvec(vectors) - own / self.n

    def matvec(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.matvec_columns(vectors, torch.arange(vectors.shape[1], device=self.x.device))

    def sample_matvec(self, vectors: torch.Tensor, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        return self.matvec(vectors)

    def dense(self, block: int = 128) -> torch.Tensor:
        raise NotImplementedError("the removed-point Hessians are only used matrix-free")


def newton_removal_steps(explainer: ExplainerView, train_indices: torch.Tensor) -> torch.Tensor:
    """theta_-z - theta_hat for each training index, [k, p], in the explainer's dtype and device.

    With a solver that works from the explicit Hessian (exact), (H - h h^T / n)^-1 is a Sherman-Morrison
    update of the cached factor when the point's Hessian is rank one (binary logistic regression, least
    squares), otherwise a dense float64 solve; with the iterative solvers, one batched CG over all the
    removed-point Hessians.
    """
    objective = explainer.objective
    n = explainer.n_train
    gradients = explainer.gradients_at(train_indices) / n
    x, y = explainer.data.take(train_indices)
    if explainer.solver.explicit_hessian(explainer.hessian) is not None:
        steps = []
        for j in range(len(train_indices)):

            def point_matvec(vectors: torch.Tensor, j=j) -> torch.Tensor:
                return objective.hessian_sum_matvec(x[j : j + 1], y[j : j + 1], vectors)

            steps.append(_exact_step(explainer, point_matvec, gradients[j], n))
        return torch.stack(steps)
    operator = RemovedPointsHessian(explainer.hessian, objective, x, y, n)
    solution, diagnostics = CGSolver(explainer.solver.matrix_free_options()).solve(operator, gradients.T)
    explainer.diagnostics.append(diagnostics)
    return solution.T


def _exact_step(explainer: ExplainerView, point_matvec, gradient: torch.Tensor, n: int) -> torch.Tensor:
    solver = explainer.solver
    hessian = solver.explicit_hessian(explainer.hessian)
    p = hessian.shape[0]
    point_hessian = point_matvec(torch.eye(p, dtype=gradient.dtype, device=gradient.device)).to(torch.float64)
    point_hessian = (point_hessian + point_hessian.T) / 2
    b = gradient.to(torch.float64)[:, None]
    factor = rank_one_factor(point_hessian)
    if factor is not None:
        u = factor[:, None] / n**0.5  # H_-z = H - u u^T
        solved = solver.solve(explainer.hessian, torch.cat([b, u], dim=1).to(gradient.dtype))[0].to(torch.float64)
        h_inv_b, h_inv_u = solved[:, :1], solved[:, 1:]
        denominator = 1 - float(u[:, 0] @ h_inv_u[:, 0])
        step = h_inv_b + h_inv_u * float(u[:, 0] @ h_inv_b[:, 0]) / denominator
    else:
        step = torch.linalg.solve(hessian - point_hessian / n, b)
    return step[:, 0].to(gradient.dtype)


def rank_one_factor(matrix: torch.Tensor, rtol: float = 1e-10) -> torch.Tensor | None:
    """a with matrix = a a^T when the symmetric PSD matrix is rank one (to rtol), else None."""
    diagonal = torch.diagonal(matrix)
    j = int(torch.argmax(diagonal))
    if float(diagonal[j]) <= 0:
        return None
    a = matrix[:, j] / float(diagonal[j]) ** 0.5
    scale = float(torch.linalg.matrix_norm(matrix))
    if float(torch.linalg.matrix_norm(matrix - torch.outer(a, a))) <= rtol * scale:
        return a
    return None
