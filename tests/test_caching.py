"""Train gradients and s_test are computed once; a test point already seen costs a matrix product."""

from __future__ import annotations

import torch

from influence_widgets import InfluenceExplainer


def test_repeated_test_points_are_not_solved_again(multiclass_logreg):
    t = multiclass_logreg
    ex = InfluenceExplainer(
        t.model, t.loss_fn, t.X_train, t.y_train, weight_decay=t.weight_decay, solver="cg", progress=False
    )
    calls = {"grads": 0}
    original = ex.objective.per_example_grads

    def counting(*args, **kwargs):
        calls["grads"] += 1
        return original(*args, **kwargs)

    ex.objective.per_example_grads = counting
    first = ex.influence(t.X_test[:3], t.y_test[:3])
    assert len(ex.diagnostics) == 1 and ex.diagnostics[0].n_rhs == 3
    grads_after_first = calls["grads"]
    again = ex.influence(t.X_test[:3], t.y_test[:3])
    assert len(ex.diagnostics) == 1 and calls["grads"] == grads_after_first
    torch.testing.assert_close(again, first)
    mixed = ex.influence(t.X_test[1:5], t.y_test[1:5])
    assert len(ex.diagnostics) == 2 and ex.diagnostics[1].n_rhs == 2  # only the two new points are solved
    torch.testing.assert_close(mixed[:2], first[1:3])
    ex.predicted_loss_change(t.X_test[:5], t.y_test[:5])
    assert len(ex.diagnostics) == 2
    assert ex.train_gradients() is ex.train_gradients()


def test_duplicate_rows_in_one_call_are_solved_once(binary_logreg):
    t = binary_logreg
    ex = InfluenceExplainer(
        t.model, t.loss_fn, t.X_train, t.y_train, weight_decay=t.weight_decay, solver="exact", progress=False
    )
    x = torch.cat([t.X_test[:1], t.X_test[:1], t.X_test[1:2]])
    y = torch.cat([t.y_test[:1], t.y_test[:1], t.y_test[1:2]])
    influence = ex.influence(x, y)
    assert ex.diagnostics[0].n_rhs == 2
    torch.testing.assert_close(influence[0], influence[1])


def test_a_single_test_point_without_batch_dimension(binary_logreg):
    t = binary_logreg
    ex = InfluenceExplainer(
        t.model, t.loss_fn, t.X_train, t.y_train, weight_decay=t.weight_decay, solver="exact", progress=False
    )
    single = ex.influence(t.X_test[0], t.y_test[0])
    assert single.shape == (1, len(t.X_train))
    torch.testing.assert_close(single, ex.influence(t.X_test[:1], t.y_test[:1]))
