"""A small non-linear network: the explicit Hessian from torch.autograd, and CG/LiSSA against exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from closed_form import as_numpy
from tanh_network import DAMPING, WEIGHT_DECAY, mlp, train_network
from tanh_network import network_explainer as make
from torch.func import functional_call

from influence_widgets import CGOptions, InfluenceExplainer, LissaOptions
from influence_widgets.data import cross_entropy_per_example


@pytest.fixture(scope="module")
def network():
    trained = train_network(n_test=5)
    return trained.model, trained.x, trained.y, trained.x_test, trained.y_test


def autograd_influence(model, x, y, x_test, y_test):
    """Influence through torch.autograd.functional.hessian of the full objective (independent path)."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def unflatten(t):
        out, start = {}, 0
        for name, shape in zip(names, shapes):
            size = int(np.prod(shape))
            out[name] = t[start : start + size].reshape(shape)
            start += size
        return out

    def mean_loss(t, xs, ys):
        return cross_entropy_per_example(functional_call(model, unflatten(t), (xs,)), ys).mean()

    hessian = torch.autograd.functional.hessian(lambda t: mean_loss(t, x, y), theta).numpy()
    hessian += (WEIGHT_DECAY + DAMPING) * np.eye(len(theta))

    def grads(xs, ys):
        rows = []
        for xi, yi in zip(xs, ys):
            t = theta.clone().requires_grad_(True)
            rows.append(torch.autograd.grad(mean_loss(t, xi[None], yi[None]), t)[0].numpy())
        return np.stack(rows)

    return -grads(x_test, y_test) @ np.linalg.solve(hessian, grads(x, y).T), hessian


def test_network_has_a_few_hundred_parameters(network):
    model = network[0]
    assert 250 <= sum(p.numel() for p in model.parameters()) <= 400


def test_exact_matches_the_autograd_hessian(network):
    model, x, y, x_test, y_test = network
    truth, hessian = autograd_influence(model, x, y, x_test, y_test)
    ex = make(model, x, y, "exact")
    np.testing.assert_allclose(as_numpy(ex.solver.hessian(ex.hessian)), hessian, rtol=1e-9, atol=1e-12)
    estimate = as_numpy(ex.influence(x_test, y_test))
    assert np.linalg.norm(estimate - truth) / np.linalg.norm(truth) < 1e-8


def test_cg_and_lissa_agree_with_damped_exact(network):
    model, x, y, x_test, y_test = network
    exact = as_numpy(make(model, x, y, "exact").influence(x_test, y_test))
    cg = as_numpy(make(model, x, y, "cg", CGOptions(rtol=1e-10)).influence(x_test, y_test))
    assert np.linalg.norm(cg - exact) / np.linalg.norm(exact) < 1e-6
    lissa = as_numpy(make(model, x, y, "lissa", LissaOptions(batch_size=100)).influence(x_test, y_test))
    assert np.corrcoef(lissa.ravel(), exact.ravel())[0, 1] > 0.99


def test_curvature_finds_the_smallest_eigenvalue_of_the_explicit_hessian(network):
    _, x, y, *_ = network
    torch.manual_seed(3)
    untrained = mlp()
    ex = InfluenceExplainer(untrained, cross_entropy_per_example, x, y, solver="exact", progress=False)
    eigs = np.linalg.eigvalsh(as_numpy(ex.solver.hessian(ex.hessian)))
    with pytest.warns(Warning, match="negative eigenvalue"):
        report = ex.curvature()
    assert report.eigenvalues.lambda_min == pytest.approx(eigs[0], rel=1e-9)
    assert report.suggested_damping >= abs(eigs[0])
    lanczos = InfluenceExplainer(untrained, cross_entropy_per_example, x, y, solver="cg", progress=False)
    with pytest.warns(Warning, match="negative eigenvalue"):
        estimate = lanczos.curvature(steps=80).eigenvalues
    assert estimate.lambda_min == pytest.approx(eigs[0], rel=1e-3)
    assert estimate.lambda_max == pytest.approx(eigs[-1], rel=1e-6)


def test_positive_definite_damps_by_the_suggestion_and_reuses_the_hessian(network):
    _, x, y, x_test, y_test = network
    torch.manual_seed(3)
    untrained = mlp()
    ex = InfluenceExplainer(untrained, cross_entropy_per_example, x, y, solver="exact", progress=False)
    eigs = np.linalg.eigvalsh(as_numpy(ex.solver.hessian(ex.hessian)))
    damped, report = ex.positive_definite()
    assert report.eigenvalues.lambda_min == pytest.approx(eigs[0], rel=1e-9)
    assert damped is not ex and damped.damping == pytest.approx(1.1 * abs(eigs[0]))
    assert ex.damping == 0.0  # the original is unchanged
    hessian = as_numpy(damped.solver.hessian(damped.hessian))
    np.testing.assert_allclose(hessian, as_numpy(ex.solver.hessian(ex.hessian)) + damped.damping * np.eye(len(eigs)))
    fresh = InfluenceExplainer(
        untrained, cross_entropy_per_example, x, y, damping=damped.damping, solver="exact", progress=False
    )
    torch.testing.assert_close(damped.influence(x_test, y_test), fresh.influence(x_test, y_test))
    trained_ex = make(network[0], x, y, "exact")
    assert trained_ex.positive_definite()[0] is trained_ex
