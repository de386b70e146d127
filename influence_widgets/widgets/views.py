"""The custom views: anywidget models whose JavaScript is bundled in ``influence_widgets/static``.

Arrays travel as binary buffers: float32 ``changes``/``distances``/``targets``/``rows``, int32
``labels``/``predictions``/``removed``, uint8 ``thumbnails`` ([n, h, w] row-major) and ``same_label``.
``changes`` are predicted changes in test loss when each training point is removed (-I_up,loss / n):
positive = helpful. ``ids`` are the user's ids as text (empty: the views number points by position).
"""

from __future__ import annotations

import html
import pathlib
from typing import Any

import anywidget
import numpy as np
import traitlets

from ..core.arrays import as_numpy
from ..core.errors import InfluenceInputError

STATIC = pathlib.Path(__file__).resolve().parent.parent / "static"


def float32_bytes(values: Any, name: str, n: int | None = None) -> bytes:
    """A finite 1-D array as float32 bytes, checked for length."""
    array = as_numpy(values, np.float32).ravel()
    if n is not None and len(array) != n:
        raise InfluenceInputError(f"{name} has {len(array)} values but there are {n} training points")
    if not np.isfinite(array).all():
        raise InfluenceInputError(
            f"{name} contains {int((~np.isfinite(array)).sum())} NaN or infinite value(s); check the solver's "
            "diagnostics (a diverged LiSSA or an indefinite Hessian) before displaying"
        )
    return array.tobytes()


def int32_bytes(values: Any) -> bytes:
    return as_numpy(values).astype(np.int32).ravel().tobytes()


def with_html_fallback(bundle: Any, fallback: str) -> Any:
    """A widget's ``_repr_mimebundle_`` (a dict, a (data, metadata) pair, or None) with ``text/html`` set to
    ``fallback``, which frontends that cannot render widgets show instead."""
    if isinstance(bundle, tuple):
        data, *rest = bundle
        return ({**(data or {}), "text/html": fallback}, *rest)
    return {**(bundle or {}), "text/html": fallback}


class _View(anywidget.AnyWidget):
    selected = traitlets.Int(-1).tag(sync=True)
    labels = traitlets.Bytes(b"").tag(sync=True)
    targets = traitlets.Bytes(b"").tag(sync=True)
    task = traitlets.Unicode("classification").tag(sync=True)
    ids = traitlets.List(traitlets.Unicode(), default_value=[]).tag(sync=True)
    thumbnails = traitlets.Bytes(b"").tag(sync=True)
    thumb_shape = traitlets.List(traitlets.Int(), default_value=[]).tag(sync=True)
    class_names = traitlets.List(traitlets.Unicode(), default_value=[]).tag(sync=True)
    row_text = traitlets.List(traitlets.Unicode(), default_value=[]).tag(sync=True)
    rows = traitlets.Bytes(b"").tag(sync=True)
    feature_names = traitlets.List(traitlets.Unicode(), default_value=[]).tag(sync=True)

    @property
    def n_points(self) -> int:
        if self.task == "regression":
            return len(self.targets) // 4
        return len(self.labels) // 4

    def point_id(self, i: int) -> str:
        return self.ids[i] if self.ids else str(i)

    def _html_fallback(self) -> str:
        return "<p>influence_widgets view (run the notebook to interact)</p>"

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return with_html_fallback(super()._repr_mimebundle_(**kwargs), self._html_fallback())


