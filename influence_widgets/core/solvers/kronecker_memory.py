"""How much one chunk of K-FAC's and EK-FAC's passes holds: each layer's geometry (positions per training point,
input columns, outputs), the float64 bytes one point adds, and the chunk size that keeps them under
``KFACOptions.chunk_bytes``. ``kronecker_pass.layer_chunks`` reads its chunks at that size; ``estimate_cost``
states the bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .kronecker_pass import KFACOptions, _Layer, _Problem


@dataclass(frozen=True)
class _Geometry:
    """A layer's positions T per training point (Conv2d: output pixels; Linear: the rows of its input beyond one,
    extra leading dimensions or a batch the model folds them into), input columns (with the bias's 1) and
    outputs: the shapes of its per-point tensors abar [T, cols] and g [T, out]."""

    positions: int
    cols: int
    out: int


def layer_geometry(problem: _Problem, layers: list[_Layer]) -> list[_Geometry]:
    """Each layer's ``_Geometry``, from a forward pass of one training point (hooks removed in ``finally``)."""
    positions: dict[int, int] = {}

    def hook_for(i: int):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            if isinstance(module, nn.Conv2d):
                positions[i] = output.numel() // module.out_channels
            else:
                positions[i] = inputs[0].numel() // module.in_features

        return hook

    handles = [layer.module.register_forward_hook(hook_for(i)) for i, layer in enumerate(layers)]
    try:
        _, x, _ = next(iter(problem.data.chunks(1)))
        with torch.no_grad():
            problem.objective.outputs(x)
    finally:
        for handle in handles:
            handle.remove()
    return [_Geometry(positions.get(i, 1), layer.shape[1], layer.shape[0]) for i, layer in enumerate(layers)]


def bytes_per_point(geometry: list[_Geometry], vectors: int, rotates: bool, fallback_floats: int) -> int:
    """float64 bytes one training point adds to a chunk: every layer's abar [T, cols] and its ``vectors`` output
    gradients [T, out], held for the chunk; with ``rotates`` (EK-FAC's refit and correction passes) one layer's
    copies of those in its eigenbasis and, for a layer over several positions, its per-point gradient matrix
    D [out, cols] twice (made one layer at a time, so the largest layer counts); and the ``fallback_floats`` of
    each point's gradient row for the diagonal fallback."""
    held = sum(g.positions * (g.cols + vectors * g.out) for g in geometry)
    transient = 0
    if rotates:
        transient = max(
            g.positions * (g.cols + vectors * g.out) + (2 * g.out * g.cols if g.positions > 1 else 0) for g in geometry
        )
    return 8 * (held + transient + fallback_floats)


def chunk_points(options: KFACOptions, per_point: int) -> int:
    """Training points per chunk: ``chunk_size``, fewer where ``chunk_bytes`` would be exceeded; at least 1, even
    where one point alone exceeds it."""
    return max(1, min(options.chunk_size, options.chunk_bytes // max(1, per_point)))
