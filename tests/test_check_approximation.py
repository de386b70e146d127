"""check_approximation compares the configured solver with a reference on the user's own model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from influence_widgets import InfluenceExplainer, InfluenceInputError
from influence_widgets.data import cross_entropy_per_example

pytestmark = pytest.mark.filterwarnings("ignore::influence_widgets.core.errors.NotStationaryWarning")


def explainer(**kwargs):
    torch.manual_seed(0)
    x, y = torch.randn(80, 5, dtype=torch.float64), torch.randint(0, 3, (80,))
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    ex = InfluenceExplainer(
        model, cross_entropy_per_example, x, y, weight_decay=0.01, damping=0.5, progress=False, **kwargs
    )
    return ex, x, y


def test_an_exact_explainer_agrees_with_cg_and_a_low_rank_one_is_measured_honestly():
    ex, x, y = explainer(solver="exact")
    report = ex.check_approximation(x, y, reference="cg", n_points=3)
    assert len(report.pearson) == 3 and report.pearson.min() > 0.999999 and report.relative_error.max() < 1e-6
    assert report.solver == "exact" and "exact against cg" in report.summary()
    low, _, _ = explainer(solver="arnoldi", solver_options={"rank": 3})
    rough = low.check_approximation(x, y, reference="exact", n_points=2)
    truth = ex.influence(x[:2], y[:2]).numpy()
    estimate = low.influence(x[:2], y[:2]).numpy()
    np.testing.assert_allclose(rough.pearson, [np.corrcoef(a, b)[0, 1] for a, b in zip(estimate, truth)], rtol=1e-9)
    assert rough.relative_error.max() > 1e-3  # rank 3 of 57 is an approximation, and the report says so


def test_bad_reference_and_settings_name_the_fix():
    ex, x, y = explainer()
    with pytest.raises(InfluenceInputError, match="reference must be one of"):
        ex.check_approximation(x, y, reference="lissa")
    with pytest.raises(InfluenceInputError, match="cannot change"):
        ex.with_settings(params=["0.weight"])
    assert ex.with_settings(solver="cg").solver_name == "cg"
