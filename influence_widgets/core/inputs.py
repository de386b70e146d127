"""Checking and coercing user input before any long computation starts."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

from .errors import InfluenceInputError


def as_tensor(values: Any, name: str) -> torch.Tensor:
    """Return ``values`` as a tensor without copying when it already is one."""
    if isinstance(values, torch.Tensor):
        return values
    if isinstance(values, (np.ndarray, list, tuple)):
        try:
            array = np.asarray(values)
        except ValueError as error:  # ragged nested lists
            raise InfluenceInputError(
                f"{name} could not be read as a numeric array ({error}); pass a tensor or numpy array of numbers"
            ) from error
        if array.dtype.kind not in "biuf":
            raise InfluenceInputError(
                f"{name} could not be read as a numeric array (it holds {array.dtype} values); pass a tensor or "
                "numpy array of numbers"
            )
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
    if isinstance(indices, (str, bytes, dict, set)) or indices is None:
        raise InfluenceInputError(
            f"{name} must be a 1-D sequence of integer indices, got {type(indices).__name__}; pass e.g. [0, 5, 7]"
        )
    try:
        idx = torch.as_tensor(np.asarray(indices if not isinstance(indices, torch.Tensor) else indices.cpu()))
    except (TypeError, ValueError, RuntimeError) as error:
        raise InfluenceInputError(
            f"{name} must be a 1-D sequence of integer indices, could not read {indices!r}; pass e.g. [0, 5, 7]"
        ) from error
    if idx.ndim == 0:
        idx = idx.reshape(1)
    if idx.ndim != 1 or (idx.numel() and (idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool)):
        raise InfluenceInputError(
            f"{name} must be a 1-D sequence of integer indices, got shape {tuple(idx.shape)} of {idx.dtype}; "
            "pass integer positions (for a boolean mask m, pass m.nonzero())"
        )
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


def as_real(
    value: Any,
    name: str,
    *,
    minimum: float | None = None,
    strictly_above: float | None = None,
    maximum: float | None = None,
    integer: bool = False,
    fix: str = "",
) -> Any:
    """``value`` as a Python ``float`` (or ``int`` when ``integer``) after checking that it is a finite real
    number in range. Any real scalar is accepted: Python and numpy numbers, 0-d tensors and arrays; bools
    and strings are not numbers here."""
    original = value
    if (isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim == 0) or isinstance(value, np.generic):
        value = value.item()
    kind = "an integer" if integer else "a real number"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InfluenceInputError(
            f"{name} must be {kind}, got {original!r} of type {type(original).__name__}"
            + (f"; {fix}" if fix else f"; pass {name}={'10' if integer else '0.01'}-style plain numbers")
        )
    if integer:
        if (isinstance(value, float) and not value.is_integer()) or not np.isfinite(float(value)):
            kind = "a positive integer" if minimum == 1 else "an integer"
            raise InfluenceInputError(f"{name} must be {kind}, got {original!r}; pass a whole number")
        value = int(value)
    else:
        value = float(value)
        if not np.isfinite(value):
            raise InfluenceInputError(f"{name} must be a finite number, got {original!r}; pass a finite value")
    bounds = []
    if minimum is not None and value < minimum:
        bounds.append(f">= {minimum:g}")
    if strictly_above is not None and not value > strictly_above:
        bounds.append(f"> {strictly_above:g}")
    if maximum is not None and value > maximum:
        bounds.append(f"<= {maximum:g}")
    if bounds == [">= 1"] and integer:
        raise InfluenceInputError(f"{name} must be a positive integer, got {original!r}" + (f"; {fix}" if fix else ""))
    if bounds:
        raise InfluenceInputError(
            f"{name} must be {'an integer' if integer else 'a finite number'} {' and '.join(bounds)}, got {original!r}"
            + (f"; {fix}" if fix else "")
        )
    return value


def check_targets_match(y_test: torch.Tensor, y_train_dtype: torch.dtype, y_train_shape: torch.Size) -> torch.Tensor:
    """y_test with the training targets' per-sample shape and kind (class indices or real values); integer
    targets take y_train's integer dtype."""
    if y_test.shape[1:] != y_train_shape:
        raise InfluenceInputError(
            f"y_test has per-sample shape {tuple(y_test.shape[1:])} but y_train has {tuple(y_train_shape)}; "
            "pass test targets encoded like the training targets (e.g. class indices, not one-hot)"
        )
    train_int, test_int = not y_train_dtype.is_floating_point, not y_test.is_floating_point()
    if train_int != test_int:
        kinds = {True: "integer class indices", False: "floating-point values"}
        raise InfluenceInputError(
            f"y_test holds {kinds[test_int]} ({y_test.dtype}) but y_train holds {kinds[train_int]} "
            f"({y_train_dtype}); pass y_test with the dtype of y_train, e.g. y_test.to({y_train_dtype})"
        )
    if train_int and y_test.dtype != y_train_dtype:
        return y_test.to(y_train_dtype)
    return y_test


def check_class_targets(y: torch.Tensor, n_outputs: int, name: str) -> None:
    """Class indices must lie in [0, n_outputs) for a model with ``n_outputs`` output columns; every row."""
    if y.is_floating_point() or y.dtype == torch.bool or y.numel() == 0:
        return
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= n_outputs:
        bad = y[(y < 0) | (y >= n_outputs)].reshape(-1)
        rows = torch.nonzero((y < 0) | (y >= n_outputs)).reshape(-1)[:5].tolist()
        raise InfluenceInputError(
            f"{name} contains the label(s) {sorted(set(bad[:5].tolist()))} (at row(s) {rows}) but the model has "
            f"{n_outputs} outputs, so labels must lie in [0, {n_outputs - 1}]; re-encode the labels as 0..C-1 or "
            "give the model one output per class"
        )
