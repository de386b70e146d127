"""Checking and coercing user input before any long computation starts."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .errors import InfluenceInputError


def as_tensor(values: Any, name: str) -> torch.Tensor:
    """Return ``values`` as a tensor without copying when it already is one."""
    if isinstance(values, torch.Tensor):
        return values
    if isinstance(values, (np.ndarray, list, tuple)):
        array = np.asarray(values)
        if array.dtype == object:
            raise InfluenceInputError(f"{name} could not be read as a numeric array; pass a tensor or numpy array")
        return torch.as_tensor(array)
    raise InfluenceInputError(f"{name} must be a torch.Tensor or numpy array, got {type(values).__name__}")


def check_finite(tensor: torch.Tensor, name: str) -> None:
    """Raise when a floating tensor holds NaN or infinite values."""
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise InfluenceInputError(
            f"{name} contains {bad} NaN or infinite value(s); clean or impute them before computing influence"
        )


def check_pair(x: torch.Tensor, y: torch.Tensor, x_name: str, y_name: str) -> None:
    """Check that inputs and targets are non-empty, finite and of matching length."""
    if x.ndim == 0:
        raise InfluenceInputError(f"{x_name} must have a leading sample dimension, got a scalar")
    if y.ndim == 0:
        raise InfluenceInputError(f"{y_name} must have a leading sample dimension, got a scalar")
    if len(x) != len(y):
        raise InfluenceInputError(
            f"{x_name} has {len(x)} samples but {y_name} has {len(y)}; pass one target per input row"
        )
    if len(x) == 0:
        raise InfluenceInputError(f"{x_name} is empty; pass at least one sample")
    check_finite(x, x_name)
    check_finite(y, y_name)


def check_feature_shape(x: torch.Tensor, expected: torch.Size, name: str) -> None:
    """Check that ``x`` has the per-sample shape of the training inputs."""
    if x.shape[1:] != expected:
        raise InfluenceInputError(
            f"{name} has per-sample shape {tuple(x.shape[1:])} but the training inputs have {tuple(expected)}; "
            "pass test data with the same features and preprocessing as the training data"
        )


def check_indices(indices: Any, n: int, name: str) -> torch.Tensor:
    """Return ``indices`` as a 1-D int64 tensor after checking that each lies in [0, n)."""
    idx = torch.as_tensor(np.asarray(indices if not isinstance(indices, torch.Tensor) else indices.cpu()))
    if idx.ndim == 0:
        idx = idx.reshape(1)
    if idx.ndim != 1 or (idx.numel() and (idx.is_floating_point() or idx.dtype == torch.bool)):
        raise InfluenceInputError(f"{name} must be a 1-D sequence of integer indices")
    idx = idx.to(torch.int64)
    if idx.numel() == 0:
        raise InfluenceInputError(f"{name} is empty; pass at least one index")
    out_of_range = idx[(idx < 0) | (idx >= n)]
    if out_of_range.numel():
        raise InfluenceInputError(
            f"{name} contains {out_of_range[:5].tolist()}, out of range for {n} points; use indices in [0, {n - 1}]"
        )
    return idx


def cast_inputs(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Cast floating inputs to the model's dtype; leave integer inputs (token ids) alone."""
    return x.to(dtype) if x.is_floating_point() else x


def cast_targets(y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Cast floating targets to the model's dtype; class indices stay integer."""
    return y.to(dtype) if y.is_floating_point() else y
