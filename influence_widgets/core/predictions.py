"""The predicted-class rule, written once: argmax of several class scores, or score > 0 for one logit."""

from __future__ import annotations

import torch


def predicted_classes(outputs: torch.Tensor) -> torch.Tensor:
    """Class indices [b] (int64, on the outputs' device) from model outputs [b, C] or [b] / [b, 1].

    C > 1: the argmax of the scores. One column (a binary logit): 1 where the logit is > 0, else 0.
    """
    if outputs.ndim == 2 and outputs.shape[1] > 1:
        return outputs.argmax(1)
    return (outputs.reshape(len(outputs)) > 0).long()
