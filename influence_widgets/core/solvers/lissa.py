"""LiSSA: stochastic estimation of H^-1 v from minibatch Hessian-vector products."""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from ..curvature import HessianOperator, lanczos_extremes
from ..errors import SolverDivergedError
from ..progress import progress_counter
from .base import SolveDiagnostics
from .options import LissaOptions

_CONTRACTION_TARGET = 1e-4
_CHECK_EVERY = 10


class LissaSolver:
    """h_j = v + h_{j-1} - H_B h_{j-1} / scale converges to scale * H^-1 v when 0 < eig(H) < 2 scale."""

    name = "lissa"

    def __init__(self, options: LissaOptions | None = None, progress: bool = False) -> None:
        self.options = options or LissaOptions()
        self.progress = progress

    def _settings(self, operator: HessianOperator) -> tuple[float, int, object]:
        opts = self.options
        eigenvalues = None
        scale = opts.scale
        if scale is None or opts.depth is None:
            eigenvalues = lanczos_extremes(operator, steps=30, seed=opts.seed)
        if scale is None:
            if eigenvalues.lambda_max <= 0:
                raise SolverDivergedError(
                    f"the largest Hessian eigenvalue is {eigenvalues.lambda_max:.3g} <= 0, so LiSSA cannot "
                    "converge; add damping or pass LissaOptions(scale=...) explicitly"
                )
            scale = 1.1 * eigenvalues.lambda_max
        depth = opts.depth
        if depth is None:
            floor = operator.shift
            mu = floor if floor > 0 else eigenvalues.lambda_min
            if mu <= 0:
                raise SolverDivergedError(
                    f"the Hessian's smallest eigenvalue is about {eigenvalues.lambda_min:.3g} <= 0, so LiSSA "
                    f"diverges; add damping >= {abs(eigenvalues.lambda_min):.3g} or use weight_decay > 0"
                )
            rate = min(mu / scale, 1.0)
            depth = opts.max_depth if rate >= 1 else math.ceil(math.log(_CONTRACTION_TARGET) / math.log1p(-rate))
            depth = max(1, min(depth, opts.max_depth))
        return scale, depth, eigenvalues

    def solve(self, operator: HessianOperator, rhs: torch.Tensor) -> tuple[torch.Tensor, SolveDiagnostics]:
        start = time.perf_counter()
        opts = self.options
        scale, depth, eigenvalues = self._settings(operator)
        tail_start = min(depth - 1, int(depth * (1 - opts.tail_fraction)))
        rhs_norm = float(torch.linalg.vector_norm(rhs)) or 1.0
        limit = 1e3 * rhs_norm * max(1.0, scale / max(operator.shift, 1e-12))
        record_every = max(1, depth // 200)
        estimate = torch.zeros_like(rhs)
        norms: list[float] = []
        products = 0
        bar = progress_counter(enabled=self.progress, desc="LiSSA", total=depth * opts.repeats)
        try:
            for repeat in range(opts.repeats):
                generator = torch.Generator().manual_seed(opts.seed + repeat)
                h = rhs.clone()
                tail_sum = torch.zeros_like(rhs)
                for step in range(1, depth + 1):
                    h = rhs + h - operator.sample_matvec(h, opts.batch_size, generator) / scale
                    products += rhs.shape[1]
                    if step >= tail_start + 1:
                        tail_sum += h
                    if step % _CHECK_EVERY == 0 or step == depth:
                        norm = float(torch.linalg.vector_norm(h))
                        if not math.isfinite(norm) or norm > limit:
                            raise SolverDivergedError(
                                f"LiSSA diverged at step {step} (||h|| = {norm:.3g}); raise "
                                f"LissaOptions(scale=...) above {scale:.3g}, add damping, or use solver='cg'. "
                                "A Hessian with negative eigenvalues also diverges: see "
                                "InfluenceExplainer.curvature()."
                            )
                    if repeat == 0 and step % record_every == 0:
                        norms.append(float(torch.linalg.vector_norm(h)) / scale / math.sqrt(rhs.shape[1]))
                    bar.update(1)
                estimate += tail_sum / (depth - tail_start) / scale
        finally:
            bar.close()
        diagnostics = SolveDiagnostics(
            solver=self.name,
            n_rhs=rhs.shape[1],
            converged=True,
            iterations=depth,
            seconds=time.perf_counter() - start,
            hessian_vector_products=products,
            estimate_norms=np.asarray(norms),
            eigenvalues=eigenvalues,
            scale=scale,
        )
        return estimate / opts.repeats, diagnostics
