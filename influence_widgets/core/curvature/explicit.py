"""The explicit Hessian [p, p], assembled from its cheapest exact parts and checked.

The block of the parameters the outputs are affine in (a final linear layer, or the whole of a linear
model) is their Gauss-Newton block: exact there, and one matrix product of Jacobians (or the closed
form of one linear layer). The other columns come from Hessian-vector products with basis vectors:
one layer at a time where the model's layers allow it (``module_blocks.py``: each through its layer
and the ones after it), else through the whole model. The rest follows by symmetry.

The shortcuts (layer-wise columns, the closed-form block) are checked against full float64 products
(``verify``); a matrix that fails is not returned: ``explicit_hessian`` then assembles it again from
full products. Nothing is switched off for later calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from ..progress import progress_bar
from . import chunk_threads
from .affine import AffineGroup
from .module_blocks import ModuleBlock, block_columns, find_module_blocks
from .objective import Objective
from .sources import LocalSums, TrainingSums, points_per_call

# Layer-wise columns keep no values of the layers before theirs, so a call of them holds a fraction of
# a full product's values per point: they take this many times the points of a full product's call.
_BLOCK_POINTS_FACTOR = 4


class _Curvature(Protocol):
    """What the assembly needs of a ``TrainingHessian``."""

    objective: Objective
    source: TrainingSums
    affine: AffineGroup
    size: int
    dtype: torch.dtype
    device: torch.device
    shift: float
    progress: bool
    module_blocks: bool

    def matvec(self, vectors: torch.Tensor) -> torch.Tensor: ...

    def gauss_newton(self, columns: torch.Tensor | None = None) -> torch.Tensor: ...


@dataclass(frozen=True)
class ExplicitHessian:
    """The explicit Hessian and how it was assembled: ``"gauss-newton"`` (a model affine in every
    parameter: H is its Gauss-Newton matrix), ``"layer-wise"`` (layer-wise columns or a closed-form
    block, accepted by ``verify``) or ``"products"`` (columns from full products; ``refused``: the
    shortcuts were tried and failed the check)."""

    matrix: torch.Tensor
    method: str
    refused: bool = False


def explicit_hessian(hessian: _Curvature, block: int = 128) -> ExplicitHessian:
    """H [p, p] (weight decay and damping included), from ``block`` columns of products at a time."""
    affine = hessian.affine.everywhere()
    if bool(affine.all()):  # a linear model: the Gauss-Newton matrix is the Hessian
        matrix = hessian.gauss_newton().to(hessian.dtype) / hessian.source.n
        matrix.diagonal().add_(hessian.shift)
        return ExplicitHessian(matrix, "gauss-newton")
    refused = False
    if hessian.module_blocks:
        shortcut = _with_shortcuts(hessian, affine, block)
        if isinstance(shortcut, torch.Tensor):
            return ExplicitHessian(shortcut, "layer-wise")
        refused = shortcut == "refused"
    return ExplicitHessian(_assemble(hessian, affine, None, None, block), "products", refused)


def _with_shortcuts(hessian: _Curvature, affine: torch.Tensor, block: int) -> torch.Tensor | str:
    """H from layer-wise columns and the closed-form affine block where the model has them, checked;
    ``"not applicable"`` where it has neither, ``"refused"`` where the check fails."""
    objective, source = hessian.objective, hessian.source
    blocks = None
    if bool((~affine).any()):
        blocks = find_module_blocks(objective, source.take(torch.arange(1))[0], ~affine)
    closed = closed_form_affine_block(objective, source, affine) if bool(affine.any()) else None
    if blocks is None and closed is None:
        return "not applicable"
    matrix = _assemble(hessian, affine, blocks, closed, block)
    reference = float64_matvec(hessian)
    return matrix if verify(matrix, reference, hessian.shift) else "refused"  # e.g. a parameter used early


def _assemble(
    hessian: _Curvature,
    affine: torch.Tensor,
    blocks: list[ModuleBlock] | None,
    closed: torch.Tensor | None,
    block: int,
) -> torch.Tensor:
    """H from its curved columns (layer-wise ``blocks``, or full products) and its affine block (``closed``,
    or the Gauss-Newton block from Jacobians), completed by symmetry."""
    curved = (~affine).nonzero().squeeze(1)
    matrix, filled = _curved_columns(hessian, curved, blocks, block)
    if bool(affine.any()):
        flat = affine.nonzero().squeeze(1)
        block_ll = (hessian.gauss_newton(columns=flat) if closed is None else closed).to(hessian.dtype)
        block_ll /= hessian.source.n
        block_ll.diagonal().add_(hessian.shift)
        matrix[flat[:, None], flat] = block_ll
        filled[flat[:, None], flat] = True
    if not bool((filled | filled.T).all()):
        raise RuntimeError("the explicit Hessian's blocks do not cover it; please report this model")
    matrix = torch.where(filled, matrix, matrix.T)
    return (matrix + matrix.T) / 2


def _curved_columns(
    hessian: _Curvature, curved: torch.Tensor, blocks: list[ModuleBlock] | None, block: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """H with its curved columns filled (the rest uninitialised) and the mask of the entries filled."""
    p, dtype, device = hessian.size, hessian.dtype, hessian.device
    matrix = torch.empty(p, p, dtype=dtype, device=device)
    filled = torch.zeros(p, p, dtype=torch.bool, device=device)
    if blocks is None:
        units = [(None, curved[start : start + block]) for start in range(0, len(curved), block)]
    else:
        units = [(b, b.columns[start : start + block]) for b in blocks for start in range(0, len(b.columns), block)]
    source = hessian.source
    for module_block, columns in progress_bar(units, enabled=hessian.progress, desc="explicit Hessian"):
        if module_block is None:
            basis = torch.zeros(p, len(columns), dtype=dtype, device=device)
            basis[columns, torch.arange(len(columns))] = 1
            matrix[:, columns] = hessian.matvec(basis)
            filled[:, columns] = True
            continue
        assert isinstance(source, LocalSums)  # layer-wise blocks are only found for a local source
        rows = module_block.rows
        total = _block_sum(hessian.objective, source, module_block, columns).to(dtype)
        total /= source.n
        total[rows[:, None] == columns[None, :]] += hessian.shift
        matrix[rows[:, None], columns] = total
        filled[rows[:, None], columns] = True
    return matrix, filled


def _block_sum(
    objective: Objective, source: LocalSums, module_block: ModuleBlock, columns: torch.Tensor
) -> torch.Tensor:
    """sum_i nabla^2 loss(z_i)[rows, columns] over the training set: whole pieces of each read on worker
    threads where ``chunk_threads.usable`` allows, else in this thread."""
    per_call = min(
        source.read_size, _BLOCK_POINTS_FACTOR * points_per_call(objective.size, len(columns), source.read_size)
    )

    def product(mine: Objective, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return block_columns(mine, module_block, x, y, columns, reverse=True)

    total = None
    for _, x, y in source.chunks(source.read_size):
        workers = chunk_threads.usable(objective, x.device)
        if workers:
            part = chunk_threads.piece_sum(objective, x, y, product, workers, per_call)
        else:
            part = sum(
                block_columns(objective, module_block, x[a : a + per_call], y[a : a + per_call], columns)
                for a in range(0, len(x), per_call)
            )
        total = part if total is None else total.add_(part)
    return total


def closed_form_affine_block(objective: Objective, source: TrainingSums, affine: torch.Tensor) -> torch.Tensor | None:
    """sum_i J_i^T A_i J_i on the affine group ``affine`` (bool [p]) in closed form, when the group is whole
    parameter tensors of one linear layer that produces the outputs, checked on every batch; else None."""
    if not isinstance(source, LocalSums):
        return None
    pieces = torch.split(affine, objective.numels)
    names = [name for name, piece in zip(objective.names, pieces) if bool(piece.all())]
    sizes = dict(zip(objective.names, objective.numels))
    if sum(sizes[name] for name in names) != int(affine.sum()):
        return None  # the group splits a parameter tensor
    sample = source.take(torch.arange(1))[0]

    def batches(size: int):
        return ((x, y) for _, x, y in source.chunks(size))

    return objective.closed_form_block(names, sample, batches, source.read_size)


def float64_matvec(hessian: _Curvature):
    """[p, m] -> [p, m]: H @ vectors in float64 by full Hessian-vector products (on a float64 copy of the
    model where it is float32), none of the layer-wise or closed-form shortcuts: the reference that
    ``verify`` checks those against. Reads the source's chunks (a local source)."""
    if hessian.dtype == torch.float64:
        return hessian.matvec
    source = hessian.source
    assert isinstance(source, LocalSums)
    exact = hessian.objective.float64_reference()

    def matvec(vectors: torch.Tensor) -> torch.Tensor:
        vectors = vectors.to(torch.float64)
        total = torch.zeros_like(vectors)
        for _, x, y in source.chunks(source.read_size):
            x, y = x.double(), (y.double() if y.is_floating_point() else y)
            workers = chunk_threads.usable(exact, x.device)
            if workers:
                total += chunk_threads.hessian_sum(exact, x, y, vectors, workers, len(x))
            else:
                total += exact.hessian_sum_matvec(x, y, vectors)
        return total / source.n + hessian.shift * vectors

    return matvec


def verify(matrix: torch.Tensor, matvec, shift: float, seed: int = 0) -> bool:
    """Whether ``matrix`` (H, with ``shift`` I in it) agrees with ``matvec`` (float64 products with H,
    [p, m] -> [p, m]) on two random vectors: the error of ``matrix @ v`` at most 1e-9 (float64 matrices)
    or 1e-5 (float32) of the data term's ||(H - shift I) v||, so that damping hides nothing. A wrong matrix
    fails with probability one; one right but assembled in float32 passes with margin."""
    generator = torch.Generator().manual_seed(seed)
    vectors = torch.randn(matrix.shape[0], 2, generator=generator, dtype=torch.float64).to(matrix.device)
    expected = matvec(vectors)
    tolerance = 1e-9 if matrix.dtype == torch.float64 else 1e-5
    error = torch.linalg.norm(matrix.to(torch.float64) @ vectors - expected)
    scale = torch.linalg.norm(expected - shift * vectors).clamp_min(torch.finfo(torch.float64).tiny)
    return bool(error <= tolerance * scale)
