"""Small array conversions shared by the use cases and the widgets."""

from __future__ import annotations

from typing import Any

import numpy as np


def as_numpy(values: Any, dtype: Any = None) -> np.ndarray:
    """A numpy array of ``values``: a tensor is detached and brought to the CPU first; anything else
    goes through ``np.asarray``. ``dtype``: converted to it when given."""
    if hasattr(values, "detach"):
        values = values.detach().cpu()
    return np.asarray(values, dtype=dtype)


def distances_to(rows: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Euclidean distance of each row of ``rows`` [n, d] to ``point`` [d]: ||rows_i - point||, shape [n]."""
    return np.linalg.norm(rows - point, axis=1)
