"""The closed forms for one selected linear layer: equal to autograd's Hessian and to the general path,
and never used where they would be wrong."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from influence_widgets import InfluenceExplainer
from influence_widgets.core.curvature.explicit import closed_form_affine_block
from influence_widgets.core.curvature.linear_head import find_linear_head
from influence_widgets.core.curvature.losses import closed_form_derivatives
from influence_widgets.data import (
    LogisticRegression,
    SmallCNN,
    binary_logistic_per_example,
    cross_entropy_per_example,
    load_digits,
    squared_error_per_example,
)

WEIGHT_DECAY = 0.01


def digits(n: int = 120):
    split = load_digits(dtype=torch.float64, seed=0)
    return split.X_train[:n], split.y_train[:n], split.X_test[:5], split.y_test[:5]


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 6), nn.Tanh(), nn.Linear(6, 10)).double()


def case(name: str):
    """(model, loss, params, x, y, x_test, y_test) for one kind of selected linear layer."""
    x, y, x_test, y_test = digits()
    torch.manual_seed(0)
    if name == "binary logistic regression":
        keep = (y == 1) | (y == 7)
        return (
            LogisticRegression(64, 2).double(),
            binary_logistic_per_example,
            None,
            x[keep],
            (y[keep] == 7).double(),
            x_test,
            (y_test == 7).double(),
        )
    if name == "multiclass logistic regression":
        return LogisticRegression(64, 10).double(), cross_entropy_per_example, None, x, y, x_test, y_test
    if name == "regression without a bias":
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 1, bias=False)).double()
        return model, squared_error_per_example, None, x, y.double(), x_test, y_test.double()
    params = {"last layer": ["2"], "last weight": ["2.weight"], "last bias": ["2.bias"]}[name]
    return mlp(), cross_entropy_per_example, params, x, y, x_test, y_test


CASES = [
    "binary logistic regression",
    "multiclass logistic regression",
    "regression without a bias",
    "last layer",
    "last weight",
    "last bias",
]


def explainer(model, loss, params, x, y, closed_form: bool) -> InfluenceExplainer:
    ex = InfluenceExplainer(model, loss, x, y, weight_decay=WEIGHT_DECAY, params=params, solver="exact", progress=False)
    if not closed_form:
        ex.objective.use_general_path()
    return ex


def autograd_hessian(ex: InfluenceExplainer, x, y) -> torch.Tensor:
    """(1/n) sum_i hess loss_i + (lambda + damping) I from torch.autograd.functional.hessian: nothing of ours
    but the functional call."""
    shift = ex.weight_decay + ex.damping

    def objective(theta: torch.Tensor) -> torch.Tensor:
        return ex.objective.loss_fn(ex.objective.outputs(x, theta), y).mean() + shift / 2 * theta @ theta

    return torch.autograd.functional.hessian(objective, ex.objective.theta.clone())


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


@pytest.mark.parametrize("name", CASES)
def test_closed_forms_equal_autograd_and_the_general_path(name):
    model, loss, params, x, y, x_test, y_test = case(name)
    fast = explainer(model, loss, params, x, y, closed_form=True)
    general = explainer(model, loss, params, x, y, closed_form=False)
    assert fast.objective.linear_head is not None and general.objective.linear_head is None
    hessian = fast.hessian.dense()
    assert relative(hessian, autograd_hessian(fast, x, y)) < 1e-12
    assert relative(hessian, general.hessian.dense()) < 1e-12
    assert relative(fast.train_gradients(), general.train_gradients()) < 1e-12
    assert relative(fast.test_gradients(x_test, y_test), general.test_gradients(x_test, y_test)) < 1e-12
    assert relative(fast.influence(x_test, y_test), general.influence(x_test, y_test)) < 1e-10
    positive = fast.hessian.gauss_newton(positive_part=True)
    assert relative(positive, general.hessian.gauss_newton(positive_part=True)) < 1e-6  # general: a 1e-6 cut
    assert torch.linalg.eigvalsh(positive).min() > -1e-10 * torch.linalg.eigvalsh(positive).max()


class LinearThenTanh(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(x))


class TiedInput(nn.Module):
    """The layer's input is scaled by its own weight: h depends on the selected parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x * self.fc.weight.mean())


