"""Ready-trained built-in models on the built-in digits, deterministic for a seed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..core.curvature.losses import cross_entropy_per_example
from ..core.errors import InfluenceInputError
from .datasets import Split, load_digits
from .models import LogisticRegression, SmallCNN
from .training import LossFn, fit_adam, fit_lbfgs, fit_to_minimum, gradient_norm

ModelKind = Literal["logreg", "cnn"]


@dataclass
class TrainedDigits:
    """A model fit to ``split`` by minimising (1/n) sum loss + (weight_decay/2)||theta||^2."""

    model: nn.Module
    loss_fn: LossFn
    split: Split
    weight_decay: float
    kind: ModelKind
    gradient_norm: float = float("nan")  # ||nabla R(theta_hat)|| after training


def train_digits_model(
    kind: ModelKind = "cnn",
    *,
    seed: int = 0,
    weight_decay: float | None = None,
    dtype: torch.dtype = torch.float64,
    progress: bool = False,
) -> TrainedDigits:
    """Train the built-in model on all ten digits, to a minimum of R(theta) = (1/n) sum loss + (lambda/2)||theta||^2.

    ``"logreg"``: multiclass logistic regression (650 parameters, convex), L-BFGS to convergence.
    ``"cnn"``: ``SmallCNN`` (1,626 parameters), 300 full-batch Adam steps, then restarted full-batch
    L-BFGS until ||nabla R|| <= 1e-6 (``fit_to_minimum``), so that influence functions, which assume
    a stationary point, apply. Default weight decay: 0.01 for logreg, 0.001 for the CNN.
    ``progress`` shows ``tqdm.auto`` bars for the CNN's training.
    """
    if kind not in ("logreg", "cnn"):
        raise InfluenceInputError(f"kind={kind!r} is not a built-in model; choose 'logreg' or 'cnn'")
    torch.manual_seed(seed)
    split = load_digits(seed=seed, as_images=kind == "cnn", dtype=dtype)
    loss_fn = cross_entropy_per_example
    if kind == "logreg":
        wd = 0.01 if weight_decay is None else weight_decay
        model = LogisticRegression(64, 10).to(dtype)
        fit_lbfgs(model, loss_fn, split.X_train, split.y_train, wd)
        norm = gradient_norm(model, loss_fn, split.X_train, split.y_train, wd)
    else:
        wd = 0.001 if weight_decay is None else weight_decay
        model = SmallCNN(10).to(dtype)
        fit_adam(model, loss_fn, split.X_train, split.y_train, wd, steps=300, lr=0.02, progress=progress)
        norm = fit_to_minimum(model, loss_fn, split.X_train, split.y_train, wd, progress=progress)
    return TrainedDigits(model, loss_fn, split, wd, kind, norm)
