"""Least-squares linear regression: influence equals the analytic formula."""

from __future__ import annotations

import numpy as np
import torch
from closed_form import as_numpy, influence_matrix, least_squares
from torch import nn

from influence_widgets import CGOptions, InfluenceExplainer
from influence_widgets.data import squared_error_per_example


def fitted_ridge(x: np.ndarray, y: np.ndarray, weight_decay: float) -> nn.Linear:
    """The exact minimiser of (1/n) sum (1/2)(theta . x~ - y)^2 + (lambda/2)||theta||^2."""
    xt = np.hstack([x, np.ones((len(x), 1))])
    theta = np.linalg.solve(xt.T @ xt / len(x) + weight_decay * np.eye(xt.shape[1]), xt.T @ y / len(x))
    layer = nn.Linear(x.shape[1], 1).double()
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(theta[:-1]).reshape(1, -1))
        layer.bias.copy_(torch.as_tensor(theta[-1:]))
    return layer


def test_least_squares_influence_matches_the_analytic_formula():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 5))
    y = x @ rng.normal(size=5) + 0.3 * rng.normal(size=120)
    x_test = rng.normal(size=(4, 5))
    y_test = x_test @ rng.normal(size=5)
    weight_decay = 0.05
    model = fitted_ridge(x, y, weight_decay)
    train_grads, hessian = least_squares(model, x, y, weight_decay)
    test_grads, _ = least_squares(model, x_test, y_test, weight_decay)
    truth = influence_matrix(test_grads, train_grads, hessian)
    for solver, options in (("exact", None), ("cg", CGOptions(rtol=1e-12))):
        ex = InfluenceExplainer(
            model,
            squared_error_per_example,
            x,
            y,
            weight_decay=weight_decay,
            solver=solver,
            solver_options=options,
            progress=False,
        )
        estimate = as_numpy(ex.influence(x_test, y_test))
        np.testing.assert_allclose(estimate, truth, rtol=1e-8, atol=1e-12)
