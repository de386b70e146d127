"""The small model zoo used by the demo, notebooks and tests, with matching per-example losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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


def cross_entropy_per_example(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Multiclass cross-entropy, one value per example."""
    return F.cross_entropy(outputs, targets, reduction="none")


def binary_logistic_per_example(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary logistic loss for one logit and 0/1 float targets, one value per example."""
    return F.binary_cross_entropy_with_logits(outputs.squeeze(-1), targets, reduction="none")


def squared_error_per_example(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Half the squared error, (1/2)(f(x) - y)^2, one value per example."""
    return 0.5 * (outputs.squeeze(-1) - targets) ** 2


# Closed-form derivatives in output space, (dl/df [b, C], d^2 l/df^2 [b, C, C]) with f the outputs
# flattened per example, or None where a case is not covered (autograd then). The closed-form linear
# layer (``core/linear_head.py``) uses a loss's ``output_derivatives`` when it has one.


def _cross_entropy_derivatives(outputs: torch.Tensor, targets: torch.Tensor):
    if outputs.ndim != 2 or targets.dtype.is_floating_point or bool((targets < 0).any()):
        return None  # soft targets or ignore_index: autograd
    probabilities = torch.softmax(outputs, dim=1)
    first = probabilities - F.one_hot(targets.long(), outputs.shape[1]).to(outputs.dtype)
    second = torch.diag_embed(probabilities) - probabilities[:, :, None] * probabilities[:, None, :]
    return first, second


def _single_output(outputs: torch.Tensor) -> torch.Tensor | None:
    flat = outputs.reshape(len(outputs), -1)
    return flat if flat.shape[1] == 1 else None


def _binary_logistic_derivatives(outputs: torch.Tensor, targets: torch.Tensor):
    flat = _single_output(outputs)
    if flat is None or targets.shape != (len(outputs),):
        return None
    probability = torch.sigmoid(flat)
    return probability - targets[:, None].to(flat.dtype), (probability * (1 - probability))[:, :, None]


def _squared_error_derivatives(outputs: torch.Tensor, targets: torch.Tensor):
    flat = _single_output(outputs)
    if flat is None or targets.shape != (len(outputs),):
        return None
    return flat - targets[:, None].to(flat.dtype), torch.ones_like(flat)[:, :, None]


cross_entropy_per_example.output_derivatives = _cross_entropy_derivatives
binary_logistic_per_example.output_derivatives = _binary_logistic_derivatives
squared_error_per_example.output_derivatives = _squared_error_derivatives
