"""Fitting a model to the exact objective the explainer assumes.

R(theta) = (1/n) sum_i loss(z_i, theta) + (lambda/2) ||theta||^2 over the trainable parameters. The objective
and the optimisers are the core's (``core/retrain.py``), shared with leave-one-out retraining; these trainers
add the train/eval mode, progress bars and the thread budget.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from ..core.retrain import LossFn, gradient_norm, minimise_adam, minimise_lbfgs, regularised_objective
from ..core.threads import within_thread_budget

__all__ = ["LossFn", "fit_adam", "fit_lbfgs", "fit_to_minimum", "gradient_norm", "objective_value"]


def progress_counter(*, enabled: bool, desc: str, total: int) -> tqdm:
    """A ``tqdm.auto`` counter shown after one second; silent when not ``enabled``. A plain counter:
    unlike ``core.progress.progress_counter`` it leaves the thread count alone during a fit."""
    return tqdm(total=total, desc=desc, delay=1.0, leave=False, disable=not enabled, dynamic_ncols=True)


def objective_value(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, weight_decay: float):
    """R(theta) at the model's current parameters (differentiable), the mean loss plus weight decay."""
    return regularised_objective(model, loss_fn, x, y, weight_decay)


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
    minimise_lbfgs(
        model, loss_fn, x, y, weight_decay, max_iter=max_iter, tolerance=tolerance, on_evaluation=on_evaluation
    )
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
    bar = progress_counter(enabled=progress, desc="Adam", total=steps)
    try:
        minimise_adam(model, loss_fn, x, y, weight_decay, steps=steps, lr=lr, on_step=lambda: bar.update(1))
    finally:
        bar.close()
    return model.eval()
