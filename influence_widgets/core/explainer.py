"""InfluenceExplainer: influence functions (Koh & Liang 2017) for a trained PyTorch model.

Conventions kept by every method:

* The training objective is R(theta) = (1/n) sum_i loss(z_i, theta) + (lambda/2) ||theta||^2,
  lambda = ``weight_decay``, over the selected parameters theta (``params``); the rest are fixed.
* H is the Hessian of R at the trained parameters, so it includes lambda I, plus ``damping`` I.
* nabla L(z) is the gradient of the unregularised per-example loss.
* I_up,loss(z, z_test) = -nabla L(z_test)^T H^-1 nabla L(z) (the paper's sign): positive means
  upweighting z raises the test loss, so z is harmful; negative means helpful.
* Removing z is upweighting by eps = -1/n (n and lambda unchanged), so the predicted change in
  test loss is -I_up,loss / n.
* Test points are rows, training points columns. Results are CPU tensors in the model's dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .approximation_check import ApproximationReport, check_approximation
from .caches import KeyedCache, objective_key
from .cost import CostEstimate, estimate_cost
from .curvature import TrainingHessian
from .curvature.gauss_newton_operator import CURVATURES, GaussNewtonOperator
from .curvature.objective import LossFn, Objective, OutputSelector, ParamsSpec
from .distributed import ShardedTraining
from .errors import InfluenceInputError
from .explainer_curvature import CurvatureMethods
from .explainer_quantities import InfluenceQuantities
from .inputs import (
    as_real,
    as_tensor,
    cast_inputs,
    cast_targets,
    check_class_targets,
    check_feature_shape,
    check_finite,
    check_pair,
)
from .predictions import predicted_classes
from .solvers import SolveDiagnostics, choose, make_solver
from .solvers.kronecker_pass import factored_share
from .threads import budget_public_methods
from .training_data import StreamedData, TrainingData
from .validation import LOOResult, validate_loo

_LINEAR_HEAD_SAMPLE = 64  # training points on which a closed-form linear layer is looked for (then checked per batch)
GRADIENT_CACHE_BYTES = 2**30  # "auto" keeps G [n, p] in memory up to this size, else streams it


@dataclass(frozen=True)
class ExplainerSettings:
    """The constructor's settings as the user gave them (``solver="auto"`` stays ``"auto"``)."""

    weight_decay: float
    solver: str
    damping: float
    params: ParamsSpec
    solver_options: Any
    batch_size: int
    cache_gradients: bool | str
    progress: bool
    output: OutputSelector
    curvature: str = "hessian"

    def as_kwargs(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@budget_public_methods  # threads sized to the free cores for each call, restored after (core/threads.py)
class InfluenceExplainer(CurvatureMethods, InfluenceQuantities):
    """Influence of every training point on test predictions of a trained model.

    Args:
        model: the trained ``torch.nn.Module``; deep-copied once, never modified.
        loss_fn: ``loss_fn(outputs, targets) -> [b]`` per-example losses, e.g.
            ``nn.CrossEntropyLoss(reduction="none")``; for one logit and BCE, squeeze the output:
            ``lambda out, y: F.binary_cross_entropy_with_logits(out.squeeze(-1), y, reduction="none")``.
        X_train, y_train: the training set the model was fit on, [n, *feature_shape] and [n, ...]; or
            ``X_train`` a map-style ``Dataset`` (or unshuffled ``DataLoader``) of ``(x_i, y_i)`` pairs and
            ``y_train=None``, read ``batch_size`` items at a time and never held whole.
        weight_decay: lambda in (lambda/2)||theta||^2, the regulariser the model was trained with.
        solver: ``"auto"`` (exact up to 3000 parameters, or 5000 when the explicit Hessian is cheap, else
            CG; see ``solvers.choose``; where it picks exact for a network, its first few
            test points are answered by block CG before the explicit Hessian is built, see
            ``solvers.auto``), or a registered name (``solvers.registry``): ``"exact"``, ``"cg"`` (block CG,
            Gauss-Newton preconditioned), ``"lissa"``, and the approximations for large networks ``"arnoldi"``
            (top-k eigenpairs), ``"kfac"`` and ``"ekfac"`` (Kronecker-factored); ``check_approximation()``
            measures an approximation against CG on your model.
        damping: added to the Hessian's diagonal; needed when the model is not convex.
        params: which parameters count (default: all with requires_grad): names or module prefixes, a
            submodule, parameter tensors (``model.fc.parameters()``) or a dict of them.
        solver_options: the solver's options dataclass (``ExactOptions``, ``CGOptions``, ``LissaOptions``,
            ``ArnoldiOptions``, ``KFACOptions``, ``EKFACOptions``) or a dict of its fields.
        batch_size: training points per chunk of per-example gradients and Hessian-vector products;
            bounds the working memory to about batch_size x p values. A Dataset is read batch_size items
            at a time; from tensors, products with few vectors and output Jacobians take up to 8 x
            batch_size points per call (their memory per point is far below p).
        cache_gradients: keep G = [nabla L(z_i)] [n, p] in memory after the first pass (True), stream it
            again for every query (False), or ``"auto"``: cache when G takes at most 1 GiB.
        progress: show ``tqdm`` bars for work longer than a second.
        output: for a model that returns a tuple, dict or object: the index, key or attribute of the
            outputs the loss takes (``output=0``, ``output="logits"``), or a function of the output.
        curvature: ``"hessian"`` (H is the Hessian of R) or ``"gauss_newton"`` (H is its generalised
            Gauss-Newton matrix, positive semi-definite for losses convex in the outputs, equal to the Hessian
            for linear models: see ``core.gauss_newton_operator``); every solver works with either.

    Checked before any long work: inputs, labels against the model's outputs (every row), a forward
    that gives the same outputs twice (no dropout left on, no sampling), memory for the exact Hessian;
    the training tensors are fingerprinted so that a later in-place change is refused, not mixed with
    caches. ``stationarity()`` measures how far the parameters are from a minimum (warned on first query).

    Settings are kept as given (``settings``): ``with_damping`` and ``for_model`` build from them, and share
    this explainer's cache, whose entries are keyed by what they depend on (``core.caches``), so that what
    still holds (the gradients, the explicit Hessian at another damping) is not computed again.
    ``clear_cache()`` empties it.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        X_train: Any,
        y_train: Any,
        *,
        weight_decay: float = 0.0,
        solver: str = "auto",
        damping: float = 0.0,
        params: ParamsSpec = None,
        solver_options: Any = None,
        batch_size: int = 256,
        cache_gradients: bool | str = "auto",
        progress: bool = True,
        output: OutputSelector = None,
        curvature: str = "hessian",
        _cache: KeyedCache | None = None,
    ) -> None:
        if curvature not in CURVATURES:
            raise InfluenceInputError(f"curvature must be one of {CURVATURES}, got {curvature!r}")
        self.settings = ExplainerSettings(
            weight_decay,
            solver,
            damping,
            params,
            solver_options,
            batch_size,
            cache_gradients,
            progress,
            output,
            curvature,
        )
        self._given_data = X_train, y_train
        fix = "the L2 coefficient the model was trained with, as a plain number (e.g. 0.01)"
        weight_decay = as_real(weight_decay, "weight_decay", minimum=0, fix=fix)
        damping = as_real(damping, "damping", minimum=0, fix="pass a number >= 0 such as 0.001")
        batch_size = as_real(batch_size, "batch_size", minimum=1, integer=True, fix="pass e.g. batch_size=256")
        if not isinstance(progress, (bool, int)) or isinstance(progress, float):
            raise InfluenceInputError(f"progress must be True or False, got {progress!r}")
        if not any(cache_gradients is v for v in (True, False)) and cache_gradients != "auto":
            raise InfluenceInputError(f"cache_gradients must be True, False or 'auto', got {cache_gradients!r}")
        streamed = isinstance(X_train, (Dataset, DataLoader))
        if streamed and y_train is not None:
            raise InfluenceInputError(
                "X_train is a Dataset/DataLoader whose items carry the targets; pass y_train=None"
            )
        if not streamed:
            x = as_tensor(X_train, "X_train")
            y = as_tensor(y_train, "y_train")
            check_pair(x, y, "X_train", "y_train")
        self.objective = Objective(model, loss_fn, params, output, weight_decay=weight_decay)
        check_finite(self.objective.theta, "the model's selected parameters")
        self.weight_decay = float(weight_decay)
        self.damping = float(damping)
        self.batch_size = batch_size
        self.progress = progress
        dtype, device = self.objective.dtype, self.objective.device
        if isinstance(X_train, DataLoader):
            self.data = StreamedData.from_loader(X_train, device, dtype)
        elif streamed:
            self.data = StreamedData(X_train, device, dtype)
        else:
            self.data = TrainingData(cast_inputs(x, dtype), cast_targets(y, dtype), device)
        gradient_bytes = len(self.data) * self.objective.size * self.objective.theta.element_size()
        self.cache_gradients = cache_gradients is True or (
            cache_gradients == "auto" and gradient_bytes <= GRADIENT_CACHE_BYTES
        )
        self._check_model_and_loss(self.objective.loss_fn, "loss_fn")
        sample, _ = self.data.take(torch.arange(min(_LINEAR_HEAD_SAMPLE, batch_size, self.n_train)))
        self._check_deterministic(sample)
        self._n_outputs = self._output_columns(sample)
        if self._n_outputs is not None:
            if streamed:
                self.data.n_classes = self._n_outputs  # checked chunk by chunk as the Dataset is read
            else:
                check_class_targets(self.data.y, self._n_outputs, "y_train")
        self._fingerprint = self._training_fingerprint()
        self.objective.choose_closed_form(sample)
        self._cache = KeyedCache() if _cache is None else _cache
        self._objective_key = objective_key(self.objective.module, self.objective.names, loss_fn, output)
        self._data_key = self._fingerprint if self._fingerprint is not None else ("dataset", id(X_train))
        self._build_solver()
        self.diagnostics: list[SolveDiagnostics] = []
        self._sharded: dict[str, ShardedTraining] = {}

    def _build_solver(self) -> None:
        """The operator H and the solver the settings call for; refused before any work when they cannot run."""
        settings = self.settings
        self.hessian_key = ("training Hessian", self._objective_key, self._data_key, self.weight_decay)
        self.hessian = TrainingHessian(
            self.objective,
            self.data,
            damping=self.damping,
            chunk_size=self.batch_size,
            progress=self.progress,
            key=self.hessian_key,
        )
        if settings.curvature == "gauss_newton":
            self.hessian = GaussNewtonOperator(self.hessian, self.hessian.source)
        choice = choose(
            settings.solver,
            self.n_params,
            self.hessian.curved_count,
            n_train=self.n_train,
            factored_share=lambda: factored_share(self.objective),
        )
        self.solver_name = choice.name
        self.solver_reason = choice.reason  # why "auto" chose it (None when the solver was named)
        self.solver = make_solver(
            choice.name, settings.solver_options, self.progress, cache=self._cache, solver_cls=choice.solver
        )
        self.solver.check_feasible(self.n_params, self.objective.theta.element_size(), self.device)

    @property
    def n_outputs(self) -> int | None:
        """C, the model's output columns, when the targets are class indices checked against them (else None)."""
        return self._n_outputs

    @property
    def n_params(self) -> int:
        """p, the number of selected parameters."""
        return self.objective.size

    @property
    def model(self) -> nn.Module:
        """The explainer's own deep copy of the model, in eval mode (the user's model is never touched)."""
        return self.objective.module

    @property
    def loss_fn(self) -> LossFn:
        """The per-example loss, ``loss_fn(outputs, targets) -> [b]``, as given."""
        return self.objective.loss_fn

    @property
    def device(self) -> torch.device:
        """Where the model's selected parameters live; every tensor of the computation follows them."""
        return self.objective.device

    @property
    def dtype(self) -> torch.dtype:
        """The selected parameters' dtype: inputs are cast to it, results come back in it."""
        return self.objective.dtype

    def outputs(self, X: Any) -> torch.Tensor:
        """Model outputs at the trained parameters for inputs [b, *feature_shape], [b, ...] on the CPU
        (the ``output=`` selection applied; no gradients kept). Computed ``batch_size`` rows at a time."""
        x = cast_inputs(as_tensor(X, "X"), self.dtype)
        if x.ndim == len(self.data.feature_shape):
            x = x.unsqueeze(0)
        check_feature_shape(x, self.data.feature_shape, "X")
        with torch.no_grad():
            parts = [
                self.objective.outputs(x[start : start + self.batch_size].to(self.device)).cpu()
                for start in range(0, len(x), self.batch_size)
            ]
        return torch.cat(parts) if parts else torch.empty(0)

    def losses(self, X: Any, y: Any) -> torch.Tensor:
        """Per-example losses L(z, theta_hat) [b] on the CPU (unregularised: no weight decay, no 1/n)."""
        x, targets = self.coerce_test(X, y)
        outputs = self.outputs(x)
        with torch.no_grad():
            return self.loss_fn(outputs, targets.to(outputs.device)).cpu()

    def predicted_classes(self, X: Any) -> torch.Tensor:
        """Predicted class per input, int64 [b] on the CPU: argmax of several outputs, logit > 0 for one."""
        return predicted_classes(self.outputs(X))

    def validate_loo(
        self,
        X_test: Any,
        y_test: Any,
        *,
        n_points: int = 40,
        select: Any = "top",
        retrain: Any = "lbfgs",
        refine: bool = True,
        max_seconds: float | None = None,
        seed: int = 0,
        on_point: Callable[[LOOResult], Any] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> LOOResult:
        """Leave-one-out check: retrain a copy without each chosen point and compare with the prediction.

        select: ``"top"`` (the ``n_points`` largest |influence| per test point), ``"random"`` (seeded), or
            indices. retrain: ``"lbfgs"`` (convex models), ``"steps"`` (networks), ``LBFGSRetrain``/
            ``StepsRetrain`` with settings, or ``retrain(model_copy, X, y) -> model`` (whose objective is
            then the caller's). Each actual change is L(theta_-z) - L(theta_drift), against a retraining
            with nothing removed. ``max_seconds`` (or an interrupt) stops early and keeps the points done; a failing
            retrainer raises ``RetrainingError`` whose ``partial`` holds them. ``on_point(partial)`` runs
            after each retraining and ``should_stop()`` is asked before each (for widgets).
        """
        return validate_loo(
            self,
            X_test,
            y_test,
            n_points=n_points,
            select=select,
            retrain=retrain,
            refine=refine,
            max_seconds=max_seconds,
            seed=seed,
            on_point=on_point,
            should_stop=should_stop,
        )

    def with_settings(self, **changes: Any) -> InfluenceExplainer:
        """The same model and data with some settings changed (``ExplainerSettings`` fields, e.g.
        ``solver="cg"``); the cache is shared, so what still holds is reused."""
        allowed = {f.name for f in fields(ExplainerSettings)} - {"params"}  # another selection: for_model
        unknown = sorted(set(changes) - allowed)
        if unknown:
            raise InfluenceInputError(f"with_settings() cannot change {unknown}; it changes {sorted(allowed)}")
        return self._derived(self.model, *self._given_data, **changes)

    def check_approximation(
        self, X_test: Any, y_test: Any, reference: str = "cg", n_points: int = 3
    ) -> ApproximationReport:
        """Compare this explainer's influence with a reference solver's (``"cg"`` at relative residual 1e-8, or
        ``"exact"``) on the first ``n_points`` test points: Pearson, Spearman, relative error and top-10
        overlap per point, and the time of each, so that a fast approximate answer can be trusted or replaced."""
        return check_approximation(self, X_test, y_test, reference, n_points)

    def with_damping(self, damping: float) -> InfluenceExplainer:
        """The same explainer with another damping, built from the settings as given; what does not depend
        on the damping (train gradients, the explicit Hessian, shifted) comes from the shared cache."""
        damping = as_real(damping, "damping", minimum=0, fix="pass a number >= 0 such as 0.001")
        return self._derived(self.model, *self._given_data, damping=float(damping))

    def estimate_cost(self, n_test: int = 1, sample_size: int = 64) -> CostEstimate:
        """Preview ``influence`` for ``n_test`` new test points: gradient and Hessian-vector passes, memory
        and time, extrapolated from ``sample_size`` training points timed here. Nothing is cached."""
        n_test = as_real(n_test, "n_test", minimum=1, integer=True, fix="pass the number of test points, e.g. 1")
        sample_size = as_real(sample_size, "sample_size", minimum=1, integer=True, fix="pass e.g. 64")
        return estimate_cost(self, n_test, sample_size)

    def for_model(self, model: nn.Module, X_train: Any = None, y_train: Any = None) -> InfluenceExplainer:
        """A fresh explainer with this one's loss and settings (as given: ``solver="auto"`` chooses again) for
        another model (for example a retrained copy) and, optionally, another training set (default: this
        one's). The same parameters are selected, by name. For the same model the cache is shared: what still
        holds (the same training set) is reused."""
        given_x, given_y = self._given_data
        X_train = given_x if X_train is None else X_train
        if y_train is None and not isinstance(X_train, (Dataset, DataLoader)):
            y_train = given_y  # a Dataset carries its own targets
        same = objective_key(model, self.objective.names, self.loss_fn, self.settings.output) == self._objective_key
        return self._derived(model, X_train, y_train, share_cache=same)

    def _derived(
        self, model: nn.Module, X_train: Any, y_train: Any, share_cache: bool = True, **changes: Any
    ) -> InfluenceExplainer:
        """An explainer from this one's settings as given (``changes`` applied, the parameters selected by name).
        It shares this one's cache where its entries can still hold (the same model): another model starts a
        cache of its own, so that a loop over retrained models (the training-set attack) holds one at a time."""
        settings = replace(self.settings, params=self.objective.names, **changes)
        cache = self._cache if share_cache else None
        return type(self)(model, self.objective.loss_fn, X_train, y_train, **settings.as_kwargs(), _cache=cache)

    def clear_cache(self) -> None:
        """Forget everything computed so far (gradients, s_test, explicit Hessians, projections, the
        stationarity report), here and in the explainers that share this one's cache (``with_damping``,
        ``for_model``); the next query computes afresh. Settings and diagnostics stay."""
        self._cache.clear()
        self._sharded.clear()
        self._build_solver()
