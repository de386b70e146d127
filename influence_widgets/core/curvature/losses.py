"""Per-example losses and their closed-form derivatives in output space.

A loss here maps (outputs [b, ...], targets [b, ...]) to one value per example [b]. For the losses
recognised by ``closed_form_derivatives``, with f the outputs of one example flattened (C values),

    r = dl/df [C]   and   A = d^2 l/df^2 [C, C]

come from formulas instead of autograd (the closed-form linear layer uses them). Recognised: the
built-in ``cross_entropy_per_example``, ``binary_logistic_per_example`` and ``squared_error_per_example``,
and torch's own ``nn.CrossEntropyLoss`` (no class weights, a negative ``ignore_index`` as by default, any
label smoothing; class-index targets), ``nn.BCEWithLogitsLoss``
(no weight, no pos_weight) and ``nn.MSELoss``, each with ``reduction="none"`` and one value per example.
Any other loss or configuration, and any batch a formula does not cover (soft targets, ``ignore_index``,
several outputs where one is expected), gets ``None``: autograd then.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# (outputs, targets) -> (r [b, C], A [b, C, C]), or None where the batch is not covered
Derivatives = Callable[[torch.Tensor, torch.Tensor], "tuple[torch.Tensor, torch.Tensor] | None"]


def cross_entropy_per_example(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Multiclass cross-entropy, one value per example."""
    return F.cross_entropy(outputs, targets, reduction="none")


def binary_logistic_per_example(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary logistic loss for one logit and 0/1 float targets, one value per example."""
    return F.binary_cross_entropy_with_logits(outputs.squeeze(-1), targets, reduction="none")


def squared_error_per_example(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Half the squared error, (1/2)(f(x) - y)^2, one value per example."""
    return 0.5 * (outputs.squeeze(-1) - targets) ** 2


def _cross_entropy(outputs: torch.Tensor, targets: torch.Tensor, smoothing: float = 0.0):
    """l = -sum_k t_k log softmax(f)_k, t = (1 - eps) onehot(y) + eps / C: r = p - t, A = diag(p) - p p^T."""
    if outputs.ndim != 2 or targets.dtype.is_floating_point or targets.shape != (len(outputs),):
        return None  # soft targets, or classes along other axes: autograd
    n_classes = outputs.shape[1]
    if bool(((targets < 0) | (targets >= n_classes)).any()):
        return None  # ignore_index (any negative class), or no class at all: autograd (or its error)
    probabilities = torch.softmax(outputs, dim=1)
    target = F.one_hot(targets.long(), n_classes).to(outputs.dtype)
    if smoothing:
        target = (1 - smoothing) * target + smoothing / n_classes
    second = torch.diag_embed(probabilities) - probabilities[:, :, None] * probabilities[:, None, :]
    return probabilities - target, second


def _single_output(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
    """The outputs as [b, 1] where there is one output per example and the targets are [b], else None."""
    flat = outputs.reshape(len(outputs), -1)
    return flat if flat.shape[1] == 1 and targets.shape == (len(outputs),) else None


def _same_shape(outputs: torch.Tensor, targets: torch.Tensor, derivatives: Derivatives):
    """``derivatives`` for torch's element-wise losses: only where outputs and targets have one shape (no
    broadcasting) and one value per example."""
    if outputs.shape != targets.shape or outputs.ndim == 0 or outputs.numel() != len(outputs):
        return None
    return derivatives(outputs.reshape(-1, 1), targets.reshape(-1))


def _binary_logistic(outputs: torch.Tensor, targets: torch.Tensor):
    """l = softplus(f) - t f: r = sigmoid(f) - t, A = sigmoid(f) (1 - sigmoid(f))."""
    flat = _single_output(outputs, targets)
    if flat is None:
        return None
    probability = torch.sigmoid(flat)
    return probability - targets.reshape(-1, 1).to(flat.dtype), (probability * (1 - probability))[:, :, None]


def _squared_error(outputs: torch.Tensor, targets: torch.Tensor, scale: float = 1.0):
    """l = (scale / 2) (f - y)^2: r = scale (f - y), A = scale."""
    flat = _single_output(outputs, targets)
    if flat is None:
        return None
    residual = flat - targets.reshape(-1, 1).to(flat.dtype)
    return scale * residual, torch.full_like(flat, scale)[:, :, None]


_BUILT_IN: dict[LossFn, Derivatives] = {  # module-level functions and partials: they pickle (Dask workers)
    cross_entropy_per_example: _cross_entropy,
    binary_logistic_per_example: _binary_logistic,
    squared_error_per_example: _squared_error,
}


def closed_form_derivatives(loss_fn: LossFn) -> Derivatives | None:
    """The closed-form (r, A) of ``loss_fn`` if it is one of the recognised losses in a configuration
    whose formula is implemented (see the module docstring); None otherwise (autograd)."""
    if not isinstance(loss_fn, nn.Module):
        return next((found for known, found in _BUILT_IN.items() if known is loss_fn), None)
    kind = type(loss_fn)  # exact types: a subclass may change forward
    if getattr(loss_fn, "reduction", None) != "none" or loss_fn._forward_hooks or loss_fn._forward_pre_hooks:
        return None
    if kind is nn.CrossEntropyLoss and loss_fn.weight is None and loss_fn.ignore_index < 0:
        return partial(_cross_entropy, smoothing=float(loss_fn.label_smoothing))
    if kind is nn.BCEWithLogitsLoss and loss_fn.weight is None and loss_fn.pos_weight is None:
        return partial(_same_shape, derivatives=_binary_logistic)
    if kind is nn.MSELoss:
        return partial(_same_shape, derivatives=partial(_squared_error, scale=2.0))
    return None
