"""Caches keyed by what their values depend on (parameters, training set, curvature settings, device),
never by the identity of the objects that computed them.

An explainer and the explainers derived from it (``with_damping``, ``for_model``) share one
``KeyedCache``: an entry is found again by any of them whose key matches, so the explicit Hessian
of one model on one training set is built once, whichever operator (local or on a Dask cluster)
asked for it first.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import torch

_CONTENT_BYTES = 2**28  # tensors up to this size are hashed whole; larger ones on a strided sample


def tensor_digest(tensor: torch.Tensor) -> tuple[Any, ...]:
    """Shape, dtype and a 128-bit digest of the values (a strided sample of 2^20 values beyond 256 MiB,
    with the version counter, so that an in-place change is still seen)."""
    flat = tensor.detach().reshape(-1)
    version: int | None = None
    if flat.numel() * flat.element_size() > _CONTENT_BYTES:
        flat, version = flat[:: max(1, flat.numel() // 2**20)], tensor._version
    raw = bytes(flat.cpu().contiguous().view(torch.uint8).numpy()) if flat.numel() else b""
    return tuple(tensor.shape), str(tensor.dtype), version, hashlib.blake2b(raw, digest_size=16).digest()


def _nbytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(_nbytes(getattr(value, f.name)) for f in dataclasses.fields(value))
    return 0


class KeyedCache:
    """A map from content keys to tensors (or tuples of them); with ``max_bytes``, the least recently used
    entries are evicted beyond that many bytes (by default nothing is: an explainer keeps what it computed
    until ``clear_cache()``, as it always has)."""

    def __init__(self, max_bytes: int | None = None) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._sizes: dict[Hashable, int] = {}
        self.nbytes = 0

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> Any:
        """The value stored under ``key`` (marked as recently used), or None."""
        if key not in self._entries:
            return None
        self._entries.move_to_end(key)
        return self._entries[key]

    def put(self, key: Hashable, value: Any) -> Any:
        """Store ``value`` under ``key``, evicting the least recently used entries beyond ``max_bytes``."""
        self._drop(key)
        self._entries[key] = value
        self._sizes[key] = _nbytes(value)
        self.nbytes += self._sizes[key]
        while self.max_bytes is not None and len(self._entries) > 1 and self.nbytes > self.max_bytes:
            self._drop(next(iter(self._entries)))
        return value

    def _drop(self, key: Hashable) -> None:
        if key in self._entries:
            del self._entries[key]
            self.nbytes -= self._sizes.pop(key)

    def get_or_build(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """The value under ``key``, built (and stored) on a miss."""
        value = self.get(key)
        return self.put(key, build()) if value is None else value

    def discard(self, predicate: Callable[[Hashable], bool]) -> int:
        """Drop the entries whose key satisfies ``predicate``; returns how many were dropped."""
        doomed = [key for key in self._entries if predicate(key)]
        for key in doomed:
            self._drop(key)
        return len(doomed)

    def clear(self) -> None:
        self._entries.clear()
        self._sizes.clear()
        self.nbytes = 0


def objective_key(module: torch.nn.Module, names: list[str], loss_fn: Any, output: Any) -> tuple[Any, ...]:
    """What a training objective's values depend on: the architecture, every parameter and buffer (the
    selected ones and those held fixed), which parameters are selected, the loss and the output selection.
    The loss and the output selector are the user's own objects and count by identity."""
    state = tuple((name, tensor_digest(t)) for name, t in module.state_dict(keep_vars=True).items())
    architecture = hashlib.blake2b(repr(module).encode(), digest_size=16).digest()
    device = next((str(t.device) for t in module.parameters()), "cpu")
    selector = output if output is None or isinstance(output, (int, str)) else id(output)
    return type(module).__qualname__, architecture, state, tuple(names), id(loss_fn), selector, device
