"""Block conjugate gradients: shared Krylov space, Galerkin steps, the Gauss-Newton preconditioner, reuse."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from closed_form import as_numpy
from hypothesis import given, settings
from hypothesis import strategies as st
from tanh_network import network_explainer, train_network

from influence_widgets import CGOptions, InfluenceInputError, SolverDivergedError
from influence_widgets.core import DenseOperator, make_solver
from influence_widgets.core.errors import ConvergenceWarning
from influence_widgets.core.solvers.block_cg import block_conjugate_gradients
from influence_widgets.data import load_digits


def spd(seed: int, size: int, condition: float) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(size, size)))
    return torch.as_tensor((q * np.geomspace(1.0, condition, size)) @ q.T)


def relative(a, b) -> float:
    return float(np.linalg.norm(as_numpy(a) - as_numpy(b)) / np.linalg.norm(as_numpy(b)))


@pytest.mark.parametrize("preconditioner", ["identity", "random SPD", "non-symmetric"])
def test_the_galerkin_step_converges_whatever_the_preconditioner(preconditioner):
    matrix = spd(0, 40, 1e4)
    rhs = torch.as_tensor(np.random.default_rng(1).normal(size=(40, 6)))
    rng = np.random.default_rng(2)
    mixing = {
        "identity": None,
        "random SPD": spd(3, 40, 1e3),
        "non-symmetric": torch.as_tensor(np.eye(40) + 0.3 * rng.normal(size=(40, 40))),
    }[preconditioner]
    result = block_conjugate_gradients(
        lambda v: matrix @ v, rhs, rtol=1e-10, max_iter=200, precondition=None if mixing is None else mixing.__matmul__
    )
    truth = torch.linalg.solve(matrix, rhs)
    assert result.converged and relative(result.solution, truth) < 1e-7
    residual = torch.linalg.vector_norm(matrix @ result.solution - rhs, dim=0) / torch.linalg.vector_norm(rhs, dim=0)
    assert float(residual.max()) <= 1e-10 and result.history[-1] <= 1e-10  # the last entry is the true residual


def test_one_shared_space_needs_fewer_products_than_separate_recursions():
    matrix = spd(4, 60, 1e3)
    rhs = torch.as_tensor(np.random.default_rng(5).normal(size=(60, 8)))
    block, block_diag = make_solver("cg", CGOptions(rtol=1e-10)).solve(DenseOperator(matrix), rhs)
    columns, columns_diag = make_solver("cg", CGOptions(rtol=1e-10, block=False)).solve(DenseOperator(matrix), rhs)
    truth = torch.linalg.solve(matrix, rhs)
    assert relative(block, truth) < 1e-7 and relative(columns, truth) < 1e-7
    assert block_diag.hessian_vector_products < columns_diag.hessian_vector_products / 2


def test_block_cg_stops_on_negative_curvature_and_names_damping():
    with pytest.raises(SolverDivergedError, match="damping"):
        make_solver("cg").solve(DenseOperator(torch.diag(torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64))),
                                torch.ones(3, 2, dtype=torch.float64))  # fmt: skip


@pytest.fixture(scope="module")
def network():
    return train_network(n_test=12)


def test_gauss_newton_preconditioning_cuts_the_products_and_keeps_the_answer(network):
    x_test, y_test = network.x_test, network.y_test
    exact = network.explainer("exact").influence(x_test, y_test)
    plain = network.explainer("cg", CGOptions(preconditioner="none", rtol=1e-10))
    preconditioned = network.explainer("cg", CGOptions(rtol=1e-10))
    assert relative(plain.influence(x_test, y_test), exact) < 1e-7
    assert relative(preconditioned.influence(x_test, y_test), exact) < 1e-7
    with_gn, without = preconditioned.diagnostics[-1], plain.diagnostics[-1]
    assert with_gn.preconditioner == "gauss-newton" and without.preconditioner is None
    assert with_gn.hessian_vector_products < 0.8 * without.hessian_vector_products


def test_later_solves_start_from_the_directions_of_earlier_ones(network):
    x_test, y_test = network.x_test, network.y_test
    exact = network.explainer("exact").influence(x_test[6:], y_test[6:])
    reused = network.explainer("cg", CGOptions(rtol=1e-10))
    reused.influence(x_test[:6], y_test[:6])
    scores = reused.influence(x_test[6:], y_test[6:])
    fresh = network.explainer("cg", CGOptions(rtol=1e-10, recycle=False))
    fresh.influence(x_test[:6], y_test[:6])
    fresh_scores = fresh.influence(x_test[6:], y_test[6:])
    assert relative(scores, exact) < 1e-7 and relative(fresh_scores, exact) < 1e-7
    second, fresh_second = reused.diagnostics[-1], fresh.diagnostics[-1]
    assert second.reused_directions > 0 and fresh_second.reused_directions == 0
    assert second.hessian_vector_products < fresh_second.hessian_vector_products


def test_the_preconditioner_is_sized_to_the_solve_and_a_larger_one_serves_smaller_ones(network):
    ex = network.explainer("cg", CGOptions(rtol=1e-10))
    hessian, p, n = ex.hessian, ex.n_params, ex.n_train  # p = 310 parameters, C = 10 outputs, n = 300
    assert [hessian.preconditioner_points(m) for m in (1, 7, 12)] == [256, -(-9 * p // 10), n]
    built = []
    build = hessian.gauss_newton
    hessian.gauss_newton = lambda *args, **kwargs: built.append(kwargs["indices"]) or build(*args, **kwargs)
    x_test, y_test = network.x_test, network.y_test
    exact = network.explainer("exact")
    assert relative(ex.influence(x_test[:1], y_test[:1]), exact.influence(x_test[:1], y_test[:1])) < 1e-7
    assert len(built) == 1 and len(built[0]) == 256  # a seeded random subset of the 300 points
    assert relative(ex.influence(x_test, y_test), exact.influence(x_test, y_test)) < 1e-7
    assert len(built) == 2 and built[1] is None  # all of them, for 12 right-hand sides
    solves = len(ex.diagnostics)
    ex.influence(network.x[:1], network.y[:1])  # a point not asked about before: a new solve
    assert len(ex.diagnostics) == solves + 1 and ex.diagnostics[-1].preconditioner == "gauss-newton"
    assert len(built) == 2


def test_block_cg_options_bad_input():
    with pytest.raises(InfluenceInputError, match="preconditioner must be one of"):
        CGOptions(preconditioner="diagonal")
    with pytest.raises(InfluenceInputError, match="preconditioner_points"):
        CGOptions(preconditioner_points=0)
    with pytest.raises(InfluenceInputError, match="has no Gauss-Newton matrix"):
        make_solver("cg", CGOptions(preconditioner="gauss-newton")).solve(
            DenseOperator(torch.eye(3, dtype=torch.float64)), torch.ones(3, 1, dtype=torch.float64)
        )


def test_reused_directions_stay_right_over_many_float32_solves(network):
    """The explorer's pattern: one more batch of test points after another, in float32, against exact."""
    model = network.model.float()
    x, y = network.x.float(), network.y
    ex = network_explainer(model, x, y, "cg")
    reference = network_explainer(model.double(), x.double(), y, "exact")
    split = load_digits(dtype=torch.float32, seed=1)
    for k in range(12):
        x_test, y_test = split.X_test[5 * k : 5 * k + 5], split.y_test[5 * k : 5 * k + 5]
        scores = ex.influence(x_test, y_test)
        assert ex.diagnostics[-1].converged
        assert relative(scores, reference.influence(x_test.double(), y_test)) < 1e-3, k
        assert ex.solver._basis.size <= ex.n_params / 2
    assert any(d.reused_directions > 0 for d in ex.diagnostics)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(10, 120), st.floats(1.0, 1e3), st.integers(1, 4), st.booleans())
def test_converged_means_the_true_residual_meets_rtol_in_float32(seed, size, condition, n_rhs, block):
    matrix = spd(seed, size, condition).float()
    rhs = torch.as_tensor(np.random.default_rng(seed + 1).normal(size=(size, n_rhs))).float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # float32 may not reach 1e-5; it must say so
        x, diagnostics = make_solver("cg", CGOptions(block=block)).solve(DenseOperator(matrix), rhs)
    b_norm = torch.linalg.vector_norm(rhs.double(), dim=0)
    true = torch.linalg.vector_norm(matrix.double() @ x.double() - rhs.double(), dim=0) / b_norm
    # b - Hx evaluated in float32 is itself only known to about eps ||H|| ||x|| / ||b||
    known_to = 10 * torch.finfo(torch.float32).eps * condition * torch.linalg.vector_norm(x.double(), dim=0) / b_norm
    if diagnostics.converged:
        assert bool((true <= 1e-5 + known_to).all()), (true, known_to)
    assert diagnostics.residuals[-1] == pytest.approx(float(true.max()), rel=0.5, abs=float(known_to.max()))
