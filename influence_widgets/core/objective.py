"""The training objective as a pure function of a flat parameter vector.

R(theta) = (1/n) sum_i loss(z_i, theta) + (lambda/2) ||theta||^2, where theta is the
flattened vector of the selected parameters (all trainable ones by default). The
user's module is deep-copied once and only ever called through
``torch.func.functional_call``, so nothing touches the user's model.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.func import functional_call, grad, jvp, vmap

from .errors import InfluenceInputError, ModelModeWarning

if TYPE_CHECKING:
    from .linear_head import LinearHead

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_GRADIENT_CHUNK_BYTES = 2**26  # closed-form per-example gradients computed at once
_MODE_DEPENDENT = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._NormBase)


def select_parameter_names(model: nn.Module, params: Sequence[str] | str | None) -> list[str]:
    """Names of the parameters that count, in the model's own order.

    ``params=None`` selects every parameter with ``requires_grad=True``. Otherwise each
    entry is a full parameter name (``"fc.weight"``) or a module prefix (``"fc"``).
    """
    named = [name for name, _ in model.named_parameters()]
    if params is None:
        chosen = [name for name, p in model.named_parameters() if p.requires_grad]
        if not chosen:
            raise InfluenceInputError(
                "the model has no parameters with requires_grad=True; pass params=[...] to choose which count"
            )
        return chosen
    if isinstance(params, str):
        params = [params]
    chosen: list[str] = []
    for key in params:
        matches = [name for name in named if name == key or name.startswith(key + ".")]
        if not matches:
            raise InfluenceInputError(f"unknown parameter name {key!r}; the model's parameters are {named}")
        chosen.extend(matches)
    if not chosen:
        raise InfluenceInputError("params selects no parameters; pass at least one parameter name")
    chosen_set = set(chosen)
    return [name for name in named if name in chosen_set]


class Objective:
    """Per-example losses, gradients and Hessian-vector products of one model.

    Shapes: ``theta`` is [p]; inputs are [b, *feature_shape]; per-example gradients
    are [b, p]; Hessian-vector products take and return [p, m].
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        params: Sequence[str] | str | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise InfluenceInputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise InfluenceInputError("loss_fn must be callable as loss_fn(outputs, targets)")
        self.names = select_parameter_names(model, params)
        if model.training and any(isinstance(m, _MODE_DEPENDENT) for m in model.modules()):
            warnings.warn(
                "the model is in training mode and has dropout or batch-norm layers; influence is computed "
                "in eval mode (your model is left as it is). Call model.eval() to silence this warning.",
                ModelModeWarning,
                stacklevel=3,
            )
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        named = dict(self.module.named_parameters())
        self.shapes = [named[name].shape for name in self.names]
        self.numels = [named[name].numel() for name in self.names]
        self.theta = torch.cat([named[name].detach().reshape(-1) for name in self.names]).clone()
        self.loss_fn = loss_fn
        self.linear_head: LinearHead | None = None  # closed forms when set (see ``linear_head.py``)

    @property
    def size(self) -> int:
        """Number of selected parameters p."""
        return self.theta.numel()

    @property
    def dtype(self) -> torch.dtype:
        return self.theta.dtype

    @property
    def device(self) -> torch.device:
        return self.theta.device

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a flat [p] vector into the named parameter tensors."""
        pieces = torch.split(theta, self.numels)
        return {name: piece.view(shape) for name, piece, shape in zip(self.names, pieces, self.shapes)}

    def outputs(self, x: torch.Tensor, theta: torch.Tensor | None = None) -> torch.Tensor:
        """Model outputs for a batch ``x`` at ``theta`` (default: the trained parameters, which the private
        module copy holds itself, so it runs without re-parametrisation)."""
        if theta is None:
            return self.module(x)
        return functional_call(self.module, self.unflatten(theta), (x,))

    def batch_values(self, fn: LossFn, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``fn(outputs, y)`` for a batch at ``theta``, one value per example, [b]."""
        return fn(self.outputs(x, theta), y)

    def _single_value(self, fn: LossFn, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return fn(self.outputs(x.unsqueeze(0), theta), y.unsqueeze(0)).sum()

    def per_example_grads(
        self, x: torch.Tensor, y: torch.Tensor, fn: LossFn | None = None, theta: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Rows of nabla_theta fn(z_i, theta) for a batch, shape [b, p] (no regulariser)."""
        fn = self.loss_fn if fn is None else fn
        if theta is None and self.linear_head is not None:
            rows = self.linear_head.per_example_grads(self, x, y, fn)
            if rows is not None:
                return rows
        theta = self.theta if theta is None else theta

        def single(t: torch.Tensor, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
            return self._single_value(fn, t, xi, yi)

        return vmap(grad(single), in_dims=(None, 0, 0))(theta, x, y)

    def gradient_chunk_points(self, batch_size: int, streamed: bool) -> int:
        """Training points per per-example-gradient call: ``batch_size``, or for the closed-form linear layer
        on tensors (it holds just the b x p rows) up to 8 batch sizes, in at most 64 MiB of rows."""
        if streamed or self.linear_head is None:
            return batch_size
        return max(batch_size, min(8 * batch_size, _GRADIENT_CHUNK_BYTES // (self.size * self.theta.element_size())))

    def hessian_sum_matvec(
        self, x: torch.Tensor, y: torch.Tensor, vectors: torch.Tensor, theta: torch.Tensor | None = None
    ) -> torch.Tensor:
        """sum_i nabla^2 loss(z_i) @ vectors over a batch, [p, m] -> [p, m] (forward-over-reverse)."""
        theta = self.theta if theta is None else theta

        def total_loss(t: torch.Tensor) -> torch.Tensor:
            return self.loss_fn(self.outputs(x, t), y).sum()

        gradient = grad(total_loss)

        def hvp(v: torch.Tensor) -> torch.Tensor:
            return jvp(gradient, (theta,), (v,))[1]

        return vmap(hvp, in_dims=1, out_dims=1)(vectors)

    def per_point_hessian_matvec(self, x: torch.Tensor, y: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        """Column j of the result is nabla^2 loss(z_j) @ vectors[:, j]: one point per column, [p, k] -> [p, k]."""

        def one(xi: torch.Tensor, yi: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            gradient = grad(lambda t: self._single_value(self.loss_fn, t, xi, yi))
            return jvp(gradient, (self.theta,), (v,))[1]

        return vmap(one, in_dims=(0, 0, 1), out_dims=1)(x, y, vectors)

    def input_grads_of_score(self, x: torch.Tensor, y: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
        """nabla_x [direction . nabla_theta loss(x, y)] for each row of a batch, shape like ``x``.

        ``direction`` is [p]; this is the building block of I_pert,loss.
        """

        def score(xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
            g = grad(lambda t: self._single_value(self.loss_fn, t, xi, yi))(self.theta)
            return torch.dot(g, direction)

        return vmap(grad(score), in_dims=(0, 0))(x, y)
