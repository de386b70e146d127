"""Hessian-vector products of the training objective, explicit Hessians and eigenvalue estimates.

H = (1/n) sum_i nabla^2 loss(z_i) + (lambda + damping) I, with lambda the weight decay.
Every operator maps [p, m] to [p, m] and never forms H unless ``dense()`` is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from .data import TrainingData
from .objective import Objective
from .progress import progress_bar

_POINTS_TIMES_VECTORS = 4096


class HessianOperator(Protocol):
    """What a solver needs: products with H, minibatch estimates of them, and H itself."""

    size: int
    dtype: torch.dtype
    device: torch.device
    shift: float  # a multiple of I known to be part of H (weight decay + damping); 0 if unknown

    def matvec(self, vectors: torch.Tensor) -> torch.Tensor:
        """H @ vectors, [p, m] -> [p, m]."""
        ...

    def sample_matvec(self, vectors: torch.Tensor, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """An unbiased minibatch estimate of H @ vectors."""
        ...

    def dense(self, block: int = 128) -> torch.Tensor:
        """The explicit [p, p] matrix, built ``block`` columns at a time where that matters."""
        ...


class TrainingHessian:
    """Matrix-free Hessian of R(theta) = (1/n) sum_i loss_i + (lambda/2)||theta||^2, plus damping."""

    def __init__(
        self,
        objective: Objective,
        data: TrainingData,
        weight_decay: float,
        damping: float,
        chunk_size: int,
        progress: bool = False,
    ) -> None:
        self.objective = objective
        self.data = data
        self.weight_decay = weight_decay
        self.damping = damping
        self.chunk_size = chunk_size
        self.progress = progress
        self.size = objective.size
        self.dtype = objective.dtype
        self.device = objective.device

    @property
    def shift(self) -> float:
        """lambda + damping, the multiple of the identity added to the data Hessian."""
        return self.weight_decay + self.damping

    def _chunk_for(self, n_vectors: int) -> int:
        """Training points per vmapped product: points x vectors near 4096, where CPU throughput peaks."""
        return max(1, min(self.chunk_size, _POINTS_TIMES_VECTORS // max(1, n_vectors)))

    def _sum_matvec(self, x: torch.Tensor, y: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        chunk = self._chunk_for(vectors.shape[1])
        total = torch.zeros_like(vectors)
        for start in range(0, len(x), chunk):
            total += self.objective.hessian_sum_matvec(x[start : start + chunk], y[start : start + chunk], vectors)
        return total

    def matvec(self, vectors: torch.Tensor) -> torch.Tensor:
        total = torch.zeros_like(vectors)
        for _, x, y in self.data.chunks(self.chunk_size):
            total += self._sum_matvec(x, y, vectors)
        return total / len(self.data) + self.shift * vectors

    def sample_matvec(self, vectors: torch.Tensor, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        n = len(self.data)
        if batch_size >= n:
            return self.matvec(vectors)
        indices = torch.randperm(n, generator=generator)[:batch_size]
        x, y = self.data.take(indices)
        return self._sum_matvec(x, y, vectors) / batch_size + self.shift * vectors

    def dense(self, block: int = 128) -> torch.Tensor:
        """The explicit Hessian, built from blocks of Hessian-vector products with basis vectors."""
        p = self.size
        hessian = torch.empty(p, p, dtype=self.dtype, device=self.device)
        eye = torch.eye(p, dtype=self.dtype, device=self.device)
        starts = range(0, p, block)
        for start in progress_bar(starts, enabled=self.progress, desc="explicit Hessian", total=len(starts)):
            hessian[:, start : start + block] = self.matvec(eye[:, start : start + block])
        return (hessian + hessian.T) / 2


class DenseOperator:
    """A fixed symmetric matrix as a ``HessianOperator`` (tests, and already-formed Hessians)."""

    def __init__(self, matrix: torch.Tensor, shift: float = 0.0) -> None:
        self.matrix = matrix
        self.shift = shift
        self.size = matrix.shape[0]
        self.dtype = matrix.dtype
        self.device = matrix.device

    def matvec(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.matrix @ vectors

    def sample_matvec(self, vectors: torch.Tensor, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        return self.matrix @ vectors

    def dense(self, block: int = 128) -> torch.Tensor:
        return self.matrix


@dataclass(frozen=True)
class EigenvalueEstimate:
    """Extreme eigenvalues of H (including weight decay and damping), from Lanczos or an eigensolver."""

    lambda_min: float
    lambda_max: float
    method: str
    steps: int

    @property
    def condition_number(self) -> float:
        return self.lambda_max / self.lambda_min if self.lambda_min > 0 else float("inf")


def lanczos_extremes(operator: HessianOperator, steps: int = 40, seed: int = 0) -> EigenvalueEstimate:
    """Smallest and largest eigenvalue of a symmetric operator by Lanczos with full reorthogonalisation.

    The extreme Ritz values converge from inside the spectrum, so the estimates satisfy
    lambda_min_est >= lambda_min and lambda_max_est <= lambda_max, and are tight after a few dozen steps.
    """
    p = operator.size
    steps = max(1, min(steps, p))
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(p, 1, generator=generator, dtype=torch.float64).to(operator.device, operator.dtype)
    q = q / torch.linalg.vector_norm(q)
    basis = [q]
    alphas: list[float] = []
    betas: list[float] = []
    for k in range(steps):
        w = operator.matvec(basis[-1])
        alpha = float((basis[-1] * w).sum())
        alphas.append(alpha)
        stacked = torch.cat(basis, dim=1)
        w = w - stacked @ (stacked.T @ w)
        w = w - stacked @ (stacked.T @ w)
        beta = float(torch.linalg.vector_norm(w))
        if k == steps - 1 or beta <= 1e-10 * max(1.0, abs(alpha)):
            break
        betas.append(beta)
        basis.append(w / beta)
    tridiagonal = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if betas:
        off = torch.tensor(betas, dtype=torch.float64)
        tridiagonal += torch.diag(off, 1) + torch.diag(off, -1)
    ritz = torch.linalg.eigvalsh(tridiagonal)
    return EigenvalueEstimate(float(ritz[0]), float(ritz[-1]), method="lanczos", steps=len(alphas))
