"""Domain mismatch: the report traces wrong predictions to the planted subgroup, with numbers from closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from closed_form import as_numpy, binary_logistic, sigmoid, with_bias

from influence_widgets import InfluenceExplainer, InfluenceInputError
from influence_widgets.data import LogisticRegression, binary_logistic_per_example, fit_lbfgs, make_readmission
from influence_widgets.usecases import domain_mismatch_report

WEIGHT_DECAY = 1e-4


@pytest.fixture(scope="module")
def hospital():
    data = make_readmission(n_train=1000, n_test=500, seed=1)
    model = LogisticRegression(8, 2).double()
    fit_lbfgs(model, binary_logistic_per_example, data.X_train, data.y_train, WEIGHT_DECAY)
    ex = InfluenceExplainer(
        model, binary_logistic_per_example, data.X_train, data.y_train, weight_decay=WEIGHT_DECAY, progress=False
    )
    report = domain_mismatch_report(
        ex,
        data.X_test,
        data.y_test,
        top_k=8,
        feature_names=data.feature_names,
        groups_train=data.groups_train,
        groups_test=data.groups_test,
    )
    return data, model, report


def test_the_planted_children_are_the_most_harmful_points_and_is_child_the_feature(hospital):
    data, _, report = hospital
    children = set(np.flatnonzero(data.groups_train == "child"))
    assert len(children) == 4
    assert set(report.top[:4]) == children
    assert report.responsible_group == "child"
    assert report.responsible_feature == "is_child"
    assert report.test_error_by_group["child"] > 0.6 > 0.3 > report.test_error_by_group["adult"]
    assert report.harm_ratio > 20
    assert "is_child" in report.summary()


def test_harm_and_feature_gradient_match_closed_form_logistic_regression(hospital):
    data, model, report = hospital
    x, y = as_numpy(data.X_train), as_numpy(data.y_train)
    grads, hessian = binary_logistic(model.linear, x, y, WEIGHT_DECAY)
    x_wrong, y_wrong = as_numpy(data.X_test)[report.wrong_test], as_numpy(data.y_test)[report.wrong_test]
    test_grads, _ = binary_logistic(model.linear, x_wrong, y_wrong, WEIGHT_DECAY)
    v = -np.linalg.solve(hessian, test_grads.sum(0))  # harm_i = v . g_i
    np.testing.assert_allclose(report.harm, grads @ v, rtol=1e-7, atol=1e-9 * np.abs(grads @ v).max())
    theta = np.concatenate([model.linear.weight.detach().numpy().ravel(), model.linear.bias.detach().numpy()])
    xt = with_bias(x[report.top])
    s = sigmoid(xt @ theta)
    # d/dx of v . (s - y) x~ = (s - y) v_w + s (1 - s) (v . x~) w
    d_harm = (s - y[report.top])[:, None] * v[:-1] + (s * (1 - s) * (xt @ v))[:, None] * theta[:-1]
    np.testing.assert_allclose(report.feature_gradient, np.abs(d_harm).mean(0), rtol=1e-7)
    train_std = x.std(0)
    np.testing.assert_allclose(report.feature_shift, (x[report.top].mean(0) - x.mean(0)) / train_std, rtol=1e-10)


def test_bad_input_to_the_report_is_refused(hospital):
    data, model, _ = hospital
    ex = InfluenceExplainer(
        model, binary_logistic_per_example, data.X_train, data.y_train, weight_decay=WEIGHT_DECAY, progress=False
    )
    with pytest.raises(InfluenceInputError, match="feature_names has 2 names"):
        domain_mismatch_report(ex, data.X_test, data.y_test, feature_names=["a", "b"])
    with pytest.raises(InfluenceInputError, match="groups_train must hold one label per row"):
        domain_mismatch_report(ex, data.X_test, data.y_test, groups_train=["child"])
    with pytest.raises(InfluenceInputError, match="top_k"):
        domain_mismatch_report(ex, data.X_test, data.y_test, top_k=0)
    with torch.no_grad():
        right = (model(data.X_test).reshape(-1) > 0).double() == data.y_test
    with pytest.raises(InfluenceInputError, match="every test point right"):
        domain_mismatch_report(ex, data.X_test[right], data.y_test[right])
