"""Trust: is theta-hat a minimum, a deterministic forward, memory before O(p^2), every input form, nothing lost."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from influence_widgets import (
    InfluenceExplainer,
    InfluenceInputError,
    NotStationaryWarning,
    StationarityReport,
)
from influence_widgets.core.errors import FrozenParameterWarning
from influence_widgets.data import LogisticRegression, cross_entropy_per_example, fit_adam, fit_lbfgs, load_digits
from influence_widgets.usecases import simulate_triage, training_set_attack


def make(t, model=None, **kwargs):
    kwargs.setdefault("weight_decay", t.weight_decay)
    kwargs.setdefault("progress", False)
    return InfluenceExplainer(t.model if model is None else model, t.loss_fn, t.X_train, t.y_train, **kwargs)


def independent_gradient_norm(model, loss_fn, x, y, weight_decay) -> float:
    """||(1/n) sum_i grad L_i + lambda theta|| by plain autograd on a float64 copy, outside the explainer."""
    copy = LogisticRegression(x.shape[1], 10 if model.linear.out_features > 1 else 2).double()
    copy.load_state_dict(model.state_dict())
    value = loss_fn(copy(x.double()), y).mean() + 0.5 * weight_decay * sum((p * p).sum() for p in copy.parameters())
    grads = torch.autograd.grad(value, list(copy.parameters()))
    return float(torch.cat([g.reshape(-1) for g in grads]).norm())


# ---------------------------------------------------------------- is theta-hat a minimum?


def test_an_lbfgs_trained_logistic_regression_is_stationary(multiclass_logreg):
    t = multiclass_logreg
    report = make(t).stationarity()
    assert isinstance(report, StationarityReport)
    assert report.is_stationary and report.ratio < 1e-6
    expected = independent_gradient_norm(t.model, t.loss_fn, t.X_train, t.y_train, t.weight_decay)
    assert report.gradient_norm == pytest.approx(expected, rel=1e-6, abs=1e-12)
    assert "at a minimum" in report.summary()


def test_an_undertrained_model_is_warned_about_with_the_figure_and_the_fix(multiclass_logreg):
    t = multiclass_logreg
    torch.manual_seed(0)
    model = LogisticRegression(64, 10).double()
    fit_adam(model, t.loss_fn, t.X_train, t.y_train, t.weight_decay, steps=30, lr=0.02)
    ex = make(t, model)
    with pytest.warns(NotStationaryWarning, match=r"NOT at a minimum.*L-BFGS") as caught:
        ex.influence(t.X_test, t.y_test)
    report = ex.stationarity()
    expected = independent_gradient_norm(model, t.loss_fn, t.X_train, t.y_train, t.weight_decay)
    assert report.gradient_norm == pytest.approx(expected, rel=1e-6)
    # the per-example scale is the RMS per-example gradient norm, recomputed here with plain autograd
    norms = []
    for i in torch.randperm(len(t.X_train), generator=torch.Generator().manual_seed(0))[:256].sort().values:
        value = t.loss_fn(model(t.X_train[i : i + 1]), t.y_train[i : i + 1]).sum()
        norms.append(
            float(torch.cat([g.reshape(-1) for g in torch.autograd.grad(value, list(model.parameters()))]).norm())
        )
    assert report.per_example_scale == pytest.approx(float(np.sqrt(np.mean(np.square(norms)))), rel=1e-6)
    assert report.ratio == pytest.approx(report.gradient_norm / report.per_example_scale)
    assert not report.is_stationary and f"{report.gradient_norm:.3g}" in str(caught[0].message)
    assert any("NOT at a minimum" in w for d in ex.diagnostics for w in d.warnings)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotStationaryWarning)  # computed and warned once, then cached
        assert ex.stationarity() is report
    loo = ex.validate_loo(t.X_test[:1], t.y_test[:1], n_points=2, refine=False)
    assert loo.stationarity is report and "NOT at a minimum" in loo.summary()


# ---------------------------------------------------------------- deterministic forward


def test_dropout_modules_in_eval_mode_are_deterministic_and_accepted(multiclass_logreg):
    t = multiclass_logreg
    model = nn.Sequential(nn.Dropout(0.5), LogisticRegression(64, 10).double()).eval()
    model[1].load_state_dict(t.model.state_dict())
    ex = InfluenceExplainer(model, t.loss_fn, t.X_train, t.y_train, weight_decay=t.weight_decay, progress=False)
    torch.testing.assert_close(ex.influence(t.X_test, t.y_test), make(t).influence(t.X_test, t.y_test))


def test_a_random_forward_is_refused_before_any_work_and_leaves_the_global_rng_alone(multiclass_logreg):
    t = multiclass_logreg

    class Noisy(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = t.model.linear

        def forward(self, x):
            return self.linear(F.dropout(x, 0.2))

    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    with pytest.raises(InfluenceInputError, match="different outputs on the same input"):
        InfluenceExplainer(Noisy(), t.loss_fn, t.X_train, t.y_train, progress=False)
    torch.testing.assert_close(torch.rand(3), expected)


# ---------------------------------------------------------------- singular H and memory


def test_softmax_regression_without_weight_decay_gets_the_damping_that_fixes_it():
    split = load_digits(dtype=torch.float64, seed=0)
    x, y = split.X_train[:300], split.y_train[:300]
    torch.manual_seed(0)
    model = LogisticRegression(64, 10).double()
    fit_lbfgs(model, cross_entropy_per_example, x, y, 0.0, max_iter=50)
    ex = InfluenceExplainer(model, cross_entropy_per_example, x, y, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotStationaryWarning)
        with pytest.raises(InfluenceInputError, match=r"singular.*weight_decay=0.*damping=0.*Pass damping=") as raised:
            ex.influence(split.X_test[:2], split.y_test[:2])
        suggested = float(str(raised.value).split("Pass damping=")[1].split(" ")[0])
        damped = ex.with_damping(suggested)
        scores = damped.influence(split.X_test[:2], split.y_test[:2])
    hessian = damped.solver.hessian(damped.hessian)
    assert bool(torch.isfinite(scores).all()) and float(torch.linalg.eigvalsh(hessian)[0]) > 0


def test_the_exact_solver_refuses_a_hessian_that_does_not_fit_before_allocating(multiclass_logreg, monkeypatch):
    from influence_widgets.core.errors import InsufficientMemoryError

    monkeypatch.setenv("INFLUENCE_WIDGETS_MEMORY_BYTES", str(10 * 2**20))  # 10 MiB free; H is 650^2 x 8 = 3.4 MB
    with pytest.raises(InsufficientMemoryError, match=r"needs 9.7 MiB but only 10.0 MiB is free.*solver='cg'"):
        make(multiclass_logreg, solver="exact")
    monkeypatch.setenv("INFLUENCE_WIDGETS_MEMORY_BYTES", str(2**30))
    assert make(multiclass_logreg, solver="exact").estimate_cost().fits_in_memory


def test_the_cost_preview_of_a_large_exact_solve_allocates_no_p_squared():
    """p = 12,340: the float64 Hessian would take 1.2 GB; the preview must stay far below (peak RSS growth)."""
    script = textwrap.dedent(
        """
        import resource, torch
        from torch import nn
        from influence_widgets import InfluenceExplainer, ExactOptions
        from influence_widgets.data import cross_entropy_per_example
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(400, 30), nn.Tanh(), nn.Linear(30, 10))
        x, y = torch.randn(64, 400), torch.randint(0, 10, (64,))
        ex = InfluenceExplainer(model, cross_entropy_per_example, x, y, weight_decay=0.01, solver="exact",
                                solver_options=ExactOptions(max_params=10**6), progress=False)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        cost = ex.estimate_cost()
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(ex.n_params, cost.memory_bytes["explicit Hessian"], (after - before) * 1024)
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    p, hessian_bytes, growth = map(int, out.stdout.split())
    assert p == 12340 and hessian_bytes == 2 * p * p * 8
    assert growth < 0.1 * p * p * 8, f"the preview grew the process by {growth / 2**20:.0f} MiB"


