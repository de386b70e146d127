"""Closed forms for a model whose selected parameters are one ``nn.Linear`` that produces its outputs.

With f = W h + b, where h is the layer's input (the flattened image of a logistic regression, or the
features below a last layer selected with ``params=["fc"]``) and does not depend on W or b, the output
Jacobian of example i is J_i = [I_C (x) h_i^T, I_C], so, with r_i = dl/df and A_i = d^2 l/df^2 (C values
and C x C, from the loss alone):

    per-example gradient   g_i = [r_i (x) h_i, r_i]                      (weight rows first, as in the model)
    Hessian of the loss    sum_i J_i^T A_i J_i = sum_i A_i (x) [h_i, 1][h_i, 1]^T,   exactly (f is affine)

Matrix products only: none of torch.func's per-call costs, and the Kronecker form costs C^2 (d+1)^2 per
example instead of the C (C d)^2 of a Gram matrix of Jacobians. Every batch is checked (the model's
output must be the layer's output, its input two-dimensional); a batch that fails takes the general path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from .losses import Derivatives, LossFn


class _Model(Protocol):
    """What the closed forms need of an ``Objective``: its private module copy and its forward."""

    module: nn.Module
    names: list[str]

    def outputs(self, x: torch.Tensor) -> Any: ...


_CHUNK_BYTES = 2**26  # the Kronecker products one loss_hessian_sum call holds


@dataclass(frozen=True)
class LinearHead:
    """The selected parameters' layer: its name in the model and which of weight and bias are selected."""

    module: str
    weight: bool
    bias: bool
    in_features: int
    out_features: int

    def _run(self, objective: _Model, x: torch.Tensor, track: bool = False):
        """(h [b, d], the layer's output [b, C], the model's output) at the trained parameters, or None where
        the model's output is not the layer's output on this batch. ``track``: record autograd history
        (for the caller to tell what h depends on)."""
        seen: dict[str, torch.Tensor] = {}

        def capture(_module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            seen["h"], seen["f"] = inputs[0], output.clone()  # a copy: the model may change the output in place

        handle = objective.module.get_submodule(self.module).register_forward_hook(capture)
        try:
            with torch.set_grad_enabled(track):
                outputs = objective.outputs(x)
        finally:
            handle.remove()
        h, f = seen.get("h"), seen.get("f")
        if h is None or h.ndim != 2 or h.shape != (len(x), self.in_features) or f.shape[0] != len(x):
            return None
        if outputs.ndim == 0 or outputs.shape[0] != len(x):
            return None
        if outputs.numel() != f.numel() or not torch.equal(outputs.reshape(len(x), -1), f.reshape(len(x), -1)):
            return None
        return h, f, outputs

    @staticmethod
    def _derivatives(
        fn: LossFn,
        closed: Derivatives | None,
        f: torch.Tensor,
        outputs: torch.Tensor,
        y: torch.Tensor,
        second: bool,
    ):
        """r [b, C] = d fn / d f per example and, with ``second``, A [b, C, C] = d^2 fn / d f^2: from the
        loss's closed form ``closed`` (``losses.closed_form_derivatives``) where it covers the batch, else
        autograd on the outputs only."""
        found = None if closed is None else closed(outputs, y)
        if found is not None:
            first, curvature = found
            return first.reshape(f.shape), curvature.reshape(len(f), f.shape[1], f.shape[1]) if second else None
        with torch.enable_grad():
            f = f.detach().requires_grad_(True)
            values = fn(f.reshape(outputs.shape), y)
            (r,) = torch.autograd.grad(values.sum(), f, create_graph=second)
            if not second:
                return r, None
            columns = []
            for k in range(f.shape[1]):
                (column,) = torch.autograd.grad(r[:, k].sum(), f, retain_graph=True, allow_unused=True)
                columns.append(torch.zeros_like(f) if column is None else column)
        return r.detach(), torch.stack(columns, dim=1)

    def per_example_grads(
        self, objective: _Model, x: torch.Tensor, y: torch.Tensor, fn: LossFn, closed: Derivatives | None
    ):
        """Rows of nabla_theta fn(z_i) at the trained parameters, [b, p]; None if this batch fails the check.
        ``closed``: fn's closed-form output derivatives, if it has them."""
        run = self._run(objective, x)
        if run is None:
            return None
        h, f, outputs = run
        r, _ = self._derivatives(fn, closed, f, outputs, y, second=False)
        parts = [(r[:, :, None] * h[:, None, :]).reshape(len(x), -1)] if self.weight else []
        return torch.cat([*parts, r] if self.bias else parts, dim=1)

    def loss_hessian_sum(
        self,
        objective: _Model,
        x: torch.Tensor,
        y: torch.Tensor,
        loss_fn: LossFn,
        closed: Derivatives | None,
        positive_part: bool = False,
    ):
        """sum_i J_i^T A_i J_i over the batch, [p, p], the Hessian there of ``loss_fn`` (closed-form output
        derivatives ``closed``, if any; no 1/n, no weight decay); ``positive_part``: each A_i clipped to its
        positive semi-definite part. None if the batch fails the check."""
        run = self._run(objective, x)
        if run is None:
            return None
        h, f, outputs = run
        _, curvature = self._derivatives(loss_fn, closed, f, outputs, y, second=True)
        curvature = (curvature + curvature.transpose(1, 2)) / 2
        if positive_part:
            eigenvalues, eigenvectors = torch.linalg.eigh(curvature)
            curvature = (eigenvectors * eigenvalues.clamp_min(0).unsqueeze(1)) @ eigenvectors.transpose(1, 2)
        b, c, d = len(x), self.out_features, self.in_features
        features = torch.cat([h, torch.ones(b, 1, dtype=h.dtype, device=h.device)], dim=1)  # [h_i, 1]
        weighted = (curvature[:, :, :, None] * features[:, None, None, :]).reshape(b, -1)  # A_i[k, l] [h_i, 1]_m
        blocks = (weighted.T @ features).reshape(c, c, d + 1, d + 1).permute(0, 2, 1, 3)  # [k, m, l, j]
        weight_weight = blocks[:, :d, :, :d].reshape(c * d, c * d)  # rows and columns W[k, m], row-major
        bias_bias = blocks[:, d, :, d]
        if not self.bias:
            return weight_weight
        if not self.weight:
            return bias_bias
        weight_bias = blocks[:, :d, :, d].reshape(c * d, c)
        return torch.cat([torch.cat([weight_weight, weight_bias], 1), torch.cat([weight_bias.T, bias_bias], 1)])

    def chunk_points(self, itemsize: int, most: int) -> int:
        """Points per ``loss_hessian_sum`` call: at most ``most``, and its C^2 (d + 1) products per point in
        at most 64 MiB."""
        per_point = itemsize * self.out_features**2 * (self.in_features + 1)
        return max(1, min(most, _CHUNK_BYTES // per_point))

    def holds_on(self, objective: _Model, batches) -> bool:
        """Whether the model's output is the layer's output on every input batch (one forward each)."""
        return all(self._run(objective, x) is not None for x in batches)


def find_linear_head(objective: _Model, x: torch.Tensor, names: list[str] | None = None) -> LinearHead | None:
    """The ``LinearHead`` of the selected parameters ``names`` (default all) if they all belong to one
    ``nn.Linear`` whose output is the model's output on the inputs ``x``, with an input that does not
    depend on them (no autograd history from them); else None."""
    names = objective.names if names is None else names
    modules = {name.rpartition(".")[0] for name in names}
    if len(modules) != 1:
        return None
    (module_name,) = modules
    try:
        module = objective.module.get_submodule(module_name)
    except AttributeError:
        return None
    if not isinstance(module, nn.Linear):
        return None
    prefix = f"{module_name}." if module_name else ""
    head = LinearHead(
        module=module_name,
        weight=f"{prefix}weight" in names,
        bias=f"{prefix}bias" in names,
        in_features=module.in_features,
        out_features=module.out_features,
    )
    chosen = [parameter for name, parameter in module.named_parameters(prefix=module_name) if name in names]
    for parameter in chosen:  # the private copy's: its own flags, restored below
        parameter.requires_grad_(True)
    try:
        run = head._run(objective, x, track=True)
    finally:
        for parameter in chosen:
            parameter.requires_grad_(False)
    if run is None or run[0].requires_grad:  # h depends on the layer's own parameters (tied weights)
        return None
    return head
