"""One training objective and one L-BFGS loop: leave-one-out retraining, the use cases, the triage panel and
the demo trainers all minimise R(theta) = (1/n) sum_i loss(z_i, theta) + (lambda/2) ||theta||^2 the same way."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from influence_widgets import InfluenceExplainer, LBFGSRetrain, StepsRetrain
from influence_widgets.core.retrain import minimise_lbfgs, regularised_objective, retrain_copy
from influence_widgets.data import fit_adam, fit_lbfgs, objective_value


def flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def test_the_objective_is_the_mean_loss_plus_half_lambda_theta_squared_as_numpy_computes_it(multiclass_logreg):
    t = multiclass_logreg
    w, b = (p.detach().numpy() for p in t.model.linear.parameters())
    logits = t.X_train.numpy() @ w.T + b
    shifted = logits - logits.max(1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    losses = -log_softmax[np.arange(len(logits)), t.y_train.numpy()]
    penalty = (w**2).sum() + (b**2).sum()
    expected = losses.mean() + t.weight_decay / 2 * penalty
    with torch.no_grad():
        value = regularised_objective(t.model, t.loss_fn, t.X_train, t.y_train, t.weight_decay)
        assert float(value) == pytest.approx(expected, rel=1e-12)
        assert float(objective_value(t.model, t.loss_fn, t.X_train, t.y_train, t.weight_decay)) == float(value)
        # removing points keeps the full n: the remaining losses over n, not over the rows left
        kept = regularised_objective(t.model, t.loss_fn, t.X_train[1:], t.y_train[1:], t.weight_decay, n=len(t.y_train))
        assert float(kept) == pytest.approx(losses[1:].sum() / len(losses) + t.weight_decay / 2 * penalty, rel=1e-12)


def test_the_demo_trainer_and_the_retraining_of_a_copy_run_the_same_lbfgs(binary_logreg):
    """Retraining on the full set from theta_hat (n = len(x)) and fit_lbfgs from theta_hat give the same parameters,
    to the last bit: one objective, one loop, one configuration."""
    t = binary_logreg
    ex = InfluenceExplainer(
        t.model, t.loss_fn, t.X_train, t.y_train, weight_decay=t.weight_decay, solver="exact", progress=False
    )
    settings = LBFGSRetrain(max_iter=40, tolerance=1e-12)
    retrained = retrain_copy(ex, t.X_train, t.y_train, settings)
    demo = fit_lbfgs(  # from the user's model, which the explainer copied
        copy.deepcopy(t.model), t.loss_fn, t.X_train, t.y_train, t.weight_decay, max_iter=40, tolerance=1e-12
    )
    assert torch.equal(flat(retrained), flat(demo))


def test_retraining_works_on_a_copy_and_leaves_the_explainers_model_and_the_users_alone(binary_logreg):
    t = binary_logreg
    user_before = flat(t.model).clone()
    ex = InfluenceExplainer(
        t.model, t.loss_fn, t.X_train, t.y_train, weight_decay=t.weight_decay, solver="exact", progress=False
    )
    own_before = flat(ex.model).clone()
    for method in (LBFGSRetrain(max_iter=20), StepsRetrain(steps=5, lr=0.1)):
        retrained = retrain_copy(ex, t.X_train[10:], t.y_train[10:], method)
        assert retrained is not ex.model and not retrained.training
        assert not torch.equal(flat(retrained), own_before)
    assert torch.equal(flat(ex.model), own_before) and torch.equal(flat(t.model), user_before)


def test_the_minimisers_leave_the_mode_to_the_caller_and_only_move_the_given_parameters():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double().eval()
    x, y = torch.randn(20, 3, dtype=torch.float64), torch.randint(0, 2, (20,))
    loss = nn.CrossEntropyLoss(reduction="none")
    frozen = model[0].weight.detach().clone()
    minimise_lbfgs(model, loss, x, y, 0.1, max_iter=10, tolerance=1e-10, params=list(model[2].parameters()))
    assert not model.training and torch.equal(model[0].weight, frozen)
    fit_adam(model, loss, x, y, 0.1, steps=3, lr=0.01)  # the demo trainer sets train mode, then eval
    assert not model.training and not torch.equal(model[0].weight, frozen)
