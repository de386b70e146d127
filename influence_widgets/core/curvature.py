"""Hessian-vector products of the training objective, explicit Hessians and eigenvalue estimates.

H = (1/n) sum_i nabla^2 loss(z_i) + (lambda + damping) I, with lambda the weight decay.
Every operator maps [p, m] to [p, m] and never forms H unless ``dense()`` is asked for.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Protocol

import torch

from .gauss_newton import affine_on, affine_parameter_mask, gauss_newton_sum, jacobian_chunks
from .linear_head import find_linear_head
from .module_blocks import ModuleBlock, block_columns, find_module_blocks, verify
from .objective import Objective
from .progress import progress_bar
from .training_data import TrainingData

_AFFINE_SAMPLE = 8  # training points on which the affine parameter group is searched (then checked on all)

# Point-vector products per vmapped call: where CPU throughput peaks for the digits CNN (1,626 parameters),
# 4096 for 16 vectors or more, 4x that for fewer (the call's fixed cost weighs more); smaller models need
# more per call to cover that cost (the budget scales with 1/p, up to 16x); at most 8 chunk_size chunks of points.
_POINTS_TIMES_VECTORS = 4096
_REFERENCE_PARAMS = 1626
_MAX_SCALE = 16
_FEW_VECTORS = 16
_MAX_CHUNKS_PER_CALL = 8
# Layer-wise columns keep no values of the layers before theirs: 4x the points per vmapped call, where
# they run fastest on the digits CNN (2.3 s for its explicit Hessian, 2.8 s at 1x).
_BLOCK_POINTS_FACTOR = 4
_PRECONDITIONER_MIN_POINTS = 256
_PRECONDITIONER_MAX_POINTS = 4096


class HessianOperator(Protocol):
    """What a solver needs: products with H, minibatch estimates of them, and H itself."""

    size: int
    dtype: torch.dtype
    device: torch.device
    shift: float  # a multiple of I known to be part of H (weight decay + damping); 0 if unknown
    damping: float | None  # the damping in ``shift``, where H is a training Hessian (None otherwise)
    key: Hashable | None  # what H depends on apart from the damping (model, data, weight decay); None: unknown
    has_gauss_newton: bool  # offers ``gauss_newton_preconditioner`` (a damped Gauss-Newton matrix of the same data)
    per_column: bool  # its product differs per column: ``matvec_columns(vectors, columns)`` instead of one H

    def matvec(self, vectors: torch.Tensor) -> torch.Tensor:
        """H @ vectors, [p, m] -> [p, m]."""
        ...

    def sample_matvec(self, vectors: torch.Tensor, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """An unbiased minibatch estimate of H @ vectors."""
        ...

    def dense(self, block: int = 128) -> torch.Tensor:
        """The explicit [p, p] matrix, built ``block`` columns at a time where that matters."""
        ...


class TrainingHessian:
    """Matrix-free Hessian of R(theta) = (1/n) sum_i loss_i + (lambda/2)||theta||^2, plus damping.

    ``key``: what H depends on apart from the damping (see ``core.caches``), for caches of its explicit form.
    """

    has_gauss_newton = True
    per_column = False

    def __init__(
        self,
        objective: Objective,
        data: TrainingData,
        weight_decay: float,
        damping: float,
        chunk_size: int,
        progress: bool = False,
        key: Hashable | None = None,
    ) -> None:
        self.key = key
        self.objective = objective
        self.data = data
        self.weight_decay = weight_decay
        self.damping = damping
        self.chunk_size = chunk_size
        self.progress = progress
        self.size = objective.size
        self.dtype = objective.dtype
        self.device = objective.device
        self._sample_mask: torch.Tensor | None = None
        self._affine_mask: torch.Tensor | None = None
        self._preconditioners: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {}  # by points used
        self._output_size: int | None = None
        self.module_blocks = True  # explicit Hessians from layer-wise columns where the model allows it
        self.closed_form_blocks = True  # ... and a last linear layer's block in closed form

    @property
    def shift(self) -> float:
        """lambda + damping, the multiple of the identity added to the data Hessian."""
        return self.weight_decay + self.damping

    @property
    def _read_size(self) -> int:
        """Points read at a time: ``chunk_size`` from a Dataset (its documented promise), up to 8x from tensors."""
        return self.chunk_size if self.data.streamed else _MAX_CHUNKS_PER_CALL * self.chunk_size

    def _chunk_for(self, n_vectors: int) -> int:
        """Training points per vmapped product (see ``_POINTS_TIMES_VECTORS``)."""
        n_vectors = max(1, n_vectors)
        scale = min(_MAX_SCALE, max(1.0, _REFERENCE_PARAMS / self.size)) * (4 if n_vectors < _FEW_VECTORS else 1)
        return max(1, min(self._read_size, int(_POINTS_TIMES_VECTORS * scale) // n_vectors))

    def _sum_matvec(self, x: torch.Tensor, y: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        chunk = self._chunk_for(vectors.shape[1])
        total = torch.zeros_like(vectors)
        for start in range(0, len(x), chunk):
            total += self.objective.hessian_sum_matvec(x[start : start + chunk], y[start : start + chunk], vectors)
        return total

    def matvec(self, vectors: torch.Tensor) -> torch.Tensor:
        total = torch.zeros_like(vectors)
        for _, x, y in self.data.chunks(max(self.chunk_size, self._chunk_for(vectors.shape[1]))):
            total += self._sum_matvec(x, y, vectors)
        return total / len(self.data) + self.shift * vectors

    def sample_matvec(self, vectors: torch.Tensor, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        n = len(self.data)
        if batch_size >= n:
            return self.matvec(vectors)
        indices = torch.randperm(n, generator=generator)[:batch_size]
        x, y = self.data.take(indices)
        return self._sum_matvec(x, y, vectors) / batch_size + self.shift * vectors

    # ------------------------------------------------------------------ Gauss-Newton

    def gauss_newton(
        self,
        columns: torch.Tensor | None = None,
        positive_part: bool = False,
        indices: torch.Tensor | None = None,
        low_precision: bool = False,
    ) -> torch.Tensor:
        """sum_i J_i^T A_i J_i over the training points (or ``indices``), restricted to ``columns``: [k, k].

        No 1/n, no weight decay. See ``gauss_newton.gauss_newton_sum``.
        """
        head = self.objective.linear_head
        if head is not None and indices is None:  # closed form: chunks sized by its own products
            size = head.chunk_points(self.objective.theta.element_size(), self._read_size)
            chunks, total = ((x, y) for _, x, y in self.data.chunks(size)), -(-len(self.data) // size)
        else:
            chunks, total = jacobian_chunks(self.objective, self.data, self.chunk_size, indices)
        chunks = progress_bar(chunks, enabled=self.progress, desc="Gauss-Newton matrix", total=total)
        return gauss_newton_sum(self.objective, chunks, columns, positive_part, low_precision)

    def _sample_affine_mask(self) -> torch.Tensor:
        if self._sample_mask is None and self.objective.linear_head is not None:
            self._sample_mask = torch.ones(self.size, dtype=torch.bool, device=self.device)  # found on a sample
        if self._sample_mask is None:
            sample, _ = self.data.take(torch.arange(min(_AFFINE_SAMPLE, len(self.data))))
            self._sample_mask = affine_parameter_mask(self.objective, sample)
        return self._sample_mask

    def curved_mask(self) -> torch.Tensor:
        """The parameters outside the affine group (bool [p]): each costs a column of Hessian-vector
        products in an explicit Hessian. Judged on a few training points (no full pass) until
        ``affine_mask`` has checked every point."""
        return ~(self._sample_affine_mask() if self._affine_mask is None else self._affine_mask)

    def curved_count(self) -> int:
        """How many parameters ``curved_mask`` flags."""
        return int(self.curved_mask().sum())

    def affine_mask(self) -> torch.Tensor:
        """The parameters in which the model's outputs are jointly affine (bool [p]), checked on every
        training point; their block of H is exactly their Gauss-Newton block. Computed once."""
        if self._affine_mask is None:

            def batches():
                return (x for _, x, _ in self.data.chunks(self._read_size))

            mask = torch.ones(self.size, dtype=torch.bool, device=self.device)
            head = self.objective.linear_head
            if head is not None and head.holds_on(self.objective, batches()):  # one linear layer: affine
                self._affine_mask = mask
                return mask
            if not affine_on(self.objective, mask, batches()):  # not a linear model (one probe on all points)
                mask = self._sample_affine_mask()  # searched on a few points ...
                if mask.any() and not affine_on(self.objective, mask, batches()):  # ... and checked on all
                    mask = torch.zeros_like(mask)
            self._affine_mask = mask
        return self._affine_mask

    @property
    def output_size(self) -> int:
        """Model outputs per training point (flattened): the rows one point adds to a Gauss-Newton product."""
        if self._output_size is None:
            with torch.no_grad():
                self._output_size = self.objective.outputs(self.data.take(torch.arange(1))[0]).numel()
        return self._output_size

    def preconditioner_points(self, n_rhs: int) -> int:
        """Training points for the Gauss-Newton preconditioner of a solve with ``n_rhs`` right-hand sides:
        about (2 + n_rhs) p / C (C outputs per point, so (2 + n_rhs) p rows), between 256 and 4096, at most n.

        Its cost grows with the points and its benefit with the right-hand sides that share it: for one
        test point on the digits CNN (p = 1,626), 488 points make the solve about 25 % faster than all
        1,347 at the same number of iterations; for 50, all 1,347 save an iteration."""
        wanted = -(-(2 + max(1, n_rhs)) * self.size // max(1, self.output_size))
        return min(len(self.data), _PRECONDITIONER_MAX_POINTS, max(_PRECONDITIONER_MIN_POINTS, wanted))

    def _cached_preconditioner(self, points: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """A preconditioner already built from at least ``points`` points (the largest), if any."""
        enough = [size for size in self._preconditioners if size >= min(points, len(self.data))]
        return self._preconditioners[max(enough)] if enough else None

    def has_preconditioner(self, max_points: int) -> bool:
        return self._cached_preconditioner(max_points) is not None

    def gauss_newton_preconditioner(
        self, max_points: int = 4096, seed: int = 0
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """v -> (G + (lambda + damping) I)^-1 v with G the positive-part Gauss-Newton matrix of the mean
        training loss, over at most ``max_points`` points (a seeded random subset beyond), its product
        formed in low precision where that is faster; float64 Cholesky. Built once; a preconditioner
        already built from more points serves a request for fewer."""
        cached = self._cached_preconditioner(max_points)
        if cached is not None:
            return cached
        n = len(self.data)
        used = min(n, max_points)
        indices = None
        if n > max_points:
            generator = torch.Generator().manual_seed(seed)
            indices = torch.sort(torch.randperm(n, generator=generator)[:max_points]).values
        matrix = self.gauss_newton(positive_part=True, indices=indices, low_precision=True)
        matrix = matrix.to(torch.float64) / used
        jitter = 1e-8 * float(torch.diagonal(matrix).mean().clamp_min(1e-12))
        matrix.diagonal().add_(max(self.shift, jitter))
        factor, info = torch.linalg.cholesky_ex(matrix)
        while int(info) != 0:  # G may be singular without weight decay and damping, or made so by bfloat16
            jitter *= 100
            matrix.diagonal().add_(jitter)
            factor, info = torch.linalg.cholesky_ex(matrix)

        def precondition(v: torch.Tensor) -> torch.Tensor:
            return torch.cholesky_solve(v.to(torch.float64), factor).to(v.dtype)

        self._preconditioners[used] = precondition
        return precondition

    def dense(self, block: int = 128) -> torch.Tensor:
        """The explicit Hessian.

        The block of the parameters the outputs are affine in (a final linear layer, or the whole of a
        linear model) is their Gauss-Newton block, exact there and one matrix product of Jacobians. The
        other columns come from Hessian-vector products with basis vectors: one layer at a time where the
        model's layers allow it (``module_blocks``: each through its layer and the ones after it, checked
        against full products), else through the whole model. The rest follows by symmetry.
        """
        affine = self.affine_mask()
        if bool(affine.all()):  # a linear model: the Gauss-Newton matrix is the Hessian
            hessian = self.gauss_newton().to(self.dtype) / len(self.data)
            hessian.diagonal().add_(self.shift)
            return hessian
        curved = (~affine).nonzero().squeeze(1)
        blocks = None
        if self.module_blocks and len(curved):
            blocks = find_module_blocks(self.objective, self.data.take(torch.arange(1))[0], ~affine)
        hessian, filled = self._curved_columns(curved, blocks, block)
        structured = blocks is not None
        if bool(affine.any()):
            flat = affine.nonzero().squeeze(1)
            block_ll = self._affine_block(affine) if self.closed_form_blocks else None
            structured = structured or block_ll is not None
            block_ll = (self.gauss_newton(columns=flat) if block_ll is None else block_ll).to(self.dtype)
            block_ll /= len(self.data)
            block_ll.diagonal().add_(self.shift)
            hessian[flat[:, None], flat] = block_ll
            filled[flat[:, None], flat] = True
        if not bool((filled | filled.T).all()):
            raise RuntimeError("the explicit Hessian's blocks do not cover it; please report this model")
        hessian = torch.where(filled, hessian, hessian.T)
        hessian = (hessian + hessian.T) / 2
        if structured and not verify(hessian, self._matvec_float64, self.shift):  # e.g. a parameter used early
            self.module_blocks = self.closed_form_blocks = False
            return self.dense(block)
        return hessian

    def _matvec_float64(self, vectors: torch.Tensor) -> torch.Tensor:
        """H @ vectors in float64 by full Hessian-vector products on a float64 copy of the model, none of
        the layer-wise or closed-form shortcuts: the reference ``verify`` checks those against."""
        if self.dtype == torch.float64:
            return self.matvec(vectors)
        exact = Objective(copy.deepcopy(self.objective.module).double(), self.objective.loss_fn, self.objective.names)
        total = torch.zeros_like(vectors, dtype=torch.float64)
        for _, x, y in self.data.chunks(self._read_size):
            y = y.double() if y.is_floating_point() else y
            total += exact.hessian_sum_matvec(x.double(), y, vectors.to(torch.float64))
        return total / len(self.data) + self.shift * vectors.to(torch.float64)

    def _affine_block(self, affine: torch.Tensor) -> torch.Tensor | None:
        """sum_i J_i^T A_i J_i on the affine group in closed form (``LinearHead``) when the group is part
        of the model and one linear layer that produces the outputs, checked on every batch; else None
        (a whole linear model already takes the closed form inside ``gauss_newton``)."""
        objective = self.objective
        if objective.linear_head is not None:
            return None
        pieces = torch.split(affine, objective.numels)
        names = [name for name, piece in zip(objective.names, pieces) if bool(piece.all())]
        sizes = dict(zip(objective.names, objective.numels))
        if sum(sizes[name] for name in names) != int(affine.sum()):
            return None  # the group splits a parameter tensor
        head = find_linear_head(objective, self.data.take(torch.arange(1))[0], names)
        if head is None:
            return None
        total = None
        for _, x, y in self.data.chunks(head.chunk_points(objective.theta.element_size(), self._read_size)):
            part = head.loss_hessian_sum(objective, x, y)
            if part is None:
                return None
            total = part if total is None else total + part
        return total

    def _curved_columns(
        self, curved: torch.Tensor, blocks: list[ModuleBlock] | None, block: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """H with its curved columns filled (the rest uninitialised) and the mask of the entries filled."""
        p = self.size
        hessian = torch.empty(p, p, dtype=self.dtype, device=self.device)
        filled = torch.zeros(p, p, dtype=torch.bool, device=self.device)
        if blocks is None:
            units = [(None, curved[start : start + block]) for start in range(0, len(curved), block)]
        else:
            units = [(b, b.columns[start : start + block]) for b in blocks for start in range(0, len(b.columns), block)]
        for module_block, columns in progress_bar(units, enabled=self.progress, desc="explicit Hessian"):
            if module_block is None:
                basis = torch.zeros(p, len(columns), dtype=self.dtype, device=self.device)
                basis[columns, torch.arange(len(columns))] = 1
                hessian[:, columns] = self.matvec(basis)
                filled[:, columns] = True
                continue
            rows = module_block.rows
            total = torch.zeros(len(rows), len(columns), dtype=self.dtype, device=self.device)
            for _, x, y in self.data.chunks(min(self._read_size, _BLOCK_POINTS_FACTOR * self._chunk_for(len(columns)))):
                total += block_columns(self.objective, module_block, x, y, columns)
            total /= len(self.data)
            total[rows[:, None] == columns[None, :]] += self.shift
            hessian[rows[:, None], columns] = total
            filled[rows[:, None], columns] = True
        return hessian, filled


class DenseOperator:
    """A fixed symmetric matrix as a ``HessianOperator`` (tests, and already-formed Hessians)."""

    damping: float | None = None
    key: Hashable | None = None
    has_gauss_newton = False
    per_column = False

    def __init__(self, matrix: torch.Tensor, shift: float = 0.0) -> None:
        self.matrix = matrix
        self.shift = shift
        self.size = matrix.shape[0]
        self.dtype = matrix.dtype
        self.device = matrix.device

    def matvec(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.matrix @ vectors

    def sample_matvec(self, vectors: torch.Tensor, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        return self.matrix @ vectors

    def dense(self, block: int = 128) -> torch.Tensor:
        return self.matrix


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
