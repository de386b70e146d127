"""Bad input gets a clear error that names the problem and the fix, before any long computation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from influence_widgets import CGOptions, ExactOptions, InfluenceExplainer, InfluenceInputError, LissaOptions
from influence_widgets.data import cross_entropy_per_example


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    x, y = torch.randn(20, 4), torch.randint(0, 3, (20,))
    return model, x, y


def make(model, x, y, **kwargs):
    kwargs.setdefault("progress", False)
    return InfluenceExplainer(model, cross_entropy_per_example, x, y, **kwargs)


def test_mismatched_sample_counts(setup):
    model, x, y = setup
    with pytest.raises(InfluenceInputError, match=r"X_train has 20 samples but y_train has 19; pass one target"):
        make(model, x, y[:19])
    with pytest.raises(InfluenceInputError, match=r"X_test has 2 samples but y_test has 3"):
        make(model, x, y).influence(x[:2], y[:3])


def test_feature_shape_of_test_data(setup):
    model, x, y = setup
    with pytest.raises(
        InfluenceInputError,
        match=r"X_test has per-sample shape \(5,\) but the training inputs have "
        r"\(4,\); pass test data with the same features",
    ):
        make(model, x, y).influence(torch.randn(2, 5), y[:2])


def test_training_features_the_model_cannot_take(setup):
    model, _, y = setup
    with pytest.raises(InfluenceInputError, match=r"the model could not run on X_train rows of shape \(5,\)"):
        make(model, torch.randn(20, 5), y)


@pytest.mark.parametrize("where", ["X_train", "X_test", "y_train"])
def test_nan_or_infinite_data(setup, where):
    model, x, y = setup
    if where == "X_train":
        x = x.clone()
        x[3, 1] = float("nan")
        with pytest.raises(InfluenceInputError, match=r"X_train contains 1 NaN or infinite value\(s\); clean"):
            make(model, x, y)
    elif where == "X_test":
        bad = x[:2].clone()
        bad[0, 0] = float("inf")
        with pytest.raises(InfluenceInputError, match=r"X_test contains 1 NaN or infinite"):
            make(model, x, y).influence(bad, y[:2])
    else:
        with pytest.raises(InfluenceInputError, match=r"y_train contains 1 NaN"):
            InfluenceExplainer(
                nn.Linear(4, 1),
                lambda o, t: (o.squeeze(-1) - t) ** 2,
                x,
                torch.where(torch.arange(20) == 5, float("nan"), 1.0),
                progress=False,
            )


def test_nan_in_parameters(setup):
    model, x, y = setup
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    with pytest.raises(InfluenceInputError, match=r"the model's selected parameters contains 1 NaN"):
        make(model, x, y)


def test_empty_training_set(setup):
    model, x, y = setup
    with pytest.raises(InfluenceInputError, match=r"X_train is empty; pass at least one sample"):
        make(model, x[:0], y[:0])


def test_loss_that_does_not_return_one_value_per_example(setup):
    model, x, y = setup
    with pytest.raises(
        InfluenceInputError,
        match=r"loss_fn must return one value per example, shape \(2,\).*"
        r"returned \(\)\. Use reduction='none'",
    ):
        InfluenceExplainer(model, nn.CrossEntropyLoss(), x, y, progress=False)


def test_no_trainable_parameters(setup):
    model, x, y = setup
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(InfluenceInputError, match=r"no parameters with requires_grad=True; pass params="):
        make(model, x, y)


def test_unknown_parameter_name(setup):
    model, x, y = setup
    with pytest.raises(
        InfluenceInputError,
        match=r"unknown parameter name 'fc'; the model's parameters are "
        r"\['0.weight', '0.bias'\]",
    ):
        make(model, x, y, params=["fc"])


def test_parameter_prefix_selects_a_layer(setup):
    model, x, y = setup
    assert make(model, x, y, params="0").n_params == 15
    assert make(model, x, y, params=["0.bias"]).n_params == 3


def test_unknown_solver(setup):
    model, x, y = setup
    with pytest.raises(InfluenceInputError, match=r"unknown solver 'newton'; choose one of 'auto', 'exact', 'cg'"):
        make(model, x, y, solver="newton")


@pytest.mark.parametrize(
    ("solver", "options", "message"),
    [
        ("cg", {"max_iters": 5}, r"unknown option\(s\) \['max_iters'\] for solver 'cg'; valid options are"),
        ("cg", LissaOptions(), r"solver 'cg' takes CGOptions, got LissaOptions"),
        ("lissa", {"scale": -1.0}, r"LissaOptions.scale must be > 0, got -1.0"),
        ("lissa", {"repeats": 0}, r"LissaOptions.repeats must be >= 1"),
        ("exact", {"max_params": 0}, r"ExactOptions.max_params must be >= 1"),
    ],
)
def test_invalid_solver_options(setup, solver, options, message):
    model, x, y = setup
    with pytest.raises(InfluenceInputError, match=message):
        make(model, x, y, solver=solver, solver_options=options)


def test_invalid_option_values_fail_at_construction():
    with pytest.raises(InfluenceInputError, match=r"CGOptions.rtol must lie in \(0, 1\), got 2"):
        CGOptions(rtol=2)


def test_exact_refuses_a_model_too_large_and_names_the_solver_to_use(setup):
    model, x, y = setup
    with pytest.raises(InfluenceInputError, match=r"above its limit of 10 parameters; use solver='cg'"):
        make(model, x, y, solver="exact", solver_options=ExactOptions(max_params=10))


def test_training_indices_out_of_range(setup):
    model, x, y = setup
    ex = make(model, x, y)
    with pytest.raises(
        InfluenceInputError,
        match=r"train_indices contains \[20\], out of range for 20 points; "
        r"use indices in \[0, 19\]",
    ):
        ex.influence_params([0, 20])
    with pytest.raises(InfluenceInputError, match=r"train_indices contains \[-1\]"):
        ex.influence_pert_loss(x[:1], y[:1], [-1])


@pytest.mark.parametrize("name", ["weight_decay", "damping"])
def test_negative_regularisation(setup, name):
    model, x, y = setup
    with pytest.raises(InfluenceInputError, match=rf"{name} must be a finite number >= 0, got -0.1"):
        make(model, x, y, **{name: -0.1})


def test_not_a_module(setup):
    _, x, y = setup
    with pytest.raises(InfluenceInputError, match=r"model must be a torch.nn.Module, got function"):
        make(lambda v: v, x, y)
