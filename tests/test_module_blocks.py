"""Explicit Hessians from layer-wise columns: equal to autograd's Hessian on networks of several shapes,
and the general path wherever a model breaks the structure they rely on."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from influence_widgets import InfluenceExplainer
from influence_widgets.core.curvature.module_blocks import find_module_blocks
from influence_widgets.data import SmallCNN, cross_entropy_per_example, load_digits

WEIGHT_DECAY = 0.01
DAMPING = 0.02


def digits(n: int, images: bool = False):
    split = load_digits(as_images=images, dtype=torch.float64, seed=0)
    return split.X_train[:n], split.y_train[:n]


class Skip(nn.Module):
    """A residual connection: the first layer's features reach the last layer past the second."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.second, self.last = nn.Linear(64, 6), nn.Linear(6, 6), nn.Linear(6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.first(x))
        return self.last(torch.tanh(self.second(h)) + h)


class WeightUsedEarly(nn.Module):
    """The parent's forward uses the last layer's weight before the first layer runs, on its input."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.last = nn.Linear(64, 6), nn.Linear(6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.first(x * (1 + 0.5 * torch.tanh(self.last.weight.sum()))))
        return self.last(h)


class CalledTwice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first, self.middle, self.last = nn.Linear(64, 6), nn.Linear(6, 6), nn.Linear(6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.middle(torch.tanh(self.first(x))))
        return self.last(torch.tanh(self.middle(h)))


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first, self.last = nn.Linear(64, 6), nn.Linear(6, 64)
        self.out = nn.Linear(64, 10)
        self.last.weight = nn.Parameter(self.first.weight.T.clone())
        self.first.weight = self.last.weight  # shared, transposed in use below

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(x @ self.first.weight + self.first.bias)
        return self.out(torch.tanh(self.last(h)))


def mlp3() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 5), nn.Tanh(), nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 10))


def explainer(model: nn.Module, x, y, params=None) -> InfluenceExplainer:
    return InfluenceExplainer(
        model.double(),
        cross_entropy_per_example,
        x,
        y,
        weight_decay=WEIGHT_DECAY,
        damping=DAMPING,
        params=params,
        solver="exact",
        progress=False,
    )


def autograd_hessian(ex: InfluenceExplainer, x, y) -> torch.Tensor:
    """(1/n) sum_i hess loss_i + (lambda + damping) I by torch.autograd.functional.hessian."""
    shift = WEIGHT_DECAY + DAMPING

    def objective(theta: torch.Tensor) -> torch.Tensor:
        return ex.objective.loss_fn(ex.objective.outputs(x, theta), y).mean() + shift / 2 * theta @ theta

    return torch.autograd.functional.hessian(objective, ex.objective.theta.clone())


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


def trained(model: nn.Module, x, y, steps: int = 60) -> nn.Module:
    """A few Adam steps, so that the residuals (and the Hessian's non-Gauss-Newton part) are not tiny."""
    torch.manual_seed(0)
    model = model.double()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(steps):
        optimiser.zero_grad()
        cross_entropy_per_example(model(x), y).mean().backward()
        optimiser.step()
    return model


@pytest.mark.parametrize(
    ("name", "params", "n_blocks"),
    [("CNN", None, 2), ("three layers", None, 2), ("three layers", ["0", "4"], 1), ("skip connection", None, 2)],
)
def test_layer_wise_columns_give_autograd_hessian(name, params, n_blocks):
    torch.manual_seed(0)
    images = name == "CNN"
    x, y = digits(60, images=images)
    model = {"CNN": SmallCNN, "three layers": mlp3, "skip connection": Skip}[name]()
    ex = explainer(trained(model, x, y), x, y, params)
    curved = ~ex.hessian.affine_mask()
    blocks = find_module_blocks(ex.objective, x[:1], curved)
    assert blocks is not None and len(blocks) == n_blocks
    assert torch.equal(torch.sort(torch.cat([b.columns for b in blocks])).values, curved.nonzero().squeeze(1))
    explicit = ex.hessian.explicit()
    hessian = explicit.matrix
    assert explicit.method == "layer-wise"  # the checked layer-wise result was kept
    assert relative(hessian, autograd_hessian(ex, x, y)) < 1e-12


@pytest.mark.parametrize("model", [WeightUsedEarly, CalledTwice, Tied], ids=["used early", "called twice", "tied"])
def test_models_that_break_the_structure_get_the_general_path(model):
    torch.manual_seed(0)
    x, y = digits(60)
    ex = explainer(trained(model(), x, y), x, y)
    curved = ~ex.hessian.affine_mask()
    found = find_module_blocks(ex.objective, x[:1], curved)
    explicit = ex.hessian.explicit()
    hessian = explicit.matrix
    if model is WeightUsedEarly:  # the structure looks right: the check against full products catches it
        assert found is not None and explicit.method == "products" and explicit.refused
    else:
        assert found is None
    assert relative(hessian, autograd_hessian(ex, x, y)) < 1e-12


class BiasUsedEarlyWeakly(nn.Module):
    """In float32, a later layer's bias reaching the first layer's output with a small weight: an error
    the check in float32 could mistake for rounding."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.last = nn.Linear(64, 6), nn.Linear(6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.first(x) + 3e-4 * self.last.bias.sum())
        return self.last(h)


def test_the_check_in_float64_catches_small_errors_of_a_float32_model():
    x, y = digits(200)
    model = trained(BiasUsedEarlyWeakly(), x, y).float()
    ex = InfluenceExplainer(
        model, cross_entropy_per_example, x.float(), y, weight_decay=WEIGHT_DECAY, damping=DAMPING, progress=False
    )
    explicit = ex.hessian.explicit()
    hessian = explicit.matrix.double()
    reference = explainer(copy.deepcopy(model), x, y)  # the same float32 weights, in float64
    truth = autograd_hessian(reference, x, y)
    assert explicit.refused  # the layer-wise result was rejected
    assert relative(hessian, truth) < 1e-5  # float32 rounding, not the missing path (4e-5 when accepted)


def test_a_refused_shortcut_is_returned_not_switched_off():
    """The check's verdict comes back with the matrix; the operator is left as it was, so a second call (and
    the cost preview) sees the same choices and reaches the same verdict."""
    torch.manual_seed(0)
    x, y = digits(60)
    ex = explainer(trained(WeightUsedEarly(), x, y), x, y)
    first = ex.hessian.explicit()
    assert first.refused and ex.hessian.module_blocks
    second = ex.hessian.explicit()
    assert second.refused and torch.equal(first.matrix, second.matrix)
