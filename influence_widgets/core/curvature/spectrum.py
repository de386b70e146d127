"""Extreme eigenvalues of a symmetric operator: Lanczos estimates that stay inside the spectrum."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .operator import HessianOperator


@dataclass(frozen=True)
class EigenvalueEstimate:
    """Extreme eigenvalues of H (including weight decay and damping), from Lanczos or an eigensolver."""

    lambda_min: float
    lambda_max: float
    method: str
    steps: int

    @property
    def condition_number(self) -> float:
        return self.lambda_max / self.lambda_min if self.lambda_min > 0 else float("inf")


LANCZOS_MAX_STEPS = 200
_LANCZOS_CHECK_EVERY = 10


def lanczos_extremes(
    operator: HessianOperator,
    steps: int | None = None,
    seed: int = 0,
    tol: float = 1e-6,
    max_steps: int = LANCZOS_MAX_STEPS,
) -> EigenvalueEstimate:
    """Smallest and largest eigenvalue of a symmetric operator by Lanczos with full reorthogonalisation.

    The recurrence runs in float64 whatever the operator's dtype (only the products are in its dtype),
    and the Ritz values are those of the projection Q^T H Q with every coefficient that the
    reorthogonalisation finds kept (not only the three-term recurrence's), so they lie inside the
    spectrum of the operator as computed: lambda_min <= lambda_min_est and lambda_max_est <= lambda_max,
    up to the rounding of one product (about eps x lambda_max of the operator's dtype). When the Krylov
    space becomes invariant (H = damping + a data term of low rank: the residual falls to the rounding
    of the products) the iteration stops there: its Ritz values are then eigenvalues. ``steps`` fixes
    the number of products; None runs until both extreme Ritz pairs have residuals
    ||H y - theta y|| <= max(tol, 100 eps) x |lambda_max| (checked every 10 steps), at most
    ``max_steps``: an eigenvalue near zero, the one that decides whether H is positive definite, can
    need several dozen.
    """
    p = operator.size
    limit = max(1, min(steps if steps is not None else max_steps, p))
    eps = torch.finfo(operator.dtype).eps
    tol = max(tol, 100 * eps)
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(p, 1, generator=generator, dtype=torch.float64).to(operator.device)
    q = q / torch.linalg.vector_norm(q)
    basis = q.new_zeros(p, limit)
    projected = torch.zeros(limit + 1, limit, dtype=torch.float64)  # H Q_k = Q_{k+1} projected[: k + 1, : k]
    k = 0
    for k in range(limit):
        basis[:, k : k + 1] = q
        w = operator.matvec(q.to(operator.dtype)).to(torch.float64)
        stacked = basis[:, : k + 1]
        coefficients = stacked.T @ w
        w = w - stacked @ coefficients
        again = stacked.T @ w
        w = w - stacked @ again
        projected[: k + 1, k] = (coefficients + again).squeeze(1).cpu()
        beta = float(torch.linalg.vector_norm(w))
        projected[k + 1, k] = beta
        top = float(projected[: k + 1, : k + 1].abs().max())
        if k == limit - 1 or beta <= 10 * eps * max(top, 1e-300) * p**0.5:
            break  # the last step, or the space is invariant to the products' precision
        if steps is None and (k + 1) % _LANCZOS_CHECK_EVERY == 0 and _extremes_converged(projected, k + 1, tol):
            break
        q = w / beta
    ritz, _ = _ritz(projected, k + 1)
    return EigenvalueEstimate(float(ritz[0]), float(ritz[-1]), method="lanczos", steps=k + 1)


def _ritz(projected: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenpairs of the symmetric part of Q^T H Q (its first ``size`` rows and columns)."""
    square = projected[:size, :size]
    return torch.linalg.eigh((square + square.T) / 2)


def _extremes_converged(projected: torch.Tensor, size: int, tol: float) -> bool:
    """Whether the smallest and largest Ritz pairs have residual beta |last component| <= tol |theta_max|."""
    ritz, vectors = _ritz(projected, size)
    residuals = float(projected[size, size - 1]) * vectors[-1, [0, -1]].abs()
    return bool((residuals <= tol * max(float(ritz.abs().max()), 1e-300)).all())
