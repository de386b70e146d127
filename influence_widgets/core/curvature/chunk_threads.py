"""Passes over the training set on a few worker threads, each with its own chunks (Hessian-vector products first).

A product over the training set is a sum of independent chunk sums. Torch's intra-op threads split each
small op and meet at a barrier after it; beside other busy work a descheduled thread stalls the others at
every barrier. Here each worker thread computes whole chunk sums with one intra-op thread, and the main
thread adds the pieces in chunk order, so the result does not depend on which thread ran what.

On the digits CNN (1,626 parameters, 1,347 points; one product, 2 cores), measured side by side: 86-97 ms
with one or two intra-op threads idle, 333-345 ms beside 4 busy processes; on 2 worker threads 51-56 ms idle;
on 4 worker threads 53-63 ms idle, 101-108 ms loaded. So the product uses as many workers as torch has
threads, twice that while other processes are runnable (``threads.chunk_workers``).

The same workers serve the other passes over the training set: the explicit Hessian's layer-wise columns and
its float64 check (``piece_sum``), the per-example gradients while other processes are runnable (``piece_rows``:
the same calls as in one thread; idle, intra-op threads are 25% faster there), and LiSSA's recursions, whose
right-hand sides are independent (``column_groups``). Measured on the digits CNN beside 4 busy processes (2
cores): the exact solve of one test point 4.1-5.3 s instead of 6.3-7.1 s, the gradient pass 0.09-0.16 s instead
of 0.19-0.22 s, LiSSA on 10 test points 38 s instead of 58 s; idle unchanged.

Worker threads use the objective's replicas (its module deep-copied, one per worker: ``functional_call``
swaps a module's parameters and is not safe on one module from two threads) and reverse-over-reverse
products (forward-mode AD keeps one global level). Only tensors held in memory on the CPU are read this
way, and only for models of at most ``SMALL_MODEL_PARAMS`` parameters whose replicas are small (``REPLICA_BYTES``):
a larger model's ops are large enough for intra-op threads.
"""

from __future__ import annotations

import copy
import os
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn

from ..threads import chunk_workers, cores
from .objective import Objective

REPLICA_BYTES = 2**26  # all replicas of the module together at most this much; a larger model runs in one thread
# On the 1.08 M-parameter MLP the workers made CG slower (reference solve 26.2 s before, 37.5 s with them, 2 cores)
SMALL_MODEL_PARAMS = 100_000
PIECES_PER_CORE = 2  # pieces of each read, fixed whatever the load: a slow thread holds up the sum by about one

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_slot = threading.local()


def _name_worker(counter: list[int]) -> None:
    torch.set_num_threads(1)  # this worker thread's own OpenMP setting: the caller's is untouched
    with _pool_lock:
        _slot.index = counter[0]
        counter[0] += 1


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            workers = 2 * cores()
            _pool = ThreadPoolExecutor(workers, "influence-chunks", initializer=_name_worker, initargs=([0],))
        return _pool


_modules: weakref.WeakKeyDictionary[nn.Module, dict[int, nn.Module]] = weakref.WeakKeyDictionary()


def _forget_pool_after_fork() -> None:
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()  # a forked child has none of the parent's worker threads


os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _replica(objective: Objective) -> Objective:
    """``objective`` over this worker thread's own deep copy of its module (made once per module and worker)."""
    index = _slot.index
    with _pool_lock:
        copies = _modules.setdefault(objective.module, {})
        if index not in copies:
            copies[index] = copy.deepcopy(objective.module)
        replica = copy.copy(objective)
        replica.module = copies[index]
    return replica


def usable(objective: Objective, device: torch.device, busy_only: bool = False) -> int:
    """Worker threads to use for ``objective`` on inputs held on ``device``: 0 where the work stays in this
    thread (``busy_only``: also while no other process is runnable, see ``threads.chunk_workers``)."""
    workers = chunk_workers(busy_only)
    if workers < 2 or torch.device(device).type != "cpu":
        return 0
    if objective.size > SMALL_MODEL_PARAMS:  # large products parallelise well inside each op
        return 0
    module_bytes = sum(t.numel() * t.element_size() for t in objective.module.state_dict().values())
    return workers if module_bytes * 2 * cores() <= REPLICA_BYTES else 0


