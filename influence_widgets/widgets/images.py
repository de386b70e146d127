"""Thumbnails: images scaled to uint8 gray levels, ink dark on white, for the views."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.arrays import as_numpy
from ..core.errors import InfluenceInputError

_LUMINANCE = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 weights of red, green and blue


def to_thumbnails(images: Any, n: int, name: str) -> np.ndarray:
    """Images as uint8 gray thumbnails [n, h, w], 255 = background, ink dark on white.

    Accepts [n, h, w], [n, 1, h, w], and colour images [n, 3, h, w] or [n, h, w, 3] (channels first or
    last, shown by their luminance). Values (any real range) are scaled jointly over the set so that the
    largest value is full ink.
    """
    array = as_numpy(images, np.float64)
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    elif array.ndim == 4 and array.shape[1] == 3:
        array = np.tensordot(_LUMINANCE, array, axes=([0], [1]))
    elif array.ndim == 4 and array.shape[-1] in (1, 3):
        array = array[..., 0] if array.shape[-1] == 1 else array @ _LUMINANCE
    if array.ndim != 3:
        raise InfluenceInputError(
            f"{name} must have shape [n, height, width], [n, 1 or 3, height, width] or [n, height, width, 1 or 3] "
            f"for thumbnails, got {tuple(array.shape)}; reshape flat inputs, e.g. images.reshape(-1, 8, 8), "
            "or pass images=None to show the points without thumbnails"
        )
    if len(array) != n:
        raise InfluenceInputError(f"{name} has {len(array)} images but there are {n} points; pass one image per point")
    if not np.isfinite(array).all():
        raise InfluenceInputError(f"{name} contains NaN or infinite values; thumbnails need finite pixels")
    lo, hi = float(array.min()), float(array.max())
    scaled = (array - lo) / (hi - lo) if hi > lo else np.zeros_like(array)
    return np.ascontiguousarray(255 - np.round(scaled * 255)).astype(np.uint8)
