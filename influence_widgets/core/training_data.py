"""The training set as the backend sees it: rows read in chunks, moved to the model's device.

``TrainingData`` holds tensors. ``StreamedData`` reads a ``torch.utils.data.Dataset`` (or the dataset
of an unshuffled ``DataLoader``) chunk by chunk, so that neither the inputs nor the gradients need to fit
in memory at once. Both yield rows in the same fixed order: training index i is the i-th item.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, SequentialSampler
from torch.utils.data.dataloader import default_collate

from .errors import InfluenceInputError
from .inputs import cast_inputs, cast_targets, check_class_targets, check_finite

ITEMS_CHECKED_AT_CONSTRUCTION = 4096  # a Dataset's first items read and checked when the explainer is built


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


_ARRAY_FIX = "return tensors (torch.as_tensor(...)) or numpy arrays of numbers from __getitem__"


def _describe(value: Any) -> tuple[tuple[int, ...], bool] | str:
    """(shape, floating) of a numeric item part, or why it is not one."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape), value.is_floating_point()
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            return f"a numpy array of dtype {value.dtype}"
        return value.shape, value.dtype.kind == "f"
    if isinstance(value, (bool, np.bool_)):
        return (), False
    if isinstance(value, (int, float, np.integer, np.floating)):
        return (), isinstance(value, (float, np.floating))
    if isinstance(value, (str, bytes)):
        return f"a string ({value[:20]!r})"
    return f"a {type(value).__name__}"


def check_item(item: Any, index: int, reference: tuple | None) -> tuple:
    """Check one Dataset item, ``(x_i, y_i)`` of numbers with the shapes of item 0 (``reference``);
    return its signature ((x shape, x floating), (y shape, y floating))."""
    where = f"item {index} of the training Dataset"
    if not (isinstance(item, (tuple, list)) and len(item) == 2):
        what = f"a sequence of {len(item)}" if isinstance(item, (tuple, list)) else f"a {type(item).__name__}"
        raise InfluenceInputError(
            f"{where} is {what}; a training Dataset must yield (input, target) pairs: dataset[i] returns "
            "(x_i, y_i). Wrap the dataset so that it does"
        )
    signature = []
    for part, value in (("input", item[0]), ("target", item[1])):
        described = _describe(value)
        if isinstance(described, str):
            raise InfluenceInputError(f"the {part} of {where} is {described}; {_ARRAY_FIX}")
        signature.append(described)
    signature = tuple(signature)
    if reference is not None and signature != reference:
        (xs, xf), (ys, yf) = signature
        (rxs, rxf), (rys, ryf) = reference
        if xs != rxs or ys != rys:
            raise InfluenceInputError(
                f"{where} has input shape {xs} and target shape {ys} but item 0 has {rxs} and {rys}; every item "
                "must have the same shapes (pad, crop or resize them in __getitem__)"
            )
        raise InfluenceInputError(
            f"{where} mixes number kinds with item 0 (floating input {xf} vs {rxf}, floating target {yf} vs {ryf}); "
            "return the same dtypes from every item"
        )
    return signature


class _Indexed(Dataset):
    """``(i, dataset[i])``: so that the collate function can name a bad item by its training index."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[int, Any]:
        return index, self.dataset[index]


class _CheckedCollate:
    """Check each item against the reference signature, then collate the items with ``collate_fn``."""

    def __init__(self, collate_fn: Callable[[list], Any], reference: tuple | None) -> None:
        self.collate_fn = collate_fn
        self.reference = reference

    def __call__(self, batch: list[tuple[int, Any]]) -> Any:
        if self.reference is not None:
            for index, item in batch:
                check_item(item, index, self.reference)
        return self.collate_fn([item for _, item in batch])


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
        self.n_classes: int | None = None  # set by the explainer: class targets checked in every chunk read
        self._reference: tuple | None = None
        checked = collate_fn is default_collate  # items are (x, y) pairs: check them, the first ones now
        reference = check_item(dataset[0], 0, None) if checked else None
        x, _ = self.take(torch.tensor([0]))
        self._feature_shape = x.shape[1:]
        if isinstance(dataset, ConcatDataset):
            self._check_shard_shapes(dataset)
        if checked:
            self._reference = reference
            for i in range(1, min(n, ITEMS_CHECKED_AT_CONSTRUCTION)):
                check_item(dataset[i], i, self._reference)

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
        if self.n_classes is not None:
            check_class_targets(y, self.n_classes, f"the targets of {where}")
        return cast_inputs(x, self.dtype).to(self.device), cast_targets(y, self.dtype).to(self.device)

    def take(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        items = [(int(i), self.dataset[int(i)]) for i in indices]
        return self._cast(_CheckedCollate(self.collate_fn, self._reference)(items), "the training Dataset")

    def chunks(self, size: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        loader = DataLoader(
            _Indexed(self.dataset),
            batch_size=size,
            shuffle=False,
            collate_fn=_CheckedCollate(self.collate_fn, self._reference),
            num_workers=self.num_workers,
        )
        start = 0
        for batch in loader:
            x, y = self._cast(batch, "the training Dataset")
            yield start, x, y
            start += len(x)
