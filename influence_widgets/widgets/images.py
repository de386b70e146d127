"""Thumbnails: images scaled to uint8 gray levels, ink dark on white, for the views."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import InfluenceInputError


def to_thumbnails(images: Any, n: int, name: str) -> np.ndarray:
    """Images [n, h, w] or [n, 1, h, w] (any real range) as uint8 [n, h, w], 255 = background.

    Values are scaled jointly over the set so that the largest value is full ink.
    """
    array = np.asarray(images.detach().cpu() if hasattr(images, "detach") else images, dtype=np.float64)
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3:
        raise InfluenceInputError(
            f"{name} must have shape [n, height, width] (or [n, 1, height, width]) for grayscale thumbnails, got "
            f"{tuple(array.shape)}; reshape flat inputs, e.g. images.reshape(-1, 8, 8)"
        )
    if len(array) != n:
        raise InfluenceInputError(f"{name} has {len(array)} images but there are {n} points; pass one image per point")
    if not np.isfinite(array).all():
        raise InfluenceInputError(f"{name} contains NaN or infinite values; thumbnails need finite pixels")
    lo, hi = float(array.min()), float(array.max())
    scaled = (array - lo) / (hi - lo) if hi > lo else np.zeros_like(array)
    return np.ascontiguousarray(255 - np.round(scaled * 255)).astype(np.uint8)
