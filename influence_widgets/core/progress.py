"""Progress bars that appear only for work longer than a second, and can be switched off."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_bar(iterable: Iterable[T], *, enabled: bool, desc: str, total: int | None = None) -> Iterator[T]:
    """Wrap ``iterable`` in a ``tqdm.auto`` bar shown after one second; a no-op when disabled."""
    if not enabled:
        return iter(iterable)
    return iter(tqdm(iterable, desc=desc, total=total, delay=1.0, leave=False, dynamic_ncols=True))


def progress_counter(*, enabled: bool, desc: str, total: int) -> tqdm:
    """A manual ``tqdm.auto`` counter (call ``update``/``close``), shown after one second."""
    return tqdm(total=total, desc=desc, delay=1.0, leave=False, disable=not enabled, dynamic_ncols=True)
