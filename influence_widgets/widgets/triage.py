"""Mislabel triage panel: the most suspicious training points, relabel one, retrain a copy, see the effect.

Works on a copy of the labels and retrains copies of the model in a background thread (as the
leave-one-out panel does); the user's data and model are untouched.
"""

from __future__ import annotations

import html
import io
from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.image import imsave

from ..core.arrays import as_numpy
from ..core.errors import InfluenceInputError
from ..core.retrain import LBFGSRetrain, gradient_norm, minimise_lbfgs, retrain_copy
from ..core.threads import within_thread_budget
from ..usecases.mislabel import prediction_accuracy, review_scores
from .background import BackgroundWork
from .images import to_thumbnails


def thumbnail_png(thumbnail: np.ndarray, scale: int = 8) -> bytes:
    """A uint8 [h, w] thumbnail as a PNG, enlarged ``scale`` times without smoothing."""
    buffer = io.BytesIO()
    imsave(buffer, np.kron(thumbnail, np.ones((scale, scale), dtype=np.uint8)), cmap="gray", vmin=0, vmax=255)
    return buffer.getvalue()


class RetrainStopped(Exception):
    """The stop button ended a retraining; the model and ranking stay as they were."""


class TriagePanel(BackgroundWork, widgets.VBox):
    """Training points ranked by ``method`` (default |self-influence|), most suspicious first.

    Each row shows the point's thumbnail (or ``row_text`` for tabular data), its label and its score:
    |self-influence| = nabla L_i^T H^-1 nabla L_i (no 1/n), large for points that lean on themselves.
    Select a point, choose its correct label and press "Relabel"; "Retrain" fits a copy of the model to
    the corrected labels in a background thread (with a progress bar and a Stop button), re-ranks, and
    says what changed on the test set. ``labels`` holds the corrected labels (a copy), ``relabelled``
    maps training index -> (old label, new label), ``explainer`` is the explainer of the latest retrained
    copy, ``scores`` the current ranking's scores [n_train].
    """

    def __init__(
        self,
        explainer,
        *,
        X_test: Any = None,
        y_test: Any = None,
        images: Any = None,
        row_text: list[str] | None = None,
        class_names: list[str] | None = None,
        top: int = 20,
        method: str = "self_influence",
        retrain: Any = None,
    ) -> None:
        if not isinstance(top, (int, np.integer)) or top < 1:
            raise InfluenceInputError(f"top must be at least 1, got {top!r}; pass the number of points to list")
        self.explainer = explainer
        self.method = method
        self.top = min(int(top), explainer.n_train)
        self.retrain = retrain
        self.labels = explainer.data.y.detach().cpu().clone()
        classes = sorted({int(v) for v in self.labels.tolist()})
        if class_names is None:
            class_names = [str(c) for c in range(max(classes) + 1)]
        if len(class_names) <= max(classes):
            raise InfluenceInputError(
                f"class_names has {len(class_names)} names but labels go up to {max(classes)}; pass one name per class"
            )
        if row_text is not None and len(row_text) != explainer.n_train:
            raise InfluenceInputError(
                f"row_text has {len(row_text)} entries but there are {explainer.n_train} training points; "
                "pass one short string per training point"
            )
        self.class_names = [str(c) for c in class_names]
        self.row_text = None if row_text is None else [str(t) for t in row_text]
        self.thumbnails = None if images is None else to_thumbnails(images, explainer.n_train, "images")
        self.relabelled: dict[int, tuple[int, int]] = {}
        self._test = None if X_test is None else explainer.coerce_test(X_test, y_test)
        self.accuracy_history: list[float] = []
        self.error: BaseException | None = None
        self._init_background()

        self.ranking = widgets.Select(description="suspicious", rows=12, layout=widgets.Layout(width="100%"))
        self.rows = widgets.VBox(layout=widgets.Layout(max_height="420px", overflow="auto", width="380px"))
        self.image = widgets.Image(format="png", layout=widgets.Layout(width="96px"))
        self.new_label = widgets.Dropdown(
            options=[(name, i) for i, name in enumerate(self.class_names)], description="true label"
        )
        self.relabel_button = widgets.Button(description="Relabel", icon="pencil")
        self.retrain_button = widgets.Button(description="Retrain", icon="refresh")
        self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True)
        self.progress = widgets.IntProgress(value=0, min=0, max=100, description="retrain")
        self.status = widgets.HTML("")
        self.explanation = widgets.HTML("")
        self.ranking.observe(self._on_select, names="value")
        self.relabel_button.on_click(lambda _: self.relabel(self.ranking.value, self.new_label.value))
        self.retrain_button.on_click(lambda _: self.start_retrain())
        self.stop_button.on_click(lambda _: self.stop())
        buttons = widgets.HBox([self.relabel_button, self.retrain_button, self.stop_button])
        controls = widgets.VBox([self.image, self.new_label, buttons, self.progress])
        super().__init__([widgets.HBox([self.rows, controls]), self.status, self.explanation])
        self._rank()
        if self._test is not None:
            self._test_predictions = self._predictions(explainer)
            self.accuracy_history.append(prediction_accuracy(self._test_predictions, self._test[1]))
        self._describe()

    # ranking -------------------------------------------------------------------------------------------

    def _predictions(self, explainer) -> np.ndarray:
        """The test set's predicted classes [m] by ``explainer``'s model."""
        return explainer.predicted_classes(self._test[0]).numpy()

    def _scores(self, explainer) -> tuple[np.ndarray, np.ndarray | None]:
        """The review order (``usecases.review_order``'s rule) and, for self-influence, the scores shown."""
        score = review_scores(explainer, self.method)
        return np.argsort(-score, kind="stable"), score if self.method == "self_influence" else None

    def _rank(self, ranked: tuple[np.ndarray, np.ndarray | None] | None = None) -> None:
        order, scores = self._scores(self.explainer) if ranked is None else ranked
        self.order = order[: self.top]
        self.scores = scores
        self.ranking.options = [(self._row_label(int(i)), int(i)) for i in self.order]
        self.rows.children = [self._row(int(i)) for i in self.order]
        self.ranking.value = int(self.order[0])

    def _row_label(self, index: int) -> str:
        text = f"train #{index}: label {self.class_names[int(self.labels[index])]}"
        if self.scores is not None:
            text += f", |self-influence| {self.scores[index]:.3g}"
        if index in self.relabelled:
            text += " (relabelled)"
        return text

    def _row(self, index: int) -> widgets.HBox:
        button = widgets.Button(
            description=self._row_label(index),
            tooltip=self._row_label(index),
            layout=widgets.Layout(width="auto", flex="1 1 auto"),
        )
        button.on_click(lambda _, i=index: setattr(self.ranking, "value", i))
        parts: list[widgets.Widget] = []
        if self.thumbnails is not None:
            parts.append(widgets.Image(value=thumbnail_png(self.thumbnails[index], 4), format="png", width=32))
        elif self.row_text is not None:
            parts.append(widgets.Label(self.row_text[index], layout=widgets.Layout(width="140px")))
        return widgets.HBox([*parts, button])

    def _refresh_rows(self) -> None:
        self.ranking.options = [(self._row_label(int(i)), int(i)) for i in self.order]
        for row, index in zip(self.rows.children, self.order):
            row.children[-1].description = row.children[-1].tooltip = self._row_label(int(index))

    def _on_select(self, change: dict) -> None:
        index = change["new"]
        if index is None:
            return
        self.new_label.value = int(self.labels[index])
        if self.thumbnails is not None:
            self.image.value = thumbnail_png(self.thumbnails[index])
        for row, i in zip(self.rows.children, self.order):
            row.children[-1].button_style = "info" if int(i) == index else ""

    def _describe(self) -> None:
        parts = [f"{len(self.relabelled)} label(s) changed"]
        if self.accuracy_history:
            parts.append("test accuracy " + " → ".join(f"{a:.3f}" for a in self.accuracy_history))
        self.status.value = "; ".join(parts)

    # editing -------------------------------------------------------------------------------------------

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
        self._refresh_rows()
        self._describe()

    # retraining ----------------------------------------------------------------------------------------

    def _fit(self, labels: torch.Tensor, tick) -> torch.nn.Module:
        """A retrained copy; built-in L-BFGS runs in restarted rounds so that Stop is heard between them."""
        method = self.retrain
        if method is None or isinstance(method, LBFGSRetrain):
            settings = method or LBFGSRetrain()
            rounds = max(1, settings.max_iter // 50)

            @within_thread_budget  # threads sized to the free cores, the user's setting restored after
            def lbfgs_in_rounds(module, x, y):
                loss_fn, weight_decay = self.explainer.loss_fn, self.explainer.weight_decay
                for done in range(rounds):
                    if self._stop.is_set():
                        raise RetrainStopped
                    minimise_lbfgs(module, loss_fn, x, y, weight_decay, max_iter=50, tolerance=settings.tolerance)
                    tick(int(80 * (done + 1) / rounds))
                    if gradient_norm(module, loss_fn, x, y, weight_decay) <= 10 * settings.tolerance:
                        break
                return module

            method = lbfgs_in_rounds
        return retrain_copy(self.explainer, self.explainer.data.x, labels, method)

    def retrain_model(self, *, _tick=None) -> torch.nn.Module:
        """Fit a copy of the model to the corrected labels, rebuild the explainer, re-rank and explain; blocks."""
        if _tick is None:
            self._stop.clear()
        tick = _tick or (lambda value: None)
        labels = self.labels.clone()
        changed = dict(self.relabelled)
        model = self._fit(labels, tick)
        if self._stop.is_set():
            raise RetrainStopped
        explainer = self.explainer.for_model(model, y_train=labels.clone())
        tick(85)
        ranked = self._scores(explainer)
        tick(100)
        self.explainer = explainer
        if self._test is not None:
            before = self._test_predictions
            after = self._predictions(explainer)
            self._test_predictions = after
            self.accuracy_history.append(prediction_accuracy(after, self._test[1]))
            self.explanation.value = self._explain(changed, before, after)
        self._rank(ranked)
        self._describe()
        return model

    def _explain(self, changed: dict[int, tuple[int, int]], before: np.ndarray, after: np.ndarray) -> str:
        truth = as_numpy(self._test[1]).reshape(-1)
        flipped = before != after
        fixed = int((flipped & (after == truth)).sum())
        broken = int((flipped & (before == truth)).sum())
        other = int(flipped.sum()) - fixed - broken
        a0, a1 = self.accuracy_history[-2], self.accuracy_history[-1]
        text = (
            f"Retrained with {len(changed)} corrected label(s): {int(flipped.sum())} of {len(truth)} test "
            f"predictions changed ({fixed} became right, {broken} became wrong, {other} stayed wrong), so test "
            f"accuracy went {a0:.3f} → {a1:.3f}."
        )
        if fixed == broken:
            text += (
                " Accuracy need not move: a few corrected labels shift the model only near those training points, "
                "and a test prediction changes only if it lay close to the decision boundary there; fixes and new "
                "mistakes can also cancel."
            )
        return text

    def start_retrain(self, background: bool = True) -> None:
        """Retrain in a background thread (the kernel still hears Stop); ``wait()`` joins it."""
        if self.busy:
            return
        self._stop.clear()
        self.error = None
        self.retrain_button.disabled, self.stop_button.disabled = True, False
        self.progress.value = 0
        self.status.value = "retraining a copy of the model…"

        def tick(value: int) -> None:
            self.progress.value = value

        def work() -> None:
            try:
                self.retrain_model(_tick=tick)
            except RetrainStopped:
                self.status.value = (
                    "retraining stopped: the model and the ranking are as before; your label changes are kept"
                )
            except Exception as error:  # shown in the panel; nothing the user did is lost
                self.error = error
                self.status.value = f"<span style='color:#b00'>retraining failed: {html.escape(str(error))}</span>"
            finally:
                self.retrain_button.disabled, self.stop_button.disabled = False, True

        self._launch(work, background)
