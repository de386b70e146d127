"""Closed-form output derivatives of the recognised per-example losses equal autograd's in float64, and
every configuration or batch whose formula is not implemented gets none (autograd then)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from influence_widgets import InfluenceExplainer, SmoothHinge
from influence_widgets.core.curvature.losses import closed_form_derivatives
from influence_widgets.data import (
    LogisticRegression,
    binary_logistic_per_example,
    cross_entropy_per_example,
    load_digits,
    squared_error_per_example,
)


def autograd_derivatives(loss, outputs: torch.Tensor, targets: torch.Tensor):
    """(dl/df [b, C], d^2 l/df^2 [b, C, C]) per example by autograd, f the outputs flattened per example."""
    flat = outputs.reshape(len(outputs), -1).clone().requires_grad_(True)
    values = loss(flat.reshape(outputs.shape), targets)
    assert values.numel() == len(outputs)  # one value per example ([b], or [b, 1] from torch's element-wise losses)
    values = values.reshape(len(outputs))
    (first,) = torch.autograd.grad(values.sum(), flat, create_graph=True)
    rows = [torch.autograd.grad(first[:, k].sum(), flat, retain_graph=True)[0] for k in range(flat.shape[1])]
    return first.detach(), torch.stack(rows, dim=1)


def classes(b: int = 7, c: int = 4):
    generator = torch.Generator().manual_seed(0)
    return torch.randn(b, c, dtype=torch.float64, generator=generator), torch.randint(0, c, (b,), generator=generator)


def one_output(shape, binary: bool, flat_targets: bool = False):
    """One output per example, shaped ``shape``; targets shaped alike, or [b] with ``flat_targets``."""
    generator = torch.Generator().manual_seed(1)
    outputs = 2 * torch.randn(*shape, dtype=torch.float64, generator=generator)
    if binary:
        targets = torch.randint(0, 2, shape, generator=generator).double()
    else:
        targets = torch.randn(*shape, dtype=torch.float64, generator=generator)
    return outputs, targets.reshape(len(outputs)) if flat_targets else targets


RECOGNISED = {
    "cross_entropy_per_example": (cross_entropy_per_example, *classes()),
    "binary_logistic_per_example": (binary_logistic_per_example, *one_output((7, 1), True, flat_targets=True)),
    "squared_error_per_example": (squared_error_per_example, *one_output((7, 1), False, flat_targets=True)),
    "nn.CrossEntropyLoss": (nn.CrossEntropyLoss(reduction="none"), *classes()),
    "nn.CrossEntropyLoss, label smoothing": (nn.CrossEntropyLoss(reduction="none", label_smoothing=0.2), *classes()),
    "nn.BCEWithLogitsLoss [b]": (nn.BCEWithLogitsLoss(reduction="none"), *one_output((7,), True)),
    "nn.BCEWithLogitsLoss [b, 1]": (nn.BCEWithLogitsLoss(reduction="none"), *one_output((7, 1), True)),
    "nn.MSELoss [b]": (nn.MSELoss(reduction="none"), *one_output((7,), False)),
    "nn.MSELoss [b, 1]": (nn.MSELoss(reduction="none"), *one_output((7, 1), False)),
}


@pytest.mark.parametrize("name", list(RECOGNISED))
def test_each_recognised_loss_has_derivatives_equal_to_autograd_in_float64(name):
    loss, outputs, targets = RECOGNISED[name]
    derivatives = closed_form_derivatives(loss)
    assert derivatives is not None
    first, second = derivatives(outputs, targets)
    expected_first, expected_second = autograd_derivatives(loss, outputs, targets)
    torch.testing.assert_close(first, expected_first, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(second, expected_second, rtol=1e-12, atol=1e-14)


class MyCrossEntropy(nn.CrossEntropyLoss):
    def forward(self, outputs, targets):
        return 2 * super().forward(outputs, targets)


@pytest.mark.parametrize(
    "loss",
    [
        nn.CrossEntropyLoss(),  # the mean: not one value per example
        nn.CrossEntropyLoss(reduction="sum"),
        nn.CrossEntropyLoss(reduction="none", weight=torch.ones(4, dtype=torch.float64)),
        nn.CrossEntropyLoss(reduction="none", ignore_index=0),  # a real class ignored
        MyCrossEntropy(reduction="none"),
        nn.BCEWithLogitsLoss(reduction="none", pos_weight=torch.tensor([2.0], dtype=torch.float64)),
        nn.BCEWithLogitsLoss(reduction="none", weight=torch.tensor([2.0], dtype=torch.float64)),
        nn.BCEWithLogitsLoss(),
        nn.MSELoss(),
        nn.L1Loss(reduction="none"),
        SmoothHinge(0.1),
        lambda outputs, targets: nn.functional.cross_entropy(outputs, targets, reduction="none"),
    ],
    ids=[
        "CE mean",
        "CE sum",
        "CE class weights",
        "CE ignore_index=0",
        "CE subclass",
        "BCE pos_weight",
        "BCE weight",
        "BCE mean",
        "MSE mean",
        "L1",
        "smooth hinge",
        "a lambda",
    ],
)
def test_configurations_without_an_implemented_closed_form_are_not_recognised(loss):
    assert closed_form_derivatives(loss) is None


def test_a_loss_with_a_hook_is_not_recognised():
    loss = nn.CrossEntropyLoss(reduction="none")
    loss.register_forward_hook(lambda module, inputs, output: output * 2)
    assert closed_form_derivatives(loss) is None


def test_batches_a_formula_does_not_cover_get_none():
    outputs, labels = classes()
    cross_entropy = closed_form_derivatives(nn.CrossEntropyLoss(reduction="none"))
    assert cross_entropy(outputs, torch.softmax(outputs, 1)) is None  # probability targets
    ignored = labels.clone()
    ignored[2] = -100  # the default ignore_index
    assert cross_entropy(outputs, ignored) is None
    assert cross_entropy(outputs.reshape(7, 4, 1), labels.reshape(7, 1)) is None  # classes along axis 1 of 3
    binary = closed_form_derivatives(nn.BCEWithLogitsLoss(reduction="none"))
    f, t = one_output((7, 1), True)
    assert binary(f, t.reshape(7)) is None  # shapes that torch would broadcast (or refuse)
    assert binary(f.reshape(7, 1).expand(7, 2), t.expand(7, 2)) is None  # two outputs per example
    squared = closed_form_derivatives(nn.MSELoss(reduction="none"))
    assert squared(f, t.reshape(7)) is None


def test_the_readme_loss_gets_the_closed_form_and_the_autograd_hessian():
    """InfluenceExplainer(model, nn.CrossEntropyLoss(reduction="none"), ...) as in the README."""
    split = load_digits(dtype=torch.float64, seed=0)
    x, y, x_test, y_test = split.X_train[:100], split.y_train[:100], split.X_test[:3], split.y_test[:3]
    torch.manual_seed(0)
    model = LogisticRegression(64, 10).double()
    loss = nn.CrossEntropyLoss(reduction="none")
    kwargs = {"weight_decay": 0.01, "solver": "exact", "progress": False}
    fast = InfluenceExplainer(model, loss, x, y, **kwargs)
    general = InfluenceExplainer(model, loss, x, y, **kwargs)
    general.objective.use_general_path()
    assert fast.objective.linear_head is not None and closed_form_derivatives(fast.objective.loss_fn) is not None

    def mean_loss(theta):
        return loss(fast.objective.outputs(x, theta), y).mean() + 0.005 * theta @ theta

    truth = torch.autograd.functional.hessian(mean_loss, fast.objective.theta.clone())
    hessian = fast.hessian.dense()
    assert float(torch.linalg.norm(hessian - truth) / torch.linalg.norm(truth)) < 1e-12
    torch.testing.assert_close(fast.train_gradients(), general.train_gradients(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(fast.influence(x_test, y_test), general.influence(x_test, y_test), rtol=1e-10, atol=0)
