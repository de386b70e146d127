"""Is theta-hat a minimum? The gradient of the training objective against the per-example gradients.

Influence functions are derivatives at a minimum of R(theta) = (1/n) sum_i L(z_i, theta) +
(lambda/2) ||theta||^2. Where grad R(theta-hat) = g is not zero, retraining (leave-one-out, the
attacks) first walks down g, a move of about H^-1 g, against H^-1 grad L(z) / n for one removal: the
influence of a point is then lost in the drift. ``ratio`` = ||g|| / (typical ||grad L(z_i)||);
``n * ratio`` is the number of removals the residual gradient is worth. The parameters are called
stationary when n x ratio <= 0.1: the residual pulls less than a tenth of what removing one point does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .explainer_view import ExplainerView
from torch.func import grad

STATIONARITY_REMOVALS = 0.1  # far from a minimum when the residual gradient is worth > 0.1 of one removal's pull
# Measured (README): L-BFGS logistic regression on the digits n x ratio = 7e-7; the CNN demo (Adam then 300
# L-BFGS steps) 0.84, whose leave-one-out Pearson is 0.77 with drift 0.23; Adam-trained logistic regression
# 0.014 after 300 steps, 6 after 2000 (lr 0.02, oscillating), 21 after 50.
_SCALE_SAMPLE = 256  # training points whose per-example gradients give the typical size


@dataclass(frozen=True)
class StationarityReport:
    """||grad R(theta-hat)|| (weight decay included) against the RMS per-example gradient norm.

    gradient_norm: ||(1/n) sum_i grad L(z_i) + lambda theta||, in the loss's units per parameter unit.
    per_example_scale: sqrt(mean_i ||grad L(z_i)||^2) over up to 256 seeded training points (all if fewer).
    ratio: gradient_norm / per_example_scale; 0 at an exact minimum. removals_equivalent = n x ratio.
    """

    gradient_norm: float
    per_example_scale: float
    ratio: float
    n_train: int

    @property
    def threshold(self) -> float:
        """The largest ``ratio`` called stationary: 0.1 / n (drift below a tenth of one removal's pull)."""
        return STATIONARITY_REMOVALS / self.n_train

    @property
    def is_stationary(self) -> bool:
        return self.ratio <= self.threshold

    @property
    def removals_equivalent(self) -> float:
        """n x ratio: how many single removals' pull the residual gradient is worth."""
        return self.n_train * self.ratio

    def summary(self) -> str:
        figures = (
            f"||grad R(theta)|| = {self.gradient_norm:.3g}, {self.ratio:.2g} x the typical per-example gradient "
            f"({self.per_example_scale:.3g}); the residual gradient pulls like "
            f"{self.removals_equivalent:.3g} removal(s)"
        )
        if self.is_stationary:
            return f"the parameters are at a minimum of the training objective: {figures}"
        return (
            f"the parameters are NOT at a minimum of the training objective: {figures}, above the limit of "
            f"{STATIONARITY_REMOVALS:g} removal(s) ({self.threshold:.2g} x). "
            "Influence assumes a minimum, and leave-one-out retraining will drift away from these parameters. "
            "Train longer, or polish with full-batch L-BFGS on the same loss and weight_decay "
            "(influence_widgets.data.fit_lbfgs), then build the explainer again"
        )


def measure_stationarity(explainer: ExplainerView) -> StationarityReport:
    """One pass of batch gradients over the training set (no per-example gradients) and per-example
    gradients of up to 256 seeded points (from the gradient cache when it is filled)."""
    objective = explainer.objective
    theta = objective.theta

    def total(t: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return objective.loss_fn(objective.outputs(x, t), y).sum()

    gradient = torch.zeros_like(theta, dtype=torch.float64)
    size = objective.gradient_chunk_points(explainer.batch_size, explainer.data.streamed)
    for _, x, y in explainer.data.chunks(size):
        gradient += grad(total)(theta, x, y).double()
    n = explainer.n_train
    gradient = gradient / n + explainer.weight_decay * theta.double()
    cached = explainer.cached_train_gradients()
    if cached is not None:
        norms = torch.linalg.vector_norm(cached.double(), dim=1)
    else:
        generator = torch.Generator().manual_seed(0)
        sample = torch.randperm(n, generator=generator)[:_SCALE_SAMPLE].sort().values
        step = size  # at most batch_size items of a Dataset at a time, fewer rows for a large network
        pieces = [explainer.data.take(sample[i : i + step]) for i in range(0, len(sample), step)]
        norms = torch.cat([torch.linalg.vector_norm(objective.per_example_grads(x, y, None), dim=1) for x, y in pieces])
        norms = norms.double()
    scale = float(norms.square().mean().sqrt())
    norm = float(torch.linalg.vector_norm(gradient))
    ratio = norm / scale if scale > 0 else (0.0 if norm == 0 else float("inf"))
    return StationarityReport(norm, scale, ratio, n)
