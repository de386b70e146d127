"""Fitting a model to the exact objective the explainer assumes.

R(theta) = (1/n) sum_i loss(z_i, theta) + (lambda/2) ||theta||^2 over the trainable parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def objective_value(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, weight_decay: float):
    """R(theta) at the model's current parameters (differentiable)."""
    params = [p for p in model.parameters() if p.requires_grad]
    penalty = sum((p * p).sum() for p in params)
    return loss_fn(model(x), y).mean() + 0.5 * weight_decay * penalty


def gradient_norm(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, weight_decay: float) -> float:
    """||nabla R(theta)||, how far the model is from a stationary point of the objective."""
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(objective_value(model, loss_fn, x, y, weight_decay), params)
    return float(torch.sqrt(sum((g * g).sum() for g in grads)))


def fit_lbfgs(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    weight_decay: float,
    *,
    max_iter: int = 500,
    tolerance: float = 1e-10,
) -> nn.Module:
    """Full-batch L-BFGS with a strong-Wolfe line search, in place; returns the model in eval mode."""
    model.train()
    optimizer = torch.optim.LBFGS(
        [p for p in model.parameters() if p.requires_grad],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=tolerance,
        tolerance_change=0.0,
        history_size=50,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        value = objective_value(model, loss_fn, x, y, weight_decay)
        value.backward()
        return value

    optimizer.step(closure)
    optimizer.zero_grad(set_to_none=True)
    return model.eval()


def fit_adam(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    weight_decay: float,
    *,
    steps: int = 500,
    lr: float = 0.01,
) -> nn.Module:
    """Full-batch Adam for a fixed number of steps, in place; returns the model in eval mode."""
    model.train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        objective_value(model, loss_fn, x, y, weight_decay).backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return model.eval()
