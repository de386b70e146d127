"""What the explainer's satellites (cost preview, Newton refinement, stationarity, the approximation check)
may read of an explainer: one declared seam, so that they depend on this and not on the class."""

from __future__ import annotations

from typing import Any, Protocol

import torch

from .curvature.objective import Objective
from .curvature.operator import HessianOperator
from .solvers import SolveDiagnostics, Solver
from .training_data import StreamedData, TrainingData


class ExplainerView(Protocol):
    """The public face of ``InfluenceExplainer`` that ``cost``, ``refinement``, ``stationarity`` and
    ``approximation_check`` use."""

    objective: Objective
    data: TrainingData | StreamedData
    hessian: HessianOperator
    solver: Solver
    solver_name: str
    diagnostics: list[SolveDiagnostics]
    weight_decay: float
    damping: float
    batch_size: int
    cache_gradients: bool

    @property
    def n_train(self) -> int: ...

    @property
    def n_params(self) -> int: ...

    def cached_train_gradients(self) -> torch.Tensor | None: ...

    def gradients_at(self, indices: torch.Tensor) -> torch.Tensor: ...

    def coerce_test(self, X_test: Any, y_test: Any) -> tuple[torch.Tensor, torch.Tensor]: ...

    def influence(self, X_test: Any, y_test: Any) -> torch.Tensor: ...

    def with_settings(self, **changes: Any) -> ExplainerView: ...
