"""The mislabel triage panel: ranked by self-influence, relabel on a copy, retrain a copy to the refit optimum."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from influence_widgets import InfluenceExplainer, InfluenceInputError
from influence_widgets.data import LogisticRegression, cross_entropy_per_example, fit_lbfgs, load_digits
from influence_widgets.usecases import review_order
from influence_widgets.widgets import TriagePanel

WEIGHT_DECAY = 1e-3


@pytest.fixture()
def noisy():
    split = load_digits(dtype=torch.float64, seed=0)
    x, y_clean = split.X_train[:300], split.y_train[:300]
    rng = np.random.default_rng(1)
    flip = rng.choice(300, 30, replace=False)
    y = y_clean.clone()
    y[flip] = torch.as_tensor((y[flip].numpy() + rng.integers(1, 10, 30)) % 10)
    model = LogisticRegression(64, 10).double()
    fit_lbfgs(model, cross_entropy_per_example, x, y, WEIGHT_DECAY)
    ex = InfluenceExplainer(model, cross_entropy_per_example, x, y, weight_decay=WEIGHT_DECAY, progress=False)
    return ex, model, x, y, y_clean, split


def test_relabel_and_retrain_reach_the_optimum_of_the_corrected_labels(noisy):
    ex, model, x, y, y_clean, split = noisy
    y_before, params_before = y.clone(), [p.detach().clone() for p in model.parameters()]
    panel = TriagePanel(ex, X_test=split.X_test, y_test=split.y_test, images=split.images_train[:300], top=30)
    assert [value for _, value in panel.ranking.options] == review_order(ex)[:30].tolist()
    assert panel.image.value[:8] == b"\x89PNG\r\n\x1a\n"
    fixed = [i for _, i in panel.ranking.options if y_clean[i] != y[i]]
    assert len(fixed) >= 10  # the top 10% by self-influence holds at least a third of the 30 flips
    for i in fixed:
        panel.ranking.value = i
        panel.new_label.value = int(y_clean[i])
        panel.relabel_button.click()
    assert panel.relabelled == {i: (int(y[i]), int(y_clean[i])) for i in fixed}
    retrained = panel.retrain_model()

    corrected = y.clone()
    corrected[fixed] = y_clean[fixed]
    reference = LogisticRegression(64, 10).double()
    fit_lbfgs(reference, cross_entropy_per_example, x, corrected, WEIGHT_DECAY)
    for got, want in zip(retrained.parameters(), reference.parameters()):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert len(panel.accuracy_history) == 2 and panel.accuracy_history[1] >= panel.accuracy_history[0]
    assert "test accuracy" in panel.status.value
    torch.testing.assert_close(panel.explainer.data.y, corrected)
    # the user's labels, explainer and model are untouched
    assert torch.equal(y, y_before) and torch.equal(ex.data.y, y_before)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), params_before))


def test_relabelling_back_forgets_the_change_and_bad_input_is_refused(noisy):
    ex, *_ = noisy
    panel = TriagePanel(ex, top=5)
    i = panel.ranking.value
    old = int(ex.data.y[i])
    panel.relabel(i, (old + 1) % 10)
    panel.relabel(i, old)
    assert panel.relabelled == {}
    with pytest.raises(InfluenceInputError, match="label must lie in"):
        panel.relabel(i, 10)
    with pytest.raises(InfluenceInputError, match="top must be at least 1"):
        TriagePanel(ex, top=0)
    with pytest.raises(InfluenceInputError, match="class_names has 2 names"):
        TriagePanel(ex, class_names=["a", "b"])


def test_each_row_shows_its_thumbnail_and_self_influence(noisy):
    ex, *_, split = noisy
    panel = TriagePanel(ex, images=split.images_train[:300], top=6)
    reference = -ex.self_influence().double().numpy()  # |I_up,loss(z, z)|, computed here, not by the panel
    assert len(panel.rows.children) == 6
    for row, (_, index) in zip(panel.rows.children, panel.ranking.options):
        thumb, button = row.children
        assert thumb.value[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"train #{index}:" in button.description
        assert f"|self-influence| {reference[index]:.3g}" in button.description
    button = panel.rows.children[3].children[-1]
    button.click()
    assert panel.ranking.value == panel.ranking.options[3][1]


def test_background_retrain_explains_what_changed_and_keeps_the_users_labels(noisy):
    ex, model, _, y, y_clean, split = noisy
    y_before = y.clone()
    panel = TriagePanel(ex, X_test=split.X_test, y_test=split.y_test, top=30)
    fixed = [i for _, i in panel.ranking.options if y_clean[i] != y[i]]
    for i in fixed:
        panel.relabel(i, int(y_clean[i]))
    before = model(split.X_test).argmax(1)
    panel.start_retrain()
    assert panel.stop_button.disabled is False or not panel._thread.is_alive()
    panel.wait(120)
    assert panel.error is None and panel.progress.value == 100
    assert panel.retrain_button.disabled is False and panel.stop_button.disabled is True
    after = panel.explainer.model(split.X_test).argmax(1)
    changed = int((before != after).sum())
    assert (
        f"Retrained with {len(fixed)} corrected label(s): {changed} of {len(split.y_test)} test predictions changed"
        in (panel.explanation.value)
    )
    assert torch.equal(y, y_before) and torch.equal(ex.data.y, y_before)


def test_stop_during_a_retraining_leaves_model_and_ranking_unchanged_and_keeps_the_label_changes(noisy):
    from influence_widgets.core.validation import LBFGSRetrain

    ex, *_ = noisy
    panel = TriagePanel(ex, top=5, retrain=LBFGSRetrain(max_iter=1000, tolerance=0.0))  # never converges
    i = panel.ranking.value
    new = (int(ex.data.y[i]) + 1) % 10
    panel.relabel(i, new)
    options = list(panel.ranking.options)
    # the user presses Stop as soon as the progress bar first moves (after the first L-BFGS round)
    panel.progress.observe(lambda change: panel.stop() if change["new"] > 0 else None, names="value")
    panel.start_retrain()
    panel.wait(120)
    assert "retraining stopped" in panel.status.value and panel.error is None
    assert 0 < panel.progress.value < 80  # stopped after one round of twenty
    assert panel.explainer is ex and list(panel.ranking.options) == options
    assert panel.relabelled == {i: (int(ex.data.y[i]), new)}
    assert panel.retrain_button.disabled is False and panel.stop_button.disabled is True
