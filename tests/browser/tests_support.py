"""A small explorer on the built-in digits, shared by the browser tests."""

from __future__ import annotations

import torch

from influence_widgets import InfluenceExplainer
from influence_widgets.data import LogisticRegression, cross_entropy_per_example, fit_lbfgs, load_digits
from influence_widgets.widgets import explore


def small_explorer(n_train: int = 200, n_test: int = 8, **kwargs):
    torch.manual_seed(0)
    split = load_digits(seed=0)
    x, y = split.X_train[:n_train], split.y_train[:n_train]
    model = LogisticRegression(64, 10)
    fit_lbfgs(model, cross_entropy_per_example, x, y, 0.01)
    ex = InfluenceExplainer(model, cross_entropy_per_example, x, y, weight_decay=0.01, progress=False)
    return explore(
        ex,
        split.X_test[:n_test],
        split.y_test[:n_test],
        images_train=split.images_train[:n_train],
        images_test=split.images_test[:n_test],
        class_names=[str(c) for c in range(10)],
        **kwargs,
    )
