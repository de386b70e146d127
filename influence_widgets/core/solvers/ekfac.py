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
                    rotated_a = abar @ f.q_a  # [b, T, cols]
                    for g in chunk.grads[i]:
                        rotated = torch.einsum("bto,btc->boc", g @ f.q_g, rotated_a)
                        sums[i] += rotated.square().sum(0)
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
