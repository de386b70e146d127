"""The low-rank (Arnoldi / Lanczos) solver against its closed form and against the exact solve."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from influence_widgets import InfluenceExplainer, InfluenceInputError
from influence_widgets.core import DenseOperator, SolverDivergedError
from influence_widgets.core.solvers import ArnoldiOptions, make_solver, solver_names
from influence_widgets.data import cross_entropy_per_example

pytestmark = pytest.mark.filterwarnings("ignore::influence_widgets.core.errors.NotStationaryWarning")


def spectrum_matrix(p: int, eigenvalues: np.ndarray, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(p, p)))
    return q @ np.diag(eigenvalues) @ q.T


def low_rank_formula(data: np.ndarray, shift: float, rank: int, b: np.ndarray) -> np.ndarray:
    """V (Lambda + s)^-1 V^T b + (b - V V^T b) / s over the top-|lambda| eigenpairs of the data part."""
    values, vectors = np.linalg.eigh(data)
    top = np.argsort(-np.abs(values))[:rank]
    v = vectors[:, top]
    coefficients = v.T @ b
    return v @ (coefficients / (values[top] + shift)[:, None]) + (b - v @ coefficients) / shift


@pytest.mark.parametrize("rank", [4, 12, 30])
def test_the_solve_is_the_low_rank_formula_and_exact_at_full_rank(rank):
    p, shift = 30, 0.3
    data = spectrum_matrix(p, np.concatenate([np.geomspace(20, 1e-3, p - 2), [-0.1, 0.0]]), seed=rank)
    b = np.random.default_rng(1).normal(size=(p, 3))
    operator = DenseOperator(torch.as_tensor(data + shift * np.eye(p)), shift=shift)
    x, diagnostics = make_solver("arnoldi", ArnoldiOptions(rank=rank, krylov_dim=p)).solve(operator, torch.as_tensor(b))
    expected = low_rank_formula(data, shift, rank, b)
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-9, atol=1e-10 * np.abs(expected).max())
    if rank == p:
        np.testing.assert_allclose(x.numpy(), np.linalg.solve(data + shift * np.eye(p), b), rtol=1e-9, atol=1e-11)
    assert diagnostics.converged and f"rank {rank} of {p}" in diagnostics.note


def test_float32_products_keep_float64_eigenpairs():
    p, shift = 40, 0.05
    data = spectrum_matrix(p, np.geomspace(5, 1e-4, p), seed=3)
    b = np.random.default_rng(2).normal(size=(p, 2))
    operator = DenseOperator(torch.as_tensor(data + shift * np.eye(p), dtype=torch.float32), shift=shift)
    x, _ = make_solver("arnoldi", ArnoldiOptions(rank=p, krylov_dim=p)).solve(
        operator, torch.as_tensor(b, dtype=torch.float32)
    )
    exact = np.linalg.solve(data + shift * np.eye(p), b)
    assert np.abs(x.numpy() - exact).max() / np.abs(exact).max() < 1e-4


def network_problem():
    torch.manual_seed(0)
    x = torch.randn(50, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (50,))
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 3)).double()
    return model, x, y


def test_the_explainer_at_full_rank_equals_exact_and_reuses_its_eigenpairs():
    model, x, y = network_problem()
    kwargs = {"weight_decay": 0.01, "damping": 0.5, "progress": False}
    exact = InfluenceExplainer(model, cross_entropy_per_example, x, y, solver="exact", **kwargs)
    p = exact.n_params
    low = InfluenceExplainer(
        model, cross_entropy_per_example, x, y, solver="arnoldi", solver_options={"rank": p, "krylov_dim": p}, **kwargs
    )
    torch.testing.assert_close(low.influence(x[:3], y[:3]), exact.influence(x[:3], y[:3]), rtol=1e-8, atol=1e-11)
    assert low.diagnostics[-1].hessian_vector_products == p
    low.influence(x[3:6], y[3:6])
    assert low.diagnostics[-1].hessian_vector_products == 0, "later test points reuse the eigenpairs"
    damped = low.with_damping(2.0)
    torch.testing.assert_close(
        damped.influence(x[:3], y[:3]), exact.with_damping(2.0).influence(x[:3], y[:3]), rtol=1e-8, atol=1e-11
    )
    assert damped.diagnostics[-1].hessian_vector_products == 0, "another damping reuses the eigenpairs"
    estimate = InfluenceExplainer(model, cross_entropy_per_example, x, y, solver="arnoldi", **kwargs).estimate_cost()
    assert estimate.hvp_points == p * low.n_train  # krylov_dim defaults to min(p, 2 rank + 20) = p here


def test_without_a_shift_the_remainder_is_dropped_with_a_warning_and_negative_curvature_is_refused():
    p = 20
    data = spectrum_matrix(p, np.concatenate([np.geomspace(3, 0.1, 10), np.zeros(10)]), seed=4)
    x, diagnostics = make_solver("arnoldi", ArnoldiOptions(rank=10, krylov_dim=p)).solve(
        DenseOperator(torch.as_tensor(data)), torch.ones(p, 1, dtype=torch.float64)
    )
    assert any("dropped" in w for w in diagnostics.warnings)
    np.testing.assert_allclose(x.numpy(), np.linalg.pinv(data) @ np.ones((p, 1)), rtol=1e-8, atol=1e-9)
    indefinite = spectrum_matrix(p, np.concatenate([[-2.0], np.geomspace(3, 0.1, p - 1)]), seed=5)
    with pytest.raises(SolverDivergedError, match="not positive definite"):
        make_solver("arnoldi", ArnoldiOptions(rank=5, krylov_dim=p)).solve(
            DenseOperator(torch.as_tensor(indefinite + 0.5 * np.eye(p)), shift=0.5),
            torch.ones(p, 1, dtype=torch.float64),
        )


@pytest.mark.parametrize(
    ("options", "message"), [({"rank": 0}, "rank must be >= 1"), ({"rank": 8, "krylov_dim": 4}, "krylov_dim")]
)
def test_bad_options_name_the_fix(options, message):
    with pytest.raises(InfluenceInputError, match=message):
        ArnoldiOptions(**options)


def test_the_registry_knows_it():
    assert "arnoldi" in solver_names()
    model, x, y = network_problem()
    with pytest.raises(InfluenceInputError, match="'arnoldi'"):
        InfluenceExplainer(model, cross_entropy_per_example, x, y, solver="arnold", progress=False)
