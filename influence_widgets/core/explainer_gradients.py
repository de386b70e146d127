"""Per-example gradients of the explainer: G [n, p] cached or streamed, test gradients, and scores G @ v."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from .caches import KeyedCache
from .curvature import chunk_threads
from .curvature.objective import Objective
from .errors import InfluenceInputError
from .explainer_inputs import InputChecks, Measurement
from .layer_gradients import LayerFactors, layer_factors, selected_linear_layers
from .progress import progress_bar

FACTOR_BYTES = 2**30  # layer factors are kept up to this size (n x the layers' in + out values)
GRADIENT_READ_BYTES = 2**28  # the rows of one read of training points for gradients on worker threads


class GradientMethods(InputChecks):
    """nabla_theta L(z) of the unregularised per-example loss, for training and test points."""

    batch_size: int
    progress: bool
    cache_gradients: bool
    _cache: KeyedCache
    _objective_key: tuple[Any, ...]
    _data_key: tuple[Any, ...]

    def _per_example_grads(self, x: torch.Tensor, y: torch.Tensor, fn: Measurement | None, desc: str) -> torch.Tensor:
        rows = []
        starts = range(0, len(x), self.batch_size)
        for start in progress_bar(starts, enabled=self.progress, desc=desc, total=len(starts)):
            xb = x[start : start + self.batch_size].to(self.objective.device)
            yb = y[start : start + self.batch_size].to(self.objective.device)
            rows.append(self.objective.per_example_grads(xb, yb, fn))
        return torch.cat(rows)

    def train_gradients(self) -> torch.Tensor:
        """G [n_train, p]: nabla_theta loss(z_i) of the unregularised loss, on the model's device; cached.

        Holds G whole (n x p values); with ``cache_gradients=False`` use the streaming methods instead.
        """
        self.check_training_data_unchanged()
        cached = self.cached_train_gradients()
        if cached is None:
            if not self.cache_gradients:
                gib = self.n_train * self.n_params * self.objective.theta.element_size() / 2**30
                raise InfluenceInputError(
                    f"train_gradients() would hold G [{self.n_train}, {self.n_params}] ({gib:.1f} GiB) and this "
                    "explainer streams it (cache_gradients is off); influence(), self_influence() and "
                    "approximate_influence() stream G chunk by chunk, or pass cache_gradients=True"
                )
            chunks = self.train_gradient_chunks(desc="train gradients")
            cached = self._cache.put(self._gradients_key, torch.cat([grads for _, grads in chunks]))
        return cached

    @property
    def _gradients_key(self) -> tuple[Any, ...]:
        return ("train gradients", self._objective_key, self._data_key)

    def cached_train_gradients(self) -> torch.Tensor | None:
        """G [n_train, p] if it is held in memory now (computed by an earlier query), else None; computes nothing."""
        return self._cache.get(self._gradients_key)

    def train_gradient_chunks(self, desc: str = "train gradients") -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(start, G[start:start + b])`` in order, b <= ``batch_size``: from the cache if it is
        filled, else computed chunk by chunk so that at most one chunk of gradients is held."""
        cached = self.cached_train_gradients()
        if cached is not None:
            for start in range(0, self.n_train, self.batch_size):
                yield start, cached[start : start + self.batch_size]
            return
        size = self.objective.gradient_chunk_points(self.batch_size, self.data.streamed)
        workers, read = self._gradient_workers(size)
        total = -(-self.n_train // read)
        for start, x, y in progress_bar(self.data.chunks(read), enabled=self.progress, desc=desc, total=total):
            if workers:  # the same calls of ``size`` points, on worker threads (see chunk_threads)
                grads = chunk_threads.piece_rows(self.objective, x, y, _gradient_rows, workers, size)
            else:
                grads = self.objective.per_example_grads(x, y, None)
            for offset in range(0, len(grads), self.batch_size):
                yield start + offset, grads[offset : offset + self.batch_size]

    def _gradient_workers(self, size: int) -> tuple[int, int]:
        """(worker threads, points per read) for a pass of per-example gradients in calls of ``size`` points:
        workers beside other runnable processes, for in-memory training data on the CPU without the
        closed-form layer, reading one call per piece (``chunk_threads.PIECES_PER_CORE``) within
        ``GRADIENT_READ_BYTES`` of rows; else (0, ``size``)."""
        if self.data.streamed or self.objective.linear_head is not None:
            return 0, size
        workers = chunk_threads.usable(
            self.objective, self.objective.device, busy_only=True
        )  # idle: 25% slower on workers
        row_bytes = self.n_params * self.objective.theta.element_size()
        calls = min(chunk_threads.PIECES_PER_CORE * chunk_threads.cores(), GRADIENT_READ_BYTES // (size * row_bytes))
        return (workers, size * calls) if workers and calls > 1 else (0, size)

    def gradients_at(self, indices: torch.Tensor) -> torch.Tensor:
        """Rows of G at ``indices`` (int64 [k]), [k, p] on the model's device: from the cache or computed."""
        if self.cache_gradients or self.cached_train_gradients() is not None:
            return self.train_gradients()[indices.to(self.objective.device)]
        x, y = self.data.take(indices)
        return torch.cat(
            [
                self.objective.per_example_grads(x[i : i + self.batch_size], y[i : i + self.batch_size], None)
                for i in range(0, len(x), self.batch_size)
            ]
        )

    def layer_factors(self) -> LayerFactors | None:
        """Every training point's gradient as the factors of its linear layers (``core.layer_gradients``),
        found once where the selected parameters are whole ``nn.Linear`` layers applied once per example and
        the factors take at most the gradient cache's budget; else None. Scoring uses them when G is not
        cached: exact, and a new test point then costs no pass of per-example gradients."""
        key = ("layer factors", self._objective_key, self._data_key)
        found = self._cache.get(key)
        if found is None:
            found = False
            layers = selected_linear_layers(self.objective)
            if layers is not None:
                width = sum(sum(layer.module.weight.shape) for layer in layers)
                if self.n_train * width * self.objective.theta.element_size() <= FACTOR_BYTES:
                    size = self.batch_size  # no per-example gradient rows are formed
                    chunks = ((x, y) for _, x, y in self.data.chunks(size))
                    bar = progress_bar(
                        chunks, enabled=self.progress, desc="layer factors", total=-(-self.n_train // size)
                    )
                    found = layer_factors(self.objective, bar, self.n_train) or False
            self._cache.put(key, found)
        return found or None

    def _scores(self, vectors: torch.Tensor, desc: str = "scoring") -> torch.Tensor:
        """vectors [m, p] @ G^T -> [m, n_train] on the CPU: from G when it is cached, else from the layer
        factors where the model has them, else streaming G."""
        if self.cache_gradients:
            return (vectors @ self.train_gradients().T).cpu()
        factors = self.layer_factors()
        if factors is not None:
            return factors.scores(vectors.to(self.device, self.dtype)).cpu()
        out = torch.empty(len(vectors), self.n_train, dtype=vectors.dtype)
        for start, grads in self.train_gradient_chunks(desc=desc):
            out[:, start : start + len(grads)] = (vectors @ grads.T).cpu()
        return out

    def test_gradients(self, X_test: Any, y_test: Any, measurement: Measurement | None = None) -> torch.Tensor:
        """[n_test, p]: nabla_theta of the test loss (or of ``measurement``) per test point, on the model's device."""
        x, y = self.coerce_test(X_test, y_test)
        if measurement is not None:
            self._check_model_and_loss(measurement, "measurement")
        return self._per_example_grads(x, y, measurement, "test gradients")


def _gradient_rows(objective: Objective, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return objective.per_example_grads(x, y, None)