class PerPixel(nn.Module):
    """A linear layer applied along the last axis of 3-D inputs: not one [b, d] input."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.reshape(len(x), 8, 8)).mean(1)


@pytest.mark.parametrize(
    ("model", "params"),
    [(LinearThenTanh(), None), (TiedInput(), None), (PerPixel(), None), (mlp(), None), (mlp(), ["0"])],
    ids=["output after the layer", "tied input", "3-D input", "two layers", "first layer"],
)
def test_no_closed_form_where_it_would_be_wrong(model, params):
    x, y, _, _ = digits(40)
    ex = InfluenceExplainer(model.double(), cross_entropy_per_example, x, y, params=params, progress=False)
    assert ex.objective.linear_head is None


class SquaresBrightPixels(nn.Module):
    """Linear on the first training points, where the closed form is found; not on inputs with a large
    twentieth pixel, which those batches must detect and hand to the general path."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc(x)
        return torch.where(x[:, 20:21] > 0.5, out**2 / 10, out)


def test_a_batch_that_breaks_the_pattern_takes_the_general_path():
    x, y, x_test, y_test = digits(200)
    first = x[:, 20] <= 0.5
    x = torch.cat([x[first][:32], x[~first][:8], x[first][32:]])  # the sample of 32 is linear
    y = torch.cat([y[first][:32], y[~first][:8], y[first][32:]])
    assert int((x[:, 20] > 0.5).sum()) > 0
    torch.manual_seed(0)
    model = SquaresBrightPixels().double()
    kwargs = {"weight_decay": WEIGHT_DECAY, "damping": 0.05, "solver": "exact", "batch_size": 32, "progress": False}
    fast = InfluenceExplainer(model, cross_entropy_per_example, x, y, **kwargs)
    general = InfluenceExplainer(model, cross_entropy_per_example, x, y, **kwargs)
    general.objective.use_general_path()
    assert fast.objective.linear_head is not None
    assert not bool(fast.hessian.affine_mask().all())  # not affine everywhere: the mask is not "all"
    assert relative(fast.hessian.dense(), autograd_hessian(fast, x, y)) < 1e-12
    assert relative(fast.train_gradients(), general.train_gradients()) < 1e-12
    assert relative(fast.influence(x_test, y_test), general.influence(x_test, y_test)) < 1e-10


def test_the_last_layer_of_a_network_gets_its_block_in_closed_form():
    split = load_digits(as_images=True, dtype=torch.float64, seed=0)
    x, y = split.X_train[:80], split.y_train[:80]
    torch.manual_seed(0)
    ex = InfluenceExplainer(SmallCNN().double(), cross_entropy_per_example, x, y, solver="exact", progress=False)
    objective, affine = ex.objective, ex.hessian.affine_mask()
    assert objective.linear_head is None  # the convolutions are selected too
    assert find_linear_head(objective, x[:4], ["fc.weight", "fc.bias"]) is not None
    assert find_linear_head(objective, x[:4], ["conv2.weight", "conv2.bias"]) is None
    closed = closed_form_affine_block(objective, ex.hessian.source, affine)
    assert closed is not None
    jacobians = ex.hessian.gauss_newton(columns=affine.nonzero().squeeze(1))  # per-example Jacobians
    assert relative(closed, jacobians) < 1e-12


