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

import copy
import hashlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .cost import CostEstimate, estimate_cost
from .curvature import EigenvalueEstimate, TrainingHessian, lanczos_extremes
from .curvature.objective import LossFn, Objective, OutputSelector, ParamsSpec, describe_output
from .distributed import ShardedTraining, check_client
from .errors import InfluenceInputError, NonConvexWarning, NotStationaryWarning
from .inputs import (
    as_real,
    as_tensor,
    cast_inputs,
    cast_targets,
    check_class_targets,
    check_feature_shape,
    check_finite,
    check_indices,
    check_pair,
    check_targets_match,
)
from .predictions import predicted_classes
from .progress import progress_bar
from .refinement import newton_removal_steps
from .solvers import ExactSolver, SolveDiagnostics, answers_first_by_cg, make_solver, resolve_solver_name
from .stationarity import StationarityReport, measure_stationarity
from .threads import budget_public_methods
from .training_data import StreamedData, TrainingData
from .validation import LOOResult, validate_loo

Measurement = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_LINEAR_HEAD_SAMPLE = 64  # training points on which a closed-form linear layer is looked for (then checked per batch)
GRADIENT_CACHE_BYTES = 2**30  # "auto" keeps G [n, p] in memory up to this size, else streams it


def _rng_left_alone(device: torch.device):
    """Run a check's forward passes without advancing the user's global random state."""
    return torch.random.fork_rng(devices=[] if device.type != "cuda" else [device])


@dataclass(frozen=True)
class CurvatureReport:
    """Extreme eigenvalues of H (weight decay and damping included) and the damping they call for.

    suggested_damping: the total damping that makes H positive definite with a 10 % margin,
    damping + 1.1 |lambda_min| when lambda_min <= 0, else the current damping.
    """

    eigenvalues: EigenvalueEstimate
    weight_decay: float
    damping: float

    @property
    def is_positive_definite(self) -> bool:
        return self.eigenvalues.lambda_min > 0

    @property
    def suggested_damping(self) -> float:
        lam_min = self.eigenvalues.lambda_min
        return self.damping if lam_min > 0 else self.damping + 1.1 * abs(lam_min)


