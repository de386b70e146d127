"""The Gauss-Newton matrix from output Jacobians, the affine parameter group, and the explicit Hessian from both."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from closed_form import as_numpy, multiclass_logistic
from torch import nn
from torch.func import functional_call

from influence_widgets import InfluenceExplainer
from influence_widgets.core.curvature.affine import affine_parameter_mask
from influence_widgets.core.curvature.gauss_newton import gauss_newton_sum, output_hessians
from influence_widgets.core.curvature.objective import Objective
from influence_widgets.data import LogisticRegression, cross_entropy_per_example, load_digits


@pytest.fixture(scope="module")
def digits():
    split = load_digits(dtype=torch.float64, seed=2)
    return split.X_train[:40], split.y_train[:40]


def tanh_network() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(64, 3), nn.Tanh(), nn.Linear(3, 10)).double()


def flat_theta(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def outputs_at(model: nn.Module, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    shapes = [(name, p.shape, p.numel()) for name, p in model.named_parameters()]
    pieces = dict(zip([n for n, *_ in shapes], torch.split(theta, [k for *_, k in shapes])))
    return functional_call(model, {n: pieces[n].view(s) for n, s, _ in shapes}, (x,))


def test_gauss_newton_sum_is_jacobian_transpose_softmax_hessian_jacobian(digits):
    """Against torch.autograd.functional.jacobian per example and the softmax Hessian diag(p) - p p^T."""
    x, y = digits
    model = tanh_network()
    theta = flat_theta(model)
    expected = np.zeros((len(theta), len(theta)))
    for xi in x:
        jacobian = torch.autograd.functional.jacobian(lambda t, xi=xi: outputs_at(model, t, xi[None])[0], theta)
        probs = torch.softmax(outputs_at(model, theta, xi[None])[0], 0).detach()
        curvature = torch.diag(probs) - torch.outer(probs, probs)
        expected += (jacobian.T @ curvature @ jacobian).numpy()
    objective = Objective(model, cross_entropy_per_example)
    for positive_part in (False, True):  # the softmax Hessian is PSD: its positive part is itself
        found = as_numpy(gauss_newton_sum(objective, [(x[:25], y[:25]), (x[25:], y[25:])], None, positive_part))
        np.testing.assert_allclose(found, expected, rtol=1e-9, atol=1e-12)
    columns = torch.tensor([0, 5, 70, 200])
    found = as_numpy(gauss_newton_sum(objective, [(x, y)], columns))
    np.testing.assert_allclose(found, expected[np.ix_(columns, columns)], rtol=1e-9, atol=1e-12)


def test_positive_part_drops_negative_curvature_in_output_space(digits):
    x, y = digits
    objective = Objective(tanh_network(), lambda out, target: -(out**2).sum(1))  # A = -2 I: no positive part
    assert float(gauss_newton_sum(objective, [(x, y)], None, positive_part=True).abs().max()) == 0.0
    negative = as_numpy(gauss_newton_sum(objective, [(x, y)], None))
    assert np.linalg.eigvalsh(negative)[0] < 0


def test_the_affine_group_is_all_of_a_linear_model_and_the_last_layer_of_a_network(digits):
    x, _ = digits
    logistic = Objective(LogisticRegression(64, 10).double(), cross_entropy_per_example)
    assert bool(affine_parameter_mask(logistic, x[:8]).all())
    network = Objective(tanh_network(), cross_entropy_per_example)
    mask = affine_parameter_mask(network, x[:8])
    assert mask.tolist() == [False] * (64 * 3 + 3) + [True] * (3 * 10 + 10)
    stacked = Objective(nn.Sequential(nn.Linear(64, 3), nn.Linear(3, 10)).double(), cross_entropy_per_example)
    mask = affine_parameter_mask(stacked, x[:8])  # affine in each layer, bilinear in the two together
    assert mask.tolist() == [False] * (64 * 3 + 3) + [True] * (3 * 10 + 10)


def test_explicit_hessian_of_logistic_regression_takes_no_hessian_vector_product(multiclass_logreg, monkeypatch):
    t = multiclass_logreg
    ex = InfluenceExplainer(t.model, t.loss_fn, t.X_train, t.y_train, weight_decay=t.weight_decay, progress=False)
    assert ex.solver_name == "exact"

    def no_products(vectors):
        raise AssertionError("a Hessian-vector product was taken")

    monkeypatch.setattr(ex.hessian, "matvec", no_products)
    _, hessian = multiclass_logistic(t.model.linear, as_numpy(t.X_train), t.y_train.numpy(), t.weight_decay)
    np.testing.assert_allclose(as_numpy(ex.solver.hessian(ex.hessian)), hessian, rtol=1e-10, atol=1e-13)


def test_an_affine_group_seen_only_on_the_sample_is_checked_on_every_point(digits):
    """A ReLU layer dead on the first training points looks affine there; the check over all points refuses it."""
    x, y = digits
    x = x.clone()
    x[:8] = 0.0  # the sample the group is searched on
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 3), nn.ReLU(), nn.Linear(3, 10)).double()
    with torch.no_grad():
        model[0].bias.fill_(-0.05)  # relu(b) = 0 on the zero rows, alive elsewhere
        model[0].weight.abs_()
    ex = InfluenceExplainer(model, cross_entropy_per_example, x, y, solver="exact", damping=0.1, progress=False)
    assert bool(ex.hessian.affine.on_sample().all())  # fooled by the sample
    assert not bool(ex.hessian.affine_mask().any())  # but not by the whole training set
    theta = flat_theta(model)
    autograd = torch.autograd.functional.hessian(
        lambda t: cross_entropy_per_example(outputs_at(model, t, x), y).mean(), theta
    ) + 0.1 * torch.eye(len(theta), dtype=torch.float64)
    np.testing.assert_allclose(as_numpy(ex.solver.hessian(ex.hessian)), autograd.numpy(), rtol=1e-9, atol=1e-12)


def test_auto_takes_exact_beyond_3000_parameters_only_where_the_explicit_hessian_is_cheap():
    x, y = torch.rand(20, 400, dtype=torch.float64), torch.randint(0, 10, (20,))
    linear = nn.Linear(400, 10).double()  # 4,010 parameters, every one affine: no Hessian-vector product
    assert InfluenceExplainer(linear, cross_entropy_per_example, x, y, progress=False).solver_name == "exact"
    network = nn.Sequential(nn.Linear(400, 9), nn.Tanh(), nn.Linear(9, 10)).double()  # 3,709, of which 3,609 curved
    assert InfluenceExplainer(network, cross_entropy_per_example, x, y, progress=False).solver_name == "cg"


def test_an_indefinite_loss_curvature_keeps_the_affine_block_exact(digits):
    """Cauchy loss log(1 + (f - y)^2): its output-space Hessian is negative for large residuals."""
    x, _ = digits
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(64, 3), nn.Tanh(), nn.Linear(3, 1)).double()
    targets = 3 * torch.randn(len(x), dtype=torch.float64)

    def cauchy(out, y):
        return torch.log1p((out.squeeze(-1) - y) ** 2)

    ex = InfluenceExplainer(model, cauchy, x, targets, weight_decay=0.01, damping=0.1, solver="exact", progress=False)
    objective = ex.objective
    assert float(output_hessians(objective, x, targets).min()) < 0  # A is indefinite at some points
    assert int(ex.hessian.affine_mask().sum()) == 3 + 1  # the last layer
    theta = flat_theta(model)
    autograd = torch.autograd.functional.hessian(lambda t: cauchy(outputs_at(model, t, x), targets).mean(), theta)
    autograd += 0.11 * torch.eye(len(theta), dtype=torch.float64)
    np.testing.assert_allclose(as_numpy(ex.solver.hessian(ex.hessian)), autograd.numpy(), rtol=1e-9, atol=1e-12)
