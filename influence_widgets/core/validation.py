"""Leave-one-out retraining: check predicted changes in test loss against actual retraining.

Every retraining runs on a copy of the model, warm-started from the trained parameters, and
minimises the explainer's objective with the point removed as the backend's convention says
(eps = -1/n: n and lambda stay fixed):

    R_-z(theta) = (1/n) sum_{i != z} loss(z_i, theta) + (lambda/2) ||theta||^2.

A retraining with nothing removed, by the same procedure, gives the drift baseline: each actual
change is measured against it, so that optimiser drift is not mistaken for influence.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from . import statistics
from .errors import InfluenceInputError
from .inputs import as_real, check_indices
from .progress import progress_counter
from .retrain import LBFGSRetrain, Retrainer, StepsRetrain, retrain_copy, run_builtin
from .stationarity import StationarityReport

__all__ = [  # the retraining settings and loop live in core/retrain.py; imported from here as before
    "LBFGSRetrain",
    "LOOResult",
    "RetrainingError",
    "StepsRetrain",
    "retrain_copy",
    "run_builtin",
    "validate_loo",
]


class RetrainingError(RuntimeError):
    """A retraining failed; ``partial`` holds the ``LOOResult`` of the points already done."""

    def __init__(self, message: str, partial: LOOResult) -> None:
        super().__init__(message)
        self.partial = partial


@dataclass
class LOOResult:
    """Predicted versus actual change in test loss when each training point is removed.

    Arrays are aligned: entry j is test row ``test_rows[j]`` with training point ``removed[j]``.
    ``actual`` is L(theta_-z) - L(theta_drift), the no-removal retraining as baseline; ``drift`` is
    L(theta_drift) - L(theta_hat) per test row. ``refined`` holds the Newton-step predictions.
    """

    test_rows: np.ndarray
    removed: np.ndarray
    predicted: np.ndarray
    actual: np.ndarray
    refined: np.ndarray | None
    drift: np.ndarray
    seconds_per_retrain: list[float] = field(default_factory=list)
    seconds_total: float = 0.0
    retrain: str = ""
    stopped_early: bool = False
    note: str = "actual changes are measured against a retraining with nothing removed (the drift baseline)"
    stationarity: StationarityReport | None = None

    @property
    def pearson(self) -> float:
        return statistics.pearson(self.predicted, self.actual)

    @property
    def spearman(self) -> float:
        return statistics.spearman(self.predicted, self.actual)

    @property
    def refined_pearson(self) -> float:
        return statistics.pearson(self.refined, self.actual) if self.refined is not None else float("nan")

    @property
    def refined_spearman(self) -> float:
        return statistics.spearman(self.refined, self.actual) if self.refined is not None else float("nan")

    def slope(self, refined: bool = False) -> float:
        """Least-squares slope of actual on predicted (1 means the scale is right)."""
        predicted = self.refined if refined else self.predicted
        return float(np.polyfit(predicted, self.actual, 1)[0]) if len(predicted) > 1 else float("nan")

    def summary(self) -> str:
        text = (
            f"{len(self.removed)} removals ({self.retrain}), first order: Pearson {self.pearson:.4f}, "
            f"Spearman {self.spearman:.4f}, slope {self.slope():.3f}"
        )
        if self.refined is not None:
            text += (
                f"; Newton-refined: Pearson {self.refined_pearson:.4f}, Spearman {self.refined_spearman:.4f}, "
                f"slope {self.slope(True):.3f}"
            )
        drift = float(np.abs(self.drift).max()) if self.drift.size else 0.0
        text += f"; max |drift| {drift:.2e}; {self.seconds_total:.1f} s" + (
            " (stopped early)" if self.stopped_early else ""
        )
        if self.stationarity is not None and not self.stationarity.is_stationary:
            text += f". Warning: {self.stationarity.summary()}"
        return text


def check_selection(n: int, n_points: Any, select: Any, seed: Any) -> tuple[int, Any, int]:
    """``n_points``, ``select`` (a name or checked indices) and ``seed``, checked before any work."""
    seed = as_real(seed, "seed", integer=True, fix="pass an integer seed")
    if isinstance(select, str):
        if select not in ("top", "random"):
            raise InfluenceInputError(f"unknown select={select!r}; use 'top', 'random' or a sequence of indices")
        if isinstance(n_points, (np.integer, torch.Tensor)) and np.ndim(n_points) == 0:
            n_points = int(n_points)
        if isinstance(n_points, bool) or not isinstance(n_points, int) or not 1 <= n_points <= n:
            raise InfluenceInputError(
                f"n_points={n_points!r} but the training set has {n} points; ask for between 1 and {n}"
            )
        return n_points, select, seed
    return n_points, check_indices(select, n, "select"), seed


def select_points(explainer, predicted: torch.Tensor, n_points: int, select: Any, seed: int) -> list[torch.Tensor]:
    """Training indices to remove, per test row."""
    n = explainer.n_train
    if isinstance(select, str):
        if not isinstance(n_points, int) or not 1 <= n_points <= n:
            raise InfluenceInputError(
                f"n_points={n_points!r} but the training set has {n} points; ask for between 1 and {n}"
            )
        if select == "top":
            return list(torch.argsort(predicted.abs(), dim=1, descending=True)[:, :n_points])
        if select == "random":
            chosen = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:n_points]
            return [chosen] * len(predicted)
        raise InfluenceInputError(f"unknown select={select!r}; use 'top', 'random' or a sequence of indices")
    chosen = check_indices(select, n, "select")
    return [chosen] * len(predicted)


def validate_loo(
    explainer,
    X_test: Any,
    y_test: Any,
    *,
    n_points: int = 40,
    select: Any = "top",
    retrain: LBFGSRetrain | StepsRetrain | Retrainer | str = "lbfgs",
    refine: bool = True,
    max_seconds: float | None = None,
    seed: int = 0,
    on_point: Callable[[LOOResult], Any] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> LOOResult:
    """Remove training points one at a time, retrain a copy, compare with the predicted change.

    ``on_point(partial_result)`` runs after each retraining; ``should_stop()`` returning True stops
    before the next one (a widget's stop button), keeping the points done.
    """
    start = time.perf_counter()
    x, y = explainer.coerce_test(X_test, y_test)
    n_points, select, seed = check_selection(explainer.n_train, n_points, select, seed)
    if max_seconds is not None:
        max_seconds = as_real(max_seconds, "max_seconds", minimum=0, fix="pass a number of seconds, or None")
    builtin = {"lbfgs": LBFGSRetrain(), "steps": StepsRetrain()}
    if isinstance(retrain, str) and retrain in builtin:
        method = builtin[retrain]
    elif isinstance(retrain, (LBFGSRetrain, StepsRetrain)) or (callable(retrain) and not isinstance(retrain, str)):
        method = retrain
    else:
        raise InfluenceInputError(
            f"unknown retrain={retrain!r}; use 'lbfgs', 'steps', LBFGSRetrain(...), StepsRetrain(...) or a "
            "function retrain(model_copy, X, y) -> model"
        )
    stationarity = explainer.stationarity()
    predicted_all = explainer.predicted_loss_change(x, y)
    per_row = select_points(explainer, predicted_all, n_points, select, seed)
    removed_union = torch.unique(torch.cat(per_row))
    refined_all = None
    if refine:
        newton = explainer.newton_loss_change(x, y, removed_union)
        refined_all = {int(i): newton[:, k] for k, i in enumerate(removed_union)}
    objective = explainer.objective
    x_train, y_train = explainer.data.x, explainer.data.y
    n = explainer.n_train
    device = objective.device
    x_dev, y_dev = x.to(device), y.to(device)

    def retrain_without(keep: torch.Tensor) -> nn.Module:
        return retrain_copy(explainer, x_train[keep], y_train[keep], method)

    def test_losses(module: nn.Module) -> torch.Tensor:
        module.eval()
        with torch.no_grad():
            return objective.loss_fn(module(x_dev), y_dev).double().cpu()

    with torch.no_grad():
        base_loss = objective.loss_fn(objective.outputs(x_dev), y_dev).double().cpu()
    all_points = torch.ones(n, dtype=torch.bool)
    label = retrain.__name__ if callable(retrain) and hasattr(retrain, "__name__") else repr(method)
    rows: list[int] = []
    removed: list[int] = []
    predicted: list[float] = []
    actual: list[float] = []
    refined: list[float] = []
    timings: list[float] = []
    drift = np.zeros(0)

    def result(stopped: bool) -> LOOResult:
        k = min(len(rows), len(removed), len(predicted), len(actual), *([len(refined)] if refine else []))
        return LOOResult(  # cut to the entries complete in every list: an interrupt may land between appends
            np.asarray(rows[:k]),
            np.asarray(removed[:k]),
            np.asarray(predicted[:k]),
            np.asarray(actual[:k]),
            np.asarray(refined[:k]) if refine else None,
            drift,
            timings,
            time.perf_counter() - start,
            label,
            stopped,
            stationarity=stationarity,
        )

    try:
        drift_loss = test_losses(retrain_without(all_points))
    except KeyboardInterrupt:  # nothing retrained yet: an empty, stopped result
        return result(True)
    except InfluenceInputError as error:
        raise RetrainingError(str(error), result(True)) from error
    except Exception as error:
        raise RetrainingError(f"the no-removal retraining failed: {error!r}", result(True)) from error
    drift = (drift_loss - base_loss).numpy()
    bar = progress_counter(enabled=explainer.progress, desc="leave-one-out", total=len(removed_union))
    stopped = False
    try:
        for index in removed_union.tolist():
            out_of_time = max_seconds is not None and time.perf_counter() - start > max_seconds
            if out_of_time or (should_stop is not None and should_stop()):
                stopped = True
                break
            tick = time.perf_counter()
            keep = all_points.clone()
            keep[index] = False
            try:
                losses = test_losses(retrain_without(keep))
            except InfluenceInputError as error:
                raise RetrainingError(str(error), result(True)) from error
            except Exception as error:
                raise RetrainingError(
                    f"retraining without training point {index} failed: {error!r}; "
                    f"{len(removed)} result(s) before it are in .partial",
                    result(True),
                ) from error
            timings.append(time.perf_counter() - tick)
            for row, chosen in enumerate(per_row):
                if bool((chosen == index).any()):
                    rows.append(row)
                    removed.append(index)
                    predicted.append(float(predicted_all[row, index]))
                    actual.append(float(losses[row] - drift_loss[row]))
                    if refine:
                        refined.append(float(refined_all[index][row]))
            bar.update(1)
            if on_point is not None:
                on_point(result(False))
    except KeyboardInterrupt:  # the notebook's stop button, in a retraining or a callback: keep what is done
        stopped = True
    finally:
        bar.close()
    return result(stopped)
