"""Threads sized to the cores that are free, for the duration of one library call.

On a busy machine, intra-op threads (torch's OpenMP, numpy's OpenBLAS) that outnumber the free
cores wait for each other at every barrier of every small product: on 2 cores with 4 busy
processes beside it, the digits CNN's explainer work ran 7.6x slower with 2 threads and 2.5x with
1 (``bench/contention.py``). So each public call of the explainer runs inside ``thread_budget()``:
it counts the processes that are runnable right now besides this one (``/proc/loadavg``, field 4,
less this process's own running threads), uses at most ``cores - others`` threads (at least one,
never more than the user had set), and restores the user's settings when the outermost call ends.
Nested calls share one budget (the outermost decides and restores); OpenMP's thread count belongs to the
calling thread, so each thread (a widget's background work) keeps its own.

``set_thread_policy("fixed")`` turns this off (the user's thread settings are used as they are);
``"single"`` always uses one thread.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal, TypeVar

import torch

from .errors import InfluenceInputError

try:  # numpy's BLAS keeps threads of its own beside torch's; threadpoolctl ships with scikit-learn
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - scikit-learn is a dependency
    threadpool_limits = None

Policy = Literal["adaptive", "single", "fixed"]
POLICIES = ("adaptive", "single", "fixed")
_SAMPLES = 3  # reads of /proc/loadavg, 1 ms apart; the smallest count of runnable others counts
_state: dict[str, Any] = {"policy": "adaptive"}
_local = threading.local()  # OpenMP's thread count is a per-thread setting: so is the budget's bookkeeping

F = TypeVar("F", bound=Callable[..., Any])


def set_thread_policy(policy: Policy) -> None:
    """How library calls choose their thread count: ``"adaptive"`` (default: the free cores, at most the
    user's setting), ``"single"`` (one thread), ``"fixed"`` (the user's settings, untouched)."""
    if policy not in POLICIES:
        raise InfluenceInputError(f"thread policy must be one of {POLICIES}, got {policy!r}")
    _state["policy"] = policy


def thread_policy() -> Policy:
    return _state["policy"]


def _own_running_threads() -> int:
    """This process's threads in state R (our own idle OpenMP workers may still be spinning)."""
    count = 0
    try:
        for task in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError), open(f"/proc/self/task/{task}/stat") as handle:
                # the state follows the parenthesised command name, which may itself hold spaces
                if handle.read().rsplit(")", 1)[1].split()[0] == "R":
                    count += 1
    except OSError:
        return 1
    return max(1, count)


def busy_others() -> int | None:
    """Runnable threads of other processes right now (the smallest of a few reads), or None if unknown."""
    try:
        seen = []
        for i in range(_SAMPLES):
            with open("/proc/loadavg") as handle:
                running = int(handle.read().split()[3].split("/")[0])
            seen.append(running - _own_running_threads())
            if i + 1 < _SAMPLES:
                time.sleep(0.001)
    except (OSError, ValueError, IndexError):
        return None
    return max(0, min(seen))


def cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def budget(user_threads: int, policy: Policy | None = None) -> int:
    """Threads for one call: ``user_threads`` capped by the cores free of other runnable work, at least 1."""
    policy = policy or _state["policy"]
    if policy == "fixed":
        return user_threads
    if policy == "single":
        return 1
    others = busy_others()
    if others is None:
        return user_threads
    return max(1, min(user_threads, cores() - others))


@contextlib.contextmanager
def thread_budget() -> Iterator[int]:
    """Run the block with ``budget()`` threads for torch and numpy's BLAS; the user's settings come back
    when the outermost block ends (exceptions included). Yields the thread count in use."""
    depth = getattr(_local, "depth", 0)
    if depth == 0:
        user = torch.get_num_threads()
        chosen = budget(user)
        _local.saved, _local.threads, _local.blas, _local.checked = user, chosen, None, time.monotonic()
        if chosen != user:
            torch.set_num_threads(chosen)
            if threadpool_limits is not None:
                _local.blas = threadpool_limits(limits=chosen, user_api="blas")
    _local.depth = depth + 1
    try:
        yield _local.threads
    finally:
        _local.depth -= 1
        if _local.depth == 0:
            if _local.blas is not None:  # first: threadpoolctl's restore also resets OpenMP's count
                _local.blas.restore_original_limits()
                _local.blas = None
            if torch.get_num_threads() != _local.saved:
                torch.set_num_threads(_local.saved)


def chunk_workers(busy_only: bool = False) -> int:
    """Worker threads for a sum over independent training chunks (``curvature.chunk_threads``): 1 (no workers)
    outside ``thread_budget()`` or under the ``"fixed"`` and ``"single"`` policies; else the user's torch thread
    count (at most the cores), twice that while other processes are runnable: chunk sums meet once per
    product, not at every op, so extra workers take their share of a busy machine instead of stalling.
    ``busy_only``: 1 while no other process is runnable (work that runs faster on intra-op threads when idle)."""
    if getattr(_local, "depth", 0) == 0 or _state["policy"] != "adaptive":
        return 1
    workers = min(_local.saved, cores())
    others = busy_others()
    if busy_only and not others:
        return 1
    return 2 * workers if workers > 1 and others else workers


REBALANCE_SECONDS = 2.0  # a long call looks at the load again at most this often


def rebalance() -> None:
    """Inside a long call (progress loops call this): size the threads to the load again, at most every
    ``REBALANCE_SECONDS``, within the user's setting. A no-op outside ``thread_budget()``."""
    if getattr(_local, "depth", 0) == 0 or _state["policy"] != "adaptive":
        return
    now = time.monotonic()
    if now - getattr(_local, "checked", 0.0) < REBALANCE_SECONDS:
        return
    _local.checked = now
    chosen = budget(_local.saved)
    if chosen != _local.threads:
        torch.set_num_threads(chosen)
        _local.threads = chosen


def within_thread_budget(fn: F) -> F:
    """Decorator: ``fn`` runs inside ``thread_budget()``."""

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with thread_budget():
            return fn(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def budget_public_methods(cls: type) -> type:
    """Class decorator: every public method of ``cls`` and of its bases (not properties) runs inside
    ``thread_budget()``."""
    for name, value in [(n, v) for klass in reversed(cls.__mro__[:-1]) for n, v in vars(klass).items()]:
        plain = callable(value) and not isinstance(value, (type, staticmethod, classmethod))
        if plain and (not name.startswith("_") or name == "__init__"):
            setattr(cls, name, within_thread_budget(value))
    return cls
