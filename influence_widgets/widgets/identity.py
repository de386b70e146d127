"""The user's own ids of training and test points, checked once and shown everywhere."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import InfluenceInputError


def check_ids(ids: Any, n: int, name: str) -> list[int | str]:
    """``ids`` as a list of n unique ints or strings; None gives the positions 0..n-1."""
    if ids is None:
        return list(range(n))
    if isinstance(ids, (str, bytes)) or not hasattr(ids, "__len__"):
        raise InfluenceInputError(
            f"{name} must be a sequence of ints or strings, one per point, got {type(ids).__name__}"
        )
    values = ids.tolist() if hasattr(ids, "tolist") else list(ids)
    if len(values) != n:
        raise InfluenceInputError(f"{name} has {len(values)} ids but there are {n} points; pass one id per point")
    out: list[int | str] = []
    for position, value in enumerate(values):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer, str)):
            raise InfluenceInputError(
                f"{name}[{position}] is {value!r} ({type(value).__name__}); ids must be ints or strings"
            )
        out.append(int(value) if isinstance(value, (int, np.integer)) else value)
    if len(set(out)) != len(out):
        seen: set = set()
        duplicate = next(v for v in out if v in seen or seen.add(v))
        raise InfluenceInputError(f"{name} repeats the id {duplicate!r}; each point needs its own id")
    return out


def display_ids(ids: list[int | str]) -> list[str]:
    """Ids as the views show them; an empty list when they are the positions (the views number them)."""
    return [] if ids == list(range(len(ids))) else [str(v) for v in ids]
