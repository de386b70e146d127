"""K-FAC: the Fisher (or Gauss-Newton) matrix as one Kronecker product per layer (Martens & Grosse 2015).

For an ``nn.Linear`` or ``nn.Conv2d`` layer s = W a (+ b) among the selected parameters, with a the
layer's input (Conv2d: its unfolded patches, one row per output position t) and a 1 appended for the
bias, ``abar = [a; 1]``, the per-example gradient of [W | b] (row-major, [out, in (+1)]) is
sum_t g_t abar_t^T with g = dl/ds. K-FAC approximates the layer's block of the curvature by

    F_layer ~ G (x) A,   A = (1/(n T)) sum_{i,t} abar abar^T  [in+1, in+1],   G = (1/n) sum_{i,t} g g^T  [out, out]

(T = 1 for a Linear on [b, in]; positions of Conv2d or of extra leading dimensions count as in KFC,
Grosse & Martens 2016), blocks of different layers taken as zero. ``fisher="true"`` takes g from labels
of the model's own predictive distribution: by default (``mc_samples=None``) its expectation exactly,
through the C columns of the loss's output-space Hessian's square root (one backward pass per output;
for cross-entropy, squared loss and binary cross-entropy on logits this is the true Fisher, equal to the
Gauss-Newton matrix); ``mc_samples=k`` samples k labels per point instead (seeded): categorical
(cross-entropy) or Bernoulli (BCE) labels where the loss is recognised as one of those, else
Gaussian output gradients with the output Hessian as covariance (the Gaussian labels of a squared loss).
``fisher="empirical"`` uses the given labels (one backward pass per point).

H is then approximated by F + (weight_decay + damping) I and solved per layer in the Kronecker eigenbasis
(A = Q_A diag(lambda_A) Q_A^T, G likewise): x = Q_G [(Q_G^T V Q_A) / (lambda_G lambda_A^T + shift)] Q_A^T.
Selected parameters outside such layers (a LayerNorm, an embedding, a grouped convolution) get a diagonal
fallback: the mean of their per-example gradients' squares (empirical, given labels) plus the shift; the
diagnostics' warnings say so. A layer called more than once per forward pass (shared weights) is refused.

Cost: one pass over the training set (EK-FAC: three by default), each a forward and r backward passes per
point (r = the C outputs for the exact expectation, ``mc_samples``, or 1 for the empirical Fisher; prefer
``mc_samples`` for models with many outputs), with each layer's float64 inputs (chunk points x positions x
cols) and r x (chunk points x positions x out) layer gradients held per chunk: chunks shrink below
``chunk_size`` to keep that under ``chunk_bytes``. The factors are float64 on the model's device, kept in the
shared cache by (solver, operator key, fisher, mc_samples, seed): a new test point or another damping costs
one pass of block-diagonal solves.
"""

from __future__ import annotations

import time
from contextlib import closing
from dataclasses import dataclass

import torch

from ..caches import KeyedCache
from ..curvature import HessianOperator
from ..errors import InfluenceInputError
from .base import SolveDiagnostics, SolverDefaults, SolverWork
from .kronecker_memory import bytes_per_point, chunk_points, layer_geometry
from .kronecker_pass import (
    _SINGULAR_RELATIVE,
    KFACOptions,
    _Layer,
    _Problem,
    find_layers,
    layer_chunks,
    read_operator,
)

# ---------------------------------------------------------------------------------------------- the solver


@dataclass
class _LayerFactors:
    """A layer's float64 eigenbases and eigenvalues: A = Q_A diag(lam_A) Q_A^T, G = Q_G diag(lam_G) Q_G^T,
    and (EK-FAC) the corrected eigenvalues S [out, cols] that replace lam_G lam_A^T."""

    q_a: torch.Tensor
    lam_a: torch.Tensor
    q_g: torch.Tensor
    lam_g: torch.Tensor
    corrected: torch.Tensor | None = None


