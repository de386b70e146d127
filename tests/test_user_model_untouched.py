"""The user's model and data are never modified, and a model in training mode is evaluated in eval mode."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from influence_widgets import InfluenceExplainer
from influence_widgets.core import ModelModeWarning
from influence_widgets.data import cross_entropy_per_example


def model_with_mode_dependent_layers() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Dropout(0.5), nn.Linear(8, 3))


def snapshot(model):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [p.requires_grad for p in model.parameters()],
        [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        [m.training for m in model.modules()],
    )


def test_model_parameters_grads_flags_and_mode_are_unchanged():
    model = model_with_mode_dependent_layers()
    x, y = torch.randn(30, 6), torch.randint(0, 3, (30,))
    model(x).sum().backward()  # the user has gradients lying around
    model[0].bias.requires_grad_(False)  # and one frozen parameter
    before = snapshot(model)
    x_before, y_before = x.clone(), y.clone()
    with pytest.warns(ModelModeWarning, match="training mode .* eval mode"):
        ex = InfluenceExplainer(
            model, cross_entropy_per_example, x, y, weight_decay=0.1, damping=0.5, solver="exact", progress=False
        )
    ex.influence(x[:3], y[:3])
    ex.influence_pert_loss(x[:2], y[:2], [0, 1])
    ex.influence_params([4])
    ex.self_influence()
    ex.curvature()
    after = snapshot(model)
    for key in before[0]:
        assert torch.equal(before[0][key], after[0][key]), key
    assert before[1] == after[1]
    assert all(torch.equal(a, b) for a, b in zip(before[2], after[2]) if a is not None)
    assert [a is None for a in before[2]] == [a is None for a in after[2]]
    assert before[3] == after[3] and model.training
    assert torch.equal(x, x_before) and torch.equal(y, y_before)
    assert "0.bias" not in ex.objective.names


def test_influence_is_computed_in_eval_mode():
    model = model_with_mode_dependent_layers()
    x, y = torch.randn(30, 6), torch.randint(0, 3, (30,))
    with pytest.warns(ModelModeWarning):
        ex = InfluenceExplainer(
            model, cross_entropy_per_example, x, y, weight_decay=0.1, damping=1.0, solver="exact", progress=False
        )
    model.eval()
    with torch.no_grad():
        expected = model(x[:5])
    torch.testing.assert_close(ex.objective.outputs(x[:5]), expected)
    model.train()
    first = ex.influence(x[:2], y[:2])
    ex.clear_cache()
    torch.testing.assert_close(ex.influence(x[:2], y[:2]), first)  # deterministic: no dropout noise
