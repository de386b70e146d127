"""Caches keyed by what their values depend on (parameters, training set, curvature settings, device),
never by the identity of the objects that computed them.

An explainer and the explainers derived from it (``with_damping``, ``for_model``) share one
``KeyedCache``: an entry is found again by any of them whose key matches, so the explicit Hessian
of one model on one training set is built once, whichever operator (local or on a Dask cluster)
asked for it first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable
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


class KeyedCache:
    """A map from content keys to what was computed for them; an explainer keeps what it computed until
    ``clear_cache()``, as it always has (nothing is evicted)."""

    def __init__(self) -> None:
        self._entries: dict[Hashable, Any] = {}

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def get(self, key: Hashable) -> Any:
        """The value stored under ``key``, or None."""
        return self._entries.get(key)

    def put(self, key: Hashable, value: Any) -> Any:
        """Store ``value`` under ``key``; returns it."""
        self._entries[key] = value
        return value

    def clear(self) -> None:
        self._entries.clear()


def objective_key(module: torch.nn.Module, names: list[str], loss_fn: Any, output: Any) -> tuple[Any, ...]:
    """What a training objective's values depend on: the architecture, every parameter and buffer (the
    selected ones and those held fixed), which parameters are selected, the loss and the output selection.
    The loss and the output selector are the user's own objects and count by identity."""
    state = tuple((name, tensor_digest(t)) for name, t in module.state_dict(keep_vars=True).items())
    architecture = hashlib.blake2b(repr(module).encode(), digest_size=16).digest()
    device = next((str(t.device) for t in module.parameters()), "cpu")
    selector = output if output is None or isinstance(output, (int, str)) else id(output)
    return type(module).__qualname__, architecture, state, tuple(names), id(loss_fn), selector, device
