"""Training-set attack on a linear model: the flip is judged by retraining."""

from __future__ import annotations

import pytest
import torch

from influence_widgets import InfluenceExplainer, InfluenceInputError
from influence_widgets.data import LogisticRegression, binary_logistic_per_example, fit_lbfgs
from influence_widgets.usecases import training_set_attack


@pytest.fixture(scope="module")
def linear():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(40, 2, generator=generator, dtype=torch.float64)
    y = (x[:, 0] + x[:, 1] > 1).double()
    model = LogisticRegression(2, 2).double()
    fit_lbfgs(model, binary_logistic_per_example, x, y, 0.01)
    ex = InfluenceExplainer(model, binary_logistic_per_example, x, y, weight_decay=0.01, progress=False)
    w, b = model.linear.weight.detach()[0], float(model.linear.bias.detach())
    t = (0.03 - b) / float(w.sum())  # a correctly classified test point at logit +0.03
    return ex, x, y, torch.tensor([[t, t]], dtype=torch.float64), torch.tensor([1.0])


def test_one_perturbed_training_point_flips_a_near_boundary_prediction(linear):
    ex, x, _, x_test, y_test = linear
    x_before = x.clone()
    result = training_set_attack(ex, x_test, y_test, 0.3, n_points=1, steps=10)
    assert result.prediction_before == 1 and result.flipped
    assert result.max_change <= 0.3 + 1e-12
    assert float(result.perturbed.min()) >= 0 and float(result.perturbed.max()) <= 1
    assert result.observed_loss_change > 0 and result.predicted_loss_change > 0
    assert torch.equal(x, x_before) and torch.equal(ex.data.x, x_before)  # the user's data is untouched


@pytest.mark.parametrize("epsilon", [-0.1, 0.0, 1.5])
def test_epsilon_outside_the_input_range_is_refused(linear, epsilon):
    ex, _, _, x_test, y_test = linear
    with pytest.raises(InfluenceInputError, match=r"epsilon must lie in \(0, 1\]"):
        training_set_attack(ex, x_test, y_test, epsilon)


def test_a_misclassified_test_point_is_refused(linear):
    ex, _, _, x_test, _ = linear
    with pytest.raises(InfluenceInputError, match="already misclassifies this test point"):
        training_set_attack(ex, x_test, torch.tensor([0.0]), 0.2)
