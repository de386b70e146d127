"""solver="auto" on a network: the first test points are answered by block CG (a fast first answer), later ones
by the explicit Hessian, built once. Checked against influence through torch.autograd.functional.hessian."""

from __future__ import annotations

import numpy as np
import pytest
from tanh_network import train_network
from test_small_network import autograd_influence

from influence_widgets.core.solvers import FirstAnswerExactSolver
from influence_widgets.core.solvers.auto import CG_TEST_POINTS


@pytest.fixture(scope="module")
def trained():
    return train_network(n_test=8)


def test_auto_answers_the_first_points_by_cg_then_builds_the_explicit_hessian_once(trained):
    explainer = trained.explainer("auto")
    assert explainer.solver_name == "exact" and isinstance(explainer.solver, FirstAnswerExactSolver)
    truth, _ = autograd_influence(trained.model, trained.x, trained.y, trained.x_test, trained.y_test)
    for i in range(CG_TEST_POINTS + 2):
        scores = explainer.influence(trained.x_test[i : i + 1], trained.y_test[i : i + 1]).numpy()[0]
        diagnostics = explainer.diagnostics[-1]
        by_cg = i < CG_TEST_POINTS
        assert diagnostics.solver == ("cg" if by_cg else "exact") and diagnostics.converged
        assert diagnostics.note.startswith("auto chose exact: ")
        assert explainer.solver.has_hessian(explainer.hessian) == (not by_cg)
        tolerance = 1e-5 if by_cg else 1e-9  # CG: rtol 1e-8 on the residual; exact: float64 factorisation
        assert np.linalg.norm(scores - truth[i]) <= tolerance * np.linalg.norm(truth[i])


def test_auto_builds_the_explicit_hessian_at_once_for_many_test_points(trained):
    explainer = trained.explainer("auto")
    scores = explainer.influence(trained.x_test[:3], trained.y_test[:3]).numpy()
    assert explainer.diagnostics[-1].solver == "exact"
    assert explainer.diagnostics[-1].note.startswith("auto chose exact: ")
    truth, _ = autograd_influence(trained.model, trained.x, trained.y, trained.x_test[:3], trained.y_test[:3])
    assert np.linalg.norm(scores - truth) <= 1e-9 * np.linalg.norm(truth)


def test_exact_asked_by_name_never_takes_the_cg_path(trained):
    explainer = trained.explainer("exact")
    explainer.influence(trained.x_test[:1], trained.y_test[:1])
    assert not isinstance(explainer.solver, FirstAnswerExactSolver)
    assert explainer.diagnostics[-1].solver == "exact"
