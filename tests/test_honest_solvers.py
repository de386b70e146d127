"""Honest solvers: ``converged`` only when the tolerance was met, eigenvalue estimates inside the spectrum in
float32 as in float64, and errors that name the damping which makes H positive definite. Ground truth: explicit
eigenvalues and solves of small explicit matrices in float64 (numpy)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from influence_widgets.core import (
    CGOptions,
    DenseOperator,
    LissaOptions,
    SolverDivergedError,
    lanczos_extremes,
    make_solver,
)
from influence_widgets.core.errors import ConvergenceWarning


class LowRankPlusDamping:
    """H = damping I + U U^T as a matrix-free operator in ``dtype`` (the data term of a network: low rank)."""

    def __init__(self, u: np.ndarray, damping: float, dtype: torch.dtype) -> None:
        self.u = torch.as_tensor(u, dtype=dtype)
        self.shift = damping
        self.size, self.dtype, self.device = u.shape[0], dtype, torch.device("cpu")

    def matvec(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.shift * vectors + self.u @ (self.u.T @ vectors)

    def sample_matvec(self, vectors: torch.Tensor, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        return self.matvec(vectors)


def low_rank(p: int, rank: int, size: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(p, rank)) * size


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("p", "rank", "size"), [(1210, 10, 30.0), (1210, 5, 1.0), (500, 2, 10.0), (300, 40, 3.0)])
@pytest.mark.parametrize("steps", [None, 30])
def test_lanczos_extremes_stay_inside_the_spectrum_of_damping_plus_a_low_rank_term(dtype, p, rank, size, steps):
    u = low_rank(p, rank, size, seed=p + rank)
    truth = np.linalg.eigvalsh(np.eye(p) + u @ u.T)  # float64 ground truth; the smallest is the damping, 1.0
    estimate = lanczos_extremes(LowRankPlusDamping(u, 1.0, dtype), steps=steps, seed=3)
    slack = 10 * torch.finfo(dtype).eps * truth[-1]  # one float32 product rounds by about eps x lambda_max
    assert truth[0] - slack <= estimate.lambda_min <= truth[-1] + slack
    assert truth[0] - slack <= estimate.lambda_max <= truth[-1] + slack
    assert estimate.lambda_max == pytest.approx(truth[-1], rel=1e-5)
    assert estimate.lambda_min == pytest.approx(1.0, abs=max(slack, 1e-6))  # found: damping + low rank is invariant


def test_lissa_refuses_a_scale_below_half_lambda_max_and_names_the_value():
    u = low_rank(40, 3, 1.0, seed=0)
    matrix = 0.5 * np.eye(40) + u @ u.T
    lam_max = np.linalg.eigvalsh(matrix)[-1]
    operator = DenseOperator(torch.as_tensor(matrix), shift=0.5)
    with pytest.raises(SolverDivergedError, match=r"LissaOptions\(scale=.*lambda_max / 2.*at least"):
        make_solver("lissa", LissaOptions(scale=lam_max / 3, depth=200)).solve(
            operator, torch.ones(40, 1, dtype=torch.float64)
        )


def test_lissa_with_a_too_short_depth_does_not_report_converged_and_warns_with_figures():
    u = low_rank(30, 3, 1.0, seed=1)
    matrix = 0.1 * np.eye(30) + u @ u.T
    operator = DenseOperator(torch.as_tensor(matrix), shift=0.1)
    with pytest.warns(ConvergenceWarning, match=r"depth=20\) is short of the \d+ steps"):
        _, diagnostics = make_solver("lissa", LissaOptions(depth=20)).solve(
            operator, torch.ones(30, 1, dtype=torch.float64)
        )
    assert not diagnostics.converged and diagnostics.warnings


def brute_force_depth(rate: float, tail_fraction: float, target: float = 1e-3) -> int:
    """The smallest depth d whose tail-averaged error, mean of (1 - rate)^j over j in (t, d], is <= target."""
    depth = 1
    while True:
        t = min(depth - 1, int(depth * (1 - tail_fraction)))
        if np.mean((1 - rate) ** np.arange(t + 1, depth + 1)) <= target:
            return depth
        depth += 1 if depth < 1000 else depth // 1000


def test_lissa_warns_with_the_figures_when_max_depth_caps_its_depth():
    u = low_rank(30, 3, 3.0, seed=2)
    matrix = 0.01 * np.eye(30) + u @ u.T
    lam_max = np.linalg.eigvalsh(matrix)[-1]
    needed = brute_force_depth(0.01 / (1.1 * lam_max), 0.5)  # from the true lambda_max
    operator = DenseOperator(torch.as_tensor(matrix), shift=0.01)
    with pytest.warns(ConvergenceWarning, match=r"capped at max_depth=50 steps of the (\d+)") as caught:
        _, diagnostics = make_solver("lissa", LissaOptions(max_depth=50)).solve(
            operator, torch.ones(30, 1, dtype=torch.float64)
        )
    reported = int(str(caught[0].message).split("steps of the ")[1].split()[0])
    assert reported == pytest.approx(needed, rel=0.01)  # the figure is the true need
    assert "max_depth=" in str(caught[0].message) and not diagnostics.converged and diagnostics.iterations == 50


def test_lissa_reports_converged_when_it_meets_its_contraction_and_is_then_accurate():
    u = low_rank(30, 3, 1.0, seed=3)
    matrix = 1.0 * np.eye(30) + u @ u.T
    rhs = np.random.default_rng(4).normal(size=(30, 2))
    operator = DenseOperator(torch.as_tensor(matrix), shift=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning on a converged solve
        x, diagnostics = make_solver("lissa", LissaOptions()).solve(operator, torch.as_tensor(rhs))
    truth = np.linalg.solve(matrix, rhs)
    assert diagnostics.converged
    assert np.linalg.norm(x.numpy() - truth) / np.linalg.norm(truth) < 1e-3


@pytest.mark.parametrize("solver", ["cg", "lissa"])
def test_an_indefinite_hessian_gets_an_error_naming_the_damping_that_fixes_it(solver):
    matrix = np.diag([2.0, -0.5, 3.0, 1.0])

    class Damped(DenseOperator):
        weight_decay, damping = 0.0, 0.0

    operator = Damped(torch.as_tensor(matrix))
    with pytest.raises(SolverDivergedError, match=r"damping=(\S+) \(now 0\).*weight_decay") as caught:
        make_solver(solver, None).solve(operator, torch.ones(4, 1, dtype=torch.float64))
    proposed = float(str(caught.value).split("damping=")[1].split()[0])
    assert np.linalg.eigvalsh(matrix + proposed * np.eye(4))[0] > 0  # the value given does fix it


def test_cg_on_a_singular_hessian_without_damping_names_a_value_that_fixes_it():
    u = low_rank(20, 3, 1.0, seed=5)
    matrix = u @ u.T  # rank 3: singular, no weight decay, no damping
    rhs = torch.as_tensor(np.random.default_rng(6).normal(size=(20, 1)))  # not in the range: no solution

    class Undamped(DenseOperator):
        weight_decay, damping = 0.0, 0.0

    with (
        warnings.catch_warnings(),
        pytest.raises(SolverDivergedError, match=r"singular.*damping=(\S+) \(now 0\)") as caught,
    ):
        warnings.simplefilter("ignore", ConvergenceWarning)
        make_solver("cg", CGOptions(max_iter=50)).solve(Undamped(torch.as_tensor(matrix)), rhs)
    proposed = float(str(caught.value).split("damping=")[1].split()[0])
    assert np.linalg.eigvalsh(matrix + proposed * np.eye(20))[0] > 0


def test_cg_reports_converged_only_at_its_tolerance():
    u = low_rank(25, 5, 1.0, seed=7)
    matrix = 0.01 * np.eye(25) + u @ u.T
    rhs = torch.as_tensor(np.random.default_rng(8).normal(size=(25, 2)))
    operator = DenseOperator(torch.as_tensor(matrix), shift=0.01)
    with pytest.warns(ConvergenceWarning):
        x, short = make_solver("cg", CGOptions(rtol=1e-10, max_iter=2)).solve(operator, rhs)
    residual = np.linalg.norm(matrix @ x.numpy() - rhs.numpy(), axis=0) / np.linalg.norm(rhs.numpy(), axis=0)
    assert not short.converged and residual.max() > 1e-10
    x, full = make_solver("cg", CGOptions(rtol=1e-10)).solve(operator, rhs)
    residual = np.linalg.norm(matrix @ x.numpy() - rhs.numpy(), axis=0) / np.linalg.norm(rhs.numpy(), axis=0)
    assert full.converged and residual.max() <= 1e-10
