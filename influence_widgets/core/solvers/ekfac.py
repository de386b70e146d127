"""EK-FAC: K-FAC's Kronecker eigenbasis with eigenvalues re-fitted to the per-example gradients
(George et al. 2018).

Per Linear/Conv2d layer, with A = Q_A diag(lambda_A) Q_A^T and G = Q_G diag(lambda_G) Q_G^T the K-FAC factors
(``kfac.py``, which defines the layers, the Fisher and its labels), EK-FAC replaces lambda_G lambda_A^T by

    S = (1/n) sum_i sum_r (Q_G^T D_ir Q_A)^2   [out, cols],   D_ir = sum_t g_irt abar_it^T,

the second moments of the per-example gradient matrices (one per output-space vector r of ``kfac.output_vectors``)
in that basis: the diagonal of the layer's Fisher block there, which is the closest diagonal-in-basis fit
(in Frobenius norm) of the block. Then x = Q_G [(Q_G^T V Q_A) / (S + shift)] Q_A^T with shift =
weight_decay + damping. Two passes over the training set (factors, then S); the factors of a K-FAC solver
with the same settings in the shared cache are reused for the first. Parameters outside such layers get
K-FAC's diagonal fallback.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass

import torch

from .kfac import KFACSolver, _LayerFactors
from .kronecker_pass import KFACOptions, _Layer, _Problem, layer_chunks


@dataclass(frozen=True)
class EKFACOptions(KFACOptions):
    """K-FAC's options (``KFACOptions``: fisher, mc_samples, seed, chunk_size); the eigenvalue correction
    uses the same Fisher (true or empirical) as the factors."""


def _rotated_second_moments(rotated_a: torch.Tensor, rotated_g: list[torch.Tensor]) -> torch.Tensor:
    """sum_i sum_r (sum_t g_irt a_it^T)^2 [out, cols] for inputs [b, T, cols] and gradients [r][b, T, out], both
    already in the eigenbasis. With one position (a Linear layer on [b, in]) the square of an outer product is
    the outer product of the squares, so the sum is one product [out, b] @ [b, cols] instead of b outer
    products; with several (Conv2d) each point's gradient matrix is formed."""
    if rotated_a.shape[1] == 1:
        g_squares = sum(g[:, 0].square() for g in rotated_g)  # [b, out], summed over r
        return g_squares.T @ rotated_a[:, 0].square()
    total = torch.zeros(rotated_g[0].shape[2], rotated_a.shape[2], dtype=rotated_a.dtype, device=rotated_a.device)
    for g in rotated_g:
        total += torch.bmm(g.transpose(1, 2), rotated_a).square().sum(0)
    return total


class EKFACSolver(KFACSolver):
    """x ~ H^-1 b with H ~ blockdiag_layers((Q_G (x) Q_A) diag(S) (Q_G (x) Q_A)^T) + diag(fallback)
    + (weight_decay + damping) I (EK-FAC).

    An approximation: no blocks between layers, each layer's block diagonal in K-FAC's eigenbasis with
    eigenvalues fitted to the per-example gradients (at least as close to the block as K-FAC's, in Frobenius
    norm), the Fisher / Gauss-Newton matrix in place of the Hessian. ``converged`` is True: the approximate
    system is solved exactly.
    """

    name = "ekfac"
    passes_per_factorisation = 2

    def __init__(self, options: EKFACOptions | None = None, progress: bool = False, cache=None) -> None:
        super().__init__(options or EKFACOptions(), progress=progress, cache=cache)

    def _kfac_key(self, problem: _Problem) -> tuple:
        opts = self.options
        return ("kfac factors", problem.key, opts.fisher, opts.mc_samples, opts.seed)

    def _passes_needed(self, problem: _Problem) -> int:
        return 1 if self._kfac_key(problem) in self.cache else 2

    def _build(self, problem: _Problem, layers: list[_Layer], fallback: torch.Tensor):
        stored = self.cache.get(self._kfac_key(problem))
        if stored is not None:
            packed, diagonal, self._negative_curvature = stored
            factors = [_LayerFactors(*entry) for entry in packed]
        else:
            factors, diagonal = self._kronecker_factors(problem, layers, fallback)
        sums = [torch.zeros(la.shape, dtype=torch.float64, device=problem.device) for la in layers]
        with closing(layer_chunks(self, problem, layers, "ekfac: eigenvalue correction")) as chunks:
            for chunk in chunks:
                for i, (abar, f) in enumerate(zip(chunk.inputs, factors)):
                    sums[i] += _rotated_second_moments(abar @ f.q_a, [g @ f.q_g for g in chunk.grads[i]])
        self.training_passes += 1
        n = len(problem.data)
        corrected = [_LayerFactors(f.q_a, f.lam_a, f.q_g, f.lam_g, (s / n).clamp_min(0)) for f, s in zip(factors, sums)]
        return corrected, diagonal

    def _denominators(self, factors: _LayerFactors, shift: float) -> torch.Tensor:
        return factors.corrected + shift

    def approximation(self) -> str:
        fisher = super().approximation().split(" of ", 1)[1].split(": one Kronecker", 1)[0]
        return (
            f"EK-FAC approximation of {fisher}: per Linear/Conv2d layer K-FAC's eigenbasis with eigenvalues "
            "fitted to the per-example gradients, no blocks between layers, plus (weight_decay + damping) I"
        )
