"""Block conjugate gradients: one Krylov space shared by every right-hand side.

Each iteration takes the (preconditioned) residuals of the columns not yet converged, makes them
H-orthogonal to every earlier direction and orthonormal among themselves, multiplies them by H once
(one batched pass over the training set), and moves every column by its Galerkin step onto the new
block: with S^T H S = I and Q = H S, X += S (S^T R) and R -= Q (S^T R). That step is the exact
minimiser of the H-norm error over the block, whatever the preconditioner (it need not be symmetric
or fixed), so the error never grows. Sharing the space makes 50 test points cost a few iterations of
50 products, where separate CG runs would each need their own dozens. The blocks are kept (up to a
memory budget) and reused: a later solve with the same H starts from the projection onto them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..errors import SolverDivergedError

Matvec = Callable[[torch.Tensor], torch.Tensor]
BASIS_BYTES = 2**28  # directions and their products kept for reuse, at most ...
_BASIS_FRACTION = 0.5  # ... and at most p / 2 of them: a fuller space is mostly rounding, and exact is cheaper
_FRESH = 30.0  # a direction is new if more than 30 sqrt(eps) of it survives projection onto the stored space


@dataclass
class KrylovBasis:
    """H-orthonormal blocks S_i (S_i^T H S_j = delta_ij I) with their products Q_i = H S_i."""

    directions: list[torch.Tensor] = field(default_factory=list)
    products: list[torch.Tensor] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(s.shape[1] for s in self.directions)

    def copy(self) -> KrylovBasis:
        return KrylovBasis(list(self.directions), list(self.products))

    def step(self, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The Galerkin step onto the stored space and its product: (sum S_i S_i^T r, sum Q_i S_i^T r)."""
        dx = torch.zeros_like(residual)
        dr = torch.zeros_like(residual)
        for s, q in zip(self.directions, self.products):
            alpha = s.T @ residual
            dx += s @ alpha
            dr += q @ alpha
        return dx, dr

    def orthogonalise(self, vectors: torch.Tensor) -> torch.Tensor:
        """``vectors`` made H-orthogonal to every stored direction (classical Gram-Schmidt, twice)."""
        for _ in range(2):
            for s, q in zip(self.directions, self.products):
                vectors = vectors - s @ (q.T @ vectors)
        return vectors

    def add(self, directions: torch.Tensor, products: torch.Tensor) -> None:
        self.directions.append(directions)
        self.products.append(products)

    def trim(self, for_reuse: bool = False) -> None:
        """Drop the oldest blocks beyond 256 MiB (and, ``for_reuse``, beyond p / 2 directions); the newest stays."""
        if not self.directions:
            return
        p, itemsize = self.directions[0].shape[0], self.directions[0].element_size()
        limit = BASIS_BYTES // (2 * p * itemsize)
        if for_reuse:
            limit = min(limit, int(_BASIS_FRACTION * p))
        while len(self.directions) > 1 and self.size > limit:
            self.directions.pop(0)
            self.products.pop(0)


def _new_directions(basis: KrylovBasis, vectors: torch.Tensor, eps: float) -> torch.Tensor:
    """An orthonormal basis of what ``vectors`` add to the stored space (H-orthogonal to it): columns that
    projection leaves with less than 30 sqrt(eps) of their norm, and dependent combinations, are rounding."""
    before = torch.linalg.vector_norm(vectors, dim=0)
    vectors = basis.orthogonalise(vectors)
    fresh = torch.linalg.vector_norm(vectors, dim=0) > _FRESH * eps**0.5 * before
    vectors = vectors[:, fresh]
    if vectors.shape[1] == 0:
        return vectors
    gram = (vectors.T @ vectors).double()
    eigenvalues, eigenvectors = torch.linalg.eigh((gram + gram.T) / 2)
    if float(eigenvalues[-1]) <= 0:
        return vectors[:, :0]
    keep = eigenvalues > 100 * eps * float(eigenvalues[-1])
    transform = eigenvectors[:, keep] / eigenvalues[keep].sqrt()
    return vectors @ transform.to(vectors.dtype)


