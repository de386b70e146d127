"""Per-example losses that the paper uses beyond cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class SmoothHinge:
    """The smooth hinge t * log(1 + exp((1 - s) / t)), s = y f(x), of the paper's Section 4.2.

    Targets are 0/1 (mapped to -1/+1) or -1/+1; outputs are one score per example ([b] or [b, 1]).
    t = 0 is the plain hinge max(0, 1 - s), whose Hessian is zero almost everywhere; t > 0 smooths it
    so that influence functions apply. One value per example, shape [b].
    """

    def __init__(self, t: float = 0.001) -> None:
        if not t >= 0:
            raise ValueError(f"the smoothing temperature t must be >= 0, got {t}")
        self.t = float(t)

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        signs = torch.where(targets > 0, 1.0, -1.0).to(outputs.dtype)
        margin = 1 - signs * outputs.reshape(len(outputs))
        if self.t == 0:
            return F.relu(margin)
        return self.t * F.softplus(margin / self.t)

    def __repr__(self) -> str:
        return f"SmoothHinge(t={self.t})"