@pytest.mark.parametrize(
    ("loss", "outputs", "targets"),
    [
        (cross_entropy_per_example, torch.randn(7, 4, dtype=torch.float64), torch.randint(0, 4, (7,))),
        (binary_logistic_per_example, torch.randn(7, 1, dtype=torch.float64), torch.randint(0, 2, (7,)).double()),
        (squared_error_per_example, torch.randn(7, 1, dtype=torch.float64), torch.randn(7, dtype=torch.float64)),
    ],
    ids=["cross-entropy", "binary logistic", "squared error"],
)
def test_the_built_in_losses_closed_form_derivatives_equal_autograd(loss, outputs, targets):
    first, second = closed_form_derivatives(loss)(outputs, targets)
    f = outputs.clone().requires_grad_(True)
    (r,) = torch.autograd.grad(loss(f, targets).sum(), f, create_graph=True)
    rows = [torch.autograd.grad(r[:, k].sum(), f, retain_graph=True)[0] for k in range(f.shape[1])]
    torch.testing.assert_close(first, r.detach(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(second, torch.stack(rows, dim=1), rtol=1e-12, atol=1e-14)


def test_cases_the_closed_forms_do_not_cover_fall_back_to_autograd():
    outputs = torch.randn(5, 3, dtype=torch.float64)
    soft = torch.softmax(torch.randn(5, 3, dtype=torch.float64), dim=1)
    cross_entropy = closed_form_derivatives(cross_entropy_per_example)
    binary = closed_form_derivatives(binary_logistic_per_example)
    assert cross_entropy(outputs, soft) is None
    assert cross_entropy(outputs, torch.tensor([0, 1, -100, 2, 1])) is None
    assert binary(outputs, torch.zeros(5, dtype=torch.float64)) is None
    x, y, _, _ = digits(60)
    keep = y < 3
    probabilities = torch.nn.functional.one_hot(y[keep], 3).double() * 0.8 + 0.2 / 3  # soft targets
    torch.manual_seed(0)
    model = LogisticRegression(64, 3).double()
    fast = explainer(model, cross_entropy_per_example, None, x[keep], probabilities, closed_form=True)
    general = explainer(model, cross_entropy_per_example, None, x[keep], probabilities, closed_form=False)
    assert fast.objective.linear_head is not None
    assert relative(fast.hessian.dense(), autograd_hessian(fast, x[keep], probabilities)) < 1e-12
    assert relative(fast.train_gradients(), general.train_gradients()) < 1e-12


class ScaledInPlace(nn.Module):
    """Temperature scaling in place after the layer: its output tensor is not the value the loss sees."""

    def __init__(self, hidden: bool) -> None:
        super().__init__()
        self.hidden = nn.Linear(64, 6) if hidden else None
        self.fc = nn.Linear(6 if hidden else 64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc(torch.tanh(self.hidden(x)) if self.hidden is not None else x)
        out /= 0.5
        return out


@pytest.mark.parametrize("hidden", [False, True], ids=["logistic regression", "network"])
def test_an_output_changed_in_place_after_the_layer_gets_no_closed_form(hidden):
    x, y, _, _ = digits(80)
    torch.manual_seed(0)
    ex = explainer(ScaledInPlace(hidden).double(), cross_entropy_per_example, None, x, y, closed_form=True)
    assert ex.objective.linear_head is None
    assert relative(ex.hessian.dense(), autograd_hessian(ex, x, y)) < 1e-12


class Squeezed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x).squeeze()  # 0-d for a single point


def test_a_squeezed_output_and_byte_class_targets_work():
    x, y, x_test, y_test = digits(80)

    def loss(outputs, targets):
        return 0.5 * (outputs.reshape(len(targets)) - targets) ** 2

    torch.manual_seed(0)
    model = Squeezed().double()
    fast = explainer(model, loss, None, x, y.double(), closed_form=True)
    general = explainer(model, loss, None, x, y.double(), closed_form=False)
    assert fast.objective.linear_head is not None
    single = fast.influence(x_test[0], y_test[0].double())
    assert relative(single, general.influence(x_test[0], y_test[0].double())) < 1e-10
    derivatives = closed_form_derivatives(cross_entropy_per_example)
    first, second = derivatives(torch.randn(4, 3), torch.tensor([0, 2, 1, 2]).byte())
    assert first.shape == (4, 3) and second.shape == (4, 3, 3)
