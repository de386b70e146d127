"""Kernel time to switch the explorer to a new test point, train gradients already cached.

    python bench/interaction.py

Digits with logistic regression (1,347 training points) and with the small CNN, and a 10,000-point
training set (the digits, jittered copies). Each row: median and worst time of ``Explorer.show`` over
10 test points never shown before (s_test solve, one matrix product, distances, traits set), and a
return to a point already seen.
"""

from __future__ import annotations

import statistics
import time

import torch

from influence_widgets import InfluenceExplainer
from influence_widgets.data import LogisticRegression, cross_entropy_per_example, fit_lbfgs, load_digits
from influence_widgets.data.zoo import train_digits_model
from influence_widgets.widgets import explore


def measure(label, explainer, x_test, y_test, images_train, images_test):
    explorer = explore(explainer, x_test[:11], y_test[:11], images_train=images_train, images_test=images_test[:11])
    times = []
    for i in range(1, 11):
        start = time.perf_counter()
        explorer.show(i)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    explorer.show(3)
    again = time.perf_counter() - start
    print(
        f"{label:<40} n_train {explainer.n_train:>6}  new point: median {1000 * statistics.median(times):6.1f} ms, "
        f"worst {1000 * max(times):6.1f} ms;  seen point {1000 * again:5.1f} ms"
    )


def main() -> None:
    torch.manual_seed(0)
    split = load_digits(seed=0)
    model = LogisticRegression(64, 10)
    fit_lbfgs(model, cross_entropy_per_example, split.X_train, split.y_train, 0.01)
    ex = InfluenceExplainer(
        model, cross_entropy_per_example, split.X_train, split.y_train, weight_decay=0.01, progress=False
    )
    measure(
        "digits, logistic regression (exact)", ex, split.X_test, split.y_test, split.images_train, split.images_test
    )
    trained = train_digits_model("cnn", dtype=torch.float32)
    s = trained.split
    ex = InfluenceExplainer(
        trained.model,
        trained.loss_fn,
        s.X_train,
        s.y_train,
        weight_decay=trained.weight_decay,
        damping=0.01,
        progress=False,
    )
    measure("digits, small CNN (exact, damping 0.01)", ex, s.X_test, s.y_test, s.images_train, s.images_test)
    copies = 8
    generator = torch.Generator().manual_seed(0)
    x_big = torch.cat(
        [split.X_train + 0.05 * torch.randn(split.X_train.shape, generator=generator) for _ in range(copies)]
    )[:10_000].clamp(0, 1)
    y_big = split.y_train.repeat(copies)[:10_000]
    model = LogisticRegression(64, 10)
    fit_lbfgs(model, cross_entropy_per_example, x_big, y_big, 0.01)
    ex = InfluenceExplainer(model, cross_entropy_per_example, x_big, y_big, weight_decay=0.01, progress=False)
    measure(
        "10,000 jittered digits, logistic regression",
        ex,
        split.X_test,
        split.y_test,
        x_big.reshape(-1, 8, 8),
        split.images_test,
    )


if __name__ == "__main__":
    main()
