"""curvature="gauss_newton": H is the generalised Gauss-Newton matrix, against an explicit float64 one."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.func import functional_call, jacrev

from influence_widgets import CGOptions, InfluenceExplainer, InfluenceInputError, LissaOptions
from influence_widgets.data import cross_entropy_per_example

pytestmark = pytest.mark.filterwarnings("ignore::influence_widgets.core.errors.NotStationaryWarning")

WEIGHT_DECAY, DAMPING = 0.01, 0.05


def problem(seed: int = 0):
    torch.manual_seed(seed)
    x = torch.randn(40, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (40,))
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    return model, x, y


def explicit_gauss_newton(model: nn.Module, x: torch.Tensor, y: torch.Tensor, shift: float) -> torch.Tensor:
    """(1/n) sum_i J_i^T A_i J_i + shift I with J from jacrev and A the autograd Hessian of the loss in its outputs."""
    names = [name for name, _ in model.named_parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    shapes = [p.shape for p in model.parameters()]

    def outputs(t: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        parts, start = {}, 0
        for name, shape in zip(names, shapes):
            parts[name] = t[start : start + shape.numel()].reshape(shape)
            start += shape.numel()
        return functional_call(model, parts, (xi[None],))[0]

    total = torch.zeros(len(theta), len(theta), dtype=torch.float64)
    for xi, yi in zip(x, y):
        jacobian = jacrev(outputs)(theta, xi)
        out = outputs(theta, xi).detach()
        curvature = torch.autograd.functional.hessian(
            lambda f, yi=yi: cross_entropy_per_example(f[None], yi[None]).sum(), out
        )
        total += jacobian.T @ curvature @ jacobian
    return total / len(x) + shift * torch.eye(len(theta), dtype=torch.float64)


def make(model, x, y, **kwargs):
    kwargs = {
        "weight_decay": WEIGHT_DECAY,
        "damping": DAMPING,
        "progress": False,
        "curvature": "gauss_newton",
        **kwargs,
    }
    return InfluenceExplainer(model, cross_entropy_per_example, x, y, **kwargs)


def test_the_operator_and_its_explicit_form_are_the_gauss_newton_matrix():
    model, x, y = problem()
    truth = explicit_gauss_newton(model, x, y, WEIGHT_DECAY + DAMPING)
    ex = make(model, x, y, solver="exact")
    torch.testing.assert_close(ex.solver.hessian(ex.hessian), truth, rtol=1e-10, atol=1e-12)
    vectors = torch.randn(ex.n_params, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(ex.hessian.matvec(vectors), truth @ vectors, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("solver", "options", "rtol"),
    [
        ("cg", CGOptions(rtol=1e-12), 1e-8),
        ("arnoldi", {"rank": 38, "krylov_dim": 38}, 1e-8),
        ("lissa", LissaOptions(depth=3000, batch_size=40), 1e-4),
    ],
)
def test_every_solver_solves_with_the_gauss_newton_matrix(solver, options, rtol):
    model, x, y = problem()
    truth = explicit_gauss_newton(model, x, y, WEIGHT_DECAY + DAMPING)
    ex = make(model, x, y, solver=solver, solver_options=options)
    gradients = ex.test_gradients(x[:2], y[:2])
    expected = -gradients @ torch.linalg.solve(truth, ex.train_gradients().T)
    torch.testing.assert_close(ex.influence(x[:2], y[:2]), expected, rtol=rtol, atol=rtol * float(expected.abs().max()))


def test_a_linear_model_has_its_hessian_as_gauss_newton_matrix():
    torch.manual_seed(2)
    x, y = torch.randn(50, 6, dtype=torch.float64), torch.randint(0, 3, (50,))
    model = nn.Linear(6, 3).double()
    kwargs = {"weight_decay": WEIGHT_DECAY, "progress": False, "solver": "exact"}
    hessian = InfluenceExplainer(model, cross_entropy_per_example, x, y, **kwargs)
    gauss_newton = InfluenceExplainer(model, cross_entropy_per_example, x, y, curvature="gauss_newton", **kwargs)
    torch.testing.assert_close(
        gauss_newton.influence(x[:3], y[:3]), hessian.influence(x[:3], y[:3]), rtol=1e-10, atol=0
    )


def test_it_is_positive_semi_definite_where_the_hessian_is_not():
    model, x, y = problem(3)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3)  # far from a minimum: the loss's curvature in the parameters is indefinite
    kwargs = {"weight_decay": 0.0, "damping": 0.0, "solver": "exact"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hessian_report = make(model, x, y, curvature="hessian", **kwargs).curvature()
        gauss_newton_report = make(model, x, y, **kwargs).curvature()
    assert hessian_report.eigenvalues.lambda_min < -1e-3
    assert gauss_newton_report.eigenvalues.lambda_min > -1e-12 * gauss_newton_report.eigenvalues.lambda_max


def test_bad_curvature_and_newton_refinement_name_the_fix():
    model, x, y = problem()
    with pytest.raises(InfluenceInputError, match="curvature must be one of"):
        make(model, x, y, curvature="fisher")
    with pytest.raises(InfluenceInputError, match="refine=None"):
        make(model, x, y).predicted_loss_change(x[:1], y[:1], refine="newton", top_k=2)
    derived = make(model, x, y).with_damping(1.0)
    assert derived.settings.curvature == "gauss_newton"
