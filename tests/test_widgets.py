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
from influence_widgets.widgets.views import STATIC, with_html_fallback


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


def test_leave_one_out_panel_sends_its_points_and_a_verdict_in_words(digits_explorer):
    from scipy import stats

    explorer, *_ = digits_explorer
    explorer.show(2)
    explorer.loo.run(background=False)
    result = explorer.loo.results[2]
    view = explorer.loo.view
    assert len(result.removed) == 4 and explorer.loo.progress.value == 4
    assert np.array_equal(np.frombuffer(view.removed, dtype=np.int32), result.removed)
    np.testing.assert_array_equal(np.frombuffer(view.actual, dtype=np.float32), result.actual.astype(np.float32))
    pearson = stats.pearsonr(result.predicted, result.actual)[0]
    spearman = stats.spearmanr(result.predicted, result.actual)[0]
    slope = stats.linregress(result.predicted, result.actual).slope
    figures = dict(view.verdict["figures"])
    assert figures["Pearson"] == f"{pearson:.3f}" and figures["Spearman"] == f"{spearman:.3f}"
    assert figures["slope"] == f"{slope:.3f}"
    agrees = pearson >= 0.9 and 0.5 <= slope <= 2
    assert view.verdict["agrees"] is bool(agrees)
    assert ("agrees with retraining" if agrees else "does not agree") in view.verdict["headline"]
    explorer.show(3)  # another test point: its own, empty, state
    assert view.removed == b"" and "No leave-one-out run for test #3" in view.empty_text
    explorer.show(2)  # kept per test point
    assert np.array_equal(np.frombuffer(view.removed, dtype=np.int32), result.removed)
    explorer.loo.view.selected = int(result.removed[0])  # a click in the leave-one-out view selects everywhere
    assert explorer.ranked.selected == explorer.scatter.selected == int(result.removed[0])


def test_stop_keeps_the_points_done(digits_explorer):
    explorer, *_ = digits_explorer
    explorer.show(5)
    panel = explorer.loo
    panel.progress.observe(lambda change: panel.stop() if change["new"] >= 1 else None, names="value")
    panel.run(background=True)  # the Stop button's path: the worker thread sees the event before the next point
    panel.wait(120)
    result = panel.results[5]
    assert len(result.removed) == 1 and result.stopped_early
    assert np.frombuffer(panel.view.removed, dtype=np.int32).tolist() == result.removed.tolist()
    assert "(stopped early)" in dict(panel.view.verdict["figures"])["removals"]


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
        re.search(r'<script type="application/json" id="iw-payload">(.*?)</script>', text, re.S).group(1)
    )
    assert payload["order"] == ["0", "2", "3"]
    changes = np.frombuffer(base64.b64decode(payload["points"]["3"]["changes"]["b64"]), dtype=np.float32)
    assert changes.tobytes() == explorer.point(3).changes.astype(np.float32).tobytes()
    assert payload["points"]["2"]["loo"] is not None  # the leave-one-out run above is exported, with its points
    removed = np.frombuffer(base64.b64decode(payload["points"]["2"]["loo"]["removed"]["b64"]), dtype=np.int32)
    assert np.array_equal(removed, explorer.loo.results[2].removed)
    assert payload["points"]["0"]["loo"] is None
    assert "No leave-one-out check was run for test #0" in payload["points"]["0"]["loo_note"]
    assert (STATIC / "static.js").read_text()[:200] in text


def test_fallback_html_for_frontends_without_widgets(digits_explorer):
    explorer, *_ = digits_explorer
    bundle = explorer._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert "application/vnd.jupyter.widget-view+json" in data and "most helpful" in data["text/html"]
    scatter_bundle = explorer.scatter._repr_mimebundle_()
    scatter_data = scatter_bundle[0] if isinstance(scatter_bundle, tuple) else scatter_bundle
    assert "influence versus distance" in scatter_data["text/html"]


