"""Mislabel triage panel: the most suspicious training points, relabel one, retrain a copy, see the effect.

Works on a copy of the labels and retrains copies of the model; the user's data and model are untouched.
"""

from __future__ import annotations

import io
from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.image import imsave

from ..core.errors import InfluenceInputError
from ..core.validation import retrain_copy
from ..usecases.mislabel import accuracy_of, review_order
from .images import to_thumbnails


def thumbnail_png(thumbnail: np.ndarray, scale: int = 8) -> bytes:
    """A uint8 [h, w] thumbnail as a PNG, enlarged ``scale`` times without smoothing."""
    buffer = io.BytesIO()
    imsave(buffer, np.kron(thumbnail, np.ones((scale, scale), dtype=np.uint8)), cmap="gray", vmin=0, vmax=255)
    return buffer.getvalue()


class TriagePanel(widgets.VBox):
    """Training points ranked by ``method`` (default |self-influence|), most suspicious first.

    Select a point, choose its correct label and press "Relabel"; "Retrain" fits a copy of the model
    to the corrected labels, re-ranks, and reports test accuracy before and after when a test set is given.
    ``labels`` holds the corrected labels, ``relabelled`` maps training index -> (old label, new label),
    ``explainer`` is the explainer of the latest retrained copy.
    """

    def __init__(
        self,
        explainer,
        *,
        X_test: Any = None,
        y_test: Any = None,
        images: Any = None,
        class_names: list[str] | None = None,
        top: int = 20,
        method: str = "self_influence",
        retrain: Any = None,
    ) -> None:
        if top < 1:
            raise InfluenceInputError(f"top must be at least 1, got {top}")
        self.explainer = explainer
        self.method = method
        self.top = min(top, explainer.n_train)
        self.retrain = retrain
        self.labels = explainer.data.y.detach().cpu().clone()
        classes = sorted({int(v) for v in self.labels.tolist()})
        if class_names is None:
            class_names = [str(c) for c in range(max(classes) + 1)]
        if len(class_names) <= max(classes):
            raise InfluenceInputError(f"class_names has {len(class_names)} names but labels go up to {max(classes)}")
        self.class_names = list(class_names)
        self.thumbnails = None if images is None else to_thumbnails(images, explainer.n_train, "images")
        self.relabelled: dict[int, tuple[int, int]] = {}
        self._test = None if X_test is None else explainer._coerce_test(X_test, y_test)
        self.accuracy_history: list[float] = []

        self.ranking = widgets.Select(description="suspicious", rows=12, layout=widgets.Layout(width="340px"))
        self.image = widgets.Image(format="png", layout=widgets.Layout(width="96px"))
        self.new_label = widgets.Dropdown(
            options=[(name, i) for i, name in enumerate(self.class_names)], description="true label"
        )
        self.relabel_button = widgets.Button(description="Relabel", icon="pencil")
        self.retrain_button = widgets.Button(description="Retrain", icon="refresh")
        self.status = widgets.HTML("")
        self.ranking.observe(self._on_select, names="value")
        self.relabel_button.on_click(lambda _: self.relabel(self.ranking.value, self.new_label.value))
        self.retrain_button.on_click(lambda _: self.retrain_model())
        controls = widgets.VBox([self.image, self.new_label, widgets.HBox([self.relabel_button, self.retrain_button])])
        super().__init__([widgets.HBox([self.ranking, controls]), self.status])
        self._rank()
        if self._test is not None:
            self.accuracy_history.append(self._accuracy(explainer.objective.module))
        self._describe()

    def _accuracy(self, model: torch.nn.Module) -> float:
        x, y = self._test
        return accuracy_of(model, x.to(self.explainer.objective.device), y)

    def _rank(self) -> None:
        order = review_order(self.explainer, self.method)[: self.top]
        self.order = order
        self.ranking.options = [
            (
                f"train #{i}: label {self.class_names[int(self.labels[i])]}"
                + (" (relabelled)" * (int(i) in self.relabelled)),
                int(i),
            )
            for i in order
        ]
        self.ranking.value = int(order[0])

    def _on_select(self, change: dict) -> None:
        index = change["new"]
        if index is None:
            return
        self.new_label.value = int(self.labels[index])
        if self.thumbnails is not None:
            self.image.value = thumbnail_png(self.thumbnails[index])

    def _describe(self) -> None:
        parts = [f"{len(self.relabelled)} label(s) changed"]
        if self.accuracy_history:
            history = " → ".join(f"{a:.3f}" for a in self.accuracy_history)
            parts.append(f"test accuracy {history}")
        self.status.value = "; ".join(parts)

    def relabel(self, index: int, label: int) -> None:
        """Set training point ``index``'s label to class ``label`` in the panel's copy of the labels."""
        if not 0 <= index < self.explainer.n_train:
            raise InfluenceInputError(f"index must lie in [0, {self.explainer.n_train}), got {index}")
        if not 0 <= label < len(self.class_names):
            raise InfluenceInputError(f"label must lie in [0, {len(self.class_names)}), got {label}")
        old = self.relabelled.get(index, (int(self.labels[index]), None))[0]
        self.labels[index] = label
        if label == old:
            self.relabelled.pop(index, None)
        else:
            self.relabelled[index] = (old, label)
        self._describe()

    def retrain_model(self) -> torch.nn.Module:
        """Fit a copy of the model to the corrected labels, rebuild the explainer and re-rank."""
        self.status.value = "retraining…"
        model = retrain_copy(self.explainer, self.explainer.data.x, self.labels, self.retrain)
        self.explainer = self.explainer.for_model(model, y_train=self.labels.clone())
        if self._test is not None:
            self.accuracy_history.append(self._accuracy(model))
        self._rank()
        self._describe()
        return model
