"""Fixing mislabelled examples (the paper's Section 5.4): which training labels to check first.

A mislabelled point leans on itself: its self-influence |I_up,loss(z_i, z_i)| = nabla L_i^T H^-1 nabla L_i
is large. Ranking by it is compared with ranking by training loss and at random.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..core.errors import InfluenceInputError
from ..core.inputs import as_real, as_tensor, check_class_targets, check_finite
from ..core.predictions import predicted_classes
from ..core.retrain import retrain_copy

METHODS = ("self_influence", "loss", "random")


def check_fractions(fractions: Sequence[float]) -> np.ndarray:
    if isinstance(fractions, (str, bytes)) or not hasattr(fractions, "__iter__"):
        raise InfluenceInputError(f"fractions must be a sequence of numbers in (0, 1], got {fractions!r}")
    try:
        values = np.asarray([float(as_real(f, "fractions")) for f in fractions], dtype=float)
    except InfluenceInputError as error:
        raise InfluenceInputError(f"fractions must be numbers in (0, 1], got {list(fractions)!r}") from error
    if values.size == 0 or not ((values > 0) & (values <= 1)).all():
        raise InfluenceInputError(f"fractions must lie in (0, 1], got {list(fractions)}")
    return np.sort(values)


def review_scores(explainer, method: str = "self_influence", seed: int = 0) -> np.ndarray:
    """Suspicion of each training point, float64 [n_train], larger = check first: |self-influence|
    -I_up,loss(z_i, z_i) = nabla L_i^T H^-1 nabla L_i (no 1/n) for ``"self_influence"``, the training loss
    for ``"loss"``, a seeded random permutation of 0..n-1 for ``"random"``."""
    if not isinstance(method, str) or method not in METHODS:
        raise InfluenceInputError(f"unknown method {method!r}; choose one of {METHODS}")
    if method == "self_influence":
        return -explainer.self_influence().double().numpy()  # = grad^T H^-1 grad >= 0 for PD H
    if method == "loss":
        return explainer.losses(explainer.data.x, explainer.data.y).double().numpy()
    return np.random.default_rng(seed).permutation(explainer.n_train).astype(float)


def review_order(explainer, method: str = "self_influence", seed: int = 0) -> np.ndarray:
    """Training indices, most suspicious first, by ``"self_influence"`` magnitude, ``"loss"`` or ``"random"``
    (``review_scores``, largest first; ties keep the training order)."""
    return np.argsort(-review_scores(explainer, method, seed), kind="stable")


@dataclass
class TriageResult:
    """Per method, at each fraction of the training set checked: the share of flipped labels found and,
    when a test set was given, the test accuracy after fixing them and retraining."""

    fractions: np.ndarray
    n_flipped: int
    found: dict[str, np.ndarray] = field(default_factory=dict)
    accuracy: dict[str, np.ndarray] = field(default_factory=dict)
    accuracy_before: float | None = None
    accuracy_clean: float | None = None
    orders: dict[str, np.ndarray] = field(default_factory=dict)
    stopped_early: bool = False

    def summary(self) -> str:
        lines = [f"{self.n_flipped} flipped labels; share found after checking each fraction of the training set:"]
        for method, found in self.found.items():
            cells = ", ".join(f"{f:.0%}: {v:.0%}" for f, v in zip(self.fractions, found))
            acc = self.accuracy.get(method)
            lines.append(f"  {method:<15}{cells}" + (f"; test accuracy {acc[-1]:.3f}" if acc is not None else ""))
        return "\n".join(lines)


def prediction_accuracy(predicted: Any, y: Any) -> float:
    """The share of ``predicted`` classes [m] equal to the labels ``y`` [m] (tensors or arrays)."""
    predicted, y = torch.as_tensor(predicted).cpu(), torch.as_tensor(y).cpu()
    return float((predicted.reshape(-1) == y.reshape(-1).long()).double().mean())


def accuracy_of(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Test accuracy of a model (a retrained copy) on inputs ``x`` on its device, by ``predicted_classes``."""
    with torch.no_grad():
        outputs = model(x)
    return prediction_accuracy(predicted_classes(outputs), y)


def simulate_triage(
    explainer,
    y_clean: Any,
    fractions: Sequence[float] = (0.05, 0.1, 0.15, 0.2, 0.3),
    *,
    methods: Sequence[str] = METHODS,
    X_test: Any = None,
    y_test: Any = None,
    retrain: Any = None,
    seed: int = 0,
) -> TriageResult:
    """Check the top fraction of training points by each method and fix the labels that were flipped.

    ``explainer`` is built on the noisy labels; ``y_clean`` holds the true ones. With a test set, each
    fixed label set is retrained (a warm-started copy, the explainer's objective) and scored. An
    interrupt keeps the fractions done (``stopped_early``; ``found[m]`` may be shorter than ``fractions``).
    """
    fractions = check_fractions(fractions)
    if isinstance(methods, str) or not all(isinstance(m, str) and m in METHODS for m in methods) or not methods:
        raise InfluenceInputError(f"methods must be a non-empty list drawn from {METHODS}, got {methods!r}")
    seed = as_real(seed, "seed", integer=True, fix="pass an integer seed")
    if (X_test is None) != (y_test is None):
        raise InfluenceInputError(
            "pass both X_test and y_test to score the retrained models on a test set, or neither to count labels only"
        )
    explainer.check_training_data_unchanged()
    noisy = explainer.data.y.cpu()
    clean = as_tensor(y_clean, "y_clean").cpu()
    if clean.shape != noisy.shape:
        raise InfluenceInputError(
            f"y_clean has shape {tuple(clean.shape)} but y_train has {tuple(noisy.shape)}; pass the true label of "
            "every training point, in the training order"
        )
    check_finite(clean, "y_clean")
    if clean.is_floating_point() != noisy.is_floating_point():
        raise InfluenceInputError(
            f"y_clean is {clean.dtype} but y_train is {noisy.dtype}; pass the true labels encoded like y_train"
        )
    clean = clean.to(noisy.dtype)
    if explainer.n_outputs is not None:
        check_class_targets(clean, explainer.n_outputs, "y_clean")
    flipped = (clean != noisy).numpy()
    n_flipped = int(flipped.sum())
    if n_flipped == 0:
        raise InfluenceInputError("y_clean equals the explainer's labels: there is no flipped label to find")
    result = TriageResult(fractions, n_flipped)
    evaluate = X_test is not None
    if evaluate:
        x_test, y_test_t = explainer.coerce_test(X_test, y_test)
        result.accuracy_before = prediction_accuracy(explainer.predicted_classes(x_test), y_test_t)
        x_test = x_test.to(explainer.device)
    try:
        if evaluate:
            clean_model = retrain_copy(explainer, explainer.data.x, clean, retrain)
            result.accuracy_clean = accuracy_of(clean_model, x_test, y_test_t)
        for method in methods:
            order = review_order(explainer, method, seed)
            result.orders[method] = order
            found, accuracy = [], []
            for fraction in fractions:
                checked = order[: round(fraction * explainer.n_train)]
                if evaluate:
                    fixed = noisy.clone()
                    fixed[checked] = clean[checked]
                    accuracy.append(
                        accuracy_of(retrain_copy(explainer, explainer.data.x, fixed, retrain), x_test, y_test_t)
                    )
                found.append(flipped[checked].sum() / n_flipped)
                result.found[method] = np.asarray(found)  # kept as it grows: an interrupt keeps what is done
                if evaluate:
                    result.accuracy[method] = np.asarray(accuracy)
    except KeyboardInterrupt:
        result.stopped_early = True
    return result
