"""Built-in data: scikit-learn's bundled digits, shipped with the package, no downloads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import load_digits as _sklearn_digits
from sklearn.model_selection import train_test_split


@dataclass
class Split:
    """A seeded train/test split as tensors; ``images`` are [n, 8, 8] in [0, 1] for thumbnails."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    images_train: np.ndarray
    images_test: np.ndarray
    class_names: list[str]


def load_digits(
    classes: tuple[int, ...] | None = None,
    *,
    test_size: float = 0.25,
    seed: int = 0,
    as_images: bool = False,
    dtype: torch.dtype = torch.float32,
) -> Split:
    """The 8x8 digits, pixel values scaled to [0, 1].

    classes: keep only these digits; with two classes the targets become 0./1. floats (first
        class = 0), ready for a one-logit binary model. Otherwise targets are int64 class indices.
    as_images: inputs shaped [n, 1, 8, 8] for a CNN instead of flat [n, 64].
    """
    bunch = _sklearn_digits()
    x = bunch.data.astype(np.float64) / 16.0
    y = bunch.target.astype(np.int64)
    names = [str(c) for c in range(10)]
    if classes is not None:
        keep = np.isin(y, classes)
        x, y = x[keep], y[keep]
        position = {label: i for i, label in enumerate(classes)}
        y = np.array([position[label] for label in y], dtype=np.int64)
        names = [str(c) for c in classes]
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_size, random_state=seed, stratify=y)
    shape = (-1, 1, 8, 8) if as_images else (-1, 64)
    binary = classes is not None and len(classes) == 2

    def targets(values: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(values, dtype=dtype) if binary else torch.as_tensor(values, dtype=torch.int64)

    return Split(
        X_train=torch.as_tensor(x_tr.reshape(shape), dtype=dtype),
        y_train=targets(y_tr),
        X_test=torch.as_tensor(x_te.reshape(shape), dtype=dtype),
        y_test=targets(y_te),
        images_train=x_tr.reshape(-1, 8, 8),
        images_test=x_te.reshape(-1, 8, 8),
        class_names=names,
    )
