"""The small model zoo used by the demo, notebooks and tests (their per-example losses live in the core,
``core.curvature.losses``, with their closed-form derivatives).

Plain torch and nothing of this package, so that the benchmarks can load this file alone in the peers'
environments (``bench/peer_tasks.models_module``).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LogisticRegression", "SmallCNN"]


class LogisticRegression(nn.Module):
    """Linear model: one logit for binary targets (n_classes=2), else one logit per class."""

    def __init__(self, n_features: int, n_classes: int) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.linear = nn.Linear(n_features, 1 if n_classes == 2 else n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


class SmallCNN(nn.Module):
    """A CNN for 8x8 digits with smooth (tanh) activations so that its Hessian exists everywhere.

    With the defaults it has 1,626 parameters: conv 1->4 (3x3), conv 4->8 (3x3, stride 2),
    then a linear layer to the classes.
    """

    def __init__(self, n_classes: int = 10, channels: tuple[int, int] = (4, 8)) -> None:
        super().__init__()
        c1, c2 = channels
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.fc = nn.Linear(c2 * 16, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.conv1(x))
        x = torch.tanh(self.conv2(x))
        return self.fc(x.flatten(1))
