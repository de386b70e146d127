"""The explainer's checks of what it is given: the model and loss on two rows, a deterministic forward,
class targets against the outputs, test points against the training set, and unchanged training data."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .caches import tensor_digest
from .curvature.objective import Objective
from .curvature.selection import describe_output
from .errors import InfluenceInputError
from .inputs import (
    as_tensor,
    cast_inputs,
    cast_targets,
    check_class_targets,
    check_feature_shape,
    check_pair,
    check_targets_match,
)
from .training_data import StreamedData, TrainingData

Measurement = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _rng_left_alone(device: torch.device):
    """Run a check's forward passes without advancing the user's global random state."""
    return torch.random.fork_rng(devices=[] if device.type != "cuda" else [device])


class InputChecks:
    """Checks of the model, the loss and the data, shared by every query of ``InfluenceExplainer``."""

    objective: Objective
    data: TrainingData | StreamedData
    _n_outputs: int | None
    _fingerprint: tuple[Any, ...] | None

    @property
    def n_train(self) -> int:
        return len(self.data)

    def _check_model_and_loss(self, fn: Measurement, fn_name: str) -> None:
        """Run the model and ``fn`` on two training rows; explain what is wrong if that fails."""
        x, y = self.data.take(torch.arange(min(2, self.n_train)))
        try:
            with torch.no_grad(), _rng_left_alone(x.device):  # a random forward must not move the user's RNG
                outputs = self.objective.outputs(x)
        except InfluenceInputError:
            raise
        except Exception as error:  # the user's forward can raise anything
            raise InfluenceInputError(
                f"the model could not run on X_train rows of shape {tuple(x.shape[1:])}: {error}. "
                "Pass the inputs in the form and preprocessing the model was trained on."
            ) from error
        if not isinstance(outputs, torch.Tensor):
            chosen = "" if self.objective.output is None else f" (after output={self.objective.output!r})"
            raise InfluenceInputError(f"the model returns {describe_output(outputs)}{chosen}; the loss needs a tensor")
        if not outputs.is_floating_point():
            raise InfluenceInputError(
                f"the model returns {outputs.dtype} outputs; influence differentiates them, so the selected output "
                "must be floating point (logits or predictions), e.g. output=<index of the logits>"
            )
        try:
            with torch.no_grad():
                values = fn(outputs, y)
        except Exception as error:
            raise InfluenceInputError(
                f"{fn_name}(outputs, targets) failed on outputs of shape {tuple(outputs.shape)} and targets of "
                f"shape {tuple(y.shape)}: {error}"
            ) from error
        if not isinstance(values, torch.Tensor) or values.shape != (len(x),):
            shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
            raise InfluenceInputError(
                f"{fn_name} must return one value per example, shape ({len(x)},) for a batch of {len(x)}, but "
                f"returned {shape}. Use reduction='none' (e.g. nn.CrossEntropyLoss(reduction='none')), and squeeze "
                "a single output column (outputs.squeeze(-1)) for binary losses."
            )

    def _check_deterministic(self, x: torch.Tensor) -> None:
        """Two forwards on the same rows must agree: dropout left on (``F.dropout`` without
        ``training=self.training``) or sampling in ``forward`` would make every score noise."""
        with torch.no_grad(), _rng_left_alone(x.device):
            first = self.objective.outputs(x)
            second = self.objective.outputs(x)
        if torch.equal(first, second):
            return
        scale = float(first.abs().max().clamp_min(torch.finfo(first.dtype).tiny))
        difference = float((first - second).abs().max())
        if difference <= 1e-6 * scale:  # nondeterministic reductions (some GPU kernels): rounding only
            return
        raise InfluenceInputError(
            f"the model gives different outputs on the same input in eval mode (up to {difference:.3g}, "
            f"{difference / scale:.1%} of the largest output): its forward is random, for example F.dropout(x) "
            "without training=self.training, or sampling. Influence of a random function is noise; use nn.Dropout "
            "modules (off in eval mode), F.dropout(x, training=self.training), or remove the sampling from forward"
        )

    def _output_columns(self, x: torch.Tensor) -> int | None:
        """C when the outputs are [b, C] class scores with C > 1 and the targets class indices, else None."""
        with torch.no_grad():
            outputs = self.objective.outputs(x[:1])
        y_dtype = self.data.take(torch.arange(1))[1].dtype if self.data.streamed else self.data.y.dtype
        if outputs.ndim == 2 and outputs.shape[1] > 1 and not y_dtype.is_floating_point and y_dtype != torch.bool:
            return int(outputs.shape[1])
        return None

    def _training_fingerprint(self) -> tuple[Any, ...] | None:
        """Digests of the training tensors (``caches.tensor_digest``), to notice in-place changes after
        construction and to key the caches by the data; None for a Dataset (read afresh, never cached whole)."""
        if self.data.streamed:
            return None
        return tensor_digest(self.data.x), tensor_digest(self.data.y)

    def check_training_data_unchanged(self) -> None:
        """Refuse when X_train or y_train was changed in place after construction (caches would mix data)."""
        if self._fingerprint is not None and self._training_fingerprint() != self._fingerprint:
            raise InfluenceInputError(
                "X_train or y_train was changed in place after this explainer was built, so its cached gradients "
                "and Hessian describe other data. Build a new explainer on the new data (explainer.for_model(model, "
                "X_train.clone(), y_train.clone())), or pass copies (X_train.clone()) when you mean to edit them"
            )

    def coerce_test(self, X_test: Any, y_test: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Test inputs [m, *feature_shape] and targets as tensors in the model's dtype (CPU or as given),
        checked against the training set: shapes, target kind, class labels against the outputs, finiteness.
        A single point (no leading batch dimension) becomes a batch of one."""
        self.check_training_data_unchanged()
        x = as_tensor(X_test, "X_test")
        y = as_tensor(y_test, "y_test")
        if x.ndim == len(self.data.feature_shape):
            x, y = x.unsqueeze(0), y.reshape(1, *y.shape)
        check_pair(x, y, "X_test", "y_test")
        check_feature_shape(x, self.data.feature_shape, "X_test")
        if not self.data.streamed:
            y = check_targets_match(y, self.data.y.dtype, self.data.y.shape[1:])
        if self._n_outputs is not None:
            check_class_targets(y, self._n_outputs, "y_test")
        dtype = self.objective.dtype
        return cast_inputs(x, dtype), cast_targets(y, dtype)
