"""Settings are kept as given, and caches are keyed by what they depend on, not by object identity."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from influence_widgets import CGOptions, InfluenceExplainer
from influence_widgets.core import DampedExplainer
from influence_widgets.core.solvers import FirstAnswerExactSolver
from influence_widgets.data import cross_entropy_per_example

pytestmark = pytest.mark.filterwarnings("ignore::influence_widgets.core.errors.NotStationaryWarning")


class CountingDense:
    """Wraps ``TrainingHessian.dense`` of one explainer's operators to count explicit builds."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from influence_widgets.core.curvature import TrainingHessian

        self.calls = 0
        original = TrainingHessian.dense

        def counted(operator, *args, **kwargs):
            self.calls += 1
            return original(operator, *args, **kwargs)

        monkeypatch.setattr(TrainingHessian, "dense", counted)


def small_problem(seed: int = 0):
    torch.manual_seed(seed)
    x = torch.randn(60, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (60,))
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    return model, x, y


def make(model, x, y, **kwargs):
    kwargs = {"weight_decay": 0.05, "damping": 0.5, "progress": False, **kwargs}
    return InfluenceExplainer(model, cross_entropy_per_example, x, y, **kwargs)


def test_the_explicit_hessian_is_built_once_with_and_without_a_client(monkeypatch):
    distributed = pytest.importorskip("distributed")
    model, x, y = small_problem()
    counter = CountingDense(monkeypatch)
    ex = make(model, x, y, solver="exact")
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        with_client = ex.influence(x[:2], y[:2], client=client)
    assert counter.calls == 1
    ex.clear_cache()  # the s_test cache would answer without any solve; the Hessian must still be found once more
    without = ex.influence(x[:2], y[:2])
    assert counter.calls == 2  # cleared: built again, once
    again = ex.with_damping(ex.damping).influence(x[2:4], y[2:4])
    assert counter.calls == 2 and again.shape == (2, 60)
    torch.testing.assert_close(with_client, without, rtol=1e-9, atol=1e-12)


def test_with_damping_reuses_the_explicit_hessian_and_answers_like_a_fresh_explainer(monkeypatch):
    model, x, y = small_problem(1)
    counter = CountingDense(monkeypatch)
    ex = make(model, x, y, solver="exact")
    ex.influence(x[:1], y[:1])
    damped = ex.with_damping(2.0)
    shifted = damped.influence(x[:3], y[:3])
    assert counter.calls == 1, "with_damping must shift the explicit Hessian it already has"
    fresh = make(model, x, y, solver="cg", damping=2.0, solver_options=CGOptions(rtol=1e-12))
    torch.testing.assert_close(shifted, fresh.influence(x[:3], y[:3]), rtol=1e-7, atol=1e-10)
    assert damped.settings.damping == 2.0 and ex.settings.damping == 0.5


def test_a_changed_parameter_is_a_new_key_and_clear_cache_forgets(monkeypatch):
    model, x, y = small_problem(2)
    counter = CountingDense(monkeypatch)
    ex = make(model, x, y, solver="exact")
    first = ex.influence(x[:2], y[:2])
    assert ex.cached_train_gradients() is not None
    with torch.no_grad():
        model[0].weight[0, 0] += 0.1
    other = ex.for_model(model)
    moved = other.influence(x[:2], y[:2])
    assert counter.calls == 2, "another parameter value is another Hessian"
    assert not torch.allclose(first, moved)
    torch.testing.assert_close(ex.influence(x[:2], y[:2]), first)  # the first model's entries still hold
    assert counter.calls == 2
    ex.clear_cache()
    assert ex.cached_train_gradients() is None
    assert other.cached_train_gradients() is not None, "another model keeps a cache of its own"
    same = ex.for_model(ex.model)
    same.influence(x[:2], y[:2])
    assert ex.cached_train_gradients() is not None, "the same model shares the cache"


def test_for_model_keeps_the_settings_as_given():
    model, x, y = small_problem(3)
    ex = make(model, x, y, cache_gradients=False, solver="auto")
    derived = ex.for_model(model)
    assert derived.settings.cache_gradients is False and derived.cache_gradients is False
    assert derived.settings.solver == "auto" and derived.solver_name == ex.solver_name
    assert derived.objective.names == ex.objective.names


def test_with_damping_keeps_autos_first_answer_solver_and_the_output_selection():
    torch.manual_seed(4)
    x = torch.randn(80, 10, dtype=torch.float64)
    y = torch.randint(0, 3, (80,))

    class TwoOutputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(10, 12), nn.Tanh(), nn.Linear(12, 3))

        def forward(self, inputs):
            logits = self.body(inputs)
            return logits, logits.sum()

    model = TwoOutputs().double()
    ex = make(model, x, y, output=0)
    assert isinstance(ex.solver, FirstAnswerExactSolver)  # 171 parameters outside the affine last layer
    damped = ex.with_damping(1.0)
    assert isinstance(damped.solver, FirstAnswerExactSolver)
    torch.testing.assert_close(damped.outputs(x[:4]), ex.outputs(x[:4]))
    fresh = make(model, x, y, output=0, damping=1.0, solver="exact")
    torch.testing.assert_close(damped.influence(x[:2], y[:2]), fresh.influence(x[:2], y[:2]), rtol=1e-5, atol=1e-8)


def test_positive_definite_returns_a_named_pair():
    model, x, y = small_problem(5)
    ex = make(model, x, y, damping=0.0, weight_decay=0.0, solver="exact")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = ex.positive_definite()
    assert isinstance(result, DampedExplainer)
    explainer, report = result
    assert explainer is result.explainer and report is result.curvature
    assert result.explainer.damping >= report.suggested_damping - 1e-15
