"""Low-rank inverse: the top-k eigenpairs of the data Hessian, the rest of H treated as its known shift.

Schioppa et al. (2022), "Scaling up influence functions": H = H_data + s I, with s = weight decay +
damping. Lanczos iterations with full reorthogonalisation (in float64 whatever the model's dtype, the
products alone in its dtype) give the k eigenpairs (lambda_j, v_j) of H_data largest in magnitude,
and

    H^-1 b ~= V diag(1 / (lambda_j + s)) V^T b + (b - V V^T b) / s,

exact in the span of V and exact for all b when k reaches the rank of H_data (the iteration stops
when its Krylov space is invariant, so a full-rank run equals the exact solve). The eigenpairs do not
depend on the damping and are cached under the operator's key: every later test point, and another
damping, costs two [p, k] products. With s = 0 the remainder has no known inverse and is dropped (the
pure projection of Schioppa et al.), which the diagnostics warn about.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..caches import KeyedCache
from ..curvature import EigenvalueEstimate, HessianOperator
from ..errors import SolverDivergedError
from ..progress import progress_counter
from .base import SolveDiagnostics, SolverDefaults, SolverWork, curvature_fix
from .options import _check_field_types, _require


@dataclass(frozen=True)
class ArnoldiOptions:
    """The low-rank approximation of H's data part.

    rank: eigenpairs kept, the largest in magnitude (at most p).
    krylov_dim: Lanczos steps, each one Hessian-vector product over the training set; None means
        min(p, 2 x rank + 20), enough for the top ``rank`` Ritz pairs of a decaying spectrum.
    seed: of the starting vector.
    """

    rank: int = 64
    krylov_dim: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        _check_field_types(self)
        _require(self.rank >= 1, f"ArnoldiOptions.rank must be >= 1, got {self.rank}")
        _require(
            self.krylov_dim is None or self.krylov_dim >= self.rank,
            f"ArnoldiOptions.krylov_dim must be >= rank ({self.rank}) or None, got {self.krylov_dim}",
        )

    def steps(self, size: int) -> int:
        wanted = self.krylov_dim if self.krylov_dim is not None else 2 * self.rank + 20
        return max(1, min(size, wanted))


@dataclass(frozen=True)
class Eigenpairs:
    """The top eigenpairs of H's data part: values [k] and orthonormal vectors [p, k], float64."""

    values: torch.Tensor
    vectors: torch.Tensor
    steps: int
    ritz_residual: float  # the largest ||H_data v - lambda v|| among the kept pairs, relative to max |lambda|


def top_eigenpairs(operator: HessianOperator, rank: int, steps: int, seed: int, progress: bool) -> Eigenpairs:
    """Lanczos with full reorthogonalisation on H - shift I, restarted orthogonally where the Krylov space
    becomes invariant, so that ``steps`` = p spans everything."""
    p, shift = operator.size, operator.shift
    eps = torch.finfo(operator.dtype).eps
    generator = torch.Generator().manual_seed(seed)
    basis = torch.zeros(p, steps, dtype=torch.float64, device=operator.device)
    projected = torch.zeros(steps, steps, dtype=torch.float64)
    q = torch.randn(p, 1, generator=generator, dtype=torch.float64).to(operator.device)
    q = q / torch.linalg.vector_norm(q)
    bar = progress_counter(enabled=progress, desc="Arnoldi (Lanczos) eigenpairs", total=steps)
    try:
        for k in range(steps):
            basis[:, k : k + 1] = q
            w = operator.matvec(q.to(operator.dtype)).to(torch.float64) - shift * q
            stacked = basis[:, : k + 1]
            for _ in range(2):  # classical Gram-Schmidt twice: orthogonal to working precision
                coefficients = stacked.T @ w
                w = w - stacked @ coefficients
                projected[: k + 1, k] += coefficients.squeeze(1).cpu()
            bar.update()
            if k == steps - 1:
                break
            beta = float(torch.linalg.vector_norm(w))
            scale = float(projected[: k + 1, : k + 1].abs().max())
            if beta <= 10 * eps * max(scale, 1e-300) * p**0.5:  # invariant: restart orthogonally to the basis
                w = torch.randn(p, 1, generator=generator, dtype=torch.float64).to(operator.device)
                for _ in range(2):
                    w = w - stacked @ (stacked.T @ w)
                beta = 0.0
            else:
                projected[k + 1, k] = beta
            q = w / torch.linalg.vector_norm(w)
    finally:
        bar.close()
    size = k + 1
    symmetric = (projected[:size, :size] + projected[:size, :size].T) / 2
    values, small = torch.linalg.eigh(symmetric)
    order = torch.argsort(values.abs(), descending=True)[: min(rank, size)]
    values, small = values[order], small[:, order]
    last = float(projected[size, size - 1]) if size < steps else 0.0
    top = float(values.abs().max()) if len(values) else 0.0
    residual = abs(last) * float(small[-1].abs().max()) / max(top, 1e-300) if len(values) else 0.0
    vectors = basis[:, :size] @ small.to(operator.device)
    return Eigenpairs(values.to(operator.device), vectors, size, residual)


