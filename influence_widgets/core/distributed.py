"""The training set sharded across the workers of a ``dask.distributed`` cluster.

Each worker holds the model (as an ``Objective``) and its shards, and computes its part of G @ v
(scores), of sum_i nabla^2 L_i @ V (Hessian-vector products for CG, LiSSA's scale and the explicit
Hessian), of the Gauss-Newton sum (the explicit Hessian's affine block, CG's preconditioner) and of
the checks over every training point (the affine group); the client adds the parts up. The cluster
is a source of training-set sums (``ShardedSums``) that the same ``TrainingHessian`` composes.

Every shard, its gradients, the model and the vectors of each query
are Dask futures computed by tasks (nothing is scattered), so when a worker dies, Dask recomputes
what it held on another worker. Each gather waits at most ``timeout`` seconds; a query whose tasks
were lost, cancelled or timed out is submitted again afresh (``retries`` times), then refused with
a ``DistributedWorkError``: the same scores or a clear error in bounded time, never a hang.

Shards are contiguous ranges of training indices: the slices of tensors, ``Subset``s of a Dataset,
or the parts of a ``ConcatDataset`` as given. Tensor slices travel inside the task graph; for large
data, pass a Dataset that reads its items lazily (from files the workers can see).
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import sys
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import torch
from torch.utils.data import ConcatDataset, Subset

from .curvature import TrainingHessian
from .curvature.objective import Objective
from .curvature.sources import Check, LocalSums
from .errors import DistributedWorkError, InfluenceInputError
from .training_data import StreamedData, TrainingData


def check_client(client: Any) -> Any:
    """Return ``client`` if it is a ``dask.distributed.Client``; explain otherwise."""
    module = sys.modules.get("distributed")
    if module is None and importlib.util.find_spec("distributed") is not None:  # not imported: not a Client
        raise InfluenceInputError(
            f"client must be a dask.distributed.Client, got {type(client).__name__}; create one with "
            "Client(LocalCluster()) or Client('tcp://scheduler-address:8786')"
        )
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
    return LocalSums(shard, batch).hessian_sum(objective, vectors.to(objective.device)).cpu()


def _gauss_newton_part(
    objective: Objective,
    shard: TrainingData | StreamedData,
    batch: int,
    columns: Any,
    positive_part: bool,
    low_precision: bool,
) -> torch.Tensor:
    columns = None if columns is None else columns.to(objective.device)
    return LocalSums(shard, batch).gauss_newton_sum(objective, columns, positive_part, low_precision).cpu()


def _holds(objective: Objective, shard: TrainingData | StreamedData, batch: int, check: Check) -> bool:
    return LocalSums(shard, batch).holds_everywhere(objective, check)


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


def _lost_work_errors() -> tuple[type[BaseException], ...]:
    """What a lost worker surfaces as: closed connections, killed workers, cancelled futures, timeouts."""
    from distributed import KilledWorker
    from distributed.comm.core import CommClosedError

    return (
        CommClosedError,
        KilledWorker,
        concurrent.futures.CancelledError,
        TimeoutError,
        concurrent.futures.TimeoutError,
        OSError,
    )


DEFAULT_TIMEOUT = 120.0  # seconds one gather may wait before the query is submitted again
DEFAULT_RETRIES = 3


class ShardedTraining:
    """An explainer's training set and model placed on a Dask cluster, ``n_shards`` contiguous shards.

    ``timeout``: seconds each gather waits; ``retries``: how often a query whose work was lost (a worker
    died, futures cancelled, the wait timed out) is submitted again before a ``DistributedWorkError``.
    """

    def __init__(
        self,
        explainer,
        client: Any,
        n_shards: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        self.client = check_client(client)
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        n_shards = 2 * n_workers if n_shards is None else n_shards
        if isinstance(n_shards, bool) or not isinstance(n_shards, int) or n_shards < 1:
            raise InfluenceInputError(f"n_shards must be a positive integer, got {n_shards!r}; e.g. n_shards=4")
        self.timeout = float(timeout)
        self.retries = int(retries)
        data, objective = explainer.data, explainer.objective
        self._objective_value = objective
        self.n_train = len(data)
        self.batch_size = explainer.batch_size
        self._collate = getattr(data, "collate_fn", None)
        self._sources = _shard_sources(data, min(n_shards, self.n_train))
        self.starts = [start for start, _ in self._sources]
        self._place()
        self.local = LocalSums(data, self.batch_size)  # minibatches and samples are read here
        self.hessian = TrainingHessian(
            objective,
            ShardedSums(self),
            damping=explainer.damping,
            chunk_size=self.batch_size,
            key=explainer.hessian_key,  # the same H as the local one: its explicit form is shared
        )

    def _place(self) -> None:
        """Submit the model and the shards as tasks (recomputable from the graph if a worker dies)."""
        objective = self._objective_value
        self.objective = self.client.submit(_identity, objective, pure=False)
        self.shards = [
            self.client.submit(_make_shard, source, objective.device, objective.dtype, self._collate, pure=False)
            for _, source in self._sources
        ]
        self._gradients: list[Any] | None = None

    def _run(self, submit: Callable[[], list[Any]], what: str) -> list[Any]:
        """Submit the parts of one query and gather them within ``timeout``; resubmit afresh when work was
        lost, at most ``retries`` times. Errors raised by the user's code on a worker pass through."""
        from distributed import wait

        lost = _lost_work_errors()
        last: BaseException | None = None
        for _ in range(self.retries + 1):
            parts = submit()
            try:
                wait(parts, timeout=self.timeout)
                return self.client.gather(parts)
            except lost as error:
                last = error
                for part in parts:
                    part.cancel()
                self._place()  # the model, the shards and their gradients under fresh keys
        raise DistributedWorkError(
            f"{what} on the Dask cluster failed {self.retries + 1} times (workers lost or no answer within "
            f"{self.timeout:g} s; last: {type(last).__name__}: {last}). Check that the cluster has live workers "
            "(client.wait_for_workers(1)), or call without client= to compute in this process"
        ) from last

    def gradients(self) -> list[Any]:
        """Futures of each shard's per-example gradients, computed once and kept on the workers."""
        if self._gradients is None:
            self._gradients = [
                self.client.submit(_shard_gradients, self.objective, shard, self.batch_size, pure=False)
                for shard in self.shards
            ]
        return self._gradients

    def _vectors(self, vectors: torch.Tensor) -> Any:
        """``vectors`` as the result of a task under a fresh key (``pure=False``): recomputable from the graph
        when the worker holding it dies, unlike scattered data; fresh keys because repeated hashed keys race
        with the release of the previous future of that key (dask/distributed#8576)."""
        return self.client.submit(_identity, vectors.detach().cpu(), pure=False)

    def scores(self, vectors: torch.Tensor) -> torch.Tensor:
        """vectors [m, p] @ G^T -> [m, n_train] on the CPU, each shard's columns computed on its worker."""

        def submit() -> list[Any]:
            vectors_future = self._vectors(vectors)
            return [self.client.submit(_scores, g, vectors_future, pure=False) for g in self.gradients()]

        return torch.cat(self._run(submit, "scoring the training set"), dim=1)

    def gradient_chunks(self):
        """Yield ``(start, G_shard)`` shard by shard, fetched from the workers one at a time."""
        for k, start in enumerate(self.starts):
            (part,) = self._run(lambda k=k: [self.gradients()[k]], f"the gradients of shard {k}")
            yield start, part

    def hessian_sum(self, vectors: torch.Tensor) -> torch.Tensor:
        """sum_i nabla^2 L(z_i) @ vectors over the whole training set, [p, m] on the CPU."""

        def submit() -> list[Any]:
            vectors_future = self._vectors(vectors)
            return [
                self.client.submit(_hessian_sum, self.objective, shard, self.batch_size, vectors_future, pure=False)
                for shard in self.shards
            ]

        return torch.stack(self._run(submit, "a Hessian-vector product")).sum(0)

    def gauss_newton_sum(
        self, columns: torch.Tensor | None, positive_part: bool, low_precision: bool = False
    ) -> torch.Tensor:
        """sum_i J_i^T A_i J_i over the whole training set (see ``gauss_newton.gauss_newton_sum``), on the CPU."""
        columns = None if columns is None else columns.cpu()

        def submit() -> list[Any]:
            return [
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

        return torch.stack(self._run(submit, "the Gauss-Newton matrix")).sum(0)

    def holds_everywhere(self, check: Check) -> bool:
        """Whether ``check`` (objective, inputs) -> bool holds on every training batch, each shard on its worker."""

        def submit() -> list[Any]:
            return [
                self.client.submit(_holds, self.objective, shard, self.batch_size, check, pure=False)
                for shard in self.shards
            ]

        return all(self._run(submit, "a check over the training set"))


class ShardedSums:
    """The training-set sums of a ``TrainingHessian`` from the cluster: full products, the Gauss-Newton sum
    and the checks over every point on the workers; minibatches and samples read here."""

    local = False

    def __init__(self, sharded: ShardedTraining) -> None:
        self.sharded = sharded

    @property
    def n(self) -> int:
        return self.sharded.n_train

    def __len__(self) -> int:
        return self.sharded.n_train

    def take(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sharded.local.take(indices)

    def chunks(self, size: int):
        """(start, x, y) chunks read here (factorisations that stream the training set once)."""
        return self.sharded.local.chunks(size)

    def hessian_sum(self, objective: Objective, vectors: torch.Tensor) -> torch.Tensor:
        return self.sharded.hessian_sum(vectors).to(vectors)

    def batch_hessian_sum(
        self, objective: Objective, x: torch.Tensor, y: torch.Tensor, vectors: torch.Tensor
    ) -> torch.Tensor:
        return self.sharded.local.batch_hessian_sum(objective, x, y, vectors)

    def gauss_newton_sum(
        self,
        objective: Objective,
        columns: torch.Tensor | None,
        positive_part: bool,
        low_precision: bool,
        indices: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if indices is not None:  # a subsample, for the preconditioner: read here like the minibatches
            return self.sharded.local.gauss_newton_sum(objective, columns, positive_part, low_precision, indices)
        return self.sharded.gauss_newton_sum(columns, positive_part, low_precision).to(objective.device)

    def holds_everywhere(self, objective: Objective, check: Check) -> bool:
        return self.sharded.holds_everywhere(check)
