"""Shared, seeded fixtures: small models trained to convergence on built-in data."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from influence_widgets.data import (
    LogisticRegression,
    binary_logistic_per_example,
    cross_entropy_per_example,
    fit_lbfgs,
    load_digits,
)

WEIGHT_DECAY = 0.01


@dataclass
class Trained:
    model: nn.Module
    loss_fn: object
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    weight_decay: float


@pytest.fixture(scope="session")
def binary_logreg() -> Trained:
    torch.manual_seed(0)
    split = load_digits((1, 7), dtype=torch.float64, seed=0)
    model = LogisticRegression(64, 2).double()
    fit_lbfgs(model, binary_logistic_per_example, split.X_train, split.y_train, WEIGHT_DECAY)
    return Trained(
        model,
        binary_logistic_per_example,
        split.X_train,
        split.y_train,
        split.X_test[:8],
        split.y_test[:8],
        WEIGHT_DECAY,
    )


@pytest.fixture(scope="session")
def multiclass_logreg() -> Trained:
    torch.manual_seed(0)
    split = load_digits(dtype=torch.float64, seed=0)
    x, y = split.X_train[:500], split.y_train[:500]
    model = LogisticRegression(64, 10).double()
    fit_lbfgs(model, cross_entropy_per_example, x, y, WEIGHT_DECAY)
    return Trained(model, cross_entropy_per_example, x, y, split.X_test[:6], split.y_test[:6], WEIGHT_DECAY)
