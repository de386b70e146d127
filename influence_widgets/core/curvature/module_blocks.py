"""Columns of the explicit Hessian one layer at a time, without differentiating through earlier layers.

Let module j (a leaf module, called once per forward) own the parameters W_j, and let D_j be the
parameters of the modules called after it. With the module's input held fixed (detached), the loss
depends on W_j and D_j exactly as before, and on nothing upstream, so the products

    jvp(grad_{W_j, D_j} sum_i loss_i)(e_w)  =  [H[W_j, W_j]; H[D_j, W_j]] e_w

are exact columns of H, restricted to the rows of W_j and D_j. They cost a pass through module j and
what follows it, not through the whole model. The rows of the earlier parameters come by symmetry
from the earlier modules' blocks, whose D contain W_j.

``find_module_blocks`` records the call order on a sample; ``explicit.verify`` checks the assembled matrix
against full Hessian-vector products with random vectors, so a model that feeds a parameter into an
earlier layer's input (a later layer's weight used by the parent's forward before that layer runs) is
caught and takes the general path. Uses of a layer's own parameters outside it, after it has run, are
differentiated correctly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import functional_call, grad, jvp, vmap

from .objective import Objective


@dataclass(frozen=True)
class ModuleBlock:
    """One module's columns: ``columns`` (flat indices of its curved parameters, the tangents), ``rows``
    (flat indices of its own parameters, then those of the modules called after it)."""

    module: str
    own: tuple[str, ...]
    down: tuple[str, ...]
    columns: torch.Tensor
    rows: torch.Tensor


def _owner(name: str) -> str:
    return name.rpartition(".")[0]


def find_module_blocks(objective: Objective, x: torch.Tensor, curved: torch.Tensor) -> list[ModuleBlock] | None:
    """The blocks of the parameters flagged ``curved`` (bool [p]), in call order, or None where the
    structure does not hold: a selected parameter outside a leaf module, a module called other than once
    on the sample ``x``, a parameter shared between modules, or a parameter outside the curved modules
    (the affine group) that is used before one of them."""
    names = objective.names
    owners = list(dict.fromkeys(_owner(name) for name in names))
    module = objective.module
    shared = {}
    for name, parameter in module.named_parameters(remove_duplicate=False):
        shared.setdefault(id(parameter), []).append(name)
    if any(len(aliases) > 1 for aliases in shared.values()):
        return None
    modules = {}
    for owner in owners:
        sub = module.get_submodule(owner)
        if owner == "" or any(True for _ in sub.children()):
            return None
        modules[owner] = sub
    calls: list[str] = []
    handles = [
        sub.register_forward_pre_hook(lambda _m, _inputs, owner=owner: calls.append(owner))
        for owner, sub in modules.items()
    ]
    try:
        with torch.no_grad():
            objective.outputs(x)
    finally:
        for handle in handles:
            handle.remove()
    if sorted(calls) != sorted(owners):  # every owner called exactly once
        return None
    starts = dict(zip(names, torch.cumsum(torch.tensor([0, *objective.numels[:-1]]), 0).tolist()))
    sizes = dict(zip(names, objective.numels))

    def flat(selected: list[str]) -> torch.Tensor:
        return torch.cat([torch.arange(starts[n], starts[n] + sizes[n]) for n in selected]).to(curved.device)

    curved_at = [bool(curved[flat([n for n in names if _owner(n) == owner])].any()) for owner in calls]
    last = max((k for k, flag in enumerate(curved_at) if flag), default=-1)
    for owner in calls[:last]:  # before the last curved module, no parameter may be affine: its rows with
        own = flat([n for n in names if _owner(n) == owner])  # later columns would come from no block
        if not bool(curved[own].all()):
            return None
    blocks = []
    for position, owner in enumerate(calls):
        own = [n for n in names if _owner(n) == owner]
        own_flat = flat(own)
        columns = own_flat[curved[own_flat]]
        if len(columns) == 0:
            continue
        down = [n for later in calls[position + 1 :] for n in names if _owner(n) == later]
        rows = torch.cat([own_flat, flat(down)]) if down else own_flat
        blocks.append(ModuleBlock(owner, tuple(own), tuple(down), columns, rows))
    return blocks


def block_columns(
    objective: Objective,
    block: ModuleBlock,
    x: torch.Tensor,
    y: torch.Tensor,
    columns: torch.Tensor,
    reverse: bool = False,
) -> torch.Tensor:
    """sum_i nabla^2 loss(z_i)[block.rows, columns] over the batch, [len(rows), len(columns)]: forward-over-
    reverse, or with ``reverse`` reverse-over-reverse (no forward-mode AD: safe on worker threads)."""
    params = objective.unflatten(objective.theta)
    own = tuple(params[n] for n in block.own)
    down = tuple(params[n] for n in block.down)
    fixed = {n: t for n, t in params.items() if n not in block.own and n not in block.down}
    own_sizes = [t.numel() for t in own]

    def total(own_values: tuple, down_values: tuple) -> torch.Tensor:
        values = {**fixed, **dict(zip(block.own, own_values)), **dict(zip(block.down, down_values))}
        return objective.loss_fn(functional_call(objective.module, values, (x,)), y).sum()

    gradient = grad(total, argnums=(0, 1))

    def flat_gradient(own_values: tuple) -> torch.Tensor:
        own_grad, down_grad = gradient(own_values, down)
        return torch.cat([g.reshape(-1) for g in (*own_grad, *down_grad)])

    def directional(own_values: tuple, down_values: tuple, tangents: tuple) -> torch.Tensor:
        own_grad = grad(total, argnums=0)(own_values, down_values)
        return sum((g * t).sum() for g, t in zip(own_grad, tangents))

    def column(tangent: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(tangent, own_sizes)
        tangents = tuple(piece.reshape(t.shape) for piece, t in zip(pieces, own))
        if reverse:  # d/d(own, down) of <nabla_own loss, tangent>: the same column, H symmetric
            own_part, down_part = grad(directional, argnums=(0, 1))(own, down, tangents)
            return torch.cat([g.reshape(-1) for g in (*own_part, *down_part)])
        return jvp(flat_gradient, (own,), (tangents,))[1]

    local = torch.searchsorted(block.rows[: sum(own_sizes)], columns)  # own rows come first, ascending
    basis = torch.zeros(sum(own_sizes), len(columns), dtype=objective.dtype, device=x.device)
    basis[local, torch.arange(len(columns), device=x.device)] = 1  # own parameters come first in the rows
    detach = objective.module.get_submodule(block.module).register_forward_pre_hook(
        lambda _m, inputs: tuple(t.detach() if isinstance(t, torch.Tensor) else t for t in inputs)
    )
    try:
        return vmap(column, in_dims=1, out_dims=1)(basis)
    finally:
        detach.remove()