@dataclass
class BlockResult:
    solution: torch.Tensor
    history: list[float]
    iterations: int
    products: int
    converged: bool
    basis: KrylovBasis


def block_conjugate_gradients(
    matvec: Matvec,
    rhs: torch.Tensor,
    *,
    rtol: float,
    max_iter: int,
    precondition: Matvec | None = None,
    basis: KrylovBasis | None = None,
    max_restarts: int = 2,
    on_iteration: Callable[[], None] | None = None,
) -> BlockResult:
    """Solve H X = rhs [p, m] to ||H x_j - b_j|| <= rtol ||b_j|| for every column.

    ``basis``: H-orthonormal directions of earlier solves with the same H to start from (not modified);
    the result's ``basis`` holds them and this solve's. Each run of iterations ends with the true
    residual b - H x (one more product per column); ``converged`` and the last entry of ``history``
    (the worst column's relative residual after each iteration and each check) are that true residual,
    and a run that stops short restarts from it, at most ``max_restarts`` times. Every column takes
    every step, so a converged column keeps improving. Raises ``SolverDivergedError`` when H shows a
    direction of negative curvature.
    """
    basis = KrylovBasis() if basis is None else basis.copy()
    eps = torch.finfo(rhs.dtype).eps
    norms = torch.linalg.vector_norm(rhs, dim=0).clamp_min(torch.finfo(rhs.dtype).tiny)
    solution, products = basis.step(rhs)  # the projection onto earlier solves' space costs no product
    residual = rhs - products
    history: list[float] = []
    iterations = n_products = 0
    for _ in range(max_restarts + 1):
        relative = torch.linalg.vector_norm(residual, dim=0) / norms
        active = relative > rtol
        start_iterations = iterations
        while bool(active.any()) and iterations < max_iter:
            start_block = residual[:, active]
            start_block = precondition(start_block) if precondition is not None else start_block
            block = _new_directions(basis, start_block, eps)
            if block.shape[1] == 0 and basis.size:
                # The space is spanned, yet the residual remains: its directions lost their H-orthogonality to
                # rounding (an ill-conditioned H). Start a fresh space from the residual, keeping the solution.
                basis = KrylovBasis()
                block = _new_directions(basis, start_block, eps)
            if block.shape[1] == 0:
                break  # nothing new to add: every remaining direction is already in the space
            image = matvec(block)
            n_products += block.shape[1]
            rayleigh = (block.T @ image).double()
            curvature, rotation = torch.linalg.eigh((rayleigh + rayleigh.T) / 2)
            top = float(curvature.abs().max())
            if float(curvature[0]) < -100 * eps * top:
                raise SolverDivergedError(
                    f"CG met negative curvature (a Rayleigh quotient of H of {float(curvature[0]):.3g}) at iteration "
                    f"{iterations + 1}: the Hessian is not positive definite. Add damping (at least the magnitude of "
                    "the smallest eigenvalue, see InfluenceExplainer.curvature()) or raise weight_decay."
                )
            keep = curvature > 10 * eps * top
            if not bool(keep.any()):
                break
            scale = (rotation[:, keep] / curvature[keep].sqrt()).to(rhs.dtype)
            directions, images = block @ scale, image @ scale  # directions^T H directions = I
            alpha = directions.T @ residual
            solution += directions @ alpha
            residual -= images @ alpha
            basis.add(directions, images)
            basis.trim()
            iterations += 1
            relative = torch.linalg.vector_norm(residual, dim=0) / norms
            history.append(float(relative.max()))
            active = relative > rtol
            if on_iteration is not None:
                on_iteration()
        # The recursive residual drifts from b - Hx in finite precision: check the true one.
        residual = rhs - matvec(solution)
        n_products += rhs.shape[1]
        relative = torch.linalg.vector_norm(residual, dim=0) / norms
        history.append(float(relative.max()))
        converged = not bool((relative > rtol).any())
        if converged or iterations >= max_iter or iterations == start_iterations:
            break  # done, out of iterations, or no progress since the last restart
    basis.trim(for_reuse=True)
    return BlockResult(solution, history, iterations, n_products, converged, basis)
