"""Influence on L2-regularised logistic regression against a closed-form numpy Hessian."""

from __future__ import annotations

import numpy as np
import pytest
from closed_form import as_numpy, binary_logistic, influence_matrix, multiclass_logistic, multiclass_logit_grads

from influence_widgets import CGOptions, InfluenceExplainer, LissaOptions, measurements
from influence_widgets.data import gradient_norm


def ground_truth(trained, kind):
    x, y = as_numpy(trained.X_train), as_numpy(trained.y_train)
    xt, yt = as_numpy(trained.X_test), as_numpy(trained.y_test)
    if kind == "binary":
        train_grads, hessian = binary_logistic(trained.model.linear, x, y, trained.weight_decay)
        test_grads, _ = binary_logistic(trained.model.linear, xt, yt, trained.weight_decay)
    else:
        train_grads, hessian = multiclass_logistic(trained.model.linear, x, y.astype(int), trained.weight_decay)
        test_grads, _ = multiclass_logistic(trained.model.linear, xt, yt.astype(int), trained.weight_decay)
    return train_grads, test_grads, hessian


def relative_error(estimate, truth):
    return np.linalg.norm(as_numpy(estimate) - truth) / np.linalg.norm(truth)


@pytest.fixture(params=["binary", "multiclass"])
def case(request, binary_logreg, multiclass_logreg):
    trained = binary_logreg if request.param == "binary" else multiclass_logreg
    return request.param, trained


def explainer(trained, solver, **options):
    return InfluenceExplainer(
        trained.model,
        trained.loss_fn,
        trained.X_train,
        trained.y_train,
        weight_decay=trained.weight_decay,
        solver=solver,
        progress=False,
        **options,
    )


def test_models_are_trained_to_convergence(case):
    _, t = case
    assert gradient_norm(t.model, t.loss_fn, t.X_train, t.y_train, t.weight_decay) < 1e-7


@pytest.mark.parametrize("solver", ["exact", "cg"])
def test_exact_and_cg_match_the_closed_form_influence_to_1e6(case, solver):
    kind, trained = case
    train_grads, test_grads, hessian = ground_truth(trained, kind)
    truth = influence_matrix(test_grads, train_grads, hessian)
    options = {"solver_options": CGOptions(rtol=1e-10)} if solver == "cg" else {}
    ex = explainer(trained, solver, **options)
    influence = ex.influence(trained.X_test, trained.y_test)
    assert influence.shape == truth.shape
    assert relative_error(influence, truth) < 1e-6
    np.testing.assert_allclose(
        as_numpy(ex.predicted_loss_change(trained.X_test, trained.y_test)),
        -truth / len(train_grads),
        rtol=1e-5,
        atol=1e-12,
    )


def test_lissa_correlates_with_the_closed_form_above_0_99(case):
    kind, trained = case
    train_grads, test_grads, hessian = ground_truth(trained, kind)
    truth = influence_matrix(test_grads, train_grads, hessian)
    ex = explainer(trained, "lissa", solver_options=LissaOptions(batch_size=64, seed=1))
    influence = as_numpy(ex.influence(trained.X_test, trained.y_test))
    assert np.isfinite(influence).all()
    assert np.corrcoef(influence.ravel(), truth.ravel())[0, 1] > 0.99


def test_influence_on_params_is_minus_inverse_hessian_times_gradient(case):
    kind, trained = case
    train_grads, _, hessian = ground_truth(trained, kind)
    indices = [0, 5, 17]
    truth = -np.linalg.solve(hessian, train_grads[indices].T).T
    assert relative_error(explainer(trained, "exact").influence_params(indices), truth) < 1e-8


def test_self_influence_matches_closed_form(case):
    kind, trained = case
    train_grads, _, hessian = ground_truth(trained, kind)
    truth = -np.einsum("ij,ji->i", train_grads, np.linalg.solve(hessian, train_grads.T))
    assert relative_error(explainer(trained, "exact").self_influence(), truth) < 1e-8


def test_predicted_class_logit_measurement_matches_closed_form(multiclass_logreg):
    t = multiclass_logreg
    train_grads, _, hessian = ground_truth(t, "multiclass")
    logit_grads = multiclass_logit_grads(t.model.linear, as_numpy(t.X_test))
    truth = influence_matrix(logit_grads, train_grads, hessian)
    ex = explainer(t, "exact")
    estimate = ex.influence(t.X_test, t.y_test, measurement=measurements.predicted_class_logit)
    assert relative_error(estimate, truth) < 1e-8
    # the loss-based influence of the same points is a different quantity and is cached separately
    assert relative_error(ex.influence(t.X_test, t.y_test), truth) > 1e-2


def test_float32_model_agrees_with_float64_ground_truth(binary_logreg):
    t = binary_logreg
    train_grads, test_grads, hessian = ground_truth(t, "binary")
    truth = influence_matrix(test_grads, train_grads, hessian)
    model32 = type(t.model)(64, 2)
    model32.load_state_dict({k: v.float() for k, v in t.model.state_dict().items()})
    for solver in ("exact", "cg"):
        ex = InfluenceExplainer(
            model32,
            t.loss_fn,
            t.X_train.float(),
            t.y_train.float(),
            weight_decay=t.weight_decay,
            solver=solver,
            progress=False,
        )
        influence = ex.influence(t.X_test.float(), t.y_test.float())
        assert influence.dtype.is_floating_point and influence.dtype == model32.linear.weight.dtype
        assert relative_error(influence, truth) < 1e-3


def test_influence_of_points_outside_the_training_set_matches_closed_form(case):
    """Columns for any (x, y): the held-out points as candidates, with a flipped label too."""
    kind, trained = case
    _, test_grads, hessian = ground_truth(trained, kind)
    candidates_x, candidates_y = trained.X_test[:4], trained.y_test[:4].clone()
    candidates_y[0] = 1 - candidates_y[0] if kind == "binary" else (candidates_y[0] + 1) % 10
    if kind == "binary":
        candidate_grads, _ = binary_logistic(trained.model.linear, as_numpy(candidates_x), as_numpy(candidates_y), 0)
    else:
        candidate_grads, _ = multiclass_logistic(
            trained.model.linear, as_numpy(candidates_x), as_numpy(candidates_y).astype(int), 0
        )
    ex = explainer(trained, "exact")
    got = ex.influence_of(trained.X_test, trained.y_test, candidates_x, candidates_y)
    assert relative_error(got, influence_matrix(test_grads, candidate_grads, hessian)) < 1e-6
    columns = ex.influence_of(trained.X_test, trained.y_test, trained.X_train[[3, 7]], trained.y_train[[3, 7]])
    np.testing.assert_allclose(as_numpy(columns), as_numpy(ex.influence(trained.X_test, trained.y_test))[:, [3, 7]])
