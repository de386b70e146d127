"""Python side of the views: traits, binary serialisation, linking, caching, PNG plots, export, bad input."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
import torch

from influence_widgets import InfluenceExplainer, InfluenceInputError
from influence_widgets.data import LogisticRegression, cross_entropy_per_example, fit_lbfgs, load_digits
from influence_widgets.widgets import RankedView, ScatterView, explore, figure_png, loo_figure
from influence_widgets.widgets.views import STATIC


@pytest.fixture(scope="module")
def digits_explorer():
    torch.manual_seed(0)
    split = load_digits(seed=0)
    x, y = split.X_train[:300], split.y_train[:300]
    model = LogisticRegression(64, 10)
    fit_lbfgs(model, cross_entropy_per_example, x, y, 0.01)
    ex = InfluenceExplainer(model, cross_entropy_per_example, x, y, weight_decay=0.01, progress=False)
    explorer = explore(
        ex,
        split.X_test[:12],
        split.y_test[:12],
        images_train=split.images_train[:300],
        images_test=split.images_test[:12],
        class_names=[str(c) for c in range(10)],
        loo_points=4,
    )
    return explorer, ex, split


def test_bundled_scripts_ship_in_the_package():
    for name in ("ranked.js", "scatter.js", "strip.js", "static.js"):
        text = (STATIC / name).read_text()
        assert len(text) > 500 and "http://" not in text and "https://" not in text


def test_arrays_travel_as_binary_buffers(digits_explorer):
    explorer, ex, _ = digits_explorer
    state = explorer.scatter.get_state()
    from ipywidgets.widgets.widget import _remove_buffers

    _, paths, buffers = _remove_buffers(state)
    assert ["changes"] in paths and ["distances"] in paths and ["same_label"] in paths
    changes = np.frombuffer(buffers[paths.index(["changes"])], dtype=np.float32)
    expected = ex.predicted_loss_change(explorer.x_test[:1], explorer.y_test[:1])[0].numpy()
    np.testing.assert_allclose(changes, expected, rtol=1e-6)
    assert len(np.frombuffer(explorer.ranked.labels, dtype=np.int32)) == ex.n_train
    assert explorer.ranked.thumb_shape == [8, 8] and len(explorer.ranked.thumbnails) == ex.n_train * 64


def test_distances_are_euclidean_in_input_space(digits_explorer):
    explorer, ex, _ = digits_explorer
    distances = np.frombuffer(explorer.scatter.distances, dtype=np.float32)
    truth = torch.linalg.norm(ex.data.x - explorer.x_test[0], dim=1).numpy()
    np.testing.assert_allclose(distances, truth, rtol=1e-5)
    same = np.frombuffer(explorer.scatter.same_label, dtype=np.uint8)
    assert np.array_equal(same, (ex.data.y.numpy() == int(explorer.y_test[0])).astype(np.uint8))


def test_selection_is_linked_both_ways(digits_explorer):
    explorer, *_ = digits_explorer
    explorer.ranked.selected = 17
    assert explorer.scatter.selected == 17
    explorer.scatter.selected = 42
    assert explorer.ranked.selected == 42


def test_picking_a_test_point_updates_every_panel_and_is_cached(digits_explorer):
    explorer, ex, _ = digits_explorer
    solves = len(ex.diagnostics)
    explorer.strip.selected = 3
    assert explorer.current == 3 and explorer.ranked.test_info["index"] == 3
    assert explorer.ranked.selected == -1
    assert len(ex.diagnostics) == solves + 1
    expected = ex.predicted_loss_change(explorer.x_test[3:4], explorer.y_test[3:4])[0].numpy().astype(np.float32)
    assert explorer.ranked.changes == expected.tobytes() == explorer.scatter.changes
    explorer.strip.selected = 0
    explorer.strip.selected = 3
    assert len(ex.diagnostics) == solves + 1  # returning to a test point recomputes nothing
    helpful, harmful = explorer.ranked.ranking()
    assert (expected[helpful] > 0).all() and (expected[harmful] < 0).all()
    assert list(helpful) == list(np.argsort(-expected, kind="stable")[: len(helpful)])


def test_leave_one_out_panel_runs_and_draws_a_png(digits_explorer):
    explorer, *_ = digits_explorer
    explorer.show(2)
    explorer.loo.run(background=False)
    result = explorer.loo.results[2]
    assert len(result.removed) == 4 and explorer.loo.progress.value == 4
    assert explorer.loo.image.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Pearson" in explorer.loo.status.value


def test_stop_keeps_the_points_done(digits_explorer):
    explorer, *_ = digits_explorer
    explorer.show(5)
    explorer.loo.stop()
    explorer.loo._stop.set()
    calls = []
    explorer.loo.explainer.validate_loo(
        explorer.x_test[5:6],
        explorer.y_test[5:6],
        n_points=3,
        refine=False,
        on_point=calls.append,
        should_stop=lambda: len(calls) >= 1,
    )
    assert len(calls) == 1


def test_plots_are_png_without_pyplot():
    import sys

    png = figure_png(loo_figure(None))
    assert png[:4] == b"\x89PNG"
    assert "matplotlib.pyplot" not in sys.modules


def test_static_export_contains_state_and_scripts(digits_explorer, tmp_path):
    explorer, *_ = digits_explorer
    path = tmp_path / "report.html"
    explorer.save_html(path, test_indices=[0, 2, 3])
    text = path.read_text()
    assert "http://" not in text.split("<script>")[0] and "https://" not in text
    payload = json.loads(
        re.search(r'<script type="application/json" id="iw-payload">(.*?)</script>', text, re.S)
        .group(1)
        .replace("<\\/", "</")
    )
    assert payload["order"] == ["0", "2", "3"]
    changes = np.frombuffer(base64.b64decode(payload["points"]["3"]["changes"]["b64"]), dtype=np.float32)
    assert changes.tobytes() == explorer.point(3).changes.astype(np.float32).tobytes()
    assert payload["points"]["2"]["loo_png"] is not None  # the leave-one-out run above is exported
    assert (STATIC / "static.js").read_text()[:200] in text


def test_fallback_html_for_frontends_without_widgets(digits_explorer):
    explorer, *_ = digits_explorer
    bundle = explorer._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert "application/vnd.jupyter.widget-view+json" in data and "most helpful" in data["text/html"]


def test_bad_input_to_the_explorer(digits_explorer):
    explorer, ex, split = digits_explorer
    with pytest.raises(InfluenceInputError, match=r"test index 12 is out of range for 12 test points"):
        explorer.show(12)
    with pytest.raises(InfluenceInputError, match=r"images_train must have shape \[n, height, width\]"):
        explore(ex, split.X_test[:2], split.y_test[:2], images_train=np.zeros((300, 64)), images_test=np.zeros((2, 64)))
    with pytest.raises(InfluenceInputError, match=r"images_test has 3 images but there are 2 points"):
        explore(
            ex, split.X_test[:2], split.y_test[:2], images_train=np.zeros((300, 8, 8)), images_test=np.zeros((3, 8, 8))
        )
    view = ScatterView()
    from influence_widgets.widgets.views import float32_bytes

    with pytest.raises(InfluenceInputError, match=r"scores contains 1 NaN or infinite value\(s\)"):
        view.changes = float32_bytes([0.0, float("nan")], "scores")
    with pytest.raises(InfluenceInputError, match="k must be at least 1"):
        RankedView(k=0)


def test_diagnostics_panel_states_the_curvature_in_words(digits_explorer):
    explorer, *_ = digits_explorer
    explorer.diagnostics.estimate_curvature()
    assert "positive definite: the influence is well posed" in explorer.diagnostics.curvature_text.value
    assert "exact" in explorer.diagnostics.text.value and "weight decay 0.01" in explorer.diagnostics.text.value
