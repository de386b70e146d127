"""Property tests of the solvers on random symmetric positive-definite systems."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from influence_widgets.core import (
    CGOptions,
    DenseOperator,
    ExactOptions,
    LissaOptions,
    SolverDivergedError,
    make_solver,
)
from influence_widgets.core.errors import ConvergenceWarning


def spd_matrix(seed: int, size: int, condition: float) -> tuple[np.ndarray, float]:
    """Q diag(eigs) Q^T with eigenvalues log-spaced in [1, condition] times a random scale."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(size, size)))
    scale = 10 ** rng.uniform(-2, 2)
    eigs = scale * np.geomspace(1.0, condition, size)
    return (q * eigs) @ q.T, scale


def system(seed, size, condition, n_rhs):
    matrix, smallest = spd_matrix(seed, size, condition)
    rhs = np.random.default_rng(seed + 1).normal(size=(size, n_rhs))
    return matrix, smallest, rhs, np.linalg.solve(matrix, rhs)


def run(name, options, matrix, rhs, shift=0.0):
    solver = make_solver(name, options)
    x, diagnostics = solver.solve(DenseOperator(torch.as_tensor(matrix), shift=shift), torch.as_tensor(rhs))
    return x.numpy(), diagnostics


def rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


systems = st.tuples(st.integers(0, 10_000), st.integers(2, 40), st.floats(1.0, 1e8), st.integers(1, 5))


@settings(max_examples=40, deadline=None)
@given(systems)
def test_exact_solves_any_spd_system_to_its_conditioning(params):
    seed, size, condition, n_rhs = params
    matrix, _, rhs, truth = system(seed, size, condition, n_rhs)
    x, diagnostics = run("exact", ExactOptions(), matrix, rhs)
    assert rel(x, truth) < 1e-13 * condition + 1e-12
    assert diagnostics.converged and diagnostics.residuals[-1] < 1e-13 * condition + 1e-12


@settings(max_examples=40, deadline=None)
@given(systems, st.booleans())
def test_cg_reaches_its_residual_tolerance_on_badly_conditioned_systems(params, block):
    seed, size, condition, n_rhs = params
    matrix, _, rhs, truth = system(seed, size, condition, n_rhs)
    rtol = max(1e-10, 1e-14 * condition)  # the attainable accuracy is about eps * condition
    x, diagnostics = run("cg", CGOptions(rtol=rtol, max_iter=20 * size, block=block), matrix, rhs)
    assert diagnostics.converged
    residual = np.linalg.norm(matrix @ x - rhs, axis=0) / np.linalg.norm(rhs, axis=0)
    assert residual.max() <= rtol * 1.001
    assert diagnostics.residuals[-1] <= rtol
    assert rel(x, truth) < 2 * rtol * condition


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 30), st.floats(1.0, 100.0), st.integers(1, 3))
def test_lissa_converges_given_a_lower_bound_on_the_spectrum(seed, size, condition, n_rhs):
    matrix, smallest, rhs, truth = system(seed, size, condition, n_rhs)
    x, diagnostics = run("lissa", LissaOptions(), matrix, rhs, shift=smallest * 0.999)
    assert np.isfinite(x).all()
    assert rel(x, truth) < 1e-2
    assert diagnostics.scale >= np.linalg.eigvalsh(matrix)[-1]


@pytest.mark.parametrize("block", [True, False])
def test_cg_warns_with_the_true_residual_when_it_stops_early(block):
    matrix, _, rhs, _ = system(0, 30, 1e6, 2)
    with pytest.warns(ConvergenceWarning, match=r"relative residual .* > rtol"):
        x, diagnostics = run("cg", CGOptions(rtol=1e-12, max_iter=3, block=block), matrix, rhs)
    assert not diagnostics.converged and diagnostics.iterations == 3 and len(diagnostics.residuals) == 4
    true = np.linalg.norm(matrix @ x - rhs, axis=0) / np.linalg.norm(rhs, axis=0)
    assert diagnostics.residuals[-1] == pytest.approx(true.max(), rel=1e-9)  # the last entry is b - Hx itself


def test_cg_refuses_an_indefinite_matrix_and_names_damping():
    matrix = np.diag([1.0, -2.0, 3.0])
    with pytest.raises(SolverDivergedError, match="damping"):
        run("cg", None, matrix, np.ones((3, 1)))


def test_lissa_stops_on_divergence_and_names_the_setting():
    matrix, _, rhs, _ = system(1, 10, 10.0, 1)
    lam_max = np.linalg.eigvalsh(matrix)[-1]
    with pytest.raises(SolverDivergedError, match=r"LissaOptions\(scale=\.\.\.\)"):
        run("lissa", LissaOptions(scale=lam_max / 4, depth=500), matrix, rhs)


def test_lissa_refuses_an_indefinite_matrix_without_damping():
    with pytest.raises(SolverDivergedError, match="damping"):
        run("lissa", LissaOptions(), np.diag([1.0, -2.0, 3.0]), np.ones((3, 1)))
