"""A loss that kills the Dask worker process that first evaluates it, once, to test Dask's retries."""

from __future__ import annotations

import os

import torch

from influence_widgets.data import binary_logistic_per_example


class DiesOnceOnAWorker:
    """Binary logistic loss; on a worker, the first call (marked by creating ``marker``) exits the process."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        try:
            from distributed import get_worker

            get_worker()
        except ValueError:  # not on a worker: the client's own checks
            return binary_logistic_per_example(outputs, targets)
        try:
            with open(self.marker, "x"):
                pass
        except FileExistsError:
            return binary_logistic_per_example(outputs, targets)
        os._exit(1)