def test_the_html_fallback_joins_a_bundle_of_each_form_the_frontend_may_give():
    view = {"application/vnd.jupyter.widget-view+json": {"model_id": "m"}}
    joined = with_html_fallback(view, "<p>x</p>")
    assert joined == {**view, "text/html": "<p>x</p>"} and "text/html" not in view  # the input is not changed
    data, metadata = with_html_fallback((view, {"meta": 1}), "<p>y</p>")
    assert data["text/html"] == "<p>y</p>" and metadata == {"meta": 1}
    assert with_html_fallback(None, "<p>z</p>") == {"text/html": "<p>z</p>"}
    assert with_html_fallback((None, {}), "<p>z</p>") == ({"text/html": "<p>z</p>"}, {})


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
    text = explorer.diagnostics.text
    assert "exact: direct" in text and "weight decay, damping: 0.01, 0" in text
    assert "final relative residual" in text


def test_the_users_ids_reach_every_view_and_the_export(digits_explorer, tmp_path):
    _, ex, split = digits_explorer
    train_ids = [f"img-{1000 + i}" for i in range(ex.n_train)]
    test_ids = [38, 54, 299, 7]
    explorer = explore(ex, split.X_test[:4], split.y_test[:4], train_ids=train_ids, test_ids=test_ids, loo_points=3)
    assert explorer.ranked.test_info["id"] == 38 and explorer.current_id == 38
    assert explorer.strip.ids == ["38", "54", "299", "7"]
    assert explorer.ranked.ids == explorer.scatter.ids == explorer.loo.view.ids == train_ids
    explorer.scatter.selected = 5
    assert explorer.selected_train_id == "img-1005"
    explorer.show(explorer.position_of(299))
    assert explorer.ranked.test_info["id"] == 299 and "test #299" in explorer.loo.view.empty_text
    path = tmp_path / "ids.html"
    explorer.save_html(path, test_indices=[2, 0])
    text = path.read_text()
    payload = json.loads(re.search(r'id="iw-payload">(.*?)</script>', text, re.S).group(1))
    assert payload["strip"]["ids"] == ["299", "38"] and payload["train"]["ids"][:2] == ["img-1000", "img-1001"]
    assert payload["points"]["2"]["info"]["id"] == 299
    default = explore(ex, split.X_test[:2], split.y_test[:2], loo_points=2)
    assert default.test_ids == [0, 1] and default.strip.ids == []  # positions: the views number them


def test_ids_that_cannot_name_points_are_refused(digits_explorer):
    _, ex, split = digits_explorer
    x, y = split.X_test[:3], split.y_test[:3]
    with pytest.raises(InfluenceInputError, match=r"test_ids has 2 ids but there are 3 points"):
        explore(ex, x, y, test_ids=[1, 2])
    with pytest.raises(InfluenceInputError, match=r"test_ids repeats the id 4"):
        explore(ex, x, y, test_ids=[4, 4, 5])
    with pytest.raises(InfluenceInputError, match=r"test_ids\[1\] is 2.5 \(float\); ids must be ints or strings"):
        explore(ex, x, y, test_ids=[1, 2.5, 3])
    with pytest.raises(InfluenceInputError, match=r"train_ids must be a sequence"):
        explore(ex, x, y, train_ids="abc")
    with pytest.raises(InfluenceInputError, match=r"class_names has 3 names but the labels go up to 9"):
        explore(ex, x, y, class_names=["a", "b", "c"])
    with pytest.raises(InfluenceInputError, match=r"feature_names has 2 names but the inputs have 64 columns"):
        explore(ex, x, y, feature_names=["a", "b"])
    with pytest.raises(InfluenceInputError, match=r"row_text\[0\] is int; pass strings"):
        explore(ex, x, y, row_text=list(range(ex.n_train)))


