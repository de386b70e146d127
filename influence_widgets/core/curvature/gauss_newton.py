"""The Gauss-Newton part of the training Hessian, from per-example output Jacobians.

For one example with outputs f = f(x; theta) (C values) and loss l(f, y),

    nabla^2_theta l = J^T A J + sum_k (dl/df_k) nabla^2_theta f_k,    J = df/dtheta [C, p], A = nabla^2_f l [C, C].

The first term is the generalised Gauss-Newton matrix. Its sum over a chunk of examples is one matrix
product of stacked Jacobians, far cheaper than p Hessian-vector products, and it serves two purposes:

* Where the outputs are affine in a group L of parameters (a final linear layer; every parameter of
  a linear or logistic regression), nabla^2_LL f_k = 0, so the (L, L) block of the Hessian *is* the
  Gauss-Newton block, exactly. ``affine.py`` finds such a group.
* With A replaced by its positive part, it is a positive semi-definite approximation of the whole
  Hessian: the preconditioner of block conjugate gradients.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torch.func import grad, jacrev, vjp, vmap

from ..training_data import StreamedData, TrainingData
from .objective import Objective

_JACOBIAN_CHUNK_BYTES = 2**26  # per-example Jacobians held at once: b x C x p values ...
_MAX_CHUNKS_PER_CALL = 8  # ... and at most this many batch_size chunks of points
_NULL_CURVATURE = 1e-6  # eigenvalues of A below this fraction of its largest count as zero (preconditioner only)
_ROUNDING = 1e-12  # negative eigenvalues of A this small (relative) are rounding: A counts as PSD
_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # CPUs with native bfloat16 matrix products


def output_jacobians(objective: Objective, x: torch.Tensor) -> torch.Tensor:
    """d f(x_i) / d theta for each row of a batch, [b, C, p] with C the flattened output size."""

    def single(theta: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        return objective.outputs(xi.unsqueeze(0), theta).reshape(-1)

    return vmap(jacrev(single), in_dims=(None, 0))(objective.theta, x)


def output_hessians(objective: Objective, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """nabla^2_f loss(f(x_i), y_i) for each row, [b, C, C]: the loss's curvature in output space.

    The loss is a sum of per-example terms, so C products of the batch's output-space Hessian with
    the basis vector e_k on every row give all b blocks at once.
    """
    with torch.no_grad():
        outputs = objective.outputs(x)
    b, shape = len(x), outputs.shape[1:]
    flat = outputs.reshape(b, -1)
    n_outputs = flat.shape[1]

    def total(values: torch.Tensor) -> torch.Tensor:
        return objective.loss_fn(values.reshape(b, *shape), y).sum()

    _, pullback = vjp(grad(total), flat)  # reverse over reverse: no forward-mode rules needed
    basis = torch.eye(n_outputs, dtype=flat.dtype, device=flat.device)[:, None, :].expand(n_outputs, b, n_outputs)
    (columns,) = vmap(pullback)(basis)  # [k, b, c] = A_i[k, c]
    return columns.permute(1, 2, 0)


def jacobian_chunks(
    objective: Objective, data: TrainingData | StreamedData, batch_size: int, indices: torch.Tensor | None = None
) -> tuple[Iterator[tuple[torch.Tensor, torch.Tensor]], int]:
    """(x, y) chunks of the training set (or of ``indices``), and their count: chunks whose Jacobians take
    at most 64 MiB, of at most ``batch_size`` points from a Dataset (8 x ``batch_size`` from tensors)."""
    with torch.no_grad():
        n_outputs = objective.outputs(data.take(torch.arange(1))[0]).numel()
    per_point = max(1, n_outputs * objective.size * objective.theta.element_size())
    most = batch_size if data.streamed else _MAX_CHUNKS_PER_CALL * batch_size  # a Dataset: batch_size per read
    size = max(1, min(most, _JACOBIAN_CHUNK_BYTES // per_point))
    if indices is None:
        return ((x, y) for _, x, y in data.chunks(size)), -(-len(data) // size)
    chunks = (data.take(indices[start : start + size]) for start in range(0, len(indices), size))
    return chunks, -(-len(indices) // size)


@functools.cache
def fast_gram_dtype(device_type: str) -> torch.dtype:
    """bfloat16 where the hardware multiplies it natively (x86 CPUs with AVX512-BF16 or AMX, read from
    /proc/cpuinfo; CUDA devices that support it), else float32: a fixed choice per machine, so runs repeat."""
    if device_type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device_type == "cpu":
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return torch.float32
        return torch.bfloat16 if any(flag in flags.split() for flag in _BF16_CPU_FLAGS) else torch.float32
    return torch.float32


def gauss_newton_sum(
    objective: Objective,
    chunks: Iterable[tuple[torch.Tensor, torch.Tensor]],
    columns: torch.Tensor | None = None,
    positive_part: bool = False,
    low_precision: bool = False,
) -> torch.Tensor:
    """sum_i J_i[:, cols]^T A_i J_i[:, cols] over the examples of ``chunks`` ((x, y) batches), [k, k].

    ``columns``: the parameter indices to keep (default all). ``positive_part``: replace each A_i by
    its positive semi-definite part (eigenvalues clipped at 0), which makes the sum PSD.
    ``low_precision`` (with ``positive_part``): form the product in ``fast_gram_dtype`` (about 0.2 %
    relative error in bfloat16), good enough for a preconditioner, which changes speed, not answers.
    The objective's closed form serves each batch it covers.
    """
    total = None
    for x, y in chunks:
        part = objective.closed_form_loss_hessian(x, y, positive_part)
        if part is not None:  # closed form: the selected parameters are one linear layer
            if columns is not None and len(columns) < len(part):
                part = part[columns[:, None], columns]
            total = part if total is None else total + part
            continue
        jacobians = output_jacobians(objective, x)
        if columns is not None:
            jacobians = jacobians[:, :, columns]
        curvature = output_hessians(objective, x, y).to(jacobians.dtype)
        curvature = (curvature + curvature.transpose(1, 2)) / 2
        k = jacobians.shape[2]
        eigenvalues, eigenvectors = torch.linalg.eigh(curvature)
        top = eigenvalues[:, -1:].abs().clamp_min(torch.finfo(eigenvalues.dtype).tiny)
        if positive_part:
            kept = eigenvalues > _NULL_CURVATURE * top  # drops e.g. softmax's null direction
        elif bool((eigenvalues >= -_ROUNDING * top).all()):  # A is PSD (up to rounding): J^T A J is a Gram matrix
            kept = torch.ones_like(eigenvalues, dtype=torch.bool)
        else:
            part = jacobians.reshape(-1, k).T @ torch.einsum("bcd,bdp->bcp", curvature, jacobians).reshape(-1, k)
            total = part if total is None else total + part
            continue
        root = eigenvectors * (eigenvalues.clamp_min(0) * kept).sqrt().unsqueeze(1)  # root root^T = A (A+)
        used = kept.any(0)  # output directions with no curvature at any point add nothing
        rows = torch.einsum("bck,bcp->bkp", root[:, :, used], jacobians).reshape(-1, k)
        if low_precision and positive_part:
            rows = rows.to(fast_gram_dtype(rows.device.type))
        part = symmetric_gram(rows).to(jacobians.dtype)
        total = part if total is None else total + part
    return (total + total.T) / 2


def symmetric_gram(rows: torch.Tensor, blocks: int = 8) -> torch.Tensor:
    """rows^T rows [k, k] from the blocks on and above the diagonal: about 9/16 of the full product's work."""
    k = rows.shape[1]
    bounds = [round(i * k / blocks) for i in range(blocks + 1)]
    gram = torch.empty(k, k, dtype=rows.dtype, device=rows.device)
    for i in range(blocks):
        a, b = bounds[i], bounds[i + 1]
        upper = rows[:, a:b].T @ rows[:, a:]
        gram[a:b, a:] = upper
        gram[a:, a:b] = upper.T
    return gram
