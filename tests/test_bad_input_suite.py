"""The bad-input suite: every case asserts the exception class, that the message names the argument and the
fix, that it failed within a second, and that the user's model and data are unchanged afterwards.

Each case is ``case(ctx) -> thunk``: the setup (building an explainer, a bad model) runs untimed; the thunk
is the one call that must fail. ``ctx.watch`` adds the case's own model or tensors to what is compared.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from influence_widgets import CGOptions, ExactOptions, InfluenceExplainer, LissaOptions
from influence_widgets.core.errors import InfluenceInputError, InsufficientMemoryError
from influence_widgets.data import cross_entropy_per_example
from influence_widgets.usecases import (
    domain_mismatch_report,
    review_order,
    simulate_triage,
    training_set_attack,
)

N, D, C = 30, 4, 3
FAIL_WITHIN_S = 1.0


class TupleModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(D, C)

    def forward(self, x):
        logits = self.fc(x)
        return logits, logits.argmax(1)


class DictModel(TupleModel):
    def forward(self, x):
        return {"logits": self.fc(x), "hidden": x}


class FunctionalDropout(TupleModel):
    def forward(self, x):
        return self.fc(F.dropout(x, 0.5))  # active in eval mode: training=True by default


class Sampling(TupleModel):
    def forward(self, x):
        return self.fc(x) + torch.randn(len(x), C)


class Items(Dataset):
    def __init__(self, items: list) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def _snapshot(obj: Any) -> Any:
    if isinstance(obj, nn.Module):
        return (
            {k: v.detach().clone() for k, v in obj.state_dict(keep_vars=False).items()},
            {k: p.requires_grad for k, p in obj.named_parameters()},
            {k: None if p.grad is None else p.grad.clone() for k, p in obj.named_parameters()},
            [m.training for m in obj.modules()],
        )
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    return copy.deepcopy(obj)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) and a.is_meta:
        return a.shape == b.shape and a.dtype == b.dtype
    if isinstance(a, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a.nan_to_num(7.0), b.nan_to_num(7.0)))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@dataclass
class Ctx:
    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    watched: list = field(default_factory=list)

    def watch(self, *objs: Any) -> None:
        self.watched += [(obj, _snapshot(obj)) for obj in objs]

    def explainer(self, **kwargs: Any) -> InfluenceExplainer:
        kwargs.setdefault("weight_decay", 0.01)
        kwargs.setdefault("progress", False)
        return InfluenceExplainer(self.model, cross_entropy_per_example, self.x, self.y, **kwargs)


_SAME = object()  # make(): the context's own model or data


def make(ctx: Ctx, model: Any = None, x: Any = None, y: Any = _SAME, loss: Any = None, **kwargs: Any):
    kwargs.setdefault("weight_decay", 0.01)
    kwargs.setdefault("progress", False)
    ctx.watch(*[obj for obj in (model, x, y) if isinstance(obj, (nn.Module, torch.Tensor))])  # the user's too
    return lambda: InfluenceExplainer(
        ctx.model if model is None else model,
        cross_entropy_per_example if loss is None else loss,
        ctx.x if x is None else x,
        ctx.y if y is _SAME else y,
        **kwargs,
    )


def trained_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(D, C))


def _with(t: torch.Tensor, index: tuple, value: Any) -> torch.Tensor:
    t = t.clone()
    t[index] = value
    return t


def _meta_model() -> nn.Module:
    with torch.device("meta"):
        return nn.Sequential(nn.Linear(D, C))


# (id, case, exception class, regex the argument, regex the fix)
CASES: list[tuple[str, Callable[[Ctx], Callable[[], Any]], type, str, str]] = [
    # ---- the model and the loss
    ("model-not-a-module", lambda c: make(c, model=lambda v: v), InfluenceInputError, "model", "torch.nn.Module"),
    ("loss-not-callable", lambda c: make(c, loss="ce"), InfluenceInputError, "loss_fn", "callable"),
    (
        "loss-reduces-to-a-scalar",
        lambda c: make(c, loss=nn.CrossEntropyLoss()),
        InfluenceInputError,
        "loss_fn",
        "reduction='none'",
    ),
    ("model-returns-a-tuple", lambda c: make(c, model=TupleModel()), InfluenceInputError, "tuple", "output=0"),
    ("model-returns-a-dict", lambda c: make(c, model=DictModel()), InfluenceInputError, "dict", "output='logits'"),
    (
        "output-index-out-of-range",
        lambda c: make(c, model=TupleModel(), output=5),
        InfluenceInputError,
        "output=5",
        "index or key",
    ),
    ("output-unknown-key", lambda c: make(c, model=DictModel(), output="probs"), InfluenceInputError, "output", "key"),
    (
        "output-not-a-selector",
        lambda c: make(c, model=TupleModel(), output=1.5),
        InfluenceInputError,
        "output",
        "output=0",
    ),
    (
        "output-selects-integers",
        lambda c: make(c, model=TupleModel(), output=1),
        InfluenceInputError,
        "output",
        "floating point",
    ),
    (
        "dropout-left-on-in-forward",
        lambda c: make(c, model=FunctionalDropout()),
        InfluenceInputError,
        "model",
        "training=self.training",
    ),
    ("sampling-in-forward", lambda c: make(c, model=Sampling()), InfluenceInputError, "model", "remove the sampling"),
    (
        "bfloat16-model",
        lambda c: make(c, model=trained_model().bfloat16()),
        InfluenceInputError,
        "bfloat16",
        r"\.float\(\)",
    ),
    ("float16-model", lambda c: make(c, model=trained_model().half()), InfluenceInputError, "float16", r"\.float\(\)"),
    ("meta-device-model", lambda c: make(c, model=_meta_model()), InfluenceInputError, "meta", "load_state_dict"),
    (
        "nan-parameters",
        lambda c: make(c, model=_nan_model()),
        InfluenceInputError,
        "parameters",
        "clean or impute",
    ),
    (
        "no-trainable-parameters",
        lambda c: make(c, model=_frozen_model()),
        InfluenceInputError,
        "requires_grad",
        "params=",
    ),
    # ---- params
    (
        "params-unknown-name",
        lambda c: make(c, params=["fc"]),
        InfluenceInputError,
        "parameter name 'fc'",
        "parameters are",
    ),
    ("params-zero", lambda c: make(c, params=0), InfluenceInputError, "params=0", "a list of"),
    ("params-empty", lambda c: make(c, params=[]), InfluenceInputError, "params", "at least one"),
    ("params-list-of-ints", lambda c: make(c, params=[0, 1]), InfluenceInputError, "params", "submodule"),
    ("params-a-float", lambda c: make(c, params=3.5), InfluenceInputError, "params", "named_parameters"),
    (
        "params-tensor-not-in-model",
        lambda c: make(c, params=[torch.zeros(3)]),
        InfluenceInputError,
        "params",
        "own parameters",
    ),
    (
        "params-foreign-module",
        lambda c: make(c, params=nn.Linear(2, 2)),
        InfluenceInputError,
        "params",
        "own submodules",
    ),
    # ---- numbers
    ("weight-decay-negative", lambda c: make(c, weight_decay=-0.1), InfluenceInputError, "weight_decay", ">= 0"),
    (
        "weight-decay-a-string",
        lambda c: make(c, weight_decay="0.01"),
        InfluenceInputError,
        "weight_decay",
        "plain number",
    ),
    ("weight-decay-nan", lambda c: make(c, weight_decay=float("nan")), InfluenceInputError, "weight_decay", "finite"),
    ("weight-decay-inf", lambda c: make(c, weight_decay=np.inf), InfluenceInputError, "weight_decay", "finite"),
    ("weight-decay-a-bool", lambda c: make(c, weight_decay=True), InfluenceInputError, "weight_decay", "plain number"),
    (
        "weight-decay-a-vector",
        lambda c: make(c, weight_decay=torch.ones(2)),
        InfluenceInputError,
        "weight_decay",
        "number",
    ),
    ("damping-negative", lambda c: make(c, damping=-1e-3), InfluenceInputError, "damping", ">= 0"),
    ("damping-none", lambda c: make(c, damping=None), InfluenceInputError, "damping", "0.001"),
    ("damping-a-list", lambda c: make(c, damping=[0.1]), InfluenceInputError, "damping", "0.001"),
    ("batch-size-zero", lambda c: make(c, batch_size=0), InfluenceInputError, "batch_size", "positive integer"),
    ("batch-size-fractional", lambda c: make(c, batch_size=2.5), InfluenceInputError, "batch_size", "whole number"),
    ("batch-size-a-string", lambda c: make(c, batch_size="256"), InfluenceInputError, "batch_size", "batch_size=256"),
    (
        "cache-gradients-a-string",
        lambda c: make(c, cache_gradients="yes"),
        InfluenceInputError,
        "cache_gradients",
        "'auto'",
    ),
    ("progress-a-string", lambda c: make(c, progress="no"), InfluenceInputError, "progress", "True or False"),
    ("solver-unknown", lambda c: make(c, solver="newton"), InfluenceInputError, "solver", "choose one of"),
    ("solver-an-int", lambda c: make(c, solver=3), InfluenceInputError, "solver", "choose one of"),
    # ---- solver options, type-checked by field name
    (
        "cg-max-iter-a-string",
        lambda c: lambda: CGOptions(max_iter="100"),
        InfluenceInputError,
        "max_iter",
        r"max_iter=1000",
    ),
    ("cg-rtol-a-string", lambda c: lambda: CGOptions(rtol="1e-6"), InfluenceInputError, "rtol", "rtol=None"),
    ("cg-block-an-int", lambda c: lambda: CGOptions(block=1), InfluenceInputError, "block", "block=True"),
    (
        "cg-preconditioner-an-int",
        lambda c: lambda: CGOptions(preconditioner=5),
        InfluenceInputError,
        "preconditioner",
        "'auto'",
    ),
    ("cg-max-iter-zero", lambda c: lambda: CGOptions(max_iter=0), InfluenceInputError, "max_iter", ">= 1"),
    (
        "options-unknown-field",
        lambda c: make(c, solver="cg", solver_options={"max_iters": 5}),
        InfluenceInputError,
        "max_iters",
        "valid options are",
    ),
    (
        "options-of-another-solver",
        lambda c: make(c, solver="cg", solver_options=LissaOptions()),
        InfluenceInputError,
        "LissaOptions",
        "CGOptions",
    ),
    ("lissa-scale-negative", lambda c: lambda: LissaOptions(scale=-1.0), InfluenceInputError, "scale", "> 0"),
    ("lissa-depth-fractional", lambda c: lambda: LissaOptions(depth=2.5), InfluenceInputError, "depth", "depth=None"),
    ("lissa-repeats-zero", lambda c: lambda: LissaOptions(repeats=0), InfluenceInputError, "repeats", ">= 1"),
    (
        "lissa-tail-fraction-one",
        lambda c: lambda: LissaOptions(tail_fraction=1.0),
        InfluenceInputError,
        "tail_fraction",
        r"\[0, 1\)",
    ),
    (
        "exact-max-params-a-string",
        lambda c: lambda: ExactOptions(max_params="10"),
        InfluenceInputError,
        "max_params",
        "5000",
    ),
    ("exact-block-zero", lambda c: lambda: ExactOptions(block=0), InfluenceInputError, "block", ">= 1"),
    (
        "exact-too-many-parameters",
        lambda c: make(c, solver="exact", solver_options=ExactOptions(max_params=10)),
        InfluenceInputError,
        "exact",
        "solver='cg'",
    ),
    # ---- training data
    ("samples-mismatch", lambda c: make(c, y=c.y[:-1]), InfluenceInputError, "y_train", "one target per input"),
    ("empty-training-set", lambda c: make(c, x=c.x[:0], y=c.y[:0]), InfluenceInputError, "X_train", "at least one"),
    (
        "nan-in-x-train",
        lambda c: make(c, x=_with(c.x, (3, 1), float("nan"))),
        InfluenceInputError,
        "X_train",
        "clean or impute",
    ),
    (
        "inf-in-x-train",
        lambda c: make(c, x=_with(c.x, (0, 0), float("inf"))),
        InfluenceInputError,
        "X_train",
        "clean or impute",
    ),
    ("x-train-strings", lambda c: make(c, x=[["a"] * D] * N), InfluenceInputError, "X_train", "tensor or numpy"),
    ("x-train-a-dict", lambda c: make(c, x={"x": c.x}), InfluenceInputError, "X_train", "torch.Tensor or numpy"),
    ("x-train-a-scalar", lambda c: make(c, x=torch.tensor(1.0)), InfluenceInputError, "X_train", "leading sample"),
    ("label-out-of-range", lambda c: make(c, y=_with(c.y, (17,), C)), InfluenceInputError, "y_train", r"0\.\.C-1"),
    ("label-negative", lambda c: make(c, y=_with(c.y, (29,), -1)), InfluenceInputError, "y_train", r"\[0, 2\]"),
    (
        "features-the-model-cannot-take",
        lambda c: make(c, x=torch.randn(N, D + 1)),
        InfluenceInputError,
        "X_train",
        "preprocessing",
    ),
    (
        "dataset-and-y-train",
        lambda c: make(c, x=TensorDataset(c.x, c.y), y=c.y),
        InfluenceInputError,
        "y_train",
        "y_train=None",
    ),
    (
        "shuffled-dataloader",
        lambda c: make(c, x=DataLoader(TensorDataset(c.x, c.y), shuffle=True), y=None),
        InfluenceInputError,
        "DataLoader",
        "shuffle=False",
    ),
    (
        "dataset-item-input-a-list",
        lambda c: make(c, x=Items([(c.x[i].tolist() if i == 4 else c.x[i], c.y[i]) for i in range(N)]), y=None),
        InfluenceInputError,
        "item 4",
        "torch.as_tensor",
    ),
    (
        "dataset-item-input-a-string",
        lambda c: make(c, x=Items([("image.png" if i == 6 else c.x[i], c.y[i]) for i in range(N)]), y=None),
        InfluenceInputError,
        "item 6",
        "torch.as_tensor",
    ),
    (
        "dataset-item-ragged",
        lambda c: make(c, x=Items([(c.x[i, : D - (i == 9)], c.y[i]) for i in range(N)]), y=None),
        InfluenceInputError,
        "item 9",
        "same shapes",
    ),
    (
        "dataset-item-not-a-pair",
        lambda c: make(c, x=Items([c.x[i] for i in range(N)]), y=None),
        InfluenceInputError,
        "item 0",
        r"\(input, target\) pairs",
    ),
    (
        "dataset-item-label-a-string",
        lambda c: make(c, x=Items([(c.x[i], "cat" if i == 2 else int(c.y[i])) for i in range(N)]), y=None),
        InfluenceInputError,
        "item 2",
        "numbers",
    ),
    (
        "exact-hessian-too-large-for-memory",
        lambda c: _low_memory(c),
        InsufficientMemoryError,
        "solver='exact'",
        "solver='cg'",
    ),
    # ---- test data and queries
    (
        "test-samples-mismatch",
        lambda c: _query(c, "influence", c.x_test[:2], c.y_test[:3]),
        InfluenceInputError,
        "y_test",
        "one target",
    ),
    (
        "test-features-differ",
        lambda c: _query(c, "influence", torch.randn(2, D + 1), c.y_test[:2]),
        InfluenceInputError,
        "X_test",
        "same features",
    ),
    (
        "nan-in-x-test",
        lambda c: _query(c, "influence", _with(c.x_test, (0, 0), float("nan")), c.y_test),
        InfluenceInputError,
        "X_test",
        "clean or impute",
    ),
    (
        "y-test-float-for-integer-y-train",
        lambda c: _query(c, "influence", c.x_test, c.y_test.double()),
        InfluenceInputError,
        "y_test",
        "dtype of y_train",
    ),
    (
        "y-test-one-hot",
        lambda c: _query(c, "influence", c.x_test, F.one_hot(c.y_test, C)),
        InfluenceInputError,
        "y_test",
        "class indices",
    ),
    (
        "y-test-label-out-of-range",
        lambda c: _query(c, "influence", c.x_test, _with(c.y_test, (1,), 7)),
        InfluenceInputError,
        "y_test",
        r"0\.\.C-1",
    ),
    ("x-test-a-string", lambda c: _query(c, "s_test", "x.csv", c.y_test), InfluenceInputError, "X_test", "numpy array"),
    (
        "measurement-not-per-example",
        lambda c: _query(c, "influence", c.x_test, c.y_test, lambda o, t: o.sum()),
        InfluenceInputError,
        "measurement",
        "reduction='none'",
    ),
    (
        "train-indices-out-of-range",
        lambda c: _query(c, "influence_params", [0, N]),
        InfluenceInputError,
        "train_indices",
        r"\[0, 29\]",
    ),
    (
        "train-indices-negative",
        lambda c: _query(c, "influence_pert_loss", c.x_test[:1], c.y_test[:1], [-1]),
        InfluenceInputError,
        "train_indices",
        r"\[0, 29\]",
    ),
    (
        "train-indices-floats",
        lambda c: _query(c, "influence_params", [0.5, 1.0]),
        InfluenceInputError,
        "train_indices",
        "integer",
    ),
    (
        "train-indices-2d",
        lambda c: _query(c, "influence_params", [[0, 1]]),
        InfluenceInputError,
        "train_indices",
        "integer positions",
    ),
    (
        "train-indices-empty",
        lambda c: _query(c, "influence_params", []),
        InfluenceInputError,
        "train_indices",
        "at least one",
    ),
    (
        "train-indices-a-mask",
        lambda c: _query(c, "influence_params", torch.ones(N, dtype=torch.bool)),
        InfluenceInputError,
        "train_indices",
        "nonzero",
    ),
    (
        "train-indices-a-string",
        lambda c: _query(c, "influence_params", "all"),
        InfluenceInputError,
        "train_indices",
        r"\[0, 5, 7\]",
    ),
    (
        "newton-indices-out-of-range",
        lambda c: _query(c, "newton_loss_change", c.x_test, c.y_test, [N + 3]),
        InfluenceInputError,
        "train_indices",
        r"\[0, 29\]",
    ),
    (
        "refine-unknown",
        lambda c: _query(c, "predicted_loss_change", c.x_test, c.y_test, refine="exact"),
        InfluenceInputError,
        "refine",
        "refine='newton'",
    ),
    (
        "top-k-zero",
        lambda c: _query(c, "predicted_loss_change", c.x_test, c.y_test, refine="newton", top_k=0),
        InfluenceInputError,
        "top_k",
        "positive integer",
    ),
    (
        "top-k-above-n",
        lambda c: _query(c, "predicted_loss_change", c.x_test, c.y_test, refine="newton", top_k=N + 1),
        InfluenceInputError,
        "top_k",
        "pass 1..30",
    ),
    (
        "projection-dim-zero",
        lambda c: _query(c, "approximate_influence", c.x_test, c.y_test, 0),
        InfluenceInputError,
        "dim",
        r"\[1, p",
    ),
    ("cost-n-test-zero", lambda c: _query(c, "estimate_cost", 0), InfluenceInputError, "n_test", "positive integer"),
    (
        "cost-sample-size-a-string",
        lambda c: _query(c, "estimate_cost", 1, "64"),
        InfluenceInputError,
        "sample_size",
        "e.g. 64",
    ),
    ("with-damping-negative", lambda c: _query(c, "with_damping", -1.0), InfluenceInputError, "damping", ">= 0"),
    ("curvature-steps-zero", lambda c: _query(c, "curvature", 0), InfluenceInputError, "steps", "steps=50"),
    (
        "inverse-hvp-wrong-shape",
        lambda c: _query(c, "inverse_hvp", torch.zeros(3, 1)),
        InfluenceInputError,
        "vectors",
        r"\[15, m\]",
    ),
    (
        "loo-n-points-zero",
        lambda c: _query(c, "validate_loo", c.x_test, c.y_test, n_points=0),
        InfluenceInputError,
        "n_points",
        "between 1 and 30",
    ),
    (
        "loo-select-out-of-range",
        lambda c: _query(c, "validate_loo", c.x_test, c.y_test, select=[N]),
        InfluenceInputError,
        "select",
        r"\[0, 29\]",
    ),
    (
        "loo-select-unknown",
        lambda c: _query(c, "validate_loo", c.x_test, c.y_test, select="best"),
        InfluenceInputError,
        "select",
        "'top', 'random'",
    ),
    (
        "loo-retrain-unknown",
        lambda c: _query(c, "validate_loo", c.x_test, c.y_test, n_points=5, retrain="adam"),
        InfluenceInputError,
        "retrain",
        "'lbfgs', 'steps'",
    ),
    (
        "loo-max-seconds-negative",
        lambda c: _query(c, "validate_loo", c.x_test, c.y_test, n_points=5, max_seconds=-1),
        InfluenceInputError,
        "max_seconds",
        "number of seconds",
    ),
    (
        "client-not-a-client",
        lambda c: _query(c, "influence", c.x_test, c.y_test, client="tcp://x:8786"),
        InfluenceInputError,
        "client",
        "Client",
    ),
    ("x-train-changed-in-place", lambda c: _changed_in_place(c, "x"), InfluenceInputError, "X_train", "new explainer"),
    ("y-train-changed-in-place", lambda c: _changed_in_place(c, "y"), InfluenceInputError, "y_train", "new explainer"),
    (
        "singular-hessian-softmax-without-weight-decay",
        lambda c: _query(c, "influence", c.x_test, c.y_test, weight_decay=0.0, solver="exact"),
        InfluenceInputError,
        "weight_decay",
        r"damping=\d",
    ),
    # ---- use cases
    (
        "attack-train-indices-out-of-range",
        lambda c: _usecase(
            c, training_set_attack, c.x_test[:1], c.y_test[:1], 0.1, train_indices=[N], require_correct=False
        ),
        InfluenceInputError,
        "train_indices",
        r"\[0, 29\]",
    ),
    (
        "attack-epsilon-zero",
        lambda c: _usecase(c, training_set_attack, c.x_test[:1], c.y_test[:1], 0.0),
        InfluenceInputError,
        "epsilon",
        "largest change",
    ),
    (
        "attack-epsilon-a-string",
        lambda c: _usecase(c, training_set_attack, c.x_test[:1], c.y_test[:1], "0.1"),
        InfluenceInputError,
        "epsilon",
        "e.g. 0.1",
    ),
    (
        "attack-steps-zero",
        lambda c: _usecase(c, training_set_attack, c.x_test[:1], c.y_test[:1], 0.1, steps=0),
        InfluenceInputError,
        "steps",
        "steps=10",
    ),
    (
        "attack-input-range-reversed",
        lambda c: _usecase(c, training_set_attack, c.x_test[:1], c.y_test[:1], 0.1, input_range=(1.0, 0.0)),
        InfluenceInputError,
        "input_range",
        "high > low",
    ),
    (
        "attack-step-size-negative",
        lambda c: _usecase(c, training_set_attack, c.x_test[:1], c.y_test[:1], 0.1, step_size=-0.1),
        InfluenceInputError,
        "step_size",
        "epsilon / 4",
    ),
    (
        "attack-n-points-above-n",
        lambda c: _usecase(c, training_set_attack, c.x_test[:1], c.y_test[:1], 0.1, n_points=N + 1),
        InfluenceInputError,
        "n_points",
        "e.g. 1",
    ),
    (
        "attack-two-test-points",
        lambda c: _usecase(c, training_set_attack, c.x_test[:2], c.y_test[:2], 0.1, require_correct=False),
        InfluenceInputError,
        "test point",
        "one test point at a time",
    ),
    (
        "triage-fraction-zero",
        lambda c: _usecase(c, simulate_triage, _flip(c.y), [0.0]),
        InfluenceInputError,
        "fractions",
        r"\(0, 1\]",
    ),
    (
        "triage-fractions-a-string",
        lambda c: _usecase(c, simulate_triage, _flip(c.y), "abc"),
        InfluenceInputError,
        "fractions",
        r"\(0, 1\]",
    ),
    (
        "triage-method-unknown",
        lambda c: _usecase(c, simulate_triage, _flip(c.y), methods=["self_influence", "magic"]),
        InfluenceInputError,
        "methods",
        "'self_influence', 'loss', 'random'",
    ),
    (
        "triage-y-clean-shape",
        lambda c: _usecase(c, simulate_triage, c.y[:-1]),
        InfluenceInputError,
        "y_clean",
        "every training point",
    ),
    (
        "triage-nothing-flipped",
        lambda c: _usecase(c, simulate_triage, c.y.clone()),
        InfluenceInputError,
        "y_clean",
        "no flipped label",
    ),
    (
        "triage-x-test-without-y-test",
        lambda c: _usecase(c, simulate_triage, _flip(c.y), X_test=c.x_test),
        InfluenceInputError,
        "y_test",
        "pass both",
    ),
    (
        "triage-y-clean-label-out-of-range",
        lambda c: _usecase(c, simulate_triage, _with(c.y, (0,), 9)),
        InfluenceInputError,
        "y_clean",
        r"0\.\.C-1",
    ),
    (
        "review-order-unknown-method",
        lambda c: _usecase(c, review_order, "entropy"),
        InfluenceInputError,
        "method",
        "choose one of",
    ),
    (
        "mismatch-top-k-zero",
        lambda c: _usecase(c, domain_mismatch_report, c.x_test, c.y_test, top_k=0),
        InfluenceInputError,
        "top_k",
        "top_k=10",
    ),
    (
        "mismatch-feature-names-length",
        lambda c: _usecase(c, domain_mismatch_report, c.x_test, c.y_test, feature_names=["a"]),
        InfluenceInputError,
        "feature_names",
        "features",
    ),
]


def _nan_model() -> nn.Module:
    model = trained_model()
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    return model


def _frozen_model() -> nn.Module:
    model = trained_model()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _flip(y: torch.Tensor) -> torch.Tensor:
    clean = y.clone()
    clean[:3] = (clean[:3] + 1) % C
    return clean


def _query(c: Ctx, method: str, *args: Any, weight_decay: float = 0.01, solver: str = "auto", **kwargs: Any):
    explainer = c.explainer(weight_decay=weight_decay, solver=solver)
    return lambda: getattr(explainer, method)(*args, **kwargs)


def _usecase(c: Ctx, fn: Callable, *args: Any, **kwargs: Any):
    explainer = c.explainer()
    return lambda: fn(explainer, *args, **kwargs)


def _changed_in_place(c: Ctx, which: str):
    x, y = c.x.clone(), c.y.clone()
    explainer = InfluenceExplainer(c.model, cross_entropy_per_example, x, y, weight_decay=0.01, progress=False)
    explainer.influence(c.x_test, c.y_test)
    if which == "x":
        x[0, 0] += 1.0  # the user edits their own tensor after building the explainer
    else:
        y[0] = (y[0] + 1) % C
    c.watch(x, y)
    return lambda: explainer.influence(c.x_test, c.y_test)


def _low_memory(c: Ctx):
    c.env = pytest.MonkeyPatch()
    c.env.setenv("INFLUENCE_WIDGETS_MEMORY_BYTES", str(1000))
    return make(c, solver="exact")


@pytest.mark.parametrize(("case", "error", "argument", "fix"), [case[1:] for case in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_fast_with_the_argument_and_the_fix_and_nothing_changed(case, error, argument, fix):
    torch.manual_seed(0)
    model = trained_model()
    x, y = torch.randn(N, D), torch.arange(N) % C
    ctx = Ctx(model, x, y, torch.randn(4, D), torch.tensor([0, 1, 2, 0]))
    ctx.watch(model, x, y, ctx.x_test, ctx.y_test)
    try:
        thunk = case(ctx)
        start = time.perf_counter()
        with pytest.raises(error) as raised:
            thunk()
        elapsed = time.perf_counter() - start
    finally:
        env = getattr(ctx, "env", None)
        if env is not None:
            env.undo()
    message = str(raised.value)
    assert re_search(argument, message), f"the message does not name {argument!r}: {message}"
    assert re_search(fix, message), f"the message does not give the fix {fix!r}: {message}"
    assert elapsed < FAIL_WITHIN_S, f"took {elapsed:.2f} s to refuse"
    for obj, before in ctx.watched:
        assert _same(_snapshot(obj), before), f"the user's {type(obj).__name__} changed"


def re_search(pattern: str, text: str) -> bool:
    import re

    return re.search(pattern, text) is not None


def test_the_suite_has_at_least_80_cases():
    assert len(CASES) >= 80
    assert len({c[0] for c in CASES}) == len(CASES)
