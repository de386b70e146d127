"""The explorer: pick a test point, and every panel updates together."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets
import numpy as np
import torch

from ..core.errors import InfluenceInputError
from .images import to_thumbnails
from .panels import DiagnosticsPanel, LOOPanel
from .views import RankedView, ScatterView, TestStrip, float32_bytes, int32_bytes


@dataclass
class PointResult:
    """What the panels show for one test point (cached). ``changes`` = -I_up,loss / n, float32 [n_train]."""

    changes: np.ndarray
    distances: np.ndarray
    same_label: np.ndarray
    info: dict
    seconds: float


def _as_numpy(values: Any) -> np.ndarray:
    return np.asarray(values.detach().cpu() if hasattr(values, "detach") else values)


def class_predictions(outputs: torch.Tensor) -> np.ndarray:
    """Predicted classes: argmax of several logits, or logit > 0 for one."""
    if outputs.ndim == 2 and outputs.shape[1] > 1:
        return outputs.argmax(1).cpu().numpy()
    return (outputs.reshape(len(outputs)) > 0).long().cpu().numpy()


class Explorer:
    """Ranked training points, influence versus distance, leave-one-out and solver diagnostics for one
    test point at a time; click a test point in the strip (or call ``show(i)``) to switch.

    Args:
        explainer: an ``InfluenceExplainer``.
        X_test, y_test: the test points to explore.
        images_train, images_test: [n, h, w] images for thumbnails (optional; tabular data shows rows).
        features: distances are Euclidean in input space by default; pass a callable mapping inputs to
            feature rows, or a pair (train_features, test_features) of arrays.
        class_names: display names of the labels. row_text: one short string per training point.
        k: helpful and harmful points listed. loo_points, loo_retrain: the leave-one-out panel's settings.
    """

    def __init__(
        self,
        explainer,
        X_test: Any,
        y_test: Any,
        *,
        images_train: Any = None,
        images_test: Any = None,
        features: Any = None,
        class_names: list[str] | None = None,
        row_text: list[str] | None = None,
        k: int = 5,
        loo_points: int = 20,
        loo_retrain: Any = "lbfgs",
        test_index: int = 0,
    ) -> None:
        self.explainer = explainer
        self.x_test, self.y_test = explainer._coerce_test(X_test, y_test)
        n_train, n_test = explainer.n_train, len(self.x_test)
        with torch.no_grad():
            outputs = explainer.objective.outputs(self.x_test.to(explainer.objective.device))
            self.test_losses = explainer.objective.loss_fn(outputs, self.y_test.to(outputs.device)).cpu().numpy()
        self.predictions = class_predictions(outputs)
        self.train_labels = _as_numpy(explainer.data.y).astype(np.int64).reshape(n_train)
        self.test_labels = _as_numpy(self.y_test).astype(np.int64).reshape(n_test)
        self.train_features, self.test_features = self._features(features)
        self.class_names = [str(c) for c in class_names] if class_names is not None else []
        if row_text is not None and len(row_text) != n_train:
            raise InfluenceInputError(f"row_text has {len(row_text)} entries but there are {n_train} training points")
        train_thumbs = to_thumbnails(images_train, n_train, "images_train") if images_train is not None else None
        self.test_thumbs = to_thumbnails(images_test, n_test, "images_test") if images_test is not None else None
        if (train_thumbs is None) != (self.test_thumbs is None):
            raise InfluenceInputError("pass both images_train and images_test, or neither")
        if train_thumbs is not None and train_thumbs.shape[1:] != self.test_thumbs.shape[1:]:
            raise InfluenceInputError(
                f"images_train are {train_thumbs.shape[1:]} but images_test are {self.test_thumbs.shape[1:]}; "
                "pass images of one size"
            )
        shape = list(train_thumbs.shape[1:]) if train_thumbs is not None else []
        shared = {
            "labels": int32_bytes(self.train_labels),
            "thumbnails": train_thumbs.tobytes() if train_thumbs is not None else b"",
            "thumb_shape": shape,
            "class_names": self.class_names,
        }
        self.ranked = RankedView(**shared, k=k, row_text=list(row_text or []))
        self.scatter = ScatterView(**shared)
        self.strip = TestStrip(
            labels=int32_bytes(self.test_labels),
            predictions=int32_bytes(self.predictions),
            thumbnails=self.test_thumbs.tobytes() if self.test_thumbs is not None else b"",
            thumb_shape=shape,
            class_names=self.class_names,
        )
        self._link = widgets.link((self.ranked, "selected"), (self.scatter, "selected"))
        self.loo = LOOPanel(explainer, n_points=min(loo_points, n_train), retrain=loo_retrain)
        self.diagnostics = DiagnosticsPanel()
        self.results: dict[int, PointResult] = {}
        self.current = -1
        self.strip.observe(lambda change: self.show(change["new"]), names="selected")
        tabs = widgets.Tab(children=[self.loo, self.diagnostics])
        tabs.set_title(0, "Leave-one-out")
        tabs.set_title(1, "Solver diagnostics")
        self.widget = widgets.VBox(
            [self.strip, widgets.HBox([self.ranked, self.scatter], layout=widgets.Layout(flex_flow="row wrap")), tabs]
        )
        self.show(test_index)

    def _features(self, features: Any) -> tuple[np.ndarray, np.ndarray]:
        x_train = self.explainer.data.x
        if features is None:
            train, test = _as_numpy(x_train), _as_numpy(self.x_test)
        elif callable(features):
            with torch.no_grad():
                train, test = _as_numpy(features(x_train)), _as_numpy(features(self.x_test))
        else:
            if not isinstance(features, (tuple, list)) or len(features) != 2:
                raise InfluenceInputError("features must be a callable or a pair (train_features, test_features)")
            train, test = (_as_numpy(f) for f in features)
        train = train.reshape(len(train), -1).astype(np.float64)
        test = test.reshape(len(test), -1).astype(np.float64)
        if len(train) != self.explainer.n_train or len(test) != len(self.x_test) or train.shape[1] != test.shape[1]:
            raise InfluenceInputError(
                f"features give shapes {train.shape} and {test.shape}; need one row per training and test point, "
                "with the same number of columns"
            )
        return train, test

    @property
    def n_test(self) -> int:
        return len(self.x_test)

    def point(self, index: int) -> PointResult:
        """Predicted changes, distances and labels for test point ``index``; cached."""
        if not isinstance(index, (int, np.integer)) or not 0 <= index < self.n_test:
            raise InfluenceInputError(f"test index {index!r} is out of range for {self.n_test} test points")
        index = int(index)
        if index not in self.results:
            start = time.perf_counter()
            x, y = self.x_test[index : index + 1], self.y_test[index : index + 1]
            changes = self.explainer.predicted_loss_change(x, y)[0].numpy()
            distances = np.linalg.norm(self.train_features - self.test_features[index], axis=1)
            same = (self.train_labels == self.test_labels[index]).astype(np.uint8)
            info = {
                "index": index,
                "label": int(self.test_labels[index]),
                "prediction": int(self.predictions[index]),
                "loss": float(self.test_losses[index]),
            }
            self.results[index] = PointResult(changes, distances, same, info, time.perf_counter() - start)
        return self.results[index]

    def show(self, index: int) -> None:
        """Switch every panel to test point ``index``."""
        result = self.point(index)
        n = self.explainer.n_train
        changes = float32_bytes(result.changes, "predicted changes", n)
        thumb = b""
        if self.test_thumbs is not None:
            thumb = self.test_thumbs[index].tobytes()
        with self.ranked.hold_sync(), self.scatter.hold_sync():
            self.ranked.selected = -1
            self.ranked.changes = changes
            self.ranked.test_info = result.info
            self.ranked.test_thumbnail = thumb
            self.scatter.changes = changes
            self.scatter.distances = float32_bytes(result.distances, "distances", n)
            self.scatter.same_label = result.same_label.tobytes()
        self.current = int(index)
        if self.strip.selected != index:
            self.strip.selected = int(index)
        self.loo.set_test_point(index, self.x_test[index : index + 1], self.y_test[index : index + 1])
        self.diagnostics.update(self.explainer)

    def save_html(self, path: Any, test_indices: Any = None, title: str = "influence_widgets report") -> None:
        """Write one self-contained HTML file in which the chosen test points stay explorable offline."""
        from .export import write_report

        write_report(self, path, test_indices, title)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = self.widget._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else (bundle or {})
        data["text/html"] = self.ranked._html_fallback()
        return bundle if isinstance(bundle, tuple) else data


def explore(explainer, X_test: Any, y_test: Any, **kwargs: Any) -> Explorer:
    """Build an ``Explorer`` (see its arguments); display it as the last expression of a cell."""
    return Explorer(explainer, X_test, y_test, **kwargs)
