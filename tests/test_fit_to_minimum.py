"""The demo's networks are trained to a stationary point of the objective the explainer assumes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad

from influence_widgets.data import SmallCNN, cross_entropy_per_example, fit_adam, fit_to_minimum, load_digits

WEIGHT_DECAY = 1e-3


def independent_gradient_norm(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """||nabla R|| for R = mean cross-entropy + (lambda/2)||theta||^2, by torch.func on a plain function."""
    params = {name: p.detach().clone() for name, p in model.named_parameters()}

    def objective(theta):
        logits = functional_call(model, theta, (x,))
        penalty = sum((v**2).sum() for v in theta.values())
        return F.cross_entropy(logits, y) + 0.5 * WEIGHT_DECAY * penalty

    gradient = grad(objective)(params)
    return float(torch.sqrt(sum((g.double() ** 2).sum() for g in gradient.values())))


def test_a_cnn_stopped_early_is_polished_to_a_gradient_norm_below_the_tolerance():
    torch.manual_seed(0)
    split = load_digits(seed=0, as_images=True, dtype=torch.float64)
    x, y = split.X_train[:200], split.y_train[:200]
    model = SmallCNN(10).double()
    fit_adam(model, cross_entropy_per_example, x, y, WEIGHT_DECAY, steps=100, lr=0.02)
    before = independent_gradient_norm(model, x, y)
    norm = fit_to_minimum(model, cross_entropy_per_example, x, y, WEIGHT_DECAY, gradient_tolerance=1e-6)
    after = independent_gradient_norm(model, x, y)
    assert before > 1e-4  # Adam alone leaves it far from stationary
    assert after <= 1e-6 and abs(norm - after) <= 1e-9
    assert not model.training and all(p.grad is None for p in model.parameters())
