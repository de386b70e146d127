"""What K-FAC and EK-FAC factor: each selected Linear/Conv2d layer's inputs and output gradients, one pass.

The options of both solvers, the reading of the training problem behind an operator (the one place that
knows the operator's shape), the layers found among the selected parameters, the output-space vectors
whose backward passes give the layer gradients (the true Fisher's exact expectation, sampled labels, or
the given labels), and the streamed pass over the training set with forward hooks that are removed
when the pass ends. See ``kfac.py`` for the approximation itself.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ..curvature import HessianOperator
from ..errors import InfluenceInputError
from ..progress import progress_bar
from .options import _check_field_types, _require

FISHERS = ("true", "empirical")
_SINGULAR_RELATIVE = 1e-12  # smallest denominator relative to the largest before the solve is refused
_LOSS_MATCH_RTOL = 1e-5  # a loss recognised as cross-entropy / BCE when it matches to this (sampled labels)


@dataclass(frozen=True)
class KFACOptions:
    """Kronecker-factored curvature (see the module docstring for the formulas).

    fisher: ``"true"`` (labels from the model's predictive distribution) or ``"empirical"`` (the given labels).
    mc_samples: with ``fisher="true"``: None takes the expectation over the labels exactly (one backward
        pass per model output and point); k >= 1 samples k labels per point (k backward passes), seeded.
    seed: the seed of the sampled labels.
    chunk_size: training points per forward pass while the factors are built, at most.
    chunk_bytes: the most bytes one chunk's float64 layer inputs (unfolded for Conv2d) and output gradients may
        take; the chunk shrinks below ``chunk_size`` to fit (``chunk_points``), and ``estimate_cost`` states it.
    """

    fisher: str = "true"
    mc_samples: int | None = None
    seed: int = 0
    chunk_size: int = 256
    chunk_bytes: int = 512 * 2**20

    def __post_init__(self) -> None:
        _check_field_types(self)
        cls = type(self).__name__
        _require(self.fisher in FISHERS, f"{cls}.fisher must be one of {FISHERS}, got {self.fisher!r}")
        _require(
            self.mc_samples is None or self.mc_samples >= 1,
            f"{cls}.mc_samples must be >= 1 (or None: the exact expectation over labels), got {self.mc_samples}",
        )
        _require(self.chunk_size >= 1, f"{cls}.chunk_size must be >= 1, got {self.chunk_size}")
        _require(self.chunk_bytes >= 1, f"{cls}.chunk_bytes must be >= 1, got {self.chunk_bytes}")
        _require(
            self.fisher == "true" or self.mc_samples is None,
            f"{cls}.mc_samples={self.mc_samples} samples labels for fisher='true'; fisher='empirical' uses the given "
            "labels: leave mc_samples=None",
        )


# ---------------------------------------------------------------------------------------------- the operator


@dataclass
class _Problem:
    """What the factors are built from: the only reads of the operator (one place to adapt)."""

    objective: (
        Any  # ``.module``, ``.names``, ``.theta``, ``.unflatten``, ``.outputs``, ``.loss_fn``, ``.per_example_grads``
    )
    data: Any  # the operator's training-set source: ``.chunks(size)`` yielding (start, x, y), ``len()``
    shift: float  # weight decay + damping
    key: Hashable
    size: int
    dtype: torch.dtype
    device: torch.device


def read_operator(operator: HessianOperator) -> _Problem:
    """The training problem behind ``operator``; refused where it is not a training Hessian."""
    objective = getattr(operator, "objective", None)  # a training Hessian's (plain matrices have none)
    data = getattr(operator, "source", None)
    if objective is None or data is None:
        raise InfluenceInputError(
            f"K-FAC needs the model and training data behind the Hessian; {type(operator).__name__} has none. "
            "Use solver='cg' or 'exact' for a plain matrix"
        )
    key = operator.key if getattr(operator, "key", None) is not None else ("operator", id(operator))
    return _Problem(objective, data, float(operator.shift), key, operator.size, operator.dtype, operator.device)


# ---------------------------------------------------------------------------------------------- layers


@dataclass
class _Layer:
    """A Linear or Conv2d layer among the selected parameters; ``index`` [out, cols] maps its gradient matrix
    [W | b] (row-major; the bias column only where the bias is selected) into theta."""

    name: str
    module: nn.Module
    index: torch.Tensor
    has_weight: bool
    has_bias: bool

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.index.shape)


def _unsupported(module: nn.Module) -> str | None:
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            return f"a grouped convolution (groups={module.groups})"
        if module.padding_mode != "zeros":
            return f"padding_mode={module.padding_mode!r}"
        if isinstance(module.padding, str) and module.padding != "valid":
            return f"padding={module.padding!r}"
    return None


def find_layers(objective: Any) -> tuple[list[_Layer], torch.Tensor, list[str]]:
    """The Kronecker-factored layers, the theta indices left to the diagonal fallback, and why some were."""
    offsets: dict[str, tuple[int, int]] = {}
    start = 0
    for name, tensor in objective.unflatten(objective.theta).items():
        offsets[name] = (start, tensor.numel())
        start += tensor.numel()
    device = objective.theta.device
    covered = torch.zeros(start, dtype=torch.bool, device=device)
    layers: list[_Layer] = []
    reasons: list[str] = []
    counts: dict[int, int] = {}
    for _, module in objective.module.named_modules():
        counts[id(module)] = counts.get(id(module), 0) + 1
    for mod_name, module in objective.module.named_modules(remove_duplicate=True):
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            continue
        prefix = f"{mod_name}." if mod_name else ""
        has_weight = prefix + "weight" in offsets
        has_bias = module.bias is not None and prefix + "bias" in offsets
        if not (has_weight or has_bias):
            continue
        why = _unsupported(module)
        if why is not None:
            reasons.append(f"{mod_name or 'the model'} ({why})")
            continue
        out = module.out_features if isinstance(module, nn.Linear) else module.out_channels
        pieces = []
        if has_weight:
            w0, wn = offsets[prefix + "weight"]
            pieces.append(torch.arange(w0, w0 + wn, device=device).reshape(out, wn // out))
        if has_bias:
            b0, _ = offsets[prefix + "bias"]
            pieces.append(torch.arange(b0, b0 + out, device=device).reshape(out, 1))
        index = torch.cat(pieces, dim=1)
        covered[index.reshape(-1)] = True
        layers.append(_Layer(mod_name, module, index, has_weight, has_bias))
    return layers, torch.nonzero(~covered).reshape(-1), reasons


def factored_share(objective: Any) -> float:
    """The share of the selected parameters that lie in Linear/Conv2d layers K-FAC and EK-FAC can factor."""
    layers, _, _ = find_layers(objective)
    return sum(layer.index.numel() for layer in layers) / max(1, objective.size)


def _layer_inputs(layer: _Layer, a: torch.Tensor) -> torch.Tensor:
    """abar [b, T, cols]: the layer's inputs, unfolded for Conv2d, with the 1 for the bias, in float64."""
    module, b = layer.module, a.shape[0]
    if isinstance(module, nn.Conv2d):
        padding = 0 if module.padding == "valid" else module.padding
        a = F.unfold(a, module.kernel_size, dilation=module.dilation, padding=padding, stride=module.stride)
        a = a.transpose(1, 2)  # [b, T, in * kh * kw]
    else:
        a = a.reshape(b, -1, a.shape[-1])
    parts = [a] if layer.has_weight else []
    if layer.has_bias:
        parts.append(torch.ones(*a.shape[:2], 1, dtype=a.dtype, device=a.device))
    return torch.cat(parts, dim=2).to(torch.float64)


def _layer_grads(layer: _Layer, g: torch.Tensor) -> torch.Tensor:
    """g [b, T, out]: the gradient at the layer's output, positions second, in float64."""
    b = g.shape[0]
    if isinstance(layer.module, nn.Conv2d):
        return g.reshape(b, g.shape[1], -1).transpose(1, 2).to(torch.float64)
    return g.reshape(b, -1, g.shape[-1]).to(torch.float64)


# ---------------------------------------------------------------------------------------------- output-space vectors


def _loss_kind(objective: Any, f: torch.Tensor, y: torch.Tensor) -> str:
    """``"cross_entropy"`` or ``"bce"`` where the loss matches one on this chunk, else ``"gaussian"``."""
    with torch.no_grad():
        values = objective.loss_fn(f, y).reshape(len(f)).to(torch.float64)
        if f.ndim == 2 and not y.is_floating_point() and y.ndim == 1 and f.shape[1] > 1:
            reference = F.cross_entropy(f, y, reduction="none").to(torch.float64)
            if torch.allclose(values, reference, rtol=_LOSS_MATCH_RTOL, atol=1e-12):
                return "cross_entropy"
        if y.is_floating_point() and y.numel() == f.numel():
            flat = f.reshape(len(f), -1)
            reference = F.binary_cross_entropy_with_logits(flat, y.reshape(flat.shape), reduction="none").sum(1)
            if torch.allclose(values, reference.to(torch.float64), rtol=_LOSS_MATCH_RTOL, atol=1e-12):
                return "bce"
    return "gaussian"


def _output_hessian_root(objective: Any, f: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, float]:
    """R [b, C, C] with R R^T = the positive part of d^2 l / df^2 per point, and its most negative eigenvalue
    relative to the largest (0 for a convex loss)."""
    b = len(f)
    leaf = f.detach().requires_grad_(True)
    with torch.enable_grad():
        first = torch.autograd.grad(objective.loss_fn(leaf, y).sum(), leaf, create_graph=True)[0].reshape(b, -1)
        n_out = first.shape[1]
        rows = [
            torch.autograd.grad(first[:, c].sum(), leaf, retain_graph=c < n_out - 1)[0].reshape(b, -1)
            for c in range(n_out)
        ]
    hessians = torch.stack(rows, dim=1).to(torch.float64)
    eigenvalues, vectors = torch.linalg.eigh((hessians + hessians.transpose(1, 2)) / 2)
    top = float(eigenvalues.abs().max()) if eigenvalues.numel() else 0.0
    negative = float((-eigenvalues.min()).clamp_min(0)) / top if top > 0 else 0.0
    return vectors * eigenvalues.clamp_min(0).sqrt().unsqueeze(1), negative


def _loss_gradients(objective: Any, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    leaf = f.detach().requires_grad_(True)
    with torch.enable_grad():
        return torch.autograd.grad(objective.loss_fn(leaf, y).sum(), leaf)[0].reshape(len(f), -1)


def output_vectors(
    objective: Any, f: torch.Tensor, y: torch.Tensor, options: KFACOptions, generator: torch.Generator, kind: str
) -> tuple[torch.Tensor, float]:
    """U [b, C, r] with E[U U^T] = the output-space Fisher of each point (``fisher="true"``) or the given
    labels' gradient outer product (``"empirical"``, r = 1); and the relative size of any negative
    output-space curvature dropped (exact expectation only)."""
    if options.fisher == "empirical":
        return _loss_gradients(objective, f, y).unsqueeze(2), 0.0
    if options.mc_samples is None:
        return _output_hessian_root(objective, f, y)
    k, b = options.mc_samples, len(f)
    columns = []
    if kind == "cross_entropy":
        labels = torch.multinomial(torch.softmax(f.detach().to(torch.float64), 1), k, True, generator=generator)
        columns = [_loss_gradients(objective, f, labels[:, s].to(y.dtype)) for s in range(k)]
    elif kind == "bce":
        probabilities = torch.sigmoid(f.detach().to(torch.float64)).reshape(y.shape).expand(k, *y.shape)
        labels = torch.bernoulli(probabilities, generator=generator).to(y.dtype)
        columns = [_loss_gradients(objective, f, labels[s]) for s in range(k)]
    else:
        root, _ = _output_hessian_root(objective, f, y)
        noise = torch.randn(b, root.shape[2], k, dtype=root.dtype, device=root.device, generator=generator)
        return (root @ noise) / math.sqrt(k), 0.0
    return torch.stack(columns, dim=2).to(torch.float64) / math.sqrt(k), 0.0


# ---------------------------------------------------------------------------------------------- the pass


@dataclass
class _Chunk:
    """One chunk's per-layer inputs abar [b, T, cols] and output gradients g [r][b, T, out], and the chunk."""

    x: torch.Tensor
    y: torch.Tensor
    inputs: list[torch.Tensor]
    grads: list[list[torch.Tensor]]


def layer_chunks(solver: PassOwner, problem: _Problem, layers: list[_Layer], desc: str):
    """Per chunk of the training set: each layer's inputs and the output gradients of each output-space vector
    (``output_vectors``). Forward hooks on the explainer's private copy of the model, removed in ``finally``;
    no requires_grad is changed (the graph comes from a copy of theta that requires grad)."""
    objective = problem.objective
    options = solver.options
    generator = torch.Generator(device=problem.device).manual_seed(options.seed)
    captured: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    active = [False]  # the hooks record only this pass's own forward, not the caller's work between chunks

    def hook_for(position: int):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            if not active[0]:
                return
            if position in captured:
                raise InfluenceInputError(
                    f"layer {layers[position].name!r} is called more than once per forward pass (shared weights); "
                    "K-FAC's factors assume one call. Use solver='cg', or select other parameters with params=[...]"
                )
            captured[position] = inputs[0].detach(), output

        return hook

    n = len(problem.data)
    size = solver.chunk_points(problem, layers)
    handles = [layer.module.register_forward_hook(hook_for(i)) for i, layer in enumerate(layers)]
    kind: str | None = None
    try:
        chunks = progress_bar(problem.data.chunks(size), enabled=solver.progress, desc=desc, total=-(-n // size))
        for _, x, y in chunks:
            captured.clear()
            theta = objective.theta.detach().clone().requires_grad_(True)
            active[0] = True
            try:
                with torch.enable_grad():
                    out = objective.outputs(x, theta)
            finally:
                active[0] = False
            missing = [layers[i].name for i in range(len(layers)) if i not in captured]
            if missing:
                raise InfluenceInputError(
                    f"the layers {missing} did not run in the forward pass; K-FAC cannot see them"
                )
            if kind is None:
                kind = _loss_kind(objective, out.detach(), y) if options.fisher == "true" else "given"
            vectors, negative = output_vectors(objective, out, y, options, generator, kind)
            solver._negative_curvature = max(solver._negative_curvature, negative)
            outputs = [captured[i][1] for i in range(len(layers))]
            grads: list[list[torch.Tensor]] = [[] for _ in layers]
            inputs: list[torch.Tensor] = []
            for r in range(vectors.shape[2]):
                weights = vectors[:, :, r].to(out.dtype).reshape(out.shape)
                found = torch.autograd.grad(
                    out, outputs, weights, retain_graph=r < vectors.shape[2] - 1, allow_unused=True
                )
                for i, (layer, g) in enumerate(zip(layers, found)):
                    g = torch.zeros_like(outputs[i]) if g is None else g
                    if r == 0:
                        inputs.append(_layer_inputs(layer, captured[i][0]))
                    grads[i].append(_layer_grads(layer, g))
            captured.clear()
            yield _Chunk(x, y, inputs, grads)
    finally:
        for handle in handles:
            handle.remove()
        captured.clear()


class PassOwner(Protocol):
    """What ``layer_chunks`` needs of the solver that runs it."""

    options: KFACOptions
    progress: bool
    _negative_curvature: float

    def chunk_points(self, problem: _Problem, layers: list[_Layer]) -> int: ...
