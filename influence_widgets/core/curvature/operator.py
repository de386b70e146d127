"""Hessian-vector products of the training objective.

H = (1/n) sum_i nabla^2 loss(z_i) + (lambda + damping) I, with lambda the objective's weight decay.
Every operator maps [p, m] to [p, m]. The training-set sums come from a source (``sources.py``: local
chunks, or the shards of a Dask cluster); the explicit matrix (``explicit.py``), the affine group
(``affine.py``) and the preconditioner (``preconditioner.py``) are their own modules, which
``TrainingHessian`` composes and hands its requests to.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable
from typing import Protocol

import torch

from ..training_data import StreamedData, TrainingData
from . import chunk_threads
from .affine import AffineGroup
from .explicit import ExplicitHessian, explicit_hessian
from .objective import Objective
from .preconditioner import GaussNewtonPreconditioners, Preconditioner, preconditioner_points
from .sources import LocalSums, TrainingSums


class HessianOperator(Protocol):
    """What a solver needs: products with H, minibatch estimates of them, and H itself."""

    size: int
    dtype: torch.dtype
    device: torch.device
    shift: float  # a multiple of I known to be part of H (weight decay + damping); 0 if unknown
    damping: float | None  # the damping in ``shift``, where H is a training Hessian (None otherwise)
    key: Hashable | None  # what H depends on apart from the damping (model, data, weight decay); None: unknown
    has_gauss_newton: bool  # offers ``gauss_newton_preconditioner`` (a damped Gauss-Newton matrix of the same data)
    per_column: bool  # its product differs per column: ``matvec_columns(vectors, columns)`` instead of one H

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
    """Matrix-free Hessian of the objective's R(theta) = (1/n) sum_i loss_i + (lambda/2)||theta||^2, plus
    ``damping`` I, with the training-set sums from ``source`` (a ``TrainingSums``; training data is read
    here by a ``LocalSums`` of ``chunk_size`` points per chunk).

    ``key``: what H depends on apart from the damping (see ``core.caches``), for caches of its explicit form;
    the same H from another source (a Dask cluster) has the same key.
    """

    has_gauss_newton = True
    per_column = False

    def __init__(
        self,
        objective: Objective,
        source: TrainingSums | TrainingData | StreamedData,
        *,
        damping: float,
        chunk_size: int,
        progress: bool = False,
        key: Hashable | None = None,
    ) -> None:
        self.key = key
        if isinstance(source, (TrainingData, StreamedData)):
            source = LocalSums(source, chunk_size, progress)
        self.objective = objective
        self.source = source
        self.damping = damping
        self.chunk_size = chunk_size
        self.progress = progress
        self.size = objective.size
        self.dtype = objective.dtype
        self.device = objective.device
        self.affine = AffineGroup(objective, source)
        self.preconditioners = GaussNewtonPreconditioners(source.n)
        self._output_size: int | None = None

    @property
    def weight_decay(self) -> float:
        """lambda, the objective's weight decay."""
        return self.objective.weight_decay

    @property
    def shift(self) -> float:
        """lambda + damping, the multiple of the identity added to the data Hessian."""
        return self.weight_decay + self.damping

    @property
    def module_blocks(self) -> bool:
        """Whether the explicit Hessian may take layer-wise columns and closed-form blocks: where the
        source's chunks can be read here (checked against full products before they are kept)."""
        return self.source.local

    # ------------------------------------------------------------------ products

    def matvec(self, vectors: torch.Tensor) -> torch.Tensor:
        total = self.source.hessian_sum(self.objective, vectors).to(vectors)
        return total / self.source.n + self.shift * vectors

    def sample_matvec(
        self, vectors: torch.Tensor, batch_size: int, generator: torch.Generator, on: Objective | None = None
    ) -> torch.Tensor:
        """A minibatch estimate of H @ vectors (``batch_size`` points drawn by ``generator``); ``on``: a worker
        thread's replica of the objective (``sample_workers``), with reverse-over-reverse products."""
        n = self.source.n
        if batch_size >= n and on is None:
            return self.matvec(vectors)
        indices = torch.randperm(n, generator=generator)[:batch_size] if batch_size < n else torch.arange(n)
        x, y = self.source.take(indices)
        if on is None:
            total = self.source.batch_hessian_sum(self.objective, x, y, vectors)
        else:
            product = functools.partial(on.hessian_sum_matvec, theta=self.objective.theta, reverse=True)
            total = self.source.batch_sum(product, x, y, vectors)
        return total / len(indices) + self.shift * vectors

    def sample_workers(self) -> int:
        """Worker threads that may run minibatch products (``sample_matvec(..., on=replica)``): training data
        held in memory on the CPU (``chunk_threads.usable``), else 0."""
        if not isinstance(self.source, LocalSums) or self.source.data.streamed:
            return 0
        return chunk_threads.usable(self.objective, self.device)

    def gauss_newton(
        self,
        columns: torch.Tensor | None = None,
        positive_part: bool = False,
        indices: torch.Tensor | None = None,
        low_precision: bool = False,
    ) -> torch.Tensor:
        """sum_i J_i^T A_i J_i over the training points (or ``indices``), restricted to ``columns``: [k, k].

        No 1/n, no weight decay. See ``gauss_newton.gauss_newton_sum``.
        """
        total = self.source.gauss_newton_sum(self.objective, columns, positive_part, low_precision, indices)
        return total.to(self.device)

    # ------------------------------------------------------------------ the composed parts

    def affine_mask(self) -> torch.Tensor:
        """The parameters in which the model's outputs are jointly affine (bool [p]), checked on every
        training point; their block of H is exactly their Gauss-Newton block (``affine.AffineGroup``)."""
        return self.affine.everywhere()

    def curved_mask(self) -> torch.Tensor:
        """The parameters outside the affine group (bool [p]): each costs a column of Hessian-vector
        products in an explicit Hessian. Judged on a few training points (no full pass) until
        ``affine_mask`` has checked every point."""
        return ~self.affine.best_known()

    def curved_count(self) -> int:
        """How many parameters ``curved_mask`` flags."""
        return int(self.curved_mask().sum())

    def explicit(self, block: int = 128) -> ExplicitHessian:
        """The explicit Hessian and how it was assembled (``explicit.explicit_hessian``)."""
        return explicit_hessian(self, block)

    def dense(self, block: int = 128) -> torch.Tensor:
        """The explicit Hessian [p, p] (see ``explicit.explicit_hessian``)."""
        return self.explicit(block).matrix

    @property
    def output_size(self) -> int:
        """Model outputs per training point (flattened): the rows one point adds to a Gauss-Newton product."""
        if self._output_size is None:
            with torch.no_grad():
                self._output_size = self.objective.outputs(self.source.take(torch.arange(1))[0]).numel()
        return self._output_size

    def preconditioner_points(self, n_rhs: int) -> int:
        """Training points for the Gauss-Newton preconditioner (``preconditioner.preconditioner_points``)."""
        return preconditioner_points(self.size, self.output_size, n_rhs, self.source.n)

    def has_preconditioner(self, max_points: int) -> bool:
        return self.preconditioners.cached(max_points) is not None

    def gauss_newton_preconditioner(self, max_points: int = 4096, seed: int = 0) -> Preconditioner:
        """v -> (G + (lambda + damping) I)^-1 v, G the positive-part Gauss-Newton matrix of the mean training
        loss over at most ``max_points`` points (``preconditioner.GaussNewtonPreconditioners.get``)."""

        def positive_gauss_newton(indices: torch.Tensor | None) -> torch.Tensor:
            return self.gauss_newton(positive_part=True, indices=indices, low_precision=True)

        return self.preconditioners.get(positive_gauss_newton, self.shift, max_points, seed)


class DenseOperator:
    """A fixed symmetric matrix as a ``HessianOperator`` (tests, and already-formed Hessians)."""

    damping: float | None = None
    key: Hashable | None = None
    has_gauss_newton = False
    per_column = False

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
