"""The training set sharded across the workers of a ``dask.distributed`` cluster.

Each worker holds the model (as an ``Objective``) and its shards, and computes its part of G @ v
(scores), of sum_i nabla^2 L_i @ V (Hessian-vector products for CG, LiSSA's scale and the explicit
Hessian) and of the Gauss-Newton sum (the explicit Hessian's affine block, CG's preconditioner);
the client adds the parts up. Every shard, its gradients and the model are Dask
futures computed by tasks, so when a worker dies, Dask recomputes what it held on another worker.

Shards are contiguous ranges of training indices: the slices of tensors, ``Subset``s of a Dataset,
or the parts of a ``ConcatDataset`` as given. Tensor slices travel inside the task graph; for large
data, pass a Dataset that reads its items lazily (from files the workers can see).
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import torch
from torch.utils.data import ConcatDataset, Subset

from .curvature import TrainingHessian
from .data import StreamedData, TrainingData
from .errors import InfluenceInputError
from .gauss_newton import gauss_newton_sum, jacobian_chunks
from .objective import Objective


def check_client(client: Any) -> Any:
    """Return ``client`` if it is a ``dask.distributed.Client``; explain otherwise."""
    try:
        from distributed import Client
    except ImportError as error:  # optional dependency
        raise InfluenceInputError(
            "client= needs dask.distributed; install it with pip install 'influence-widgets[dask]'"
        ) from error
    if not isinstance(client, Client):
        raise InfluenceInputError(
            f"client must be a dask.distributed.Client, got {type(client).__name__}; create one with "
            "Client(LocalCluster()) or Client('tcp://scheduler-address:8786')"
        )
    return client


# ---------------------------------------------------------------- what runs on the workers


def _identity(value: Any) -> Any:
    return value


def _shard_gradients(objective: Objective, shard: TrainingData | StreamedData, batch_size: int) -> torch.Tensor:
    return torch.cat([objective.per_example_grads(x, y, None) for _, x, y in shard.chunks(batch_size)])


def _scores(gradients: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    return (vectors.to(gradients) @ gradients.T).cpu()


def _hessian_sum(objective: Objective, shard: TrainingData | StreamedData, batch: int, vectors: torch.Tensor):
    partial = TrainingHessian(objective, shard, 0.0, 0.0, batch)
    total = torch.zeros_like(vectors, device=objective.device)
    for _, x, y in shard.chunks(batch):
        total += partial._sum_matvec(x, y, vectors.to(objective.device))
    return total.cpu()


def _gauss_newton_part(
    objective: Objective,
    shard: TrainingData | StreamedData,
    batch: int,
    columns: Any,
    positive_part: bool,
    low_precision: bool,
) -> torch.Tensor:
    chunks, _ = jacobian_chunks(objective, shard, batch)
    return gauss_newton_sum(objective, chunks, columns, positive_part, low_precision).cpu()


# ---------------------------------------------------------------- the client side


def _shard_sources(data: TrainingData | StreamedData, n_shards: int) -> list[tuple[int, Any]]:
    """(start, picklable shard source) per shard, in training-index order."""
    if data.streamed and isinstance(data.dataset, ConcatDataset):
        starts = [0, *data.dataset.cumulative_sizes[:-1]]
        return list(zip(starts, data.dataset.datasets))
    n = len(data)
    bounds = [round(k * n / n_shards) for k in range(n_shards + 1)]
    ranges = [(a, b) for a, b in pairwise(bounds) if b > a]
    if data.streamed:
        return [(a, Subset(data.dataset, range(a, b))) for a, b in ranges]
    return [(a, (data.x[a:b], data.y[a:b])) for a, b in ranges]


def _make_shard(source: Any, device: torch.device, dtype: torch.dtype, collate_fn: Any) -> Any:
    if isinstance(source, tuple):
        return TrainingData(source[0], source[1], device)
    return StreamedData(source, device, dtype, collate_fn)


class ShardedTraining:
    """An explainer's training set and model placed on a Dask cluster, ``n_shards`` contiguous shards."""

    def __init__(self, explainer, client: Any, n_shards: int | None = None) -> None:
        self.client = check_client(client)
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        n_shards = 2 * n_workers if n_shards is None else n_shards
        if not isinstance(n_shards, int) or n_shards < 1:
            raise InfluenceInputError(f"n_shards must be a positive integer, got {n_shards!r}")
        data, objective = explainer.data, explainer.objective
        self.n_train = len(data)
        self.batch_size = explainer.batch_size
        collate = getattr(data, "collate_fn", None)
        self.objective = client.submit(_identity, objective, pure=False)
        sources = _shard_sources(data, min(n_shards, self.n_train))
        self.starts = [start for start, _ in sources]
        self.shards = [
            client.submit(_make_shard, source, objective.device, objective.dtype, collate, pure=False)
            for _, source in sources
        ]
        self._gradients: list[Any] | None = None
        self.hessian = DistributedHessian(explainer, self)

    def gradients(self) -> list[Any]:
        """Futures of each shard's per-example gradients, computed once and kept on the workers."""
        if self._gradients is None:
            self._gradients = [
                self.client.submit(_shard_gradients, self.objective, shard, self.batch_size, pure=False)
                for shard in self.shards
            ]
        return self._gradients

    def _scatter(self, vectors: torch.Tensor) -> Any:
        """``vectors`` on every worker under a fresh key. Hashed keys (Dask's default) repeat when the same
        vectors are sent again (a restarted solve, a repeated query) and race with the release of the
        previous future of that key: its tasks then fail with "lost dependencies" or wait forever
        (dask/distributed#8576)."""
        return self.client.scatter(vectors.detach().cpu(), broadcast=True, hash=False)

    def scores(self, vectors: torch.Tensor) -> torch.Tensor:
        """vectors [m, p] @ G^T -> [m, n_train] on the CPU, each shard's columns computed on its worker."""
        vectors_future = self._scatter(vectors)
        parts = [self.client.submit(_scores, g, vectors_future, pure=False) for g in self.gradients()]
        return torch.cat(self.client.gather(parts), dim=1)

    def gradient_chunks(self):
        """Yield ``(start, G_shard)`` shard by shard, fetched from the workers one at a time."""
        for start, future in zip(self.starts, self.gradients()):
            yield start, future.result()

    def hessian_sum(self, vectors: torch.Tensor) -> torch.Tensor:
        """sum_i nabla^2 L(z_i) @ vectors over the whole training set, [p, m] on the CPU."""
        vectors_future = self._scatter(vectors)
        parts = [
            self.client.submit(_hessian_sum, self.objective, shard, self.batch_size, vectors_future, pure=False)
            for shard in self.shards
        ]
        return torch.stack(self.client.gather(parts)).sum(0)

    def gauss_newton_sum(
        self, columns: torch.Tensor | None, positive_part: bool, low_precision: bool = False
    ) -> torch.Tensor:
        """sum_i J_i^T A_i J_i over the whole training set (see ``gauss_newton.gauss_newton_sum``), on the CPU."""
        columns = None if columns is None else columns.cpu()
        parts = [
            self.client.submit(
                _gauss_newton_part,
                self.objective,
                shard,
                self.batch_size,
                columns,
                positive_part,
                low_precision,
                pure=False,
            )
            for shard in self.shards
        ]
        return torch.stack(self.client.gather(parts)).sum(0)


class DistributedHessian(TrainingHessian):
    """The explainer's H with full products computed on the cluster (minibatch products stay local)."""

    def __init__(self, explainer, sharded: ShardedTraining) -> None:
        super().__init__(
            explainer.objective, explainer.data, explainer.weight_decay, explainer.damping, explainer.batch_size
        )
        self.sharded = sharded
        self.module_blocks = False  # explicit Hessians from products on the cluster, not layer-wise here,
        self.closed_form_blocks = False  # nor a last layer's block from a pass here

    def matvec(self, vectors: torch.Tensor) -> torch.Tensor:
        total = self.sharded.hessian_sum(vectors).to(vectors)
        return total / self.sharded.n_train + self.shift * vectors

    def gauss_newton(
        self,
        columns: torch.Tensor | None = None,
        positive_part: bool = False,
        indices: torch.Tensor | None = None,
        low_precision: bool = False,
    ) -> torch.Tensor:
        if indices is not None:  # a subsample, for the preconditioner: read here like the minibatches
            return super().gauss_newton(columns, positive_part, indices, low_precision)
        return self.sharded.gauss_newton_sum(columns, positive_part, low_precision).to(self.device)