class ArnoldiSolver(SolverDefaults):
    """H^-1 b from the top-``rank`` eigenpairs of the data Hessian and the shift for the rest (see the module).

    An approximation, not a solve to a tolerance: ``converged`` says that the kept Ritz pairs converged
    (their residual below 1e-6 of the largest eigenvalue, or the Krylov space spans everything); the
    note says the rank and how much of the spectrum it covers.
    """

    name = "arnoldi"

    def __init__(
        self, options: ArnoldiOptions | None = None, progress: bool = False, cache: KeyedCache | None = None
    ) -> None:
        self.options = options or ArnoldiOptions()
        self.progress = progress
        self.cache = KeyedCache() if cache is None else cache

    def _cache_key(self, operator: HessianOperator) -> tuple:
        steps = self.options.steps(operator.size)
        key = operator.key if operator.key is not None else ("operator", id(operator))  # a plain matrix
        return ("arnoldi eigenpairs", key, self.options.rank, steps, self.options.seed)

    def _cached(self, operator: HessianOperator) -> Eigenpairs | None:
        return self.cache.get(self._cache_key(operator))

    def eigenpairs(self, operator: HessianOperator) -> Eigenpairs:
        """The top eigenpairs of H - shift I, computed once per operator key (shared with other dampings)."""
        found = self._cached(operator)
        if found is None:
            opts = self.options
            found = top_eigenpairs(operator, opts.rank, opts.steps(operator.size), opts.seed, self.progress)
            self.cache.put(self._cache_key(operator), found)
        return found

    def work(self, operator: HessianOperator, n_rhs: int, n_train: int) -> SolverWork:
        """One Lanczos pass of ``krylov_dim`` products, once; the basis and the kept vectors in float64."""
        p, steps = operator.size, self.options.steps(operator.size)
        memory = {"eigenvectors": p * min(self.options.rank, steps) * 8, "Krylov basis": p * steps * 8}
        if self._cached(operator) is not None:
            return SolverWork(memory_bytes={"eigenvectors": memory["eigenvectors"]})
        return SolverWork(hvp_points=steps * n_train, memory_bytes=memory)

    def solve(self, operator: HessianOperator, rhs: torch.Tensor) -> tuple[torch.Tensor, SolveDiagnostics]:
        start = time.perf_counter()
        fresh = self._cached(operator) is None
        pairs = self.eigenpairs(operator)
        shift = operator.shift
        damped = pairs.values + shift
        if bool((damped <= 0).any()):
            lam_min = float(pairs.values.min()) + shift
            raise SolverDivergedError(
                "Arnoldi cannot invert H: " + curvature_fix(operator, lam_min, float(pairs.values.max()) + shift)
            )
        b = rhs.to(torch.float64)
        coefficients = pairs.vectors.T @ b
        x = pairs.vectors @ (coefficients / damped[:, None])
        warnings: list[str] = []
        if shift > 0:
            x = x + (b - pairs.vectors @ coefficients) / shift
        elif len(pairs.values) < operator.size:
            warnings.append(
                "weight_decay + damping is 0, so the directions outside the top eigenpairs have no known inverse "
                "and are dropped (a pure projection); pass damping > 0 to treat them as damping"
            )
        covered = len(pairs.values) == operator.size or pairs.steps == operator.size
        converged = covered or pairs.ritz_residual <= 1e-6
        if not converged:
            warnings.append(
                f"the kept Ritz pairs' residual is {pairs.ritz_residual:.1e} of the largest eigenvalue: raise "
                "ArnoldiOptions(krylov_dim=...) for better eigenpairs"
            )
        estimate = EigenvalueEstimate(float(damped.min()), float(damped.max()), "lanczos", pairs.steps)
        diagnostics = SolveDiagnostics(
            solver=self.name,
            n_rhs=rhs.shape[1],
            converged=converged,
            iterations=pairs.steps if fresh else 0,
            seconds=time.perf_counter() - start,
            hessian_vector_products=pairs.steps if fresh else 0,
            eigenvalues=estimate,
            warnings=warnings,
            note=(
                f"arnoldi: rank {len(pairs.values)} of {operator.size} (kept eigenvalues of H from "
                f"{float(damped.min()):.3g} to {float(damped.max()):.3g}), the rest of H as its shift {shift:.3g}"
            ),
        )
        return x.to(rhs.dtype), diagnostics
