"""The group of parameters in which the model's outputs are jointly affine.

Where f is affine in a group L (a final linear layer; every parameter of a linear or logistic
regression), nabla^2_LL f_k = 0, so the (L, L) block of the Hessian is the Gauss-Newton block exactly,
and its columns need no Hessian-vector products. The group is searched on a few training points
(``affine_parameter_mask``) and then checked on every point (``affine_on``) before it is relied on.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

import torch
from torch.func import jvp

from .objective import Objective
from .sources import TrainingSums

_AFFINE_RTOL = 1e-12  # second derivative along a probe, relative to the first: "exactly zero"
_AFFINE_SAMPLE = 8  # training points on which the affine parameter group is searched (then checked on all)


def _second_derivative_vanishes(objective: Objective, x: torch.Tensor, mask: torch.Tensor, seed: int) -> bool:
    """Whether d^2/dt^2 f(x_i; theta + t v) = 0 at t = 0 for a random probe v supported on ``mask``.

    For a nonzero quadratic form the probe's value vanishes with probability zero, so one probe decides.
    """
    generator = torch.Generator().manual_seed(seed)
    theta = objective.theta
    v = torch.randn(theta.shape, generator=generator, dtype=torch.float64).to(theta) * mask.to(theta)

    def directional(t: torch.Tensor) -> torch.Tensor:
        return jvp(lambda th: objective.outputs(x, th), (t,), (v,))[1]

    first, second = jvp(directional, (theta,), (v,))
    scale = max(float(first.abs().max()), torch.finfo(theta.dtype).tiny)
    return float(second.abs().max()) <= _AFFINE_RTOL * scale


def affine_parameter_mask(objective: Objective, sample: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A group L of parameters in which the model's outputs are jointly affine, as a bool mask [p].

    All parameters first (a linear model); otherwise parameter tensors are tried from the last to the
    first and kept when the outputs stay affine in the group with them, tested by the second
    directional derivative along a random probe on the inputs ``sample``. So a final linear layer is
    found, and of two stacked linear layers only the last. Check the group on every training point
    with ``affine_on`` before relying on it.
    """
    everything = torch.ones(objective.size, dtype=torch.bool, device=objective.device)
    if _second_derivative_vanishes(objective, sample, everything, seed):
        return everything
    mask = torch.zeros_like(everything)
    ends = torch.cumsum(torch.tensor(objective.numels), 0).tolist()
    for end, numel in reversed(list(zip(ends, objective.numels))):
        candidate = mask.clone()
        candidate[end - numel : end] = True
        if _second_derivative_vanishes(objective, sample, candidate, seed):
            mask = candidate
    return mask


def affine_on(objective: Objective, mask: torch.Tensor, batches: Iterable[torch.Tensor], seed: int = 1) -> bool:
    """Whether the outputs are affine in the ``mask`` group on every input batch (a fresh random probe)."""
    return all(_second_derivative_vanishes(objective, x, mask, seed) for x in batches)


def _affine_on_batch(objective: Objective, x: torch.Tensor, mask: torch.Tensor, seed: int = 1) -> bool:
    return _second_derivative_vanishes(objective, x, mask, seed)


def _closed_form_on_batch(objective: Objective, x: torch.Tensor) -> bool:
    return objective.closed_form_holds_on([x])


class AffineGroup:
    """The affine group of one objective over one training source, found once and cached (bool masks [p])."""

    def __init__(self, objective: Objective, source: TrainingSums) -> None:
        self.objective = objective
        self.source = source
        self._sample: torch.Tensor | None = None
        self._everywhere: torch.Tensor | None = None

    def on_sample(self) -> torch.Tensor:
        """The group as found on a few training points (``affine_parameter_mask`` on the first 8; no full pass)."""
        if self._sample is None:
            sample, _ = self.source.take(torch.arange(min(_AFFINE_SAMPLE, self.source.n)))
            self._sample = affine_parameter_mask(self.objective, sample)
        return self._sample

    def best_known(self) -> torch.Tensor:
        """``everywhere()`` once it has been computed, else ``on_sample()``."""
        return self.on_sample() if self._everywhere is None else self._everywhere

    def everywhere(self) -> torch.Tensor:
        """The group checked on every training point: the closed-form layer's (all parameters) where it holds
        on every batch; else all parameters if one probe finds the model affine on every point; else the
        sample's group if it passes on every point; else empty. Computed once."""
        if self._everywhere is None:
            objective, source = self.objective, self.source
            everything = torch.ones(objective.size, dtype=torch.bool, device=objective.device)
            if source.holds_everywhere(objective, _closed_form_on_batch):  # False at once without a closed form
                self._everywhere = everything
                return everything
            mask = everything
            if not source.holds_everywhere(objective, partial(_affine_on_batch, mask=everything)):
                mask = self.on_sample()  # searched on a few points ...
                if mask.any() and not source.holds_everywhere(objective, partial(_affine_on_batch, mask=mask)):
                    mask = torch.zeros_like(mask)  # ... and refused by the check on all
            self._everywhere = mask
        return self._everywhere
