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
