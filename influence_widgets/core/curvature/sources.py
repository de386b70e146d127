"""Where the training-set sums come from: the curvature operator asks a source, not the data.

A source adds up, over the training points z_i, the loss Hessian's products sum_i nabla^2 L(z_i) @ V
and the Gauss-Newton sum sum_i J_i^T A_i J_i, reads points by index (minibatches, samples), and tells
whether a check holds on every training input. ``LocalSums`` computes them here, chunk by chunk;
``distributed.ShardedSums`` on the shards of a Dask cluster. Only a ``local`` source can also be read
chunk by chunk (``chunks``), which layer-wise columns, closed-form blocks and float64 checks need.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

import torch

from ..progress import progress_bar
from ..training_data import StreamedData, TrainingData
from . import chunk_threads
from .gauss_newton import gauss_newton_sum, jacobian_chunks
from .objective import Objective

# The rule for points per vmapped product: a call's fixed cost is amortised once it does about
# _WORK_PER_CALL point x vector x parameter products, so points x vectors = _WORK_PER_CALL / p, kept
# between _LEAST_PAIRS and _MOST_PAIRS (small models need more points per call to cover that cost, large
# ones at least a few thousand pairs); for fewer than _FEW_VECTORS vectors a call costs relatively more,
# so it takes _FEW_VECTORS_FACTOR x the points. Never more than the points one read brings.
_WORK_PER_CALL = 2**23
_LEAST_PAIRS = 4096
_MOST_PAIRS = 16 * 4096
_FEW_VECTORS = 16
_FEW_VECTORS_FACTOR = 4
_MAX_CHUNKS_PER_READ = 8  # points read at once from tensors: this many chunk_size chunks


PointProduct = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (x, y, vectors) -> sum


def points_per_call(n_params: int, n_vectors: int, most: int) -> int:
    """Training points per vmapped Hessian-vector product with ``n_vectors`` vectors (see the rule above)."""
    n_vectors = max(1, n_vectors)
    pairs = min(_MOST_PAIRS, max(_LEAST_PAIRS, _WORK_PER_CALL // max(1, n_params)))
    pairs *= _FEW_VECTORS_FACTOR if n_vectors < _FEW_VECTORS else 1
    return max(1, min(most, pairs // n_vectors))


Check = Callable[[Objective, torch.Tensor], bool]  # (objective, inputs of a batch) -> whether it holds there


class TrainingSums(Protocol):
    """What the curvature operator needs from the training set (``n`` points)."""

    n: int
    local: bool  # chunks can be read here (``chunks``): layer-wise columns, closed forms, float64 checks

    def take(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The points at ``indices``, read here."""
        ...

    def hessian_sum(self, objective: Objective, vectors: torch.Tensor) -> torch.Tensor:
        """sum_i nabla^2 L(z_i) @ vectors over all points, [p, m] -> [p, m] (no 1/n, no weight decay)."""
        ...

    def batch_hessian_sum(
        self, objective: Objective, x: torch.Tensor, y: torch.Tensor, vectors: torch.Tensor
    ) -> torch.Tensor:
        """The same sum over the points (x, y) read by ``take``, computed here (minibatch products)."""
        ...

    def gauss_newton_sum(
        self,
        objective: Objective,
        columns: torch.Tensor | None,
        positive_part: bool,
        low_precision: bool,
        indices: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """sum_i J_i^T A_i J_i over all points (or ``indices``), see ``gauss_newton.gauss_newton_sum``."""
        ...

    def holds_everywhere(self, objective: Objective, check: Check) -> bool:
        """Whether ``check`` holds on the inputs of every training batch."""
        ...


class LocalSums:
    """The sums computed in this process over ``data``, read ``chunk_size`` points at a time from a Dataset
    (its documented promise) and up to 8 x ``chunk_size`` from tensors."""

    local = True

    def __init__(self, data: TrainingData | StreamedData, chunk_size: int, progress: bool = False) -> None:
        self.data = data
        self.chunk_size = chunk_size
        self.progress = progress

    @property
    def n(self) -> int:
        return len(self.data)

    def __len__(self) -> int:
        return len(self.data)

    @property
    def read_size(self) -> int:
        """Points read at a time."""
        return self.chunk_size if self.data.streamed else _MAX_CHUNKS_PER_READ * self.chunk_size

    def take(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data.take(indices)

    def chunks(self, size: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """(start, x, y) chunks of ``size`` points, in training order."""
        return self.data.chunks(size)

    def points_per_call(self, n_params: int, n_vectors: int) -> int:
        return points_per_call(n_params, n_vectors, self.read_size)

    def batch_sum(self, product: PointProduct, x: torch.Tensor, y: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        """sum over the batch (x, y) of ``product(x_chunk, y_chunk, vectors)`` (a per-point curvature times
        vectors, summed), in calls of ``points_per_call`` points."""
        chunk = self.points_per_call(vectors.shape[0], vectors.shape[1])
        total = torch.zeros_like(vectors)
        for start in range(0, len(x), chunk):
            total += product(x[start : start + chunk], y[start : start + chunk], vectors)
        return total

    def total_sum(self, product: PointProduct, vectors: torch.Tensor) -> torch.Tensor:
        """``batch_sum`` over the whole training set."""
        total = torch.zeros_like(vectors)
        read = max(self.chunk_size, self.points_per_call(vectors.shape[0], vectors.shape[1]))
        for _, x, y in self.data.chunks(read):
            total += self.batch_sum(product, x, y, vectors)
        return total

    def batch_hessian_sum(
        self, objective: Objective, x: torch.Tensor, y: torch.Tensor, vectors: torch.Tensor
    ) -> torch.Tensor:
        """sum over the batch (x, y) of nabla^2 L(z_i) @ vectors, in calls of ``points_per_call`` points."""
        return self.batch_sum(objective.hessian_sum_matvec, x, y, vectors)

    def hessian_sum(self, objective: Objective, vectors: torch.Tensor) -> torch.Tensor:
        if self.data.streamed:
            return self.total_sum(objective.hessian_sum_matvec, vectors)
        per_call = self.points_per_call(vectors.shape[0], vectors.shape[1])
        total = torch.zeros_like(vectors)
        for _, x, y in self.data.chunks(max(self.chunk_size, per_call)):
            workers = chunk_threads.usable(objective, x.device)
            if workers:  # whole chunk sums on worker threads (see chunk_threads)
                total += chunk_threads.hessian_sum(objective, x, y, vectors, workers, per_call)
            else:
                total += self.batch_sum(objective.hessian_sum_matvec, x, y, vectors)
        return total

    def gauss_newton_sum(
        self,
        objective: Objective,
        columns: torch.Tensor | None,
        positive_part: bool,
        low_precision: bool,
        indices: torch.Tensor | None = None,
    ) -> torch.Tensor:
        closed = objective.closed_form_points(self.read_size) if indices is None else None
        if closed is not None:  # the closed form: chunks sized by its own products
            chunks, total = ((x, y) for _, x, y in self.data.chunks(closed)), -(-self.n // closed)
        else:
            chunks, total = jacobian_chunks(objective, self.data, self.chunk_size, indices)
        chunks = progress_bar(chunks, enabled=self.progress, desc="Gauss-Newton matrix", total=total)
        return gauss_newton_sum(objective, chunks, columns, positive_part, low_precision)

    def holds_everywhere(self, objective: Objective, check: Check) -> bool:
        return all(check(objective, x) for _, x, _ in self.data.chunks(self.read_size))
