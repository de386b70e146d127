"""Test measurements other than the loss, for ``measurement=`` in the explainer.

A measurement has the loss's signature, ``fn(outputs [b, ...], targets [b]) -> values [b]``,
and replaces L(z_test) in I_up = -nabla_theta m(z_test)^T H^-1 nabla_theta loss(z). The class
"predicted" is the argmax of the outputs at the trained parameters, held fixed while differentiating.
"""

from __future__ import annotations

import torch


def predicted_class_logit(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The logit of the predicted class; upweighting a point with positive influence raises it."""
    predicted = outputs.detach().argmax(dim=-1, keepdim=True)
    return outputs.gather(-1, predicted).squeeze(-1)


def predicted_class_probability(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The softmax probability of the predicted class."""
    predicted = outputs.detach().argmax(dim=-1, keepdim=True)
    return torch.softmax(outputs, dim=-1).gather(-1, predicted).squeeze(-1)


def true_class_probability(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The softmax probability of the target class (targets are class indices)."""
    return torch.softmax(outputs, dim=-1).gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)
