"""A cost preview before long work: passes, Hessian-vector products, memory and time, from a measured sample.

Work is counted in three units measured on a few training points in this process: one per-example
gradient (one point), one point-vector Hessian product (one point times one vector; a full
Hessian-vector product over the training set is n of them) and one point's share of the Gauss-Newton
matrix (its output Jacobian and its J^T A J), which the explicit Hessian and CG's preconditioner use.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .curvature.gauss_newton import gauss_newton_sum
from .curvature.module_blocks import block_columns, find_module_blocks
from .memory import FRACTION_USABLE, available_bytes

if TYPE_CHECKING:
    from .explainer_view import ExplainerView

_TIMED_GAUSS_NEWTON_COLUMNS = 512  # above this many parameters the Gauss-Newton sum is timed on columns
_TIMED_COLUMNS = 64  # columns per layer-wise block timed for the explicit Hessian's preview (fewer: overhead)


@dataclass(frozen=True)
class CostEstimate:
    """Expected work for ``n_test`` new test points against all ``n_train`` training points.

    ``gradient_points``: per-example gradients to compute (training passes x n + test points).
    ``hvp_points``: point-vector Hessian products (an upper bound for CG, which may stop early).
    ``gauss_newton_points``: training points whose output Jacobians enter a Gauss-Newton matrix (the
    explicit Hessian's affine block, or CG's preconditioner), if one is still to be built.
    ``memory_bytes``: what the result needs beyond the model: gradient cache, explicit Hessian (or CG's
    preconditioner), working chunk, and the Krylov directions block CG keeps for reuse (at most).
    ``seconds``: the two counts times their measured unit costs, plus a factorisation for ``exact``.
    """

    solver: str
    n_train: int
    n_params: int
    n_test: int
    gradient_points: int
    hvp_points: int
    gauss_newton_points: int
    memory_bytes: dict[str, int]
    seconds_per_gradient: float
    seconds_per_hvp: float
    seconds_per_gauss_newton_point: float
    seconds: float
    upper_bound: bool
    available_bytes: int | None = None

    @property
    def fits_in_memory(self) -> bool:
        """Whether ``memory_bytes`` together fit in 80 % of the memory free when the preview ran."""
        return self.available_bytes is None or sum(self.memory_bytes.values()) <= FRACTION_USABLE * self.available_bytes

    @property
    def gradient_passes(self) -> float:
        """Per-example gradient work in passes over the training set."""
        return self.gradient_points / self.n_train

    @property
    def hvp_passes(self) -> float:
        """Hessian-vector work in full-training-set products."""
        return self.hvp_points / self.n_train

    def summary(self) -> str:
        bound = "at most " if self.upper_bound else "about "
        memory = ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in self.memory_bytes.items() if v)
        gauss_newton = (
            f", a Gauss-Newton matrix of {self.gauss_newton_points} points" if self.gauss_newton_points else ""
        )
        warning = ""
        if not self.fits_in_memory:
            warning = (
                f"; DOES NOT FIT: {self.available_bytes / 2**30:.1f} GiB free, use solver='cg' or fewer "
                "parameters (params=[...])"
            )
        return (
            f"{self.solver}: {self.gradient_passes:.2f} gradient passes and {bound}{self.hvp_passes:.1f} "
            f"Hessian-vector passes over {self.n_train} training points ({self.n_params} parameters){gauss_newton}; "
            f"memory {memory}; estimated time {bound}{self.seconds:.3g} s{warning}"
        )


def _timed(fn, repeats: int = 3) -> float:
    fn()  # warm-up: the first vmapped call compiles and allocates
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def _seconds_per_point_for_columns(explainer: ExplainerView, x: torch.Tensor, y: torch.Tensor, per_hvp: float) -> float:
    """Seconds per training point for all curved columns of the explicit Hessian: the layer-wise blocks
    timed on the sample (64 columns each) where the model has them, else one full product per column."""
    hessian, objective = explainer.hessian, explainer.objective
    if hessian.curved_count() == 0:  # every column from Jacobians (a linear model, or curvature="gauss_newton")
        return 0.0
    curved = hessian.curved_mask()
    blocks = find_module_blocks(objective, x[:1], curved) if hessian.module_blocks and bool(curved.any()) else None
    if blocks is None:
        return int(curved.sum()) * per_hvp
    total = 0.0
    for block in blocks:
        columns = block.columns[:_TIMED_COLUMNS]
        seconds = _timed(lambda block=block, columns=columns: block_columns(objective, block, x, y, columns))
        total += seconds / (len(x) * len(columns)) * len(block.columns)
    return total


def _seconds_per_gauss_newton_point(objective, x: torch.Tensor, y: torch.Tensor) -> float:
    """Seconds per training point of the p x p Gauss-Newton sum, timed without forming it when p x p is large:
    on k and k/2 of its columns (time = a + b k^2, extrapolated to p), or, for the closed-form linear layer
    (which forms all p x p at once), from the float64 matrix-product rate at its 2 C p^2 operations per point."""
    p, k = objective.size, len(x)
    if p <= _TIMED_GAUSS_NEWTON_COLUMNS:
        return _timed(lambda: gauss_newton_sum(objective, [(x, y)], None, True), repeats=1) / k
    if objective.gauss_newton_in_closed_form:
        size = 512
        matrix = torch.randn(size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        per_flop = _timed(lambda: matrix @ matrix, repeats=2) / (2 * size**3)
        with torch.no_grad():
            n_outputs = objective.outputs(x[:1]).numel()
        return 2 * n_outputs * p * p * per_flop
    cols = torch.arange(_TIMED_GAUSS_NEWTON_COLUMNS, device=objective.device)
    full = _timed(lambda: gauss_newton_sum(objective, [(x, y)], cols, True), repeats=1)
    half = _timed(lambda: gauss_newton_sum(objective, [(x, y)], cols[: len(cols) // 2], True), repeats=1)
    quadratic = max(0.0, (full - half) / (0.75 * len(cols) ** 2))
    constant = max(0.0, full - quadratic * len(cols) ** 2)
    return (constant + quadratic * p * p) / k


def estimate_cost(explainer: ExplainerView, n_test: int = 1, sample_size: int = 64) -> CostEstimate:
    """Preview the cost of ``explainer.influence`` for ``n_test`` new test points (see ``CostEstimate``)."""
    objective, n, p = explainer.objective, explainer.n_train, explainer.n_params
    itemsize = objective.theta.element_size()
    sample = torch.arange(min(sample_size, n))
    x, y = explainer.data.take(sample)
    k = len(sample)
    per_gradient = _timed(lambda: objective.per_example_grads(x, y, None)) / k
    generator = torch.Generator().manual_seed(0)
    vectors = torch.randn(p, 8, generator=generator, dtype=objective.dtype).to(objective.device)
    per_hvp = _timed(lambda: objective.hessian_sum_matvec(x, y, vectors)) / (k * vectors.shape[1])

    gradient_points = n_test + (0 if explainer.cached_train_gradients() is not None else n)  # streaming: G again
    hessian = explainer.hessian
    work = explainer.solver.work(hessian, n_test, n)
    column_seconds = extra_seconds = 0.0
    if work.explicit_hessian:  # its curved columns as the operator builds them, then one float64 factorisation
        column_seconds = n * _seconds_per_point_for_columns(explainer, x, y, per_hvp)
        size = min(p, 256)
        matrix = torch.eye(size, dtype=torch.float64) * size + 1
        extra_seconds = _timed(lambda: torch.linalg.cholesky(matrix), repeats=2) * (p / size) ** 3
    gauss_newton_points = work.gauss_newton_points
    per_gauss_newton = _seconds_per_gauss_newton_point(objective, x, y) if gauss_newton_points else 0.0
    memory = {
        "gradient cache": n * p * itemsize if explainer.cache_gradients else 0,
        "working chunk": min(explainer.batch_size, n) * p * itemsize * 2,
        **work.memory_bytes,
    }
    hvp_seconds = column_seconds if work.explicit_hessian else work.hvp_points * per_hvp
    seconds = gradient_points * per_gradient + hvp_seconds + gauss_newton_points * per_gauss_newton
    seconds += extra_seconds
    return CostEstimate(
        solver=explainer.solver_name,
        n_train=n,
        n_params=p,
        n_test=n_test,
        gradient_points=gradient_points,
        hvp_points=work.hvp_points,
        gauss_newton_points=gauss_newton_points,
        memory_bytes=memory,
        seconds_per_gradient=per_gradient,
        seconds_per_hvp=per_hvp,
        seconds_per_gauss_newton_point=per_gauss_newton,
        seconds=seconds,
        upper_bound=work.upper_bound,
        available_bytes=available_bytes(objective.device),
    )
