"""LiSSA: stochastic estimation of H^-1 v from minibatch Hessian-vector products."""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ..curvature import EigenvalueEstimate, HessianOperator, chunk_threads, lanczos_extremes
from ..errors import ConvergenceWarning, SolverDivergedError
from ..progress import progress_counter
from .base import SolveDiagnostics, SolverDefaults, SolverWork, curvature_fix
from .options import LissaOptions

_CONTRACTION_TARGET = 1e-3  # bound on the averaged estimate's relative error in the slowest direction
_CHECK_EVERY = 10
_SCALE_CHECK_STEPS = 10  # Lanczos products spent on checking a given scale against lambda_max
_PLAN_STEPS = 30  # Lanczos products spent on the scale and depth when they are not given


@dataclass(frozen=True)
class LissaPlan:
    """The scale and depth a solve uses, and what they were checked against.

    needed_depth: steps for the tail-averaged estimate's relative error in the slowest direction
        (eigenvalue mu = weight decay + damping, or the Lanczos lambda_min when that is 0) to fall to
        1e-3 (``contraction``); ``converged`` requires depth >= needed_depth. Minibatch noise comes on top.
    """

    scale: float
    depth: int
    eigenvalues: EigenvalueEstimate | None
    needed_depth: int | None
    rate: float | None
    warnings: tuple[str, ...] = ()


def tail_start(depth: int, tail_fraction: float) -> int:
    """Steps before the averaged tail: the estimate averages h_j for j in (tail_start, depth]."""
    return min(depth - 1, int(depth * (1 - tail_fraction)))


def contraction(rate: float, depth: int, tail_fraction: float) -> float:
    """Relative error left in a direction whose eigenvalue is ``rate`` x scale, in the tail-averaged estimate of
    an exact recursion: mean over j in (t, depth] of (1 - rate)^j, with t = ``tail_start``."""
    if rate >= 1:
        return 0.0
    t = tail_start(depth, tail_fraction)
    count = depth - t
    return (1 - rate) ** (t + 1) * -math.expm1(count * math.log1p(-rate)) / (rate * count)


