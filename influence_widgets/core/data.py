"""The training set as the backend sees it: rows read in chunks, moved to the model's device.

``TrainingData`` holds tensors. ``StreamedData`` reads a ``torch.utils.data.Dataset`` (or the dataset
of an unshuffled ``DataLoader``) chunk by chunk, so that neither the inputs nor the gradients need to fit
in memory at once. Both yield rows in the same fixed order: training index i is the i-th item.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, SequentialSampler
from torch.utils.data.dataloader import default_collate

from .errors import InfluenceInputError
from .inputs import cast_inputs, cast_targets, check_finite


class TrainingData:
    """Inputs X [n, *feature_shape] and targets y [n, ...], yielded in device-resident chunks."""

    streamed = False

    def __init__(self, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> None:
        self.x = x
        self.y = y
        self.device = device

    def __len__(self) -> int:
        return len(self.x)

    @property
    def feature_shape(self) -> torch.Size:
        return self.x.shape[1:]

    def take(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows at ``indices`` (int64 [k]), on the model's device."""
        idx = indices.to(self.x.device)
        return self.x[idx].to(self.device), self.y[idx].to(self.device)

    def chunks(self, size: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """Yield ``(start, x_chunk, y_chunk)`` covering all n rows in order."""
        for start in range(0, len(self.x), size):
            stop = start + size
            yield start, self.x[start:stop].to(self.device), self.y[start:stop].to(self.device)


def _pair(batch: Any, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise InfluenceInputError(
            f"{where} must yield (input, target) pairs; got {type(batch).__name__}. Wrap the dataset so that "
            "dataset[i] returns (x_i, y_i)"
        )
    x, y = batch
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        x, y = torch.as_tensor(x), torch.as_tensor(y)
    return x, y


class StreamedData:
    """A ``Dataset`` read ``chunk`` items at a time; ``dataset[i]`` must return ``(x_i, y_i)``.

    Nothing is held beyond one chunk. Retraining (leave-one-out, attacks, triage) needs the training
    set as tensors: ``x`` and ``y`` raise with that advice.
    """

    streamed = True

    def __init__(
        self,
        dataset: Dataset,
        device: torch.device,
        dtype: torch.dtype,
        collate_fn: Callable[[list], Any] = default_collate,
        num_workers: int = 0,
    ) -> None:
        try:
            n = len(dataset)  # type: ignore[arg-type]
        except TypeError as error:
            raise InfluenceInputError(
                "the training Dataset has no len(); pass a map-style Dataset (an IterableDataset has no fixed "
                "order of training indices)"
            ) from error
        if n == 0:
            raise InfluenceInputError("the training Dataset is empty; pass at least one sample")
        self.dataset = dataset
        self.device = device
        self.dtype = dtype
        self.collate_fn = collate_fn
        self.num_workers = num_workers
        self._n = n
        x, _ = self.take(torch.tensor([0]))
        self._feature_shape = x.shape[1:]
        if isinstance(dataset, ConcatDataset):
            self._check_shard_shapes(dataset)

    def _check_shard_shapes(self, dataset: ConcatDataset) -> None:
        """The parts of a ConcatDataset are shards: each must yield inputs of the same shape."""
        for k, (start, part) in enumerate(zip([0, *dataset.cumulative_sizes[:-1]], dataset.datasets)):
            if len(part) == 0:
                continue
            x, _ = self.take(torch.tensor([start]))
            if x.shape[1:] != self._feature_shape:
                raise InfluenceInputError(
                    f"shard {k} of the ConcatDataset yields inputs of shape {tuple(x.shape[1:])} but shard 0 yields "
                    f"{tuple(self._feature_shape)}; every shard must hold the same features and preprocessing"
                )

    @classmethod
    def from_loader(cls, loader: DataLoader, device: torch.device, dtype: torch.dtype) -> StreamedData:
        """The dataset behind an unshuffled ``DataLoader``, read with its collate function and workers."""
        if not isinstance(loader.sampler, SequentialSampler):
            raise InfluenceInputError(
                "the training DataLoader shuffles or samples; pass one with shuffle=False (and no sampler) so that "
                "scores line up with training indices"
            )
        return cls(loader.dataset, device, dtype, loader.collate_fn, loader.num_workers)

    def __len__(self) -> int:
        return self._n

    @property
    def feature_shape(self) -> torch.Size:
        return self._feature_shape

    @property
    def x(self) -> torch.Tensor:
        raise InfluenceInputError(
            "this explainer streams its training set from a Dataset, so the inputs are not held as a tensor; "
            "retraining-based tools (leave-one-out, attacks, triage) need X_train and y_train as tensors"
        )

    y = x

    def _cast(self, batch: Any, where: str) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = _pair(batch, where)
        check_finite(x, where)
        return cast_inputs(x, self.dtype).to(self.device), cast_targets(y, self.dtype).to(self.device)

    def take(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._cast(self.collate_fn([self.dataset[int(i)] for i in indices]), "the training Dataset")

    def chunks(self, size: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        loader = DataLoader(
            self.dataset, batch_size=size, shuffle=False, collate_fn=self.collate_fn, num_workers=self.num_workers
        )
        start = 0
        for batch in loader:
            x, y = self._cast(batch, "the training Dataset")
            yield start, x, y
            start += len(x)
