"""Minimising the training objective, written once: for the retrained copies of leave-one-out validation,
the use cases and the triage panel, and for the demo trainers (``data/training.py``).

The objective is the explainer's,

    R(theta) = (1/n) sum_i loss(z_i, theta) + (lambda/2) ||theta||^2,

over the given parameters (default: those with ``requires_grad``). n defaults to the number of rows
given (the mean); a retraining without some points keeps the full training set's n, so that removing
a point is upweighting it by eps = -1/n with n and lambda unchanged. The minimisers work in place on
the module they are given and leave its train/eval mode alone: callers that must not touch the user's
model (``retrain_copy``) hand them a copy.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .errors import InfluenceInputError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Retrainer = Callable[[nn.Module, torch.Tensor, torch.Tensor], nn.Module]
LBFGS_HISTORY = 50  # curvature pairs kept by L-BFGS


@dataclass(frozen=True)
class LBFGSRetrain:
    """Full-batch L-BFGS (strong Wolfe) to a tight gradient tolerance: for convex models."""

    max_iter: int = 1000
    tolerance: float = 1e-10


@dataclass(frozen=True)
class StepsRetrain:
    """A fixed number of full-batch Adam steps: for networks, like the paper's 30k steps, scaled down."""

    steps: int = 500
    lr: float = 1e-3


def trainable(module: nn.Module) -> list[nn.Parameter]:
    """The module's parameters with ``requires_grad``, in ``parameters()`` order."""
    return [p for p in module.parameters() if p.requires_grad]


def regularised_objective(
    module: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    weight_decay: float,
    *,
    params: Iterable[torch.Tensor] | None = None,
    n: int | None = None,
) -> torch.Tensor:
    """R(theta) = (1/n) sum_i loss(z_i, theta) + (weight_decay/2) sum ||p||^2 over ``params`` (differentiable).

    ``params`` default: the module's trainable parameters. ``n`` default: ``len(x)`` (the mean of the losses).
    """
    params = trainable(module) if params is None else params
    penalty = sum((p * p).sum() for p in params)
    losses = loss_fn(module(x), y)
    data_term = losses.mean() if n is None else losses.sum() / n
    return data_term + 0.5 * weight_decay * penalty


def gradient_norm(
    module: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    weight_decay: float,
    *,
    params: Iterable[torch.Tensor] | None = None,
    n: int | None = None,
) -> float:
    """||nabla R(theta)|| over ``params``: how far the module is from a stationary point of the objective."""
    params = trainable(module) if params is None else list(params)
    value = regularised_objective(module, loss_fn, x, y, weight_decay, params=params, n=n)
    grads = torch.autograd.grad(value, params)
    return float(torch.sqrt(sum((g * g).sum() for g in grads)))


def minimise_lbfgs(
    module: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    weight_decay: float,
    *,
    max_iter: int,
    tolerance: float,
    params: Iterable[torch.Tensor] | None = None,
    n: int | None = None,
    on_evaluation: Callable[[], object] | None = None,
) -> nn.Module:
    """Full-batch L-BFGS on R with a strong-Wolfe line search, in place; the one L-BFGS configuration.

    Step size 1, at most ``max_iter`` iterations, stops when max |nabla R| <= ``tolerance`` (no stop on
    a small change), 50 curvature pairs. ``on_evaluation()`` runs after each evaluation of R.
    """
    params = trainable(module) if params is None else list(params)
    optimizer = torch.optim.LBFGS(
        params,
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=tolerance,
        tolerance_change=0.0,
        history_size=LBFGS_HISTORY,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        value = regularised_objective(module, loss_fn, x, y, weight_decay, params=params, n=n)
        value.backward()
        if on_evaluation is not None:
            on_evaluation()
        return value

    optimizer.step(closure)
    optimizer.zero_grad(set_to_none=True)
    return module


def minimise_adam(
    module: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    weight_decay: float,
    *,
    steps: int,
    lr: float,
    params: Iterable[torch.Tensor] | None = None,
    n: int | None = None,
    on_step: Callable[[], object] | None = None,
) -> nn.Module:
    """``steps`` full-batch Adam steps on R with learning rate ``lr``, in place; ``on_step()`` after each."""
    params = trainable(module) if params is None else list(params)
    optimizer = torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        regularised_objective(module, loss_fn, x, y, weight_decay, params=params, n=n).backward()
        optimizer.step()
        if on_step is not None:
            on_step()
    optimizer.zero_grad(set_to_none=True)
    return module


def run_builtin(method: LBFGSRetrain | StepsRetrain, module, names, loss_fn, x, y, n, weight_decay) -> nn.Module:
    """Minimise R over the ``names`` parameters of ``module`` in place, with the training-set size ``n``."""
    params = [p for name, p in module.named_parameters() if name in names]
    if isinstance(method, LBFGSRetrain):
        return minimise_lbfgs(
            module,
            loss_fn,
            x,
            y,
            weight_decay,
            max_iter=method.max_iter,
            tolerance=method.tolerance,
            params=params,
            n=n,
        )
    return minimise_adam(module, loss_fn, x, y, weight_decay, steps=method.steps, lr=method.lr, params=params, n=n)


def retrain_copy(explainer, x: torch.Tensor, y: torch.Tensor, method: Any = None) -> nn.Module:
    """A copy of the explainer's model, warm-started at theta_hat and retrained on (x, y), in eval mode.

    Built-in methods minimise (1/n) sum loss + (lambda/2)||theta||^2 with n the explainer's training-set
    size (so removing a point is eps = -1/n) over the selected parameters only; a callable
    ``method(model_copy, x, y) -> model`` is checked to return the same architecture. The explainer's
    model is never changed.
    """
    method = LBFGSRetrain() if method is None else method
    names = set(explainer.objective.names)
    module = copy.deepcopy(explainer.model)
    for name, p in module.named_parameters():
        p.requires_grad_(name in names)
    x, y = x.to(explainer.device), y.to(explainer.device)
    if isinstance(method, (LBFGSRetrain, StepsRetrain)):
        run_builtin(method, module, names, explainer.loss_fn, x, y, explainer.n_train, explainer.weight_decay)
        return module.eval()
    result = method(module, x, y)
    if not isinstance(result, nn.Module):
        raise InfluenceInputError(f"retrain must return the retrained nn.Module, got {type(result).__name__}")
    reference = {name: p.shape for name, p in explainer.model.named_parameters()}
    if {name: p.shape for name, p in result.named_parameters()} != reference:
        raise InfluenceInputError(
            "retrain returned a model with a different architecture (parameter names or shapes changed); "
            "retrain the copy it is given and return it"
        )
    return result.eval()
