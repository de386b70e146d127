"""Fitting a model to the exact objective the explainer assumes.

R(theta) = (1/n) sum_i loss(z_i, theta) + (lambda/2) ||theta||^2 over the trainable parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from ..core.threads import within_thread_budget

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def progress_counter(*, enabled: bool, desc: str, total: int) -> tqdm:
    """A ``tqdm.auto`` counter shown after one second; silent when not ``enabled``."""
    return tqdm(total=total, desc=desc, delay=1.0, leave=False, disable=not enabled, dynamic_ncols=True)


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


@within_thread_budget  # threads sized to the free cores, the user's setting restored after
def fit_lbfgs(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    weight_decay: float,
    *,
    max_iter: int = 500,
    tolerance: float = 1e-10,
    on_evaluation: Callable[[], object] | None = None,
) -> nn.Module:
    """Full-batch L-BFGS with a strong-Wolfe line search, in place; returns the model in eval mode.

    ``on_evaluation()`` runs after each evaluation of the objective (a progress bar's tick).
    """
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
        if on_evaluation is not None:
            on_evaluation()
        return value

    optimizer.step(closure)
    optimizer.zero_grad(set_to_none=True)
    return model.eval()


@within_thread_budget  # threads sized to the free cores, the user's setting restored after
def fit_to_minimum(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    weight_decay: float,
    *,
    gradient_tolerance: float = 1e-6,
    max_rounds: int = 6,
    iterations_per_round: int = 500,
    progress: bool = False,
) -> float:
    """Polish with restarted full-batch L-BFGS until ||nabla R(theta)|| <= ``gradient_tolerance``.

    Each round is one L-BFGS run of at most ``iterations_per_round`` iterations (a restart clears a
    stale curvature history, which is what stalls L-BFGS on a network); at most ``max_rounds`` rounds.
    In place; returns the final gradient norm (the same units as ``gradient_norm``).
    """
    norm = gradient_norm(model, loss_fn, x, y, weight_decay)
    bar = progress_counter(enabled=progress, desc="L-BFGS polish", total=max_rounds * iterations_per_round)
    try:
        for _ in range(max_rounds):
            if norm <= gradient_tolerance:
                break
            fit_lbfgs(
                model,
                loss_fn,
                x,
                y,
                weight_decay,
                max_iter=iterations_per_round,
                tolerance=gradient_tolerance / 10,
                on_evaluation=lambda: bar.update(1),
            )
            norm = gradient_norm(model, loss_fn, x, y, weight_decay)
            bar.set_postfix_str(f"|grad| {norm:.1e}")
    finally:
        bar.close()
    model.eval()
    return norm


@within_thread_budget  # threads sized to the free cores, the user's setting restored after
def fit_adam(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    weight_decay: float,
    *,
    steps: int = 500,
    lr: float = 0.01,
    progress: bool = False,
) -> nn.Module:
    """Full-batch Adam for a fixed number of steps, in place; returns the model in eval mode."""
    model.train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    bar = progress_counter(enabled=progress, desc="Adam", total=steps)
    try:
        for _ in range(steps):
            optimizer.zero_grad()
            objective_value(model, loss_fn, x, y, weight_decay).backward()
            optimizer.step()
            bar.update(1)
    finally:
        bar.close()
    optimizer.zero_grad(set_to_none=True)
    return model.eval()