# ---------------------------------------------------------------- every natural form of an input


def test_models_returning_tuples_or_dicts_work_with_output(multiclass_logreg):
    t = multiclass_logreg

    class Both(nn.Module):
        def __init__(self, as_dict):
            super().__init__()
            self.linear = LogisticRegression(64, 10).double().linear
            self.as_dict = as_dict

        def forward(self, x):
            logits = self.linear(x)
            return {"logits": logits, "h": x} if self.as_dict else (logits, x)

    reference = make(t).influence(t.X_test, t.y_test)
    for as_dict, output in ((False, 0), (True, "logits"), (False, lambda out: out[0])):
        model = Both(as_dict)
        model.linear.load_state_dict(t.model.linear.state_dict())
        ex = make(t, model, output=output)
        torch.testing.assert_close(ex.influence(t.X_test, t.y_test), reference)
        loo = ex.validate_loo(t.X_test[:1], t.y_test[:1], n_points=2, refine=False)  # retraining selects too
        assert len(loo.removed) == 2


def test_params_in_every_natural_form_select_the_same_parameters(multiclass_logreg):
    t = multiclass_logreg
    model = t.model
    reference = make(t, params=["linear.bias"])
    forms = [
        "linear.bias",
        [model.linear.bias],
        (p for p in [model.linear.bias]),
        {"bias": model.linear.bias},
        [("linear.bias", model.linear.bias)],
    ]
    for form in forms:
        assert make(t, params=form).objective.names == reference.objective.names
    assert make(t, params=model.linear).n_params == make(t).n_params == 650
    assert make(t, params=model.linear.parameters()).n_params == 650