def test_regression_targets_are_values_and_tabular_rows_are_shown(tmp_path):
    from influence_widgets.data import squared_error_per_example

    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(60, 3)), dtype=torch.float64)
    y = x @ torch.tensor([1.5, -2.0, 0.5], dtype=torch.float64) + 0.1 * torch.tensor(rng.normal(size=60))
    model = torch.nn.Linear(3, 1).double()
    fit_lbfgs(model, squared_error_per_example, x, y, 0.01)
    ex = InfluenceExplainer(model, squared_error_per_example, x, y, weight_decay=0.01, progress=False)
    names = ["age", "<b>income</b>", "height"]
    explorer = explore(ex, x[:4] + 0.3, y[:4] + 0.25, feature_names=names, loo_points=3)
    assert explorer.task == "regression" and explorer.ranked.labels == b""
    targets = np.frombuffer(explorer.ranked.targets, dtype=np.float32)
    np.testing.assert_allclose(targets, y.numpy().astype(np.float32))  # not cast to integers
    assert explorer.ranked.test_info["target_text"] == f"{float(y[0]) + 0.25:.4g}"
    with torch.no_grad():
        predicted = model(x[:4] + 0.3)[:, 0].numpy()
    np.testing.assert_allclose(np.frombuffer(explorer.strip.predicted_values, dtype=np.float32), predicted, rtol=1e-6)
    rows = np.frombuffer(explorer.ranked.rows, dtype=np.float32).reshape(60, 3)
    np.testing.assert_allclose(rows, x.numpy(), rtol=1e-6)
    np.testing.assert_allclose(
        np.frombuffer(explorer.ranked.test_row, dtype=np.float32), (x[0] + 0.3).numpy(), rtol=1e-6
    )
    np.testing.assert_allclose(np.frombuffer(explorer.ranked.row_scale, dtype=np.float32), x.numpy().std(0), rtol=1e-5)
    assert explorer.ranked.feature_names == names
    with pytest.raises(InfluenceInputError, match=r"task='classification' but the training targets are not whole"):
        explore(ex, x[:2], y[:2], task="classification")