@budget_public_methods  # threads sized to the free cores for each call, restored after (core/threads.py)
class InfluenceExplainer:
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
            CG; see ``solvers.resolve_solver_name``; where it picks exact for a network, its first few
            test points are answered by block CG before the explicit Hessian is built, see
            ``solvers.auto``), ``"exact"``, ``"cg"`` (block CG, Gauss-Newton preconditioned) or ``"lissa"``.
        damping: added to the Hessian's diagonal; needed when the model is not convex.
        params: which parameters count (default: all with requires_grad): names or module prefixes, a
            submodule, parameter tensors (``model.fc.parameters()``) or a dict of them.
        solver_options: ``ExactOptions``/``CGOptions``/``LissaOptions`` or a dict of their fields.
        batch_size: training points per chunk of per-example gradients and Hessian-vector products;
            bounds the working memory to about batch_size x p values. A Dataset is read batch_size items
            at a time; from tensors, products with few vectors and output Jacobians take up to 8 x
            batch_size points per call (their memory per point is far below p).
        cache_gradients: keep G = [nabla L(z_i)] [n, p] in memory after the first pass (True), stream it
            again for every query (False), or ``"auto"``: cache when G takes at most 1 GiB.
        progress: show ``tqdm`` bars for work longer than a second.
        output: for a model that returns a tuple, dict or object: the index, key or attribute of the
            outputs the loss takes (``output=0``, ``output="logits"``), or a function of the output.

    Checked before any long work: inputs, labels against the model's outputs (every row), a forward
    that gives the same outputs twice (no dropout left on, no sampling), memory for the exact Hessian;
    the training tensors are fingerprinted so that a later in-place change is refused, not mixed with
    caches. ``stationarity()`` measures how far the parameters are from a minimum (warned on first query).
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
    ) -> None:
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
        self.hessian = TrainingHessian(
            self.objective, self.data, damping=self.damping, chunk_size=batch_size, progress=progress
        )
        self.solver_name = resolve_solver_name(solver, self.objective.size, self.hessian.curved_count)
        first_by_cg = answers_first_by_cg(solver, self.solver_name, self.hessian.curved_count)
        self.solver = make_solver(self.solver_name, solver_options, progress=progress, first_answers_by_cg=first_by_cg)
        if isinstance(self.solver, ExactSolver):
            self.solver.check_size(self.objective.size)
            self.solver.check_memory(self.objective.size, self.objective.theta.element_size(), self.objective.device)
        self.diagnostics: list[SolveDiagnostics] = []
        self._stationarity: StationarityReport | None = None
        self._train_grads: torch.Tensor | None = None
        self._sharded: dict[str, ShardedTraining] = {}
        self._projections: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self._s_test_cache: dict[tuple[Any, bytes], torch.Tensor] = {}

    # ------------------------------------------------------------------ checks

    @property
    def n_train(self) -> int:
        return len(self.data)

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
        """A digest of the training tensors (content for up to 256 MiB, else version counters and a strided
        sample), to notice in-place changes after construction."""
        if self.data.streamed:
            return None
        parts: list[Any] = []
        for tensor in (self.data.x, self.data.y):
            parts += [tensor.data_ptr(), tuple(tensor.shape), tensor._version]
            flat = tensor.detach().reshape(-1)
            if flat.numel() * flat.element_size() > 2**28:
                flat = flat[:: max(1, flat.numel() // 2**20)]
            raw = flat.cpu().contiguous().view(torch.uint8).numpy() if flat.numel() else b""
            parts.append(hashlib.blake2b(bytes(raw), digest_size=16).digest())
        return tuple(parts)

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

    def stationarity(self) -> StationarityReport:
        """How far theta-hat is from a minimum of R: ||grad R|| against the typical per-example gradient.

        Computed once (one pass of batch gradients and up to 256 per-example gradients) and cached; a
        ``NotStationaryWarning`` with the figure and the fix when ``ratio`` exceeds the threshold. The
        first influence query and ``validate_loo`` call it, and the report goes into ``diagnostics``.
        """
        if self._stationarity is None:
            self.check_training_data_unchanged()
            report = measure_stationarity(self)
            self._stationarity = report
            if not report.is_stationary:
                warnings.warn(report.summary(), NotStationaryWarning, stacklevel=3)
        return self._stationarity

    # ------------------------------------------------------------------ gradients

    def _per_example_grads(self, x: torch.Tensor, y: torch.Tensor, fn: Measurement | None, desc: str) -> torch.Tensor:
        rows = []
        starts = range(0, len(x), self.batch_size)
        for start in progress_bar(starts, enabled=self.progress, desc=desc, total=len(starts)):
            xb = x[start : start + self.batch_size].to(self.objective.device)
            yb = y[start : start + self.batch_size].to(self.objective.device)
            rows.append(self.objective.per_example_grads(xb, yb, fn))
        return torch.cat(rows)

    def train_gradients(self) -> torch.Tensor:
        """G [n_train, p]: nabla_theta loss(z_i) of the unregularised loss, on the model's device; cached.

        Holds G whole (n x p values); with ``cache_gradients=False`` use the streaming methods instead.
        """
        self.check_training_data_unchanged()
        if self._train_grads is None:
            if not self.cache_gradients:
                gib = self.n_train * self.n_params * self.objective.theta.element_size() / 2**30
                raise InfluenceInputError(
                    f"train_gradients() would hold G [{self.n_train}, {self.n_params}] ({gib:.1f} GiB) and this "
                    "explainer streams it (cache_gradients is off); influence(), self_influence() and "
                    "approximate_influence() stream G chunk by chunk, or pass cache_gradients=True"
                )
            chunks = self.train_gradient_chunks(desc="train gradients")
            self._train_grads = torch.cat([grads for _, grads in chunks])
        return self._train_grads

    def train_gradient_chunks(self, desc: str = "train gradients") -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(start, G[start:start + b])`` in order, b <= ``batch_size``: from the cache if it is
        filled, else computed chunk by chunk so that at most one chunk of gradients is held."""
        if self._train_grads is not None:
            for start in range(0, self.n_train, self.batch_size):
                yield start, self._train_grads[start : start + self.batch_size]
            return
        size = self.objective.gradient_chunk_points(self.batch_size, self.data.streamed)
        total = -(-self.n_train // size)
        for start, x, y in progress_bar(self.data.chunks(size), enabled=self.progress, desc=desc, total=total):
            grads = self.objective.per_example_grads(x, y, None)
            for offset in range(0, len(grads), self.batch_size):
                yield start + offset, grads[offset : offset + self.batch_size]

    def gradients_at(self, indices: torch.Tensor) -> torch.Tensor:
        """Rows of G at ``indices`` (int64 [k]), [k, p] on the model's device: from the cache or computed."""
        if self._train_grads is not None or self.cache_gradients:
            return self.train_gradients()[indices.to(self.objective.device)]
        x, y = self.data.take(indices)
        return torch.cat(
            [
                self.objective.per_example_grads(x[i : i + self.batch_size], y[i : i + self.batch_size], None)
                for i in range(0, len(x), self.batch_size)
            ]
        )

    def _scores(self, vectors: torch.Tensor, desc: str = "scoring") -> torch.Tensor:
        """vectors [m, p] @ G^T -> [m, n_train] on the CPU, streaming G when it is not cached."""
        if self.cache_gradients:
            return (vectors @ self.train_gradients().T).cpu()
        out = torch.empty(len(vectors), self.n_train, dtype=vectors.dtype)
        for start, grads in self.train_gradient_chunks(desc=desc):
            out[:, start : start + len(grads)] = (vectors @ grads.T).cpu()
        return out

    def test_gradients(self, X_test: Any, y_test: Any, measurement: Measurement | None = None) -> torch.Tensor:
        """[n_test, p]: nabla_theta of the test loss (or of ``measurement``) per test point, on the model's device."""
        x, y = self.coerce_test(X_test, y_test)
        if measurement is not None:
            self._check_model_and_loss(measurement, "measurement")
        return self._per_example_grads(x, y, measurement, "test gradients")

    # ------------------------------------------------------------------ inverse-Hessian products

    def inverse_hvp(self, vectors: torch.Tensor, client: Any = None) -> torch.Tensor:
        """H^-1 @ vectors for vectors [p, m] with the configured solver; diagnostics go to ``self.diagnostics``.

        With a Dask ``client``, the solver's full Hessian-vector products run on the cluster.
        """
        if vectors.ndim != 2 or vectors.shape[0] != self.n_params:
            raise InfluenceInputError(f"vectors must have shape [{self.n_params}, m], got {tuple(vectors.shape)}")
        operator = self.hessian if client is None else self.distribute(client).hessian
        if isinstance(self.solver, ExactSolver) and self.solver.has_hessian(self.hessian):
            operator = self.hessian  # already factorised here: nothing left for the cluster to do
        solution, diagnostics = self.solver.solve(operator, vectors.to(self.objective.device, self.objective.dtype))
        self.diagnostics.append(diagnostics)
        return solution

    def _test_keys(self, x: torch.Tensor, y: torch.Tensor, measurement: Measurement | None) -> list[tuple[Any, bytes]]:
        x_np = x.detach().cpu().contiguous().numpy()
        y_np = y.detach().cpu().contiguous().numpy()
        return [
            (measurement, hashlib.blake2b(x_np[i].tobytes() + y_np[i].tobytes(), digest_size=16).digest())
            for i in range(len(x_np))
        ]

    def _s_test(
        self, x: torch.Tensor, y: torch.Tensor, measurement: Measurement | None, client: Any = None
    ) -> torch.Tensor:
        keys = self._test_keys(x, y, measurement)
        first_row_of_new_key: dict[tuple[Any, bytes], int] = {}
        for row, key in enumerate(keys):
            if key not in self._s_test_cache:
                first_row_of_new_key.setdefault(key, row)
        if first_row_of_new_key:
            report = self.stationarity()
            rows = torch.tensor(list(first_row_of_new_key.values()))
            grads = self._per_example_grads(x[rows], y[rows], measurement, "test gradients")
            solutions = self.inverse_hvp(grads.T, client).T
            if not report.is_stationary:
                self.diagnostics[-1].warnings.append(report.summary())
            for key, solution in zip(first_row_of_new_key, solutions):
                self._s_test_cache[key] = solution
        return torch.stack([self._s_test_cache[key] for key in keys])

    def s_test(
        self, X_test: Any, y_test: Any, measurement: Measurement | None = None, *, client: Any = None
    ) -> torch.Tensor:
        """s_test = H^-1 nabla L(z_test) per test point, [n_test, p] (CPU); cached per test point."""
        x, y = self.coerce_test(X_test, y_test)
        if measurement is not None:
            self._check_model_and_loss(measurement, "measurement")
        return self._s_test(x, y, measurement, client).cpu()

    # ------------------------------------------------------------------ influence

    def influence(
        self, X_test: Any, y_test: Any, measurement: Measurement | None = None, *, client: Any = None
    ) -> torch.Tensor:
        """I_up,loss(z_i, z_test) = -nabla L(z_test)^T H^-1 nabla L(z_i), shape [n_test, n_train].

        The paper's sign: positive = harmful (upweighting z_i raises the test loss), negative =
        helpful. No 1/n: divide by -n for the change on removal (``predicted_loss_change``). With a
        ``measurement`` (e.g. ``measurements.predicted_class_logit``) it is the influence on that
        quantity instead of the test loss. With a ``dask.distributed.Client``, the passes over the
        training set (scores and Hessian-vector products) run on its workers, shard by shard.
        """
        if client is not None:
            check_client(client)
        x, y = self.coerce_test(X_test, y_test)
        if measurement is not None:
            self._check_model_and_loss(measurement, "measurement")
        s_test = self._s_test(x, y, measurement, client)
        return self._scores(-s_test) if client is None else self.distribute(client).scores(-s_test)

    def predicted_loss_change(
        self,
        X_test: Any,
        y_test: Any,
        measurement: Measurement | None = None,
        *,
        refine: str | None = None,
        top_k: int = 40,
        client: Any = None,
    ) -> torch.Tensor:
        """Predicted change in each test loss if each training point were removed, [n_test, n_train].

        Equals -I_up,loss / n (first order in eps = -1/n). Positive: removing the point would raise
        the test loss, so the point was helpful. With ``refine="newton"`` the ``top_k`` entries of each
        row with the largest |influence| are replaced by L(z_test, theta_-z) - L(z_test, theta_hat), with
        theta_-z one Newton step of the leave-one-out objective (see ``core.refinement``).
        """
        if refine is not None and refine != "newton":
            raise InfluenceInputError(f"unknown refine={refine!r}; use refine='newton' or None")
        if refine is not None:
            top_k = as_real(
                top_k, "top_k", minimum=1, maximum=self.n_train, integer=True, fix=f"pass 1..{self.n_train}"
            )
        first_order = -self.influence(X_test, y_test, measurement, client=client) / self.n_train
        if refine is None:
            return first_order
        x, y = self.coerce_test(X_test, y_test)
        top = torch.argsort(first_order.abs(), dim=1, descending=True)[:, :top_k]
        removed = torch.unique(top)
        changes = self.newton_loss_change(x, y, removed, measurement)
        refined = first_order.clone()
        column = {int(i): k for k, i in enumerate(removed)}
        for row in range(len(top)):
            cols = [column[int(i)] for i in top[row]]
            refined[row, top[row]] = changes[row, cols]
        return refined

    def newton_loss_change(
        self, X_test: Any, y_test: Any, train_indices: Any, measurement: Measurement | None = None
    ) -> torch.Tensor:
        """L(z_test, theta_-z) - L(z_test, theta_hat) with theta_-z one Newton step, [n_test, k] (CPU)."""
        x, y = self.coerce_test(X_test, y_test)
        idx = check_indices(train_indices, self.n_train, "train_indices")
        fn = self.objective.loss_fn if measurement is None else measurement
        steps = newton_removal_steps(self, idx)
        x, y = x.to(self.objective.device), y.to(self.objective.device)
        theta = self.objective.theta
        with torch.no_grad():
            before = self.objective.batch_values(fn, theta, x, y)
            after = torch.stack([self.objective.batch_values(fn, theta + step, x, y) for step in steps], dim=1)
        return (after - before[:, None]).cpu()

    def influence_params(self, train_indices: Any) -> torch.Tensor:
        """I_up,params(z) = d theta / d eps = -H^-1 nabla L(z), shape [k, p] for k training points.

        Removing z moves the parameters by about -I_up,params / n = H^-1 nabla L(z) / n.
        """
        idx = check_indices(train_indices, self.n_train, "train_indices")
        self.stationarity()
        return (-self.inverse_hvp(self.gradients_at(idx).T).T).cpu()

    def influence_pert_loss(
        self, X_test: Any, y_test: Any, train_indices: Any, measurement: Measurement | None = None
    ) -> torch.Tensor:
        """I_pert,loss(z, z_test) = -nabla L(z_test)^T H^-1 nabla_x nabla_theta L(z), [n_test, k, *x_shape].

        The gradient of I_up,loss(z, z_test) with respect to the training input x of z (theta and H
        held fixed). Moving the training input from x to x + delta and retraining changes the test
        loss by about (1/n) delta . I_pert,loss, so a step along +I_pert,loss raises the test loss.
        """
        idx = check_indices(train_indices, self.n_train, "train_indices")
        x_train, y_train = self.data.take(idx)
        if not x_train.is_floating_point():
            raise InfluenceInputError("I_pert,loss needs continuous inputs; X_train is not floating point")
        x, y = self.coerce_test(X_test, y_test)
        if measurement is not None:
            self._check_model_and_loss(measurement, "measurement")
        s_test = self._s_test(x, y, measurement)
        rows = []
        for direction in s_test:
            chunks = [
                self.objective.input_grads_of_score(
                    x_train[start : start + self.batch_size], y_train[start : start + self.batch_size], -direction
                )
                for start in range(0, len(idx), self.batch_size)
            ]
            rows.append(torch.cat(chunks))
        return torch.stack(rows).cpu()

    def self_influence(self, *, client: Any = None) -> torch.Tensor:
        """I_up,loss(z_i, z_i) = -nabla L(z_i)^T H^-1 nabla L(z_i) for every training point, shape [n_train].

        Non-positive when H is positive definite; rank by magnitude (larger = the point leans more on
        itself, typical of mislabelled or atypical points). Costs n inverse-Hessian products. With a
        Dask ``client``, the gradients come from the workers shard by shard.
        """
        self.check_training_data_unchanged()
        if client is not None:
            check_client(client)
        self.stationarity()
        if client is None:
            chunks = self.train_gradient_chunks(desc="self-influence")
        else:
            chunks = self.distribute(client).gradient_chunks()
        values = []
        for _, shard in chunks:
            for start in range(0, len(shard), self.batch_size):
                block = shard[start : start + self.batch_size].to(self.objective.device)
                values.append(-(self.inverse_hvp(block.T, client).T * block).sum(1).cpu())
        return torch.cat(values)

    def distribute(
        self, client: Any, n_shards: int | None = None, *, timeout: float | None = None, retries: int | None = None
    ) -> ShardedTraining:
        """Place the model and the training set on a Dask cluster, in ``n_shards`` contiguous shards
        (default: two per worker; a ``ConcatDataset``'s own parts). Kept per client and reused by every
        method called with ``client=``; call again with ``n_shards`` to reshard. ``timeout`` (seconds per
        gather, default 120) and ``retries`` (default 3) bound a query when workers are lost: it is
        resubmitted afresh, then refused with a ``DistributedWorkError``."""
        check_client(client)
        if timeout is not None:
            timeout = as_real(timeout, "timeout", strictly_above=0, fix="pass a number of seconds, e.g. 120")
        if retries is not None:
            retries = as_real(retries, "retries", minimum=0, integer=True, fix="pass e.g. retries=3")
        sharded = self._sharded.get(client.id)
        if sharded is None or (n_shards is not None and len(sharded.shards) != n_shards):
            sharded = self._sharded[client.id] = ShardedTraining(self, client, n_shards)
        if timeout is not None:
            sharded.timeout = timeout
        if retries is not None:
            sharded.retries = retries
        return sharded

    def approximate_influence(self, X_test: Any, y_test: Any, dim: int, seed: int = 0) -> torch.Tensor:
        """I_up,loss estimated through a random projection to ``dim`` dimensions, [n_test, n_train].

        -(P^T s_test) . (P^T nabla L(z_i)) with P [p, dim] Gaussian, entries N(0, 1/dim), so that
        E[P P^T] = I and the estimate is unbiased; its error shrinks like 1/sqrt(dim). Same sign and
        units as ``influence``. The projected gradients [n, dim] are cached per (dim, seed), so later
        test points cost n x dim instead of a pass of per-example gradients: fast approximate ranking
        when G itself does not fit in memory. s_test is exact (the configured solver).
        """
        dim = as_real(dim, "dim", integer=True, fix=f"the projection dimension, an integer in [1, p = {self.n_params}]")
        if not 1 <= dim <= self.n_params:
            raise InfluenceInputError(
                f"the projection dimension must be an integer in [1, p = {self.n_params}], got dim={dim!r}"
            )
        seed = as_real(seed, "seed", integer=True, fix="pass an integer seed")
        x, y = self.coerce_test(X_test, y_test)
        if (dim, seed) not in self._projections:
            generator = torch.Generator().manual_seed(seed)
            projection = torch.randn(self.n_params, dim, generator=generator, dtype=torch.float32)
            projection = projection.div_(dim**0.5).to(self.objective.device, self.objective.dtype)
            projected = torch.empty(self.n_train, dim, dtype=self.objective.dtype, device=self.objective.device)
            for start, grads in self.train_gradient_chunks(desc="projected gradients"):  # filled in place: one copy
                torch.matmul(grads, projection, out=projected[start : start + len(grads)])
            self._projections[(dim, seed)] = projection, projected
        projection, projected = self._projections[(dim, seed)]
        return (-(self._s_test(x, y, None) @ projection) @ projected.T).cpu()

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

    # ------------------------------------------------------------------ curvature

    def with_damping(self, damping: float) -> InfluenceExplainer:
        """The same explainer with another damping; train gradients (and an explicit Hessian) are reused."""
        damping = as_real(damping, "damping", minimum=0, fix="pass a number >= 0 such as 0.001")
        clone = copy.copy(self)
        clone.damping = float(damping)
        clone.hessian = TrainingHessian(
            self.objective, self.data, damping=clone.damping, chunk_size=self.batch_size, progress=self.progress
        )
        clone.solver = make_solver(self.solver_name, self.solver.options, progress=self.progress)
        if isinstance(self.solver, ExactSolver) and self.solver.has_hessian(self.hessian):
            shifted = self.solver.hessian(self.hessian).clone()  # one p x p copy; no identity matrix formed
            shifted.diagonal().add_(clone.damping - self.damping)
            clone.solver.seed_hessian(clone.hessian, shifted)
        clone.diagnostics = []
        clone._s_test_cache = {}
        clone._sharded = {}
        return clone

    def estimate_cost(self, n_test: int = 1, sample_size: int = 64) -> CostEstimate:
        """Preview ``influence`` for ``n_test`` new test points: gradient and Hessian-vector passes, memory
        and time, extrapolated from ``sample_size`` training points timed here. Nothing is cached."""
        n_test = as_real(n_test, "n_test", minimum=1, integer=True, fix="pass the number of test points, e.g. 1")
        sample_size = as_real(sample_size, "sample_size", minimum=1, integer=True, fix="pass e.g. 64")
        return estimate_cost(self, n_test, sample_size)

    def for_model(self, model: nn.Module, X_train: Any = None, y_train: Any = None) -> InfluenceExplainer:
        """A fresh explainer with this one's loss and settings for another model (for example a retrained
        copy) and, optionally, another training set (default: this one's)."""
        return type(self)(
            model,
            self.objective.loss_fn,
            self.data.x if X_train is None else X_train,
            self.data.y if y_train is None else y_train,
            weight_decay=self.weight_decay,
            solver=self.solver_name,
            damping=self.damping,
            params=self.objective.names,
            solver_options=self.solver.options,
            batch_size=self.batch_size,
            progress=self.progress,
            output=self.objective.output,
        )

    def positive_definite(self) -> tuple[InfluenceExplainer, CurvatureReport]:
        """This explainer if H is positive definite, else a copy damped as ``curvature()`` suggests.

        The paper's rule for non-convex models: damping at least the magnitude of the smallest
        eigenvalue. Returns the explainer to use and the curvature report it was decided on.
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NonConvexWarning)
            report = self.curvature()
        if report.is_positive_definite:
            return self, report
        return self.with_damping(report.suggested_damping), report

    def curvature(self, steps: int | None = None, seed: int = 0) -> CurvatureReport:
        """Extreme eigenvalues of H (weight decay and damping included); warns when H is not positive definite.

        With the exact solver they come from the explicit Hessian, otherwise from Lanczos iterations
        (each one Hessian-vector product over the training set): ``steps`` of them, or by default as
        many as the extreme Ritz pairs need to converge (at most 200).
        """
        if steps is not None:
            steps = as_real(steps, "steps", minimum=1, integer=True, fix="pass e.g. steps=50, or None")
        seed = as_real(seed, "seed", integer=True, fix="pass an integer seed")
        if isinstance(self.solver, ExactSolver):
            eigs = torch.linalg.eigvalsh(self.solver.hessian(self.hessian))
            estimate = EigenvalueEstimate(float(eigs[0]), float(eigs[-1]), "eigvalsh", self.n_params)
        else:
            estimate = lanczos_extremes(self.hessian, steps=steps, seed=seed)
        report = CurvatureReport(estimate, self.weight_decay, self.damping)
        if not report.is_positive_definite:
            warnings.warn(
                f"the Hessian has a negative eigenvalue (about {estimate.lambda_min:.3g}): the model is not convex "
                f"at these parameters. Use damping >= {report.suggested_damping:.3g} (the paper's rule: at least "
                "the magnitude of the smallest eigenvalue).",
                NonConvexWarning,
                stacklevel=2,
            )
        return report