def test_frozen_parameters_selected_explicitly_count_with_a_warning(multiclass_logreg):
    t = multiclass_logreg
    model = LogisticRegression(64, 10).double()
    model.load_state_dict(t.model.state_dict())
    model.linear.bias.requires_grad_(False)
    with pytest.warns(FrozenParameterWarning, match=r"linear\.bias.*requires_grad=False"):
        ex = make(t, model, params=["linear"])
    assert ex.n_params == 650 and not model.linear.bias.requires_grad


@pytest.mark.parametrize("value", [np.float32(0.01), np.float64(0.01), torch.tensor(0.01), np.array(0.01), 0.01])
def test_any_real_scalar_is_a_number(multiclass_logreg, value):
    ex = make(multiclass_logreg, weight_decay=value, damping=np.float16(0), batch_size=np.int64(128))
    assert ex.weight_decay == pytest.approx(0.01) and isinstance(ex.batch_size, int)


def test_unchanged_training_data_passes_the_fingerprint(multiclass_logreg):
    ex = make(multiclass_logreg)
    ex.influence(multiclass_logreg.X_test, multiclass_logreg.y_test)
    ex.check_training_data_unchanged()
    ex.self_influence()


# ---------------------------------------------------------------- nothing lost


def test_an_interrupt_in_the_leave_one_out_callback_keeps_the_retrainings_done(binary_logreg):
    t = binary_logreg
    ex = make(t, solver="exact")
    seen = []

    def on_point(partial):
        seen.append(len(partial.removed))
        if len(seen) == 3:
            raise KeyboardInterrupt

    result = ex.validate_loo(t.X_test[:1], t.y_test[:1], n_points=8, on_point=on_point)
    assert result.stopped_early and len(result.removed) == 3 == len(result.actual) == len(result.refined)
    assert seen == [1, 2, 3]


def test_an_interrupt_in_the_attack_keeps_the_steps_done(binary_logreg):
    t = binary_logreg
    ex = make(t, solver="exact")
    calls = []

    def retrain(model, x, y):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        fit_lbfgs(model, t.loss_fn, x, y, t.weight_decay, max_iter=30)
        return model

    x_before = ex.data.x.clone()
    result = training_set_attack(ex, t.X_test[:1], t.y_test[:1], 0.2, steps=5, retrain=retrain, require_correct=False)
    assert result.stopped_early and result.steps_done == 2
    assert 0 < result.max_change <= 0.2 + 1e-12
    torch.testing.assert_close(ex.data.x, x_before)


def test_an_interrupt_in_triage_keeps_the_fractions_done(binary_logreg):
    t = binary_logreg
    ex = make(t, solver="exact")
    clean = t.y_train.clone()
    noisy_labels = 1 - clean[:10]
    clean[:10] = noisy_labels  # the explainer's labels differ from these in 10 places
    calls = []

    def retrain(model, x, y):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return model

    result = simulate_triage(
        ex, clean, (0.1, 0.2, 0.3), methods=["loss"], X_test=t.X_test, y_test=t.y_test, retrain=retrain
    )
    assert result.stopped_early and len(result.found["loss"]) == 1 == len(result.accuracy["loss"])
