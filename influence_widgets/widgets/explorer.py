"""The explorer: pick a test point, and every panel updates together."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets
import numpy as np
import torch

from ..core.arrays import as_numpy, distances_to
from ..core.errors import InfluenceInputError
from ..core.predictions import predicted_classes
from .identity import check_ids, display_ids
from .images import to_thumbnails
from .panels import DiagnosticsPanel, LOOPanel
from .views import RankedView, ScatterView, TestStrip, float32_bytes, int32_bytes, with_html_fallback

TABULAR_MAX_FEATURES = 512  # wider rows are not shown as a table; pass images or row_text instead


@dataclass
class PointResult:
    """What the panels show for one test point (kept). ``changes`` = -I_up,loss / n, float32 [n_train];
    ``diagnostics`` is the solve that produced them (None when it came from a cache)."""

    changes: np.ndarray
    distances: np.ndarray
    same_label: np.ndarray
    info: dict
    seconds: float
    diagnostics: Any = None


def infer_task(y_train: np.ndarray, outputs: torch.Tensor) -> str:
    """ "classification" for integer targets, or 0/1 floats against one logit; "regression" otherwise."""
    if np.issubdtype(y_train.dtype, np.integer) or y_train.dtype == bool:
        return "classification"
    single_output = outputs.ndim == 1 or (outputs.ndim == 2 and outputs.shape[1] == 1)
    if single_output and np.isin(np.unique(y_train), [0.0, 1.0]).all():
        return "classification"
    return "regression"


class Explorer:
    """Ranked training points, influence versus distance, leave-one-out and the solve, for one test point
    at a time; click a test point in the strip (or call ``show(i)``, i its position) to switch.

    Args:
        explainer: an ``InfluenceExplainer``.
        X_test, y_test: the test points to explore.
        train_ids, test_ids: the user's ids of the points (ints or strings, unique), shown in every view,
            in the traits and in the export; default the positions 0..n-1.
        images_train, images_test: [n, h, w] images for thumbnails (optional).
        features: distances are Euclidean in input space by default; pass a callable mapping inputs to
            feature rows, or a pair (train_features, test_features) of arrays.
        feature_names: names of the input columns of tabular data (rows are shown when there are no images).
        class_names: display names of the labels. row_text, test_text: one short string per point.
        task: "auto" (integer targets, or 0/1 against one logit, are classes), "classification", "regression".
        k: helpful and harmful points listed. loo_points, loo_retrain: the leave-one-out panel's settings.
        test_index: the position shown first.
    """

    def __init__(
        self,
        explainer,
        X_test: Any,
        y_test: Any,
        *,
        train_ids: Any = None,
        test_ids: Any = None,
        images_train: Any = None,
        images_test: Any = None,
        features: Any = None,
        feature_names: list[str] | None = None,
        class_names: list[str] | None = None,
        row_text: list[str] | None = None,
        test_text: list[str] | None = None,
        task: str = "auto",
        k: int = 5,
        loo_points: int = 20,
        loo_retrain: Any = "lbfgs",
        test_index: int = 0,
    ) -> None:
        self.explainer = explainer
        self.x_test, self.y_test = explainer.coerce_test(X_test, y_test)
        n_train, n_test = explainer.n_train, len(self.x_test)
        self.train_ids = check_ids(train_ids, n_train, "train_ids")
        self.test_ids = check_ids(test_ids, n_test, "test_ids")
        outputs = explainer.outputs(self.x_test)  # on the CPU
        with torch.no_grad():
            self.test_losses = as_numpy(explainer.loss_fn(outputs, self.y_test))
        y_train, y_test_np = as_numpy(explainer.data.y), as_numpy(self.y_test)
        if y_train.ndim > 1 and int(np.prod(y_train.shape[1:])) != 1:
            raise InfluenceInputError(
                f"the training targets have shape {tuple(y_train.shape)}: the explorer shows one label or value per "
                "point; explore one output at a time (an explainer over that output's loss)"
            )
        if task == "auto":
            task = infer_task(y_train.reshape(n_train), outputs)
        if task not in ("classification", "regression"):
            raise InfluenceInputError(f"task must be 'auto', 'classification' or 'regression', got {task!r}")
        self.task = task
        if task == "classification":
            if np.issubdtype(y_train.dtype, np.floating) and not np.all(np.mod(y_train, 1) == 0):
                raise InfluenceInputError(
                    "task='classification' but the training targets are not whole numbers; pass task='regression'"
                )
            self.train_labels = y_train.astype(np.int64).reshape(n_train)
            self.test_labels = y_test_np.astype(np.int64).reshape(n_test)
            self.predictions = predicted_classes(outputs).numpy()
            self.predicted_values = None
        else:
            self.train_labels = y_train.astype(np.float64).reshape(n_train)
            self.test_labels = y_test_np.astype(np.float64).reshape(n_test)
            self.predicted_values = as_numpy(outputs.reshape(n_test, -1)[:, 0], np.float64)
            self.predictions = self.predicted_values
        self.train_features, self.test_features = self._features(features)
        self.class_names = [str(c) for c in class_names] if class_names is not None else []
        if task == "classification" and self.class_names:
            top = int(max(self.train_labels.max(initial=0), self.test_labels.max(initial=0)))
            if len(self.class_names) <= top:
                raise InfluenceInputError(
                    f"class_names has {len(self.class_names)} names but the labels go up to {top}; "
                    "pass one name per class"
                )
        row_text = self._texts(row_text, n_train, "row_text")
        test_text = self._texts(test_text, n_test, "test_text")
        self.test_text = test_text
        train_thumbs = to_thumbnails(images_train, n_train, "images_train") if images_train is not None else None
        self.test_thumbs = to_thumbnails(images_test, n_test, "images_test") if images_test is not None else None
        if (train_thumbs is None) != (self.test_thumbs is None):
            raise InfluenceInputError("pass both images_train and images_test, or neither")
        if train_thumbs is not None and train_thumbs.shape[1:] != self.test_thumbs.shape[1:]:
            raise InfluenceInputError(
                f"images_train are {train_thumbs.shape[1:]} but images_test are {self.test_thumbs.shape[1:]}; "
                "pass images of one size"
            )
        self.feature_names, train_rows, self.test_rows, scale = self._tabular(feature_names, train_thumbs is None)
        shape = list(train_thumbs.shape[1:]) if train_thumbs is not None else []
        targets = self._target_bytes(self.train_labels)
        self.shared = {
            **targets,
            "task": task,
            "ids": display_ids(self.train_ids),
            "thumbnails": train_thumbs.tobytes() if train_thumbs is not None else b"",
            "thumb_shape": shape,
            "class_names": self.class_names,
            "row_text": row_text,
            "rows": train_rows,
            "feature_names": self.feature_names,
        }
        self.ranked = RankedView(**self.shared, k=k, row_scale=scale)
        self.scatter = ScatterView(**self.shared)
        strip_targets = self._target_bytes(self.test_labels)
        self.strip = TestStrip(
            **strip_targets,
            task=task,
            ids=display_ids(self.test_ids),
            predictions=int32_bytes(self.predictions) if task == "classification" else b"",
            predicted_values=np.asarray(self.predictions, dtype=np.float32).tobytes() if task == "regression" else b"",
            thumbnails=self.test_thumbs.tobytes() if self.test_thumbs is not None else b"",
            thumb_shape=shape,
            class_names=self.class_names,
            row_text=test_text,
        )
        self.loo = LOOPanel(explainer, n_points=min(loo_points, n_train), retrain=loo_retrain)
        for name, value in self.shared.items():
            setattr(self.loo.view, name, value)
        self._links = [
            widgets.link((self.ranked, "selected"), (self.scatter, "selected")),
            widgets.link((self.ranked, "selected"), (self.loo.view, "selected")),
        ]
        self.diagnostics = DiagnosticsPanel()
        self.stationarity = self._stationarity()
        self.loo.stationarity = self.diagnostics.stationarity = self.stationarity
        self.results: dict[int, PointResult] = {}
        self.current = -1
        self.strip.observe(lambda change: self.show(change["new"]), names="selected")
        tabs = widgets.Tab(children=[self.loo, self.diagnostics])
        tabs.set_title(0, "Leave-one-out check")
        tabs.set_title(1, "Solve of this test point")
        self.ranked.layout = widgets.Layout(flex="1 1 340px", min_width="0")
        self.scatter.layout = widgets.Layout(flex="1 1 420px", min_width="0")
        self.widget = widgets.VBox(
            [
                self.strip,
                widgets.HBox([self.ranked, self.scatter], layout=widgets.Layout(flex_flow="row wrap", width="100%")),
                tabs,
            ],
            layout=widgets.Layout(width="100%"),
        )
        self.show(test_index)

    def _stationarity(self) -> Any:
        """The explainer's stationarity check, if it has one (computed once; None otherwise)."""
        check = getattr(self.explainer, "stationarity", None)
        if not callable(check):
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # shown in the views instead
            try:
                return check()
            except Exception:  # a check that cannot run leaves the views without it, not broken
                return None

    def _target_bytes(self, values: np.ndarray) -> dict:
        if self.task == "classification":
            return {"labels": int32_bytes(values), "targets": b""}
        return {"labels": b"", "targets": float32_bytes(values, "targets")}

    @staticmethod
    def _texts(texts: Any, n: int, name: str) -> list[str]:
        if texts is None:
            return []
        texts = list(texts)
        if len(texts) != n:
            raise InfluenceInputError(f"{name} has {len(texts)} entries but there are {n} points; pass one per point")
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise InfluenceInputError(f"{name}[{bad}] is {type(texts[bad]).__name__}; pass strings")
        return texts

    def _tabular(self, feature_names: Any, show_rows: bool) -> tuple[list[str], bytes, np.ndarray | None, bytes]:
        """Feature names, training rows and scale (float32 bytes) and test rows for tabular data."""
        x_train = as_numpy(self.explainer.data.x)
        flat = x_train.reshape(len(x_train), -1)
        d = flat.shape[1]
        if feature_names is not None:
            feature_names = [str(f) for f in feature_names]
            if len(feature_names) != d:
                raise InfluenceInputError(
                    f"feature_names has {len(feature_names)} names but the inputs have {d} columns; pass one per column"
                )
        if not show_rows or x_train.ndim != 2 or d > TABULAR_MAX_FEATURES:
            if feature_names is not None and x_train.ndim != 2:
                raise InfluenceInputError(
                    f"feature_names were given but the inputs have shape {tuple(x_train.shape[1:])}, not one row of "
                    "columns; pass images_train/images_test for images"
                )
            return feature_names or [], b"", None, b""
        names = feature_names or [f"x{j}" for j in range(d)]
        test = as_numpy(self.x_test).reshape(len(self.x_test), -1).astype(np.float32)
        scale = flat.astype(np.float64).std(0)
        scale[~(scale > 0)] = 1.0
        return names, flat.astype(np.float32).tobytes(), test, scale.astype(np.float32).tobytes()

    def _features(self, features: Any) -> tuple[np.ndarray, np.ndarray]:
        x_train = self.explainer.data.x
        if features is None:
            train, test = as_numpy(x_train), as_numpy(self.x_test)
        elif callable(features):
            with torch.no_grad():
                train, test = as_numpy(features(x_train)), as_numpy(features(self.x_test))
        else:
            if not isinstance(features, (tuple, list)) or len(features) != 2:
                raise InfluenceInputError("features must be a callable or a pair (train_features, test_features)")
            train, test = (as_numpy(f) for f in features)
        train = train.reshape(len(train), -1).astype(np.float64)
        test = test.reshape(len(test), -1).astype(np.float64)
        if len(train) != self.explainer.n_train or len(test) != len(self.x_test) or train.shape[1] != test.shape[1]:
            raise InfluenceInputError(
                f"features give shapes {train.shape} and {test.shape}; need one row per training and test point, "
                "with the same number of columns"
            )
        if not (np.isfinite(train).all() and np.isfinite(test).all()):
            raise InfluenceInputError("features contain NaN or infinite values; distances need finite features")
        return train, test

    @property
    def n_test(self) -> int:
        return len(self.x_test)

    @property
    def current_id(self) -> int | str:
        """The user's id of the test point shown."""
        return self.test_ids[self.current]

    @property
    def selected_train_id(self) -> int | str | None:
        """The user's id of the training point selected in the views (None when none is)."""
        i = self.ranked.selected
        return self.train_ids[i] if 0 <= i < len(self.train_ids) else None

    def target_text(self, value: float | int) -> str:
        if self.task == "regression":
            return f"{float(value):.4g}"
        value = int(value)
        return self.class_names[value] if value < len(self.class_names) else str(value)

    def point(self, index: int) -> PointResult:
        """Predicted changes, distances and labels for test point ``index`` (a position); kept."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < self.n_test:
            raise InfluenceInputError(
                f"test index {index!r} is out of range for {self.n_test} test points (positions 0..{self.n_test - 1}; "
                "use position_of(id) for a test id)"
            )
        index = int(index)
        if index not in self.results:
            start = time.perf_counter()
            solves = len(self.explainer.diagnostics)
            x, y = self.x_test[index : index + 1], self.y_test[index : index + 1]
            changes = self.explainer.predicted_loss_change(x, y)[0].numpy()
            diagnostics = self.explainer.diagnostics[-1] if len(self.explainer.diagnostics) > solves else None
            distances = distances_to(self.train_features, self.test_features[index])
            if self.task == "classification":
                same = (self.train_labels == self.test_labels[index]).astype(np.uint8)
            else:
                same = np.ones(len(self.train_labels), dtype=np.uint8)
            label, prediction = self.test_labels[index], self.predictions[index]
            info = {
                "index": index,
                "id": self.test_ids[index],
                "label": int(label) if self.task == "classification" else float(label),
                "prediction": int(prediction) if self.task == "classification" else float(prediction),
                "target_text": self.target_text(label),
                "prediction_text": self.target_text(prediction),
                "loss": float(self.test_losses[index]),
                "text": self.test_text[index] if self.test_text else "",
            }
            result = PointResult(changes, distances, same, info, time.perf_counter() - start, diagnostics)
            self.results[index] = result
        return self.results[index]

    def position_of(self, test_id: int | str) -> int:
        """The position of the test point whose id is ``test_id``."""
        try:
            return self.test_ids.index(test_id)
        except ValueError:
            raise InfluenceInputError(
                f"no test point has the id {test_id!r}; test_ids are {self.test_ids[:5]}…"
            ) from None

    def show(self, index: int) -> None:
        """Switch every panel to test point ``index`` (its position; ``show(position_of(id))`` for an id)."""
        result = self.point(index)
        n = self.explainer.n_train
        changes = float32_bytes(result.changes, "predicted changes", n)
        thumb = self.test_thumbs[index].tobytes() if self.test_thumbs is not None else b""
        test_row = self.test_rows[index].tobytes() if self.test_rows is not None else b""
        with self.ranked.hold_sync(), self.scatter.hold_sync():
            self.ranked.selected = -1
            self.ranked.changes = changes
            self.ranked.test_info = result.info
            self.ranked.test_thumbnail = thumb
            self.ranked.test_row = test_row
            self.scatter.changes = changes
            self.scatter.distances = float32_bytes(result.distances, "distances", n)
            self.scatter.same_label = result.same_label.tobytes()
        self.current = int(index)
        if self.strip.selected != index:
            self.strip.selected = int(index)
        eigen = result.diagnostics.eigenvalues if result.diagnostics is not None else None
        self.loo.min_eigenvalue = eigen.lambda_min if eigen is not None else None
        self.loo.set_test_point(
            index, self.x_test[index : index + 1], self.y_test[index : index + 1], f"#{self.test_ids[index]}"
        )
        self.diagnostics.update(self.explainer, result.diagnostics)

    def save_html(self, path: Any, test_indices: Any = None, title: str = "influence_widgets report") -> None:
        """Write one self-contained HTML file in which the chosen test points (positions) stay explorable."""
        from .export import write_report

        write_report(self, path, test_indices, title)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return with_html_fallback(self.widget._repr_mimebundle_(**kwargs), self.ranked._html_fallback())


def explore(explainer, X_test: Any, y_test: Any, **kwargs: Any) -> Explorer:
    """Build an ``Explorer`` (see its arguments, e.g. ``train_ids=``, ``test_ids=``); display it as the last
    expression of a cell."""
    return Explorer(explainer, X_test, y_test, **kwargs)
