"""The damped Gauss-Newton preconditioner of block conjugate gradients, built once per size and cached.

v -> (G + (lambda + damping) I)^-1 v, G the positive-part Gauss-Newton matrix of the mean training loss
(positive semi-definite), over a subset of the training points.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Preconditioner = Callable[[torch.Tensor], torch.Tensor]

_MIN_POINTS = 256
_MAX_POINTS = 4096


def preconditioner_points(n_params: int, n_outputs: int, n_rhs: int, n_train: int) -> int:
    """Training points for the preconditioner of a solve with ``n_rhs`` right-hand sides: about
    (2 + n_rhs) p / C (C outputs per point, so (2 + n_rhs) p rows), between 256 and 4096, at most n.

    Its cost grows with the points and its benefit with the right-hand sides that share it: a few
    right-hand sides are served best by a subset, many by every point."""
    wanted = -(-(2 + max(1, n_rhs)) * n_params // max(1, n_outputs))
    return min(n_train, _MAX_POINTS, max(_MIN_POINTS, wanted))


class GaussNewtonPreconditioners:
    """The preconditioners over a training set of ``n`` points, by the number of points they were built from."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._built: dict[int, Preconditioner] = {}

    def cached(self, points: int) -> Preconditioner | None:
        """A preconditioner already built from at least ``points`` points (the largest), if any."""
        enough = [size for size in self._built if size >= min(points, self.n)]
        return self._built[max(enough)] if enough else None

    def get(
        self,
        positive_gauss_newton: Callable[[torch.Tensor | None], torch.Tensor],
        shift: float,
        max_points: int = _MAX_POINTS,
        seed: int = 0,
    ) -> Preconditioner:
        """v -> (G + shift I)^-1 v over at most ``max_points`` points (a seeded random subset beyond), G from
        ``positive_gauss_newton(indices)`` (the positive-part sum over those points, or all for None, its
        product formed in low precision where that is faster; no 1/n); float64 Cholesky. Built once; a
        preconditioner already built from more points serves a request for fewer."""
        cached = self.cached(max_points)
        if cached is not None:
            return cached
        n = self.n
        used = min(n, max_points)
        indices = None
        if n > max_points:
            generator = torch.Generator().manual_seed(seed)
            indices = torch.sort(torch.randperm(n, generator=generator)[:max_points]).values
        matrix = positive_gauss_newton(indices).to(torch.float64) / used
        jitter = 1e-8 * float(torch.diagonal(matrix).mean().clamp_min(1e-12))
        matrix.diagonal().add_(max(shift, jitter))
        factor, info = torch.linalg.cholesky_ex(matrix)
        while int(info) != 0:  # G may be singular without weight decay and damping, or made so by bfloat16
            jitter *= 100
            matrix.diagonal().add_(jitter)
            factor, info = torch.linalg.cholesky_ex(matrix)

        def precondition(v: torch.Tensor) -> torch.Tensor:
            return torch.cholesky_solve(v.to(torch.float64), factor).to(v.dtype)

        self._built[used] = precondition
        return precondition
