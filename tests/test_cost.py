"""The cost preview counts the work each solver will do and the memory it needs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from influence_widgets import CGOptions, InfluenceExplainer, InfluenceInputError, LissaOptions
from influence_widgets.data import cross_entropy_per_example, load_digits


def make(trained, **kwargs):
    return InfluenceExplainer(
        trained.model,
        trained.loss_fn,
        trained.X_train,
        trained.y_train,
        weight_decay=trained.weight_decay,
        progress=False,
        **kwargs,
    )


def test_exact_counts_the_hessian_build_once_and_the_gradient_pass_once(binary_logreg):
    ex = make(binary_logreg, solver="exact")
    n, p = ex.n_train, ex.n_params
    before = ex.estimate_cost(n_test=5, sample_size=16)
    # logistic regression is affine in every parameter: its Hessian is a Gauss-Newton matrix, no product needed
    assert (before.gradient_points, before.hvp_points, before.gauss_newton_points) == (n + 5, 0, n)
    assert before.memory_bytes["gradient cache"] == n * p * 8
    assert before.memory_bytes["explicit Hessian"] == 2 * p * p * 8
    assert before.seconds > 0 and math.isfinite(before.seconds) and not before.upper_bound
    ex.influence(binary_logreg.X_test, binary_logreg.y_test)
    after = ex.estimate_cost(n_test=5)
    assert (after.gradient_points, after.hvp_points, after.gauss_newton_points) == (5, 0, 0)
    assert after.seconds < before.seconds
    assert "exact" in after.summary()


def test_a_network_counts_a_product_per_parameter_outside_its_last_layer():
    torch.manual_seed(0)
    split = load_digits(dtype=torch.float64, seed=0)
    model = nn.Sequential(nn.Linear(64, 3), nn.Tanh(), nn.Linear(3, 10)).double()
    ex = InfluenceExplainer(
        model, cross_entropy_per_example, split.X_train, split.y_train, solver="exact", progress=False
    )
    estimate = ex.estimate_cost(n_test=2, sample_size=16)
    assert estimate.hvp_points == ex.n_train * (64 * 3 + 3) and estimate.gauss_newton_points == ex.n_train


def test_iterative_solvers_give_an_upper_bound_from_their_options(binary_logreg):
    cg = make(binary_logreg, solver="cg", solver_options=CGOptions(max_iter=50)).estimate_cost(n_test=3)
    assert cg.upper_bound and cg.hvp_points == 50 * 3 * cg.n_train
    assert cg.gauss_newton_points == cg.n_train and cg.memory_bytes["preconditioner"] == 2 * cg.n_params**2 * 8
    lissa = make(
        binary_logreg, solver="lissa", solver_options=LissaOptions(scale=10.0, depth=200, batch_size=32, repeats=2)
    ).estimate_cost(n_test=4)
    assert not lissa.upper_bound and lissa.hvp_points == 2 * 200 * 32 * 4
    streamed = make(binary_logreg, cache_gradients=False)
    streamed.influence(binary_logreg.X_test, binary_logreg.y_test)
    estimate = streamed.estimate_cost(n_test=2)
    assert estimate.gradient_points == streamed.n_train + 2 and estimate.memory_bytes["gradient cache"] == 0


@pytest.mark.parametrize("kwargs", [{"n_test": 0}, {"sample_size": 0}, {"n_test": 1.5}])
def test_cost_preview_bad_input(binary_logreg, kwargs):
    with pytest.raises(InfluenceInputError, match="must be a positive integer"):
        make(binary_logreg).estimate_cost(**kwargs)
