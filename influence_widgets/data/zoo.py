"""Ready-trained built-in models on the built-in digits, deterministic for a seed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from .datasets import Split, load_digits
from .models import LogisticRegression, SmallCNN, cross_entropy_per_example
from .training import LossFn, fit_adam, fit_lbfgs

ModelKind = Literal["logreg", "cnn"]


@dataclass
class TrainedDigits:
    """A model fit to ``split`` by minimising (1/n) sum loss + (weight_decay/2)||theta||^2."""

    model: nn.Module
    loss_fn: LossFn
    split: Split
    weight_decay: float
    kind: ModelKind


def train_digits_model(
    kind: ModelKind = "cnn", *, seed: int = 0, weight_decay: float | None = None, dtype: torch.dtype = torch.float64
) -> TrainedDigits:
    """Train the built-in model on all ten digits.

    ``"logreg"``: multiclass logistic regression (650 parameters, convex), L-BFGS to convergence.
    ``"cnn"``: ``SmallCNN`` (1,210 parameters), Adam then full-batch L-BFGS to a small gradient norm.
    Default weight decay: 0.01 for logreg, 0.001 for the CNN.
    """
    if kind not in ("logreg", "cnn"):
        raise ValueError(f"unknown model kind {kind!r}; choose 'logreg' or 'cnn'")
    torch.manual_seed(seed)
    split = load_digits(seed=seed, as_images=kind == "cnn", dtype=dtype)
    loss_fn = cross_entropy_per_example
    if kind == "logreg":
        wd = 0.01 if weight_decay is None else weight_decay
        model = LogisticRegression(64, 10).to(dtype)
        fit_lbfgs(model, loss_fn, split.X_train, split.y_train, wd)
    else:
        wd = 0.001 if weight_decay is None else weight_decay
        model = SmallCNN(10).to(dtype)
        fit_adam(model, loss_fn, split.X_train, split.y_train, wd, steps=300, lr=0.02)
        fit_lbfgs(model, loss_fn, split.X_train, split.y_train, wd, max_iter=300)
    return TrainedDigits(model, loss_fn, split, wd, kind)
