"""The training objective as a pure function of a flat parameter vector.

R(theta) = (1/n) sum_i loss(z_i, theta) + (lambda/2) ||theta||^2, where theta is the
flattened vector of the selected parameters (all trainable ones by default). The
user's module is deep-copied once and only ever called through
``torch.func.functional_call``, so nothing touches the user's model.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.func import functional_call, grad, jvp, vjp, vmap

from ..errors import InfluenceInputError, ModelModeWarning
from .linear_head import LinearHead, find_linear_head
from .losses import LossFn, closed_form_derivatives
from .selection import (
    OutputSelector,
    ParamsSpec,
    SelectedForward,
    check_parameter_tensors,
    describe_output,
    select_parameter_names,
)

__all__ = ["LossFn", "Objective", "OutputSelector", "ParamsSpec", "describe_output"]

_GRADIENT_CHUNK_BYTES = 2**26  # closed-form per-example gradients computed at once
# Rows of a vmapped per-example-gradient call: at most this much (its temporaries come on top); at 1.08 M float32
# parameters 256 points held 1.1 GB of rows and the call peaked near 4.6 GB
_PER_EXAMPLE_GRADIENT_BYTES = 2**28
_MODE_DEPENDENT = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._NormBase)


REVERSE_MOST_VECTORS = 3  # Hessian-vector products with this many vectors or fewer go reverse-over-reverse


class Objective:
    """R(theta) = (1/n) sum_i loss(z_i, theta) + (weight_decay/2) ||theta||^2 over the selected parameters:
    per-example losses, gradients and Hessian-vector products of one model (the regulariser's share of H,
    weight_decay I, is added by the curvature operator; nothing here includes it unless it says so).

    ``closed_form``: allow the closed forms of one selected linear layer that produces the outputs
    (``linear_head.py``), chosen once by ``choose_closed_form`` on a sample and checked on every batch
    after that; False (or ``use_general_path()``) takes autograd everywhere. Nothing outside asks which
    path was chosen: the methods that have a closed form take it, and return None where they have none.

    Shapes: ``theta`` is [p]; inputs are [b, *feature_shape]; per-example gradients
    are [b, p]; Hessian-vector products take and return [p, m].
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        params: ParamsSpec = None,
        output: OutputSelector = None,
        weight_decay: float = 0.0,
        closed_form: bool = True,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise InfluenceInputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise InfluenceInputError("loss_fn must be callable as loss_fn(outputs, targets)")
        if output is not None and not (
            (isinstance(output, (int, str)) and not isinstance(output, bool)) or callable(output)
        ):
            raise InfluenceInputError(
                f"output must be an index, a key or a function of the model's output, got {output!r}; e.g. "
                "output=0 for a model returning (logits, features), output='logits' for a dict"
            )
        self.names = select_parameter_names(model, params)
        check_parameter_tensors(model, self.names)
        if model.training and any(isinstance(m, _MODE_DEPENDENT) for m in model.modules()):
            warnings.warn(
                "the model is in training mode and has dropout or batch-norm layers; influence is computed "
                "in eval mode (your model is left as it is). Call model.eval() to silence this warning.",
                ModelModeWarning,
                stacklevel=3,
            )
        self.module = copy.deepcopy(model).eval()
        self.module._influence_private_copy = True
        if isinstance(self.module.__dict__.get("forward"), SelectedForward):  # another explainer's copy
            del self.module.forward  # select from the model's own output again, not from a selection
        self.output = output
        if output is not None:  # every call of the copy (functional_call included) returns the selected output
            self.module.forward = SelectedForward(self.module, output)
        for p in self.module.parameters():
            p.requires_grad_(False)
        named = dict(self.module.named_parameters())
        self.shapes = [named[name].shape for name in self.names]
        self.numels = [named[name].numel() for name in self.names]
        self.theta = torch.cat([named[name].detach().reshape(-1) for name in self.names]).clone()
        self.loss_fn = loss_fn
        self.weight_decay = float(weight_decay)
        self.closed_form = bool(closed_form)
        self._loss_derivatives = closed_form_derivatives(loss_fn)  # r and A in output space, if known
        self._linear_head: LinearHead | None = None
        self._chosen = False

    def choose_closed_form(self, sample: torch.Tensor) -> None:
        """Choose the closed-form path once, on training inputs ``sample``: the ``LinearHead`` of the selected
        parameters if they are one ``nn.Linear`` that produces the outputs there (see ``find_linear_head``).
        Later calls keep the first choice; every batch is checked again where the closed form is used."""
        if self.closed_form and not self._chosen:
            self._linear_head = find_linear_head(self, sample)
        self._chosen = True

    def use_general_path(self) -> None:
        """Take autograd everywhere from now on (no closed forms): the reference the closed forms are
        compared with. Call it before any product, as the curvature caches what it found."""
        self.closed_form, self._linear_head, self._chosen = False, None, True

    @property
    def linear_head(self) -> LinearHead | None:
        """The closed-form layer chosen by ``choose_closed_form`` (None: the general path)."""
        return self._linear_head

    @property
    def gauss_newton_in_closed_form(self) -> bool:
        """Whether Gauss-Newton sums are formed whole in closed form (2 C p^2 operations per point), not from
        per-example Jacobians: what the cost preview needs to know of the chosen path."""
        return self._linear_head is not None

    def float64_reference(self) -> Objective:
        """A float64 copy with no closed forms: the reference that shortcuts are verified against."""
        return Objective(copy.deepcopy(self.module).double(), self.loss_fn, self.names, closed_form=False)

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
        if theta is None and self._linear_head is not None:
            closed = self._loss_derivatives if fn is self.loss_fn else closed_form_derivatives(fn)
            rows = self._linear_head.per_example_grads(self, x, y, fn, closed)
            if rows is not None:
                return rows
        theta = self.theta if theta is None else theta

        def single(t: torch.Tensor, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
            return self._single_value(fn, t, xi, yi)

        return vmap(grad(single), in_dims=(None, 0, 0))(theta, x, y)

    def gradient_chunk_points(self, batch_size: int, streamed: bool) -> int:
        """Training points per per-example-gradient call: ``batch_size``, fewer where that many rows would
        exceed 256 MiB (large networks), or for the closed-form linear layer on tensors (it holds just the
        b x p rows) up to 8 batch sizes, in at most 64 MiB of rows."""
        row_bytes = self.size * self.theta.element_size()
        if streamed or self._linear_head is None:
            return max(1, min(batch_size, _PER_EXAMPLE_GRADIENT_BYTES // row_bytes))
        return max(batch_size, min(8 * batch_size, _GRADIENT_CHUNK_BYTES // row_bytes))

    # ------------------------------------------------------------------ closed forms (None: not applicable)

    def closed_form_loss_hessian(
        self, x: torch.Tensor, y: torch.Tensor, positive_part: bool = False
    ) -> torch.Tensor | None:
        """sum_i J_i^T A_i J_i over the batch [p, p] in closed form (the loss's Hessian there, exactly, for
        one linear layer; no 1/n, no weight decay), or None where there is no closed form for this batch."""
        if self._linear_head is None:
            return None
        return self._linear_head.loss_hessian_sum(self, x, y, self.loss_fn, self._loss_derivatives, positive_part)

    def closed_form_points(self, most: int) -> int | None:
        """Points per ``closed_form_loss_hessian`` call (at most ``most``), or None without a closed form."""
        if self._linear_head is None:
            return None
        return self._linear_head.chunk_points(self.theta.element_size(), most)

    def closed_form_holds_on(self, batches: Iterable[torch.Tensor]) -> bool:
        """Whether the closed form applies to every input batch (False without one): then the outputs are
        affine in every selected parameter."""
        return self._linear_head is not None and self._linear_head.holds_on(self, batches)

    def closed_form_block(
        self,
        names: list[str],
        sample: torch.Tensor,
        batches: Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]],
        most: int,
    ) -> torch.Tensor | None:
        """sum_i J_i^T A_i J_i on the parameters ``names`` (a part of the selected ones) in closed form, when
        they are one linear layer that produces the outputs on ``sample`` and on every batch of
        ``batches(points)`` ((x, y) pairs of at most ``points``, which this chooses, at most ``most``); else
        None. Without ``closed_form``, always None."""
        head = find_linear_head(self, sample, names) if self.closed_form else None
        if head is None:
            return None
        total = None
        for x, y in batches(head.chunk_points(self.theta.element_size(), most)):
            part = head.loss_hessian_sum(self, x, y, self.loss_fn, self._loss_derivatives)
            if part is None:
                return None
            total = part if total is None else total + part
        return total

    def hessian_sum_matvec(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        vectors: torch.Tensor,
        theta: torch.Tensor | None = None,
        reverse: bool | None = None,
    ) -> torch.Tensor:
        """sum_i nabla^2 loss(z_i) @ vectors over a batch, [p, m] -> [p, m]: forward-over-reverse, or with
        ``reverse`` reverse-over-reverse (no forward-mode AD, whose level is global: safe on worker threads).
        ``reverse=None`` takes reverse for at most ``REVERSE_MOST_VECTORS`` vectors: 128 points of the digits
        CNN with 1 vector 8.3 ms instead of 10.6 ms, with 3 vectors 9.0 instead of 12.5, with 10 the same;
        the 1.08 M MLP the same with 1 vector and 15% slower with 10."""
        theta = self.theta if theta is None else theta
        if reverse is None:
            reverse = vectors.shape[1] <= REVERSE_MOST_VECTORS

        def total_loss(t: torch.Tensor) -> torch.Tensor:
            return self.loss_fn(self.outputs(x, t), y).sum()

        gradient = grad(total_loss)
        if reverse:
            _, pull_back = vjp(gradient, theta)
            if vectors.shape[1] == 1:  # no vmap: its batching costs about 4% of a LiSSA step
                return pull_back(vectors[:, 0])[0].unsqueeze(1)
            return vmap(lambda v: pull_back(v)[0], in_dims=1, out_dims=1)(vectors)

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
