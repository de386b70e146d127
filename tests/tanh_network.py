"""A small tanh network trained on the digits, shared by the tests of the non-convex and Gauss-Newton paths."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from influence_widgets import InfluenceExplainer
from influence_widgets.data import cross_entropy_per_example, fit_adam, fit_lbfgs, load_digits

WEIGHT_DECAY = 0.001
DAMPING = 0.01


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 4), nn.Tanh(), nn.Linear(4, 10)).double()


def network_explainer(model: nn.Module, x: torch.Tensor, y: torch.Tensor, solver: str, options=None):
    """The explainer of a network trained as below: weight decay 1e-3, damping 0.01."""
    return InfluenceExplainer(
        model,
        cross_entropy_per_example,
        x,
        y,
        weight_decay=WEIGHT_DECAY,
        damping=DAMPING,
        solver=solver,
        solver_options=options,
        progress=False,
    )


@dataclass
class TrainedNetwork:
    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def explainer(self, solver: str, options=None) -> InfluenceExplainer:
        return network_explainer(self.model, self.x, self.y, solver, options)


def train_network(n_test: int = 12) -> TrainedNetwork:
    """300 digits, weight decay 1e-3, Adam then L-BFGS to a small gradient norm; seeded."""
    torch.manual_seed(0)
    split = load_digits(dtype=torch.float64, seed=1)
    x, y = split.X_train[:300], split.y_train[:300]
    model = mlp()
    fit_adam(model, cross_entropy_per_example, x, y, WEIGHT_DECAY, steps=300, lr=0.02)
    fit_lbfgs(model, cross_entropy_per_example, x, y, WEIGHT_DECAY, max_iter=300)
    return TrainedNetwork(model, x, y, split.X_test[:n_test], split.y_test[:n_test])
