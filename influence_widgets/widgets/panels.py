"""Panels built from standard ipywidgets: leave-one-out validation and solver diagnostics."""

from __future__ import annotations

import threading
from typing import Any

import ipywidgets as widgets

from ..core.validation import LOOResult
from .plots import describe_diagnostics, diagnostics_figure, figure_png, loo_figure


class LOOPanel(widgets.VBox):
    """Predicted versus actual change for retrained points; fills in while retraining runs.

    ``run()`` retrains in a background thread so that the kernel still hears the Stop button;
    results are cached per test point, so returning to one shows its figure again.
    """

    def __init__(self, explainer, n_points: int = 20, retrain: Any = "lbfgs", refine: bool = True) -> None:
        self.explainer = explainer
        self.n_points = n_points
        self.retrain = retrain
        self.refine = refine
        self.results: dict[Any, LOOResult] = {}
        self._key: Any = None
        self._test: tuple[Any, Any] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self.run_button = widgets.Button(description="Run leave-one-out", icon="play")
        self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True)
        self.progress = widgets.IntProgress(value=0, min=0, max=n_points, description="retrained")
        self._empty_png = figure_png(loo_figure(None))
        self.image = widgets.Image(format="png", value=self._empty_png)
        self.status = widgets.HTML("")
        self.run_button.on_click(lambda _: self.run())
        self.stop_button.on_click(lambda _: self.stop())
        super().__init__([widgets.HBox([self.run_button, self.stop_button, self.progress]), self.image, self.status])

    def set_test_point(self, key: Any, x_test: Any, y_test: Any) -> None:
        """Show the cached result for this test point, if any."""
        self._key, self._test = key, (x_test, y_test)
        result = self.results.get(key)
        self.progress.value = 0 if result is None else len(result.removed)
        self.image.value = self._empty_png if result is None else figure_png(loo_figure(result, self.n_points))
        self.status.value = "" if result is None else result.summary()

    def _show(self, key: Any, result: LOOResult) -> None:
        self.results[key] = result
        if key == self._key:
            self.progress.value = len(result.removed)
            self.image.value = figure_png(loo_figure(result, self.n_points))
            self.status.value = result.summary()

    def run(self, background: bool = True) -> None:
        """Retrain without each of the ``n_points`` most influential points of the current test point."""
        if self._test is None or (self._thread is not None and self._thread.is_alive()):
            return
        key, (x, y) = self._key, self._test
        self._stop.clear()
        self.error = None
        self.run_button.disabled, self.stop_button.disabled = True, False
        self.progress.max = self.n_points

        def work() -> None:
            try:
                result = self.explainer.validate_loo(
                    x,
                    y,
                    n_points=self.n_points,
                    retrain=self.retrain,
                    refine=self.refine,
                    on_point=lambda partial: self._show(key, partial),
                    should_stop=self._stop.is_set,
                )
                self._show(key, result)
            except Exception as error:  # shown in the panel; a notebook user sees it, nothing is lost
                self.error = error
                self.status.value = f"<span style='color:#b00'>leave-one-out failed: {error}</span>"
            finally:
                self.run_button.disabled, self.stop_button.disabled = False, True

        if background:
            self._thread = threading.Thread(target=work, daemon=True)
            self._thread.start()
        else:
            work()

    def stop(self) -> None:
        """Stop after the retraining in progress; the points done stay."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


class DiagnosticsPanel(widgets.HBox):
    """The latest solve: residual or estimate-norm trace, eigenvalues, damping and warnings in words.

    The "Estimate eigenvalues" button runs ``explainer.curvature()`` and says whether the Hessian is
    positive definite and which damping the paper's rule suggests.
    """

    def __init__(self) -> None:
        self.image = widgets.Image(format="png", value=figure_png(diagnostics_figure(None)))
        self.text = widgets.HTML("")
        self.curvature_button = widgets.Button(description="Estimate eigenvalues", icon="calculator")
        self.curvature_text = widgets.HTML("")
        self._shown: object = None
        self._explainer = None
        self.curvature_button.on_click(lambda _: self.estimate_curvature())
        super().__init__([self.image, widgets.VBox([self.text, self.curvature_button, self.curvature_text])])

    def estimate_curvature(self) -> None:
        """Extreme eigenvalues of H, in words, with the damping to use if H is not positive definite."""
        if self._explainer is None:
            return
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # said in the panel instead
            report = self._explainer.curvature()
        e = report.eigenvalues
        verdict = (
            "positive definite: the influence is well posed"
            if report.is_positive_definite
            else f"NOT positive definite: use damping >= {report.suggested_damping:.3g} (the paper's rule)"
        )
        self.curvature_text.value = (
            f"<p>Hessian eigenvalues between {e.lambda_min:.3g} and {e.lambda_max:.3g} ({e.method}, weight decay "
            f"and damping included), condition number {e.condition_number:.3g}: {verdict}.</p>"
        )

    def update(self, explainer) -> None:
        """Redraw for the explainer's latest solve (nothing to do if it is the one shown)."""
        self._explainer = explainer
        diagnostics = explainer.diagnostics[-1] if explainer.diagnostics else None
        if diagnostics is self._shown:
            return
        self._shown = diagnostics
        self.image.value = figure_png(diagnostics_figure(diagnostics))
        words = describe_diagnostics(diagnostics, explainer.weight_decay, explainer.damping)
        self.text.value = "<pre style='white-space:pre-wrap;font-size:12px'>" + words + "</pre>"