def test_export_data_cannot_become_markup_and_the_page_forbids_requests(digits_explorer, tmp_path):
    _, ex, split = digits_explorer
    hostile = "</script><!--<script>alert(1)</script>\u2028&amp;<img src=x onerror=alert(2)>"
    explorer = explore(
        ex,
        split.X_test[:2],
        split.y_test[:2],
        class_names=[hostile + str(c) for c in range(10)],
        row_text=[hostile] * ex.n_train,
        train_ids=[hostile + str(i) for i in range(ex.n_train)],
        loo_points=2,
    )
    path = tmp_path / "hostile.html"
    explorer.save_html(path, title=hostile)
    text = path.read_text()
    payload_text = re.search(r'id="iw-payload">(.*?)</script>', text, re.S).group(1)
    for char in "<>&\u2028\u2029":
        assert char not in payload_text
    assert json.loads(payload_text)["train"]["class_names"][3] == hostile + "3"
    assert text.count("<script") == 2 and "<img" not in text and "<!--" not in text
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', text).group(1)
    assert (
        "default-src 'none'" in csp
        and "connect-src 'none'" in csp
        and "'unsafe-inline'" not in csp.split("style-src")[0]
    )
    import hashlib

    script = re.search(r"<script>(.*)</script>", text, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp  # only this script runs: no inline event handler can
    fallback = explorer.ranked._html_fallback()
    assert "<img" not in fallback and "<script" not in fallback and "&lt;img" in fallback


def _loo(predicted, actual, drift, refined=None):
    from influence_widgets.core.validation import LOOResult

    n = len(predicted)
    return LOOResult(
        test_rows=np.zeros(n, dtype=int),
        removed=np.arange(n),
        predicted=np.asarray(predicted, dtype=float),
        actual=np.asarray(actual, dtype=float),
        refined=None if refined is None else np.asarray(refined, dtype=float),
        drift=np.asarray([drift]),
    )


def test_the_verdict_names_the_likely_cause_when_retraining_disagrees():
    from types import SimpleNamespace

    from influence_widgets.widgets import loo_verdict

    rng = np.random.default_rng(0)
    predicted = rng.normal(size=12)
    noisy = _loo(predicted, rng.normal(size=12) * 0.01 + 0.2 * predicted * 0, drift=0.23)  # uncorrelated
    not_at_minimum = SimpleNamespace(ratio=41.0, is_stationary=False, summary=lambda: "gradient 41x the scale")
    verdict = loo_verdict(noisy, stationarity=not_at_minimum, min_eigenvalue=-0.5)
    assert verdict["agrees"] is False and "does not agree" in verdict["headline"]
    causes = " ".join(verdict["causes"])
    assert "not at a minimum (gradient 41 times" in causes and "drift (2.30e-01) is as large as the effects" in causes
    assert "not convex here (smallest Hessian eigenvalue -0.5)" in causes
    assert dict(verdict["figures"])["stationarity"] == "gradient 41x the scale"
    newton = loo_verdict(_loo(predicted, predicted**3, 0.0, refined=predicted**3))
    assert newton["agrees"] is False and "Newton-refined prediction agrees" in " ".join(newton["causes"])
    scaled = loo_verdict(_loo(predicted, 5 * predicted, 0.0))
    assert "the order is right but the scale is off (slope 5.00)" in " ".join(scaled["causes"])
    good = loo_verdict(_loo(predicted, predicted + 0.01 * rng.normal(size=12), 0.0))
    assert good["agrees"] is True and good["causes"] == []
    assert loo_verdict(_loo(predicted[:2], predicted[:2], 0.0))["agrees"] is None  # too few to judge


@pytest.mark.parametrize(
    ("solver", "kind"),
    [("cg", "relative residual per CG iteration"), ("exact", ""), ("lissa", "||estimate|| per LiSSA step (sampled)")],
)
def test_the_solve_of_each_test_point_is_shown_for_every_solver(digits_explorer, solver, kind):
    _, ex, split = digits_explorer
    torch.manual_seed(0)
    model = LogisticRegression(64, 10)
    fit_lbfgs(model, cross_entropy_per_example, ex.data.x, ex.data.y, 0.01)
    other = InfluenceExplainer(
        model, cross_entropy_per_example, ex.data.x, ex.data.y, weight_decay=0.01, solver=solver, progress=False
    )
    explorer = explore(other, split.X_test[:3], split.y_test[:3], loo_points=2)
    explorer.show(2)
    view = explorer.diagnostics.view
    shown = explorer.results[2].diagnostics
    assert shown is other.diagnostics[-1] and view.trace_kind == kind
    trace = np.frombuffer(view.trace, dtype=np.float32)
    if solver == "cg":
        np.testing.assert_allclose(trace, shown.residuals.astype(np.float32))
    if solver == "lissa":
        np.testing.assert_allclose(trace, shown.estimate_norms.astype(np.float32))
        assert float(dict(view.facts)["LiSSA scale"]) == pytest.approx(shown.scale, rel=1e-2)
    facts = dict(view.facts)
    assert facts["solver"] == solver and facts["converged"] == ("yes" if shown.converged else "NO")
    if shown.residuals.size:  # CG and exact check their residual; LiSSA has none, it shows its scale and trace
        assert facts["final relative residual ||Hx - b|| / ||b||"] == f"{shown.residuals[-1]:.2e}"
    else:
        assert solver == "lissa" and "LiSSA scale" in facts and trace.size > 0
    explorer.show(0)
    explorer.show(2)  # back to a point: its own solve again, not the latest one
    assert explorer.diagnostics.view.facts == view.facts


def test_colour_images_become_luminance_thumbnails_channels_first_or_last():
    from influence_widgets.widgets.images import to_thumbnails

    rng = np.random.default_rng(0)
    rgb = rng.uniform(0, 1, size=(4, 5, 6, 3))
    gray = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    expected = 255 - np.round((gray - gray.min()) / (gray.max() - gray.min()) * 255)
    np.testing.assert_array_equal(to_thumbnails(rgb, 4, "images"), expected)
    np.testing.assert_array_equal(to_thumbnails(rgb.transpose(0, 3, 1, 2), 4, "images"), expected)
    with pytest.raises(InfluenceInputError, match=r"images must have shape.*images=None"):
        to_thumbnails(rng.uniform(size=(4, 5, 6, 4)), 4, "images")
