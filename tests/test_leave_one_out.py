"""Leave-one-out retraining validation, the Newton-step refinement and their bad input."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from influence_widgets import InfluenceExplainer, InfluenceInputError, LBFGSRetrain, RetrainingError
from influence_widgets.core.validation import run_builtin
from influence_widgets.data import (
    LogisticRegression,
    cross_entropy_per_example,
    fit_lbfgs,
    load_digits,
    squared_error_per_example,
)


def highest_loss(model, loss_fn, x, y, k=3):
    with torch.no_grad():
        return torch.argsort(loss_fn(model(x), y), descending=True)[:k]


def explainer(t, solver="exact", **kwargs):
    return InfluenceExplainer(
        t.model, t.loss_fn, t.X_train, t.y_train, weight_decay=t.weight_decay, solver=solver, progress=False, **kwargs
    )


def test_warm_started_retraining_equals_a_fresh_fit_without_the_point(binary_logreg):
    t = binary_logreg
    keep = torch.ones(len(t.y_train), dtype=torch.bool)
    keep[11] = False
    names = {"linear.weight", "linear.bias"}
    warm = copy.deepcopy(t.model)
    cold = LogisticRegression(64, 2).double()
    with torch.no_grad():
        for p in cold.parameters():
            p.zero_()
    for module in (warm, cold):
        run_builtin(
            LBFGSRetrain(), module, names, t.loss_fn, t.X_train[keep], t.y_train[keep], len(t.y_train), t.weight_decay
        )
    flat = [torch.cat([p.detach().reshape(-1) for p in m.parameters()]) for m in (warm, cold, t.model)]
    # L-BFGS stops near max|grad R| = 1e-10, so both optima agree to about 1e-10 / lambda_min = 1e-8
    torch.testing.assert_close(flat[0], flat[1], rtol=0, atol=1e-7)
    assert torch.linalg.norm(flat[0] - flat[1]) < 1e-4 * torch.linalg.norm(flat[0] - flat[2])


@pytest.mark.parametrize("solver", ["exact", "cg", "lissa"])
def test_binary_digits_first_order_and_newton_figures(binary_logreg, solver):
    t = binary_logreg
    rows = highest_loss(t.model, t.loss_fn, t.X_test, t.y_test)
    result = explainer(t, solver).validate_loo(t.X_test[rows], t.y_test[rows], n_points=40)
    assert len(result.removed) == 120 and not result.stopped_early
    assert result.pearson >= (0.93 if solver == "lissa" else 0.95)
    assert result.refined_pearson >= 0.995
    assert 0.9 <= result.slope(refined=True) <= 1.1
    assert np.abs(result.drift).max() < 1e-8  # convex model, tight tolerance: no drift


def test_ten_class_digits_first_order_and_newton_figures():
    torch.manual_seed(0)
    split = load_digits(dtype=torch.float64, seed=0)
    x, y = split.X_train[:400], split.y_train[:400]
    model = LogisticRegression(64, 10).double()
    fit_lbfgs(model, cross_entropy_per_example, x, y, 0.01)
    rows = highest_loss(model, cross_entropy_per_example, split.X_test, split.y_test)
    ex = InfluenceExplainer(model, cross_entropy_per_example, x, y, weight_decay=0.01, solver="exact", progress=False)
    result = ex.validate_loo(split.X_test[rows], split.y_test[rows], n_points=40)
    assert result.pearson >= 0.95
    assert result.refined_pearson >= 0.995 and 0.9 <= result.slope(refined=True) <= 1.1


def ridge(x, y, weight_decay):
    xt = np.hstack([x, np.ones((len(x), 1))])
    return xt, np.linalg.solve(xt.T @ xt / len(x) + weight_decay * np.eye(xt.shape[1]), xt.T @ y / len(x))


def test_newton_refinement_is_exact_leave_one_out_for_least_squares():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    y = x @ rng.normal(size=4) + 0.5 * rng.normal(size=60)
    x_test, y_test = rng.normal(size=(3, 4)), rng.normal(size=3)
    lam, n = 0.1, 60
    xt, theta = ridge(x, y, lam)
    model = nn.Linear(4, 1).double()
    with torch.no_grad():
        model.weight.copy_(torch.as_tensor(theta[:-1])[None])
        model.bias.copy_(torch.as_tensor(theta[-1:]))
    ex = InfluenceExplainer(model, squared_error_per_example, x, y, weight_decay=lam, solver="exact", progress=False)
    removed = [0, 7, 33]
    refined = ex.newton_loss_change(x_test, y_test, removed).numpy()
    xt_test = np.hstack([x_test, np.ones((3, 1))])
    base = 0.5 * (xt_test @ theta - y_test) ** 2
    for k, i in enumerate(removed):
        keep = np.arange(n) != i  # the 1/n and lambda stay fixed: (1/n) sum_{j != i} + lambda/2
        theta_i = np.linalg.solve(xt[keep].T @ xt[keep] / n + lam * np.eye(5), xt[keep].T @ y[keep] / n)
        truth = 0.5 * (xt_test @ theta_i - y_test) ** 2 - base
        np.testing.assert_allclose(refined[:, k], truth, rtol=1e-8, atol=1e-14)
    cg = InfluenceExplainer(
        model,
        squared_error_per_example,
        x,
        y,
        weight_decay=lam,
        solver="cg",
        solver_options={"rtol": 1e-12},
        progress=False,
    )
    np.testing.assert_allclose(cg.newton_loss_change(x_test, y_test, removed).numpy(), refined, rtol=1e-8)


def test_refined_predicted_loss_change_replaces_only_the_top_k(binary_logreg):
    t = binary_logreg
    ex = explainer(t)
    first = ex.predicted_loss_change(t.X_test[:2], t.y_test[:2])
    refined = ex.predicted_loss_change(t.X_test[:2], t.y_test[:2], refine="newton", top_k=5)
    changed = (refined != first).sum(dim=1)
    assert changed.tolist() == [5, 5]
    top = torch.argsort(first.abs(), dim=1, descending=True)[:, :5]
    assert bool((refined != first).gather(1, top).all())


def test_model_and_data_are_unchanged_by_validation(binary_logreg):
    t = binary_logreg
    state = {k: v.clone() for k, v in t.model.state_dict().items()}
    x, y = t.X_train.clone(), t.y_train.clone()
    explainer(t).validate_loo(t.X_test[:1], t.y_test[:1], n_points=3)
    for k, v in t.model.state_dict().items():
        assert torch.equal(v, state[k])
    assert all(p.grad is None for p in t.model.parameters())
    assert torch.equal(x, t.X_train) and torch.equal(y, t.y_train)


def test_custom_retrainer_and_early_stop(binary_logreg):
    t = binary_logreg
    calls = []

    def retrain(model_copy, x, y):
        calls.append(len(x))
        return model_copy  # no training: actual changes are all zero

    result = explainer(t).validate_loo(t.X_test[:1], t.y_test[:1], n_points=4, retrain=retrain, refine=False)
    assert calls == [len(t.y_train)] + [len(t.y_train) - 1] * 4
    assert np.allclose(result.actual, 0) and result.refined is None and result.retrain == "retrain"
    stopped = explainer(t).validate_loo(t.X_test[:1], t.y_test[:1], n_points=4, max_seconds=0.0, refine=False)
    assert stopped.stopped_early and len(stopped.removed) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_points": 10_000}, r"n_points=10000 but the training set has 270 points; ask for between 1 and 270"),
        ({"select": "best"}, r"unknown select='best'; use 'top', 'random' or a sequence of indices"),
        ({"select": [1, 999]}, r"select contains \[999\], out of range"),
        ({"retrain": "sgd"}, r"unknown retrain='sgd'; use 'lbfgs', 'steps'"),
    ],
)
def test_bad_validation_arguments(binary_logreg, kwargs, message):
    t = binary_logreg
    with pytest.raises(InfluenceInputError, match=message):
        explainer(t).validate_loo(t.X_test[:1], t.y_test[:1], refine=False, **kwargs)


def test_bad_retrainers_give_clear_errors_and_keep_the_points_done(binary_logreg):
    t = binary_logreg
    ex = explainer(t)
    with pytest.raises(RetrainingError, match=r"retrain must return the retrained nn.Module, got dict"):
        ex.validate_loo(t.X_test[:1], t.y_test[:1], n_points=2, retrain=lambda m, x, y: {}, refine=False)
    with pytest.raises(RetrainingError, match=r"different architecture"):
        ex.validate_loo(t.X_test[:1], t.y_test[:1], n_points=2, retrain=lambda m, x, y: nn.Linear(3, 1), refine=False)
    calls = []

    def flaky(model_copy, x, y):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("out of memory")
        return model_copy

    with pytest.raises(RetrainingError, match=r"failed: RuntimeError\('out of memory'\); 2 result\(s\)") as info:
        ex.validate_loo(t.X_test[:1], t.y_test[:1], n_points=5, retrain=flaky, refine=False)
    assert len(info.value.partial.removed) == 2 and info.value.partial.stopped_early