class KFACSolver(SolverDefaults):
    """x ~ H^-1 b with H ~ blockdiag_layers(G (x) A) + diag(fallback) + (weight_decay + damping) I (K-FAC).

    An approximation, not an exact solve: blocks between layers are dropped, each layer's block is the
    Kronecker product of two expectations (exact for one Linear layer whose output-space curvature is the
    same for every point, as with the squared loss), the curvature is the Fisher / Gauss-Newton matrix,
    not the Hessian, and parameters outside Linear/Conv2d layers get a diagonal (see the module docstring).
    ``converged`` is True: the approximate system is solved exactly.
    """

    name = "kfac"

    def __init__(
        self, options: KFACOptions | None = None, progress: bool = False, cache: KeyedCache | None = None
    ) -> None:
        self.options = options or KFACOptions()
        self.progress = progress
        self.cache = KeyedCache() if cache is None else cache
        self.training_passes = 0  # passes over the training set this solver has made (factors)
        self._negative_curvature = 0.0
        self._outputs: dict = {}  # problem key -> the model's outputs per point
        self._point_bytes: dict = {}  # problem key -> ``bytes_per_point`` of its layers

    # --------------------------------------------------------------- caching and cost

    def _key(self, problem: _Problem) -> tuple:
        opts = self.options
        return (f"{self.name} factors", problem.key, opts.fisher, opts.mc_samples, opts.seed)

    def holds_factors(self, operator: HessianOperator) -> bool:
        return self._key(read_operator(operator)) in self.cache

    def _backprops_per_point(self, problem: _Problem) -> int:
        if self.options.fisher == "empirical":
            return 1
        if self.options.mc_samples is not None:
            return self.options.mc_samples
        if problem.key not in self._outputs:
            _, x, _ = next(iter(problem.data.chunks(1)))
            with torch.no_grad():
                self._outputs[problem.key] = int(problem.objective.outputs(x).numel())
        return self._outputs[problem.key]

    def _bytes_per_point(self, problem: _Problem, layers: list[_Layer]) -> int:
        if problem.key not in self._point_bytes:
            vectors = self._backprops_per_point(problem)
            _, fallback, _ = find_layers(problem.objective)
            fallback_floats = problem.size if fallback.numel() else 0  # a point's gradient row, then its fallback
            self._point_bytes[problem.key] = bytes_per_point(
                layer_geometry(problem, layers), vectors, self.name == "ekfac", fallback_floats
            )
        return self._point_bytes[problem.key]

    def chunk_points(self, problem: _Problem, layers: list[_Layer]) -> int:
        """Training points per chunk of the factors' passes (``kronecker_pass.chunk_points``)."""
        return chunk_points(self.options, self._bytes_per_point(problem, layers))

    def work(self, operator: HessianOperator, n_rhs: int, n_train: int) -> SolverWork:
        """Building the factors: ``_passes_needed`` passes over the training set (K-FAC: 1), each a forward
        and r backward passes per point (r = 1 empirical, ``mc_samples``, or the C outputs for the exact
        expectation), counted as r x n_train Hessian-vector-product points per pass (a backward pass costs
        about half a point-vector product: an upper estimate). Once cached: nothing but the solves.
        ``memory_bytes``: the float64 eigenbases and eigenvalues (EK-FAC: its corrected eigenvalues too), and,
        while they are built, one chunk's layer inputs, output gradients and their working copies
        (``bytes_per_point``, at most ``chunk_bytes`` unless one point exceeds it; the model's own activations
        and graph for the chunk are not counted)."""
        problem = read_operator(operator)
        layers, fallback, _ = find_layers(problem.objective)
        floats = sum(
            o * o + c * c + o + c + (o * c if self.name == "ekfac" else 0) for o, c in (la.shape for la in layers)
        )
        memory = {f"{self.name} factors": 8 * (floats + fallback.numel())}
        if self.holds_factors(operator):
            return SolverWork(memory_bytes=memory)
        points = min(self.chunk_points(problem, layers), n_train)
        memory[f"{self.name} working chunk"] = points * self._bytes_per_point(problem, layers)
        backprops = self._backprops_per_point(problem) + (1 if fallback.numel() else 0)
        return SolverWork(hvp_points=self._passes_needed(problem) * backprops * n_train, memory_bytes=memory)

    def _passes_needed(self, problem: _Problem) -> int:
        return 1

    # --------------------------------------------------------------- factors

    def _kronecker_factors(self, problem: _Problem, layers: list[_Layer], fallback: torch.Tensor):
        """A and G per layer (float64, on the model's device) and the fallback's mean squared gradients."""
        dev = problem.device
        a_sums = [torch.zeros(la.shape[1], la.shape[1], dtype=torch.float64, device=dev) for la in layers]
        g_sums = [torch.zeros(la.shape[0], la.shape[0], dtype=torch.float64, device=dev) for la in layers]
        positions = [0] * len(layers)
        squares = torch.zeros(fallback.numel(), dtype=torch.float64, device=dev)
        n = len(problem.data)
        with closing(layer_chunks(self, problem, layers, f"{self.name}: Kronecker factors")) as chunks:
            for chunk in chunks:
                for i, abar in enumerate(chunk.inputs):
                    flat = abar.reshape(-1, abar.shape[2])
                    a_sums[i] += flat.T @ flat
                    positions[i] = abar.shape[1]
                    for g in chunk.grads[i]:
                        flat_g = g.reshape(-1, g.shape[2])
                        g_sums[i] += flat_g.T @ flat_g
                if fallback.numel():
                    rows = problem.objective.per_example_grads(chunk.x, chunk.y, None)
                    squares += rows[:, fallback].to(torch.float64).square().sum(0)
        self.training_passes += 1
        factors = []
        for a_sum, g_sum, t in zip(a_sums, g_sums, positions):
            lam_a, q_a = torch.linalg.eigh(a_sum / (n * t))
            lam_g, q_g = torch.linalg.eigh(g_sum / n)
            factors.append(_LayerFactors(q_a, lam_a.clamp_min(0), q_g, lam_g.clamp_min(0)))
        return factors, squares / n

    def _build(self, problem: _Problem, layers: list[_Layer], fallback: torch.Tensor):
        return self._kronecker_factors(problem, layers, fallback)

    def factors(self, operator: HessianOperator):
        """(layers, fallback indices, per-layer factors, fallback diagonal, notes): built once per cache key."""
        problem = read_operator(operator)
        layers, fallback, reasons = find_layers(problem.objective)
        if not layers:
            raise InfluenceInputError(
                f"solver={self.name!r} needs at least one nn.Linear or nn.Conv2d layer among the selected parameters; "
                f"{problem.objective.names[:5]} has none"
                + (f" it can factor ({'; '.join(reasons)})" if reasons else "")
                + ". Select such a layer with params=[...] (e.g. the last Linear layer), or use solver='cg' or 'exact'"
            )
        key = self._key(problem)
        stored = self.cache.get(key)
        if stored is None:
            self._negative_curvature = 0.0
            layer_factors, diagonal = self._build(problem, layers, fallback)
            packed = tuple((f.q_a, f.lam_a, f.q_g, f.lam_g, f.corrected) for f in layer_factors)
            stored = self.cache.put(key, (packed, diagonal, self._negative_curvature))
        packed, diagonal, negative = stored
        layer_factors = [_LayerFactors(*entry) for entry in packed]
        return problem, layers, fallback, layer_factors, diagonal, reasons, negative

    # --------------------------------------------------------------- solve

    def _denominators(self, factors: _LayerFactors, shift: float) -> torch.Tensor:
        return torch.outer(factors.lam_g, factors.lam_a) + shift

    def approximation(self) -> str:
        fisher = (
            "the empirical Fisher (the given labels)"
            if self.options.fisher == "empirical"
            else "the true Fisher (labels from the model's predictive distribution, "
            + (
                "expectation exact)"
                if self.options.mc_samples is None
                else f"{self.options.mc_samples} sampled per point)"
            )
        )
        return (
            f"K-FAC approximation of {fisher}: one Kronecker product G (x) A per Linear/Conv2d layer, no blocks "
            "between layers, plus (weight_decay + damping) I"
        )

    def solve(self, operator: HessianOperator, rhs: torch.Tensor) -> tuple[torch.Tensor, SolveDiagnostics]:
        start = time.perf_counter()
        problem, layers, fallback, layer_factors, diagonal, reasons, negative = self.factors(operator)
        shift = problem.shift
        b = rhs.to(device=problem.device, dtype=torch.float64)
        x = torch.zeros_like(b)
        m = b.shape[1]
        largest = 0.0
        denominators = []
        for factors in layer_factors:
            d = self._denominators(factors, shift)
            denominators.append(d)
            largest = max(largest, float(d.max()))
        fallback_d = diagonal + shift
        if fallback.numel():
            largest = max(largest, float(fallback_d.max()))
        smallest = min([float(d.min()) for d in denominators] + ([float(fallback_d.min())] if fallback.numel() else []))
        if not smallest > _SINGULAR_RELATIVE * largest:
            suggested = max(1e-6 * largest, 1e-12)
            raise InfluenceInputError(
                f"the {self.name} curvature is singular: its eigenvalues run from {smallest:.3g} to {largest:.3g} with "
                f"weight_decay + damping = {shift:g}. Pass damping={suggested:.3g} (or more)"
            )
        for layer, factors, d in zip(layers, layer_factors, denominators):
            out, cols = layer.shape
            v = b[layer.index.reshape(-1)].reshape(out, cols, m).permute(2, 0, 1)  # [m, out, cols]
            w = factors.q_g.T @ v @ factors.q_a
            x[layer.index.reshape(-1)] = (factors.q_g @ (w / d) @ factors.q_a.T).permute(1, 2, 0).reshape(-1, m)
        if fallback.numel():
            x[fallback] = b[fallback] / fallback_d.unsqueeze(1)
        found: list[str] = []
        if fallback.numel():
            found.append(
                f"{fallback.numel()} selected parameters lie outside the Linear/Conv2d layers that {self.name} factors"
                + (f" ({'; '.join(reasons)})" if reasons else "")
                + ": they get a diagonal fallback, the mean squared per-example gradient (empirical) plus "
                "weight_decay + damping"
            )
        if negative > 1e-8:
            found.append(
                f"the loss's curvature in output space has negative eigenvalues (down to {-negative:.2g} of the "
                "largest): only its positive part counts in the factors"
            )
        diagnostics = SolveDiagnostics(
            solver=self.name,
            n_rhs=m,
            converged=True,
            seconds=time.perf_counter() - start,
            warnings=found,
            note=self.approximation(),
        )
        return x.to(rhs.dtype), diagnostics
