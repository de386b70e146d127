"""The training set as the backend sees it: tensors read in chunks, moved to the model's device."""

from __future__ import annotations

from collections.abc import Iterator

import torch


class TrainingData:
    """Inputs X [n, *feature_shape] and targets y [n, ...], yielded in device-resident chunks."""

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