PieceProduct = Callable[[Objective, torch.Tensor, torch.Tensor], torch.Tensor]  # (replica, x, y) -> its part
ColumnRun = Callable[[Objective, torch.Tensor, int], torch.Tensor]  # (replica, columns, group) -> result columns


def _on_workers(objective: Objective, count: int, workers: int, task: Callable[[Objective, int], torch.Tensor]) -> list:
    """[task(replica, k) for k in range(count)], task k on worker k mod ``workers``, each worker with its
    replica of ``objective`` (its own copy of the module)."""
    parts: list[torch.Tensor | None] = [None] * count

    def run(first: int) -> None:
        mine = _replica(objective)
        for k in range(first, count, workers):
            parts[k] = task(mine, k)

    for done in [_executor().submit(run, first) for first in range(min(workers, count))]:
        done.result()
    return parts


def piece_sum(
    objective: Objective, x: torch.Tensor, y: torch.Tensor, product: PieceProduct, workers: int, per_call: int
) -> torch.Tensor:
    """sum of ``product(replica, x[a:b], y[a:b])`` over (x, y), on ``workers`` threads, in calls of at most
    ``per_call`` points; ``replica`` is ``objective`` over the worker's own copy of its module. The pieces
    do not depend on ``workers``, nor does the result."""
    pieces = min(len(x), PIECES_PER_CORE * cores())
    bounds = [len(x) * k // pieces for k in range(pieces + 1)]

    def piece(mine: Objective, k: int) -> torch.Tensor:
        total = None
        for a in range(bounds[k], bounds[k + 1], per_call):
            b = min(a + per_call, bounds[k + 1])
            part = product(mine, x[a:b], y[a:b])
            total = part if total is None else total.add_(part)
        return total

    parts = _on_workers(objective, pieces, workers, piece)
    total = parts[0]
    for part in parts[1:]:
        total += part
    return total


def piece_rows(
    objective: Objective, x: torch.Tensor, y: torch.Tensor, product: PieceProduct, workers: int, per_call: int
) -> torch.Tensor:
    """``product(replica, x[a:b], y[a:b])`` for the calls of ``per_call`` points at a = 0, per_call, ..., on
    ``workers`` threads, concatenated in order: the same calls as in one thread."""
    starts = range(0, len(x), per_call)

    def call(mine: Objective, k: int) -> torch.Tensor:
        a = starts[k]
        return product(mine, x[a : a + per_call], y[a : a + per_call])

    return torch.cat(_on_workers(objective, len(starts), workers, call))


def column_groups(objective: Objective, vectors: torch.Tensor, run: ColumnRun, workers: int) -> torch.Tensor:
    """``run(replica, vectors[:, group], index)`` for fixed groups of columns (one per piece, whatever
    ``workers``) on ``workers`` threads, the results side by side in column order: for work whose columns
    are independent all the way through (LiSSA's recursions), with no barrier until the end."""
    groups = torch.arange(vectors.shape[1]).tensor_split(min(vectors.shape[1], PIECES_PER_CORE * cores()))

    def group(mine: Objective, k: int) -> torch.Tensor:
        return run(mine, vectors[:, groups[k]], k)

    return torch.cat(_on_workers(objective, len(groups), workers, group), dim=1)


def hessian_sum(
    objective: Objective, x: torch.Tensor, y: torch.Tensor, vectors: torch.Tensor, workers: int, per_call: int
) -> torch.Tensor:
    """sum_i nabla^2 loss(z_i) @ vectors over (x, y), [p, m] -> [p, m], on ``workers`` threads, in calls of at
    most ``per_call`` points (``piece_sum``)."""
    theta = objective.theta

    def product(mine: Objective, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        return mine.hessian_sum_matvec(xs, ys, vectors, theta=theta, reverse=True)

    return piece_sum(objective, x, y, product, workers, per_call)
