"""Progress bars that appear only for work longer than a second, and can be switched off."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

from .threads import rebalance

T = TypeVar("T")


def _rebalancing(iterable: Iterable[T]) -> Iterator[T]:
    """``iterable``, looking at the machine's load between items (``threads.rebalance``)."""
    for item in iterable:
        rebalance()
        yield item


def progress_bar(iterable: Iterable[T], *, enabled: bool, desc: str, total: int | None = None) -> Iterator[T]:
    """Wrap ``iterable`` in a ``tqdm.auto`` bar shown after one second; a no-op when disabled."""
    if not enabled:
        return _rebalancing(iterable)
    return _rebalancing(tqdm(iterable, desc=desc, total=total, delay=1.0, leave=False, dynamic_ncols=True))


class _Counter(tqdm):
    """A tqdm counter whose ``update`` also looks at the machine's load (``threads.rebalance``)."""

    def update(self, n: float | None = 1) -> bool | None:
        rebalance()
        return super().update(n)


def progress_counter(*, enabled: bool, desc: str, total: int) -> tqdm:
    """A manual ``tqdm.auto`` counter (call ``update``/``close``), shown after one second; each update also
    re-sizes the threads to the load (``threads.rebalance``)."""
    return _Counter(total=total, desc=desc, delay=1.0, leave=False, disable=not enabled, dynamic_ncols=True)
