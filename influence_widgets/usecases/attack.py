"""Training-set attacks (the paper's Section 5.2): perturb a training input to flip a test prediction.

Each step moves the chosen training inputs by ``step_size`` along sign(I_pert,loss(z, z_test)) (the
direction that raises the test loss), keeps them within ``epsilon`` of the originals in the L-infinity
norm and inside ``input_range``, and retrains a copy before the next step. The flip is judged by
retraining, not by the linear prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..core.errors import InfluenceInputError
from ..core.inputs import as_real, check_indices
from ..core.predictions import predicted_classes
from ..core.retrain import retrain_copy


@dataclass
class AttackResult:
    """Perturbed training inputs ``perturbed`` [k, *x_shape] at ``indices``, and what retraining showed."""

    indices: torch.Tensor
    original: torch.Tensor
    perturbed: torch.Tensor
    prediction_before: int
    prediction_after: int
    predicted_loss_change: float
    observed_loss_change: float
    steps_done: int = 0
    stopped_early: bool = False

    @property
    def flipped(self) -> bool:
        return self.prediction_after != self.prediction_before

    @property
    def max_change(self) -> float:
        """L-infinity size of the perturbation."""
        return float((self.perturbed - self.original).abs().max())


def _prediction(model: torch.nn.Module, x: torch.Tensor) -> int:
    """The predicted class of one input [1, ...] by a retrained copy."""
    with torch.no_grad():
        return int(predicted_classes(model(x))[0])


def training_set_attack(
    explainer,
    x_test: Any,
    y_test: Any,
    epsilon: float,
    *,
    train_indices: Any = None,
    n_points: int = 1,
    steps: int = 10,
    step_size: float | None = None,
    input_range: tuple[float, float] = (0.0, 1.0),
    retrain: Any = None,
    require_correct: bool = True,
) -> AttackResult:
    """Perturb ``n_points`` training inputs (default: the largest |I_up,loss| for this test point) to raise
    the test loss of one test point, retraining after each step. ``step_size`` defaults to epsilon / 4.

    An interrupt keeps the steps done (``steps_done``, ``stopped_early``): the result then describes the
    last retrained model and the inputs it was trained on. The explainer's training data is never changed."""
    if not (isinstance(input_range, (tuple, list)) and len(input_range) == 2):
        raise InfluenceInputError(f"input_range must be a pair (low, high), got {input_range!r}; e.g. (0.0, 1.0)")
    lo = as_real(input_range[0], "input_range[0]", fix="pass input_range=(low, high), e.g. (0.0, 1.0)")
    hi = as_real(input_range[1], "input_range[1]", fix="pass input_range=(low, high), e.g. (0.0, 1.0)")
    if not hi > lo:
        raise InfluenceInputError(f"input_range must be (low, high) with high > low, got {input_range}")
    epsilon = as_real(epsilon, "epsilon", fix="the largest change per input value, e.g. 0.1")
    if not 0 < epsilon <= hi - lo:
        raise InfluenceInputError(
            f"epsilon must lie in (0, {hi - lo:g}] for inputs in {input_range}, got {epsilon}; it is the largest "
            "change allowed per input value (L-infinity)"
        )
    steps = as_real(steps, "steps", minimum=1, integer=True, fix="pass e.g. steps=10")
    n_points = as_real(n_points, "n_points", minimum=1, maximum=explainer.n_train, integer=True, fix="pass e.g. 1")
    if step_size is not None:
        step_size = as_real(step_size, "step_size", strictly_above=0, fix="pass e.g. epsilon / 4, or None")
    if not isinstance(require_correct, bool):
        raise InfluenceInputError(f"require_correct must be True or False, got {require_correct!r}")
    x, y = explainer.coerce_test(x_test, y_test)
    if len(x) != 1:
        raise InfluenceInputError(f"attack one test point at a time; got {len(x)}")
    x_dev, y_dev = x.to(explainer.device), y.to(explainer.device)
    before = int(explainer.predicted_classes(x)[0])
    if require_correct and before != int(y.reshape(-1)[0]):
        raise InfluenceInputError(
            "the model already misclassifies this test point; pick a correctly classified one, or pass "
            "require_correct=False"
        )
    if train_indices is None:
        influence = explainer.influence(x, y)[0]
        train_indices = torch.argsort(influence.abs(), descending=True)[:n_points]
    indices = check_indices(train_indices, explainer.n_train, "train_indices")
    step_size = epsilon / 4 if step_size is None else step_size
    data_x = explainer.data.x.clone()
    original = data_x[indices].clone()
    first_direction = explainer.influence_pert_loss(x, y, indices)[0]
    current = explainer
    model = explainer.model
    attacked = original.clone()  # the inputs that ``model`` was retrained on
    done, stopped = 0, False
    try:
        for _ in range(steps):
            direction = current.influence_pert_loss(x, y, indices)[0]
            moved = attacked + step_size * torch.sign(direction).to(data_x.dtype)
            moved = torch.clamp(torch.minimum(torch.maximum(moved, original - epsilon), original + epsilon), lo, hi)
            trial = data_x.clone()
            trial[indices] = moved
            retrained = retrain_copy(explainer, trial, explainer.data.y, retrain)
            model, attacked, data_x, done = retrained, moved, trial, done + 1  # a step is kept whole or not at all
            current = explainer.for_model(model, data_x)
    except KeyboardInterrupt:  # keep the steps done: the last model and the inputs it was trained on
        stopped = True
    with torch.no_grad():
        observed = float(explainer.loss_fn(model(x_dev), y_dev).sum().cpu() - explainer.losses(x, y).sum())
    delta = (data_x[indices] - original).to(first_direction.dtype)
    predicted = float((delta * first_direction).sum()) / explainer.n_train
    return AttackResult(
        indices,
        original,
        data_x[indices].clone(),
        before,
        _prediction(model, x_dev),
        predicted,
        observed,
        steps_done=done,
        stopped_early=stopped,
    )