class RankedView(_View):
    """The test point, then its k most helpful and k most harmful training points.

    Tabular data: ``rows`` [n_train, d] and ``test_row`` [d] (float32), ``row_scale`` [d] the training
    standard deviation, so that the largest standardised differences can be marked.
    """

    _esm = STATIC / "ranked.js"
    changes = traitlets.Bytes(b"").tag(sync=True)
    k = traitlets.Int(5).tag(sync=True)
    test_info = traitlets.Dict().tag(sync=True)
    test_thumbnail = traitlets.Bytes(b"").tag(sync=True)
    test_row = traitlets.Bytes(b"").tag(sync=True)
    row_scale = traitlets.Bytes(b"").tag(sync=True)

    @traitlets.validate("k")
    def _check_k(self, proposal: dict) -> int:
        if proposal["value"] < 1:
            raise InfluenceInputError(f"k must be at least 1, got {proposal['value']}")
        return proposal["value"]

    def ranking(self) -> tuple[np.ndarray, np.ndarray]:
        """(helpful, harmful) training indices as the view shows them (same rule as the JavaScript)."""
        changes = np.frombuffer(self.changes, dtype=np.float32)
        order = np.argsort(-changes, kind="stable")
        helpful = [i for i in order[: self.k] if changes[i] > 0]
        harmful = [i for i in np.argsort(changes, kind="stable")[: self.k] if changes[i] < 0]
        return np.asarray(helpful, dtype=int), np.asarray(harmful, dtype=int)

    def _target(self, i: int) -> str:
        if self.task == "regression":
            return f"target {np.frombuffer(self.targets, dtype=np.float32)[i]:.4g}"
        label = int(np.frombuffer(self.labels, dtype=np.int32)[i])
        return f"label {self.class_names[label] if label < len(self.class_names) else label}"

    def _html_fallback(self) -> str:
        changes = np.frombuffer(self.changes, dtype=np.float32)
        helpful, harmful = self.ranking()
        info = self.test_info
        rows = []
        for title, indices in (("most helpful", helpful), ("most harmful", harmful)):
            rows.append(f"<tr><th colspan=3>{title}</th></tr>")
            rows += [
                f"<tr><td>train #{html.escape(self.point_id(i))}</td><td>{html.escape(self._target(i))}</td>"
                f"<td>{changes[i]:+.3g}</td></tr>"
                for i in indices
            ]
        head = html.escape(f"test #{info.get('id')}: {info.get('target_text', '')}")
        return f"<div><b>{head}</b><table>{''.join(rows)}</table><i>change in test loss if removed</i></div>"


class ScatterView(_View):
    """Every training point at (Euclidean distance to the test point, predicted change if removed).

    The width follows the container; ``height`` is in CSS pixels. ``y_scale``: "linear", "symlog"
    (linear within the median |change|, logarithmic beyond) or "rank".
    """

    _esm = STATIC / "scatter.js"
    distances = traitlets.Bytes(b"").tag(sync=True)
    changes = traitlets.Bytes(b"").tag(sync=True)
    same_label = traitlets.Bytes(b"").tag(sync=True)
    height = traitlets.Int(380).tag(sync=True)
    y_scale = traitlets.Enum(["linear", "symlog", "rank"], "linear").tag(sync=True)
    x_label = traitlets.Unicode("Euclidean distance to the test point").tag(sync=True)
    y_label = traitlets.Unicode("change in test loss if removed").tag(sync=True)

    def _html_fallback(self) -> str:
        return f"<p>influence versus distance for {self.n_points} training points (run the notebook to interact)</p>"


class TestStrip(_View):
    """Test points to choose from; ``selected`` is the position in the strip (arrow keys move it).

    Classification: ``labels`` and ``predictions`` (int32). Regression: ``targets`` and
    ``predicted_values`` (float32).
    """

    _esm = STATIC / "strip.js"
    predictions = traitlets.Bytes(b"").tag(sync=True)
    predicted_values = traitlets.Bytes(b"").tag(sync=True)


class LOOView(_View):
    """Predicted against actual change in test loss for each retrained removal (the paper's Figure 2).

    ``removed`` int32 training positions; ``predicted``, ``actual`` and ``refined`` (Newton step, may be
    empty) float32, aligned with it. ``verdict``: {"agrees", "headline", "figures", "causes"} in words.
    ``selected`` is a training position, linked with the ranked list and the scatter.
    """

    _esm = STATIC / "loo.js"
    removed = traitlets.Bytes(b"").tag(sync=True)
    predicted = traitlets.Bytes(b"").tag(sync=True)
    actual = traitlets.Bytes(b"").tag(sync=True)
    refined = traitlets.Bytes(b"").tag(sync=True)
    verdict = traitlets.Dict().tag(sync=True)
    empty_text = traitlets.Unicode("").tag(sync=True)
    height = traitlets.Int(340).tag(sync=True)


class SolveView(anywidget.AnyWidget):
    """One inverse-Hessian solve: its trace (CG residuals or LiSSA estimate norms, log scale) and its
    figures in words. ``facts`` are [name, value] pairs; ``trace`` float32, ``trace_kind`` names it."""

    _esm = STATIC / "solve.js"
    trace = traitlets.Bytes(b"").tag(sync=True)
    trace_kind = traitlets.Unicode("").tag(sync=True)
    tolerance = traitlets.Float(0.0).tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)
    facts = traitlets.List(traitlets.List(traitlets.Unicode()), default_value=[]).tag(sync=True)
    warnings = traitlets.List(traitlets.Unicode(), default_value=[]).tag(sync=True)
    height = traitlets.Int(220).tag(sync=True)
