"""I_pert,loss against central finite differences, and self-influence against the influence matrix."""

from __future__ import annotations

import numpy as np
import torch
from closed_form import as_numpy, binary_logistic, binary_logistic_grads
from torch import nn

from influence_widgets import InfluenceExplainer
from influence_widgets.data import cross_entropy_per_example, fit_lbfgs


def test_pert_loss_matches_finite_differences_of_closed_form_influence(binary_logreg):
    t = binary_logreg
    x, y = as_numpy(t.X_train), as_numpy(t.y_train)
    xt, yt = as_numpy(t.X_test[:2]), as_numpy(t.y_test[:2])
    _, hessian = binary_logistic(t.model.linear, x, y, t.weight_decay)
    s_test = np.linalg.solve(hessian, binary_logistic_grads(t.model.linear, xt, yt).T).T  # theta, H fixed
    indices = [3, 40]

    def influence_at(point, label, test_row):
        return -s_test[test_row] @ binary_logistic_grads(t.model.linear, point[None], np.array([label]))[0]

    eps = 1e-5
    expected = np.zeros((2, len(indices), x.shape[1]))
    for row in range(2):
        for k, i in enumerate(indices):
            for j in range(x.shape[1]):
                up, down = x[i].copy(), x[i].copy()
                up[j] += eps
                down[j] -= eps
                expected[row, k, j] = (influence_at(up, y[i], row) - influence_at(down, y[i], row)) / (2 * eps)
    ex = InfluenceExplainer(
        t.model, t.loss_fn, t.X_train, t.y_train, weight_decay=t.weight_decay, solver="exact", progress=False
    )
    estimate = as_numpy(ex.influence_pert_loss(t.X_test[:2], t.y_test[:2], indices))
    assert estimate.shape == (2, len(indices), 64)
    np.testing.assert_allclose(estimate, expected, rtol=1e-6, atol=1e-9)


def test_pert_loss_of_a_tiny_network_matches_finite_differences():
    torch.manual_seed(0)
    x = torch.randn(40, 3, dtype=torch.float64)
    y = (x[:, 0] + x[:, 1] ** 2 > 0.5).long()
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    fit_lbfgs(model, cross_entropy_per_example, x, y, 0.05)
    ex = InfluenceExplainer(
        model, cross_entropy_per_example, x, y, weight_decay=0.05, damping=0.1, solver="exact", progress=False
    )
    x_test, y_test = torch.randn(1, 3, dtype=torch.float64), torch.tensor([1])
    s_test = ex.s_test(x_test, y_test)[0]
    params = list(model.parameters())

    def influence_at(point, label):  # -s_test . grad_theta loss((point, label)), via torch.autograd
        loss = cross_entropy_per_example(model(point[None]), label[None]).sum()
        grads = torch.autograd.grad(loss, params)
        return -float(torch.dot(s_test, torch.cat([g.reshape(-1) for g in grads])))

    eps = 1e-6
    i = 7
    expected = []
    for j in range(3):
        step = torch.zeros(3, dtype=torch.float64)
        step[j] = eps
        expected.append((influence_at(x[i] + step, y[i]) - influence_at(x[i] - step, y[i])) / (2 * eps))
    estimate = ex.influence_pert_loss(x_test, y_test, [i])[0, 0]
    np.testing.assert_allclose(estimate.numpy(), expected, rtol=1e-6, atol=1e-10)
    assert all(not p.requires_grad or p.grad is None for p in params)


def test_self_influence_is_the_diagonal_of_the_train_by_train_influence(multiclass_logreg):
    t = multiclass_logreg
    for solver in ("exact", "cg"):
        ex = InfluenceExplainer(
            t.model,
            t.loss_fn,
            t.X_train[:120],
            t.y_train[:120],
            weight_decay=t.weight_decay,
            solver=solver,
            solver_options={"rtol": 1e-10} if solver == "cg" else None,
            progress=False,
        )
        full = ex.influence(t.X_train[:120], t.y_train[:120])
        self_influence = ex.self_influence()
        assert self_influence.shape == (120,)
        np.testing.assert_allclose(self_influence.numpy(), torch.diagonal(full).numpy(), rtol=1e-7, atol=1e-12)
        assert bool((self_influence <= 0).all())
