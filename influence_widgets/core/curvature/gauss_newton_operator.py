"""``curvature="gauss_newton"``: the generalised Gauss-Newton matrix of the training objective as H.

    G = (1/n) sum_i J_i^T A_i J_i + (lambda + damping) I,   J_i = d f(x_i) / d theta,  A_i = nabla^2_f loss_i,

the Hessian without its second term, sum_k (d loss / d f_k) nabla^2 f_k. For a loss convex in the
outputs (cross-entropy, squared error, binary cross-entropy) every A_i is positive semi-definite, so G
is too: CG and LiSSA work on a non-convex network without guessing a damping (torch-influence's
``gnh``, pyDVL's second-order mode). Where the outputs are affine in the parameters (linear and
logistic regression) G equals the Hessian. Products are matrix-free: per vector, one forward-mode
product J v, the output-space curvature A (J v), and one reverse-mode product J^T (A J v).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from functools import partial

import torch
from torch.func import grad, jvp, vjp, vmap

from .objective import Objective
from .operator import TrainingHessian
from .sources import LocalSums

CURVATURES = ("hessian", "gauss_newton")


def gauss_newton_sum_matvec(
    objective: Objective, x: torch.Tensor, y: torch.Tensor, vectors: torch.Tensor
) -> torch.Tensor:
    """sum_i J_i^T A_i J_i @ vectors over a batch, [p, m] -> [p, m] (no 1/n, no weight decay)."""
    theta = objective.theta

    def outputs(t: torch.Tensor) -> torch.Tensor:
        return objective.outputs(x, t)

    values, pullback = vjp(outputs, theta)
    output_gradient = grad(lambda f: objective.loss_fn(f, y).sum())

    def one(v: torch.Tensor) -> torch.Tensor:
        _, jv = jvp(outputs, (theta,), (v,))
        _, ajv = jvp(output_gradient, (values.detach(),), (jv,))
        return pullback(ajv)[0]

    return vmap(one, in_dims=1, out_dims=1)(vectors)


class GaussNewtonOperator:
    """The Gauss-Newton matrix over the same training set, weight decay and damping as ``base``.

    Products are summed over ``products``, its ``source`` (this process's chunks of the training set; with a Dask
    ``base`` they still run here), its explicit form is one product of per-example Jacobians from
    ``base.gauss_newton`` (on the cluster where ``base`` has one), so the exact solver needs no
    Hessian-vector products; CG's Gauss-Newton preconditioner is ``base``'s.
    """

    has_gauss_newton = True
    per_column = False

    def __init__(self, base: TrainingHessian, products: LocalSums) -> None:
        self.base = base
        self.source = products  # where the training set is read (products here, and factorisations such as K-FAC's)
        self.objective = base.objective
        self.damping = base.damping
        self.size, self.dtype, self.device = base.size, base.dtype, base.device
        self.key: Hashable | None = None if base.key is None else ("gauss-newton", base.key)
        self._product = partial(gauss_newton_sum_matvec, base.objective)

    @property
    def weight_decay(self) -> float:
        return self.base.weight_decay

    @property
    def shift(self) -> float:
        return self.base.shift

    def matvec(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.source.total_sum(self._product, vectors) / self.source.n + self.shift * vectors

    def sample_matvec(self, vectors: torch.Tensor, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        n = self.source.n
        if batch_size >= n:
            return self.matvec(vectors)
        x, y = self.source.take(torch.randperm(n, generator=generator)[:batch_size])
        return self.source.batch_sum(self._product, x, y, vectors) / batch_size + self.shift * vectors

    def dense(self, block: int = 128) -> torch.Tensor:
        """The explicit G in float64: one pass of per-example Jacobians (``block`` is not needed)."""
        matrix = self.base.gauss_newton().to(torch.float64) / self.source.n
        matrix = (matrix + matrix.T) / 2
        matrix.diagonal().add_(self.shift)
        return matrix

    def curved_count(self) -> int:
        """0: no column of G needs Hessian-vector products (for the cost preview and ``auto``)."""
        return 0

    def preconditioner_points(self, n_rhs: int) -> int:
        return self.base.preconditioner_points(n_rhs)

    def has_preconditioner(self, max_points: int) -> bool:
        return self.base.has_preconditioner(max_points)

    def gauss_newton_preconditioner(
        self, max_points: int = 4096, seed: int = 0
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        return self.base.gauss_newton_preconditioner(max_points, seed)