def needed_depth(rate: float, tail_fraction: float, target: float = _CONTRACTION_TARGET) -> int:
    """The smallest depth whose ``contraction`` in the slowest direction is at most ``target``."""
    if rate >= 1:
        return 1
    high = max(1, math.ceil(math.log(target) / math.log1p(-rate)))
    while contraction(rate, high, tail_fraction) > target:
        high *= 2
    low = max(1, high // 2)
    while low < high:  # the contraction decreases with the depth: bisection
        middle = (low + high) // 2
        if contraction(rate, middle, tail_fraction) > target:
            low = middle + 1
        else:
            high = middle
    return high


class LissaSolver(SolverDefaults):
    """h_j = v + h_{j-1} - H_B h_{j-1} / scale converges to scale * H^-1 v when 0 < eig(H) < 2 scale."""

    name = "lissa"

    def __init__(self, options: LissaOptions | None = None, progress: bool = False, cache: object = None) -> None:
        self.options = options or LissaOptions()
        self.progress = progress

    def work(self, operator: HessianOperator, n_rhs: int, n_train: int) -> SolverWork:
        """Lanczos steps for the scale and depth (when not given; the few that check a given scale are not
        counted), then ``repeats`` recursions of ``depth``
        minibatch products per right-hand side (at ``max_depth`` when the depth is chosen: an upper bound)."""
        opts = self.options
        depth = opts.depth if opts.depth is not None else opts.max_depth
        planning = _PLAN_STEPS * n_train if (opts.scale is None or opts.depth is None) else 0
        return SolverWork(
            hvp_points=planning + opts.repeats * depth * min(opts.batch_size, n_train) * n_rhs,
            upper_bound=opts.depth is None,
        )

    def plan(self, operator: HessianOperator) -> LissaPlan:
        """Scale and depth for ``operator``: chosen from Lanczos estimates where not given, and checked.

        Raises ``SolverDivergedError`` when the recursion cannot converge: a scale at most lambda_max / 2
        (a given scale is checked against a few Lanczos steps, whose lambda_max is a lower bound of the
        true one, so the check never refuses a scale that works), or an H that is not positive definite
        (the error names the damping that fixes it). Warns (``ConvergenceWarning``) when ``max_depth``
        caps the depth below what the slowest direction needs."""
        opts = self.options
        steps = _PLAN_STEPS if (opts.scale is None or opts.depth is None) else _SCALE_CHECK_STEPS
        eigenvalues = lanczos_extremes(operator, steps=steps, seed=opts.seed)
        rounding = 100 * torch.finfo(operator.dtype).eps * abs(eigenvalues.lambda_max)
        if eigenvalues.lambda_max <= 0 or eigenvalues.lambda_min < -rounding:
            raise SolverDivergedError(
                "LiSSA cannot converge: " + curvature_fix(operator, eigenvalues.lambda_min, eigenvalues.lambda_max)
            )
        scale = opts.scale if opts.scale is not None else 1.1 * eigenvalues.lambda_max
        if scale <= eigenvalues.lambda_max / 2:
            raise SolverDivergedError(
                f"LissaOptions(scale={scale:.3g}) is at most lambda_max / 2 = {eigenvalues.lambda_max / 2:.3g} "
                f"(lambda_max of H is at least {eigenvalues.lambda_max:.3g}, Lanczos): the recursion diverges. "
                f"Raise LissaOptions(scale=...) to at least {1.1 * eigenvalues.lambda_max:.3g}, or leave it None "
                "(chosen for you)"
            )
        mu = operator.shift if operator.shift > 0 else eigenvalues.lambda_min
        if mu <= 0:
            raise SolverDivergedError(
                "LiSSA cannot converge: " + curvature_fix(operator, eigenvalues.lambda_min, eigenvalues.lambda_max)
            )
        rate = min(mu / scale, 1.0)
        needed = needed_depth(rate, opts.tail_fraction)
        found: list[str] = []
        depth = opts.depth
        if depth is None:
            depth = max(1, min(needed, opts.max_depth))
            if needed > opts.max_depth:
                left = contraction(rate, depth, opts.tail_fraction)
                found.append(
                    f"LiSSA's depth was capped at max_depth={opts.max_depth} steps of the {needed} that the slowest "
                    f"direction needs (mu/scale = {mu:.3g}/{scale:.3g} = {rate:.2e}): that direction is only "
                    f"{1 - left:.1%} converged (a factor {left:.2g} of its error is left, against "
                    f"{_CONTRACTION_TARGET:g}). Raise LissaOptions(max_depth={needed}), raise damping, or use "
                    "solver='cg' or 'exact'"
                )
        elif depth < needed:
            left = contraction(rate, depth, opts.tail_fraction)
            found.append(
                f"LissaOptions(depth={depth}) is short of the {needed} steps the slowest direction needs "
                f"(mu/scale = {rate:.2e}; a factor {left:.2g} of its error is left, against {_CONTRACTION_TARGET:g}); "
                f"pass depth={needed} or depth=None"
            )
        for message in found:
            warnings.warn(message, ConvergenceWarning, stacklevel=5)
        return LissaPlan(scale, depth, eigenvalues, needed, rate, tuple(found))

    def solve(self, operator: HessianOperator, rhs: torch.Tensor) -> tuple[torch.Tensor, SolveDiagnostics]:
        """The columns of ``rhs`` are independent recursions over the same minibatches (``seed + repeat``):
        where the operator allows (``sample_workers``), fixed groups of columns run on worker threads of
        their own, each on its own replica of the model, and meet only at the end."""
        start = time.perf_counter()
        opts = self.options
        plan = self.plan(operator)
        scale, depth, eigenvalues = plan.scale, plan.depth, plan.eigenvalues
        rhs_norm = float(torch.linalg.vector_norm(rhs)) or 1.0
        limit = 1e3 * rhs_norm * max(1.0, scale / max(operator.shift, 1e-12))
        recursion = _Recursion(opts, scale, depth, limit)
        bar = progress_counter(enabled=self.progress, desc="LiSSA", total=depth * opts.repeats)
        workers = operator.sample_workers() if hasattr(operator, "sample_workers") and rhs.shape[1] > 1 else 0
        try:
            if workers:
                squares: dict[int, list[float]] = {}

                def run(replica, columns: torch.Tensor, group: int) -> torch.Tensor:
                    def product(h: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
                        return operator.sample_matvec(h, opts.batch_size, generator, on=replica)

                    found, squares[group] = recursion.run(product, columns, bar if group == 0 else None)
                    return found

                estimate = chunk_threads.column_groups(operator.objective, rhs, run, workers)
                recorded = np.sum([squares[g] for g in sorted(squares)], axis=0)
            else:

                def product(h: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
                    return operator.sample_matvec(h, opts.batch_size, generator)

                estimate, recorded = recursion.run(product, rhs, bar)
        finally:
            bar.close()
        norms = np.sqrt(np.asarray(recorded, dtype=float)) / scale / math.sqrt(rhs.shape[1])
        diagnostics = SolveDiagnostics(
            solver=self.name,
            n_rhs=rhs.shape[1],
            converged=plan.needed_depth is not None and depth >= plan.needed_depth,
            iterations=depth,
            seconds=time.perf_counter() - start,
            hessian_vector_products=opts.repeats * depth * rhs.shape[1],
            estimate_norms=norms,
            eigenvalues=eigenvalues,
            scale=scale,
            warnings=list(plan.warnings),
        )
        return estimate / opts.repeats, diagnostics


@dataclass(frozen=True)
class _Recursion:
    """``repeats`` recursions h_j = v + h_{j-1} - H_B h_{j-1} / scale of ``depth`` steps, tail-averaged."""

    options: LissaOptions
    scale: float
    depth: int
    limit: float  # ||h|| above this is divergence

    def run(self, product, rhs: torch.Tensor, bar) -> tuple[torch.Tensor, list[float]]:
        """(the sum over repeats of the tail-averaged h / scale, ||h||^2 every ``depth // 200`` steps of the
        first repeat); ``product(h, generator)`` = H_B h; ``bar`` (or None) counts the steps."""
        opts, scale, depth = self.options, self.scale, self.depth
        tail_begins = tail_start(depth, opts.tail_fraction)
        record_every = max(1, depth // 200)
        estimate = torch.zeros_like(rhs)
        squares: list[float] = []
        for repeat in range(opts.repeats):
            generator = torch.Generator().manual_seed(opts.seed + repeat)
            h = rhs.clone()
            tail_sum = torch.zeros_like(rhs)
            for step in range(1, depth + 1):
                h = rhs + h - product(h, generator) / scale
                if step >= tail_begins + 1:
                    tail_sum += h
                if step % _CHECK_EVERY == 0 or step == depth:
                    norm = float(torch.linalg.vector_norm(h))
                    if not math.isfinite(norm) or norm > self.limit:
                        raise SolverDivergedError(
                            f"LiSSA diverged at step {step} (||h|| = {norm:.3g}); raise "
                            f"LissaOptions(scale=...) above {scale:.3g}, add damping, or use solver='cg'. "
                            "A Hessian with negative eigenvalues also diverges: see "
                            "InfluenceExplainer.curvature()."
                        )
                if repeat == 0 and step % record_every == 0:
                    squares.append(float(torch.linalg.vector_norm(h)) ** 2)
                if bar is not None:
                    bar.update(1)
            estimate += tail_sum / (depth - tail_begins) / scale
        return estimate, squares
