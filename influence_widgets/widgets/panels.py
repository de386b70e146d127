"""Panels: leave-one-out validation (an interactive LOOView) and the solve of the test point (a SolveView)."""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets
import numpy as np

from ..core.validation import LOOResult
from .background import BackgroundWork
from .verdict import loo_verdict, solve_facts
from .views import LOOView, SolveView, int32_bytes

BUTTON = widgets.Layout(width="auto")  # a button as wide as its words: never "Run leave-one-..."


def loo_state(result: LOOResult | None, verdict: dict | None) -> dict:
    """The LOOView traits for one result (arrays as bytes)."""
    if result is None:
        return {"removed": b"", "predicted": b"", "actual": b"", "refined": b"", "verdict": {}}
    refined = result.refined if result.refined is not None else np.zeros(0)
    return {
        "removed": int32_bytes(result.removed),
        "predicted": np.asarray(result.predicted, dtype=np.float32).tobytes(),
        "actual": np.asarray(result.actual, dtype=np.float32).tobytes(),
        "refined": np.asarray(refined, dtype=np.float32).tobytes(),
        "verdict": verdict or {},
    }


class LOOPanel(BackgroundWork, widgets.VBox):
    """Predicted versus actual change for retrained points; fills in while retraining runs.

    ``run()`` retrains in a background thread so that the kernel still hears the Stop button;
    results are kept per test point (``results``, keyed by position), so returning to one shows it again.
    """

    def __init__(self, explainer, n_points: int = 20, retrain: Any = "lbfgs", refine: bool = True) -> None:
        self.explainer = explainer
        self.n_points = n_points
        self.retrain = retrain
        self.refine = refine
        self.results: dict[Any, LOOResult] = {}
        self.stationarity: Any = None
        self.min_eigenvalue: float | None = None
        self._key: Any = None
        self._label = ""
        self._test: tuple[Any, Any] | None = None
        self._init_background()
        self.error: BaseException | None = None
        self.run_button = widgets.Button(description="Run leave-one-out", icon="play", layout=BUTTON)
        self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True, layout=BUTTON)
        self.progress = widgets.IntProgress(value=0, min=0, max=n_points, description="retrained")
        self.view = LOOView()
        self.status = widgets.HTML("")
        self.run_button.on_click(lambda _: self.run())
        self.stop_button.on_click(lambda _: self.stop())
        controls = widgets.HBox([self.run_button, self.stop_button, self.progress])
        super().__init__([controls, self.view, self.status])

    def verdict(self, key: Any) -> dict | None:
        result = self.results.get(key)
        return None if result is None else loo_verdict(result, self.stationarity, self.min_eigenvalue)

    def set_test_point(self, key: Any, x_test: Any, y_test: Any, label: str = "") -> None:
        """Show the kept result for this test point, if any."""
        self._key, self._test, self._label = key, (x_test, y_test), label or f"#{key}"
        result = self.results.get(key)
        self.progress.value = 0 if result is None else len(result.removed)
        self.view.empty_text = (
            f"No leave-one-out run for test {self._label} yet. Run it to retrain a copy of the model without "
            f"each of this point's {self.n_points} most influential training points and compare."
        )
        with self.view.hold_sync():
            for name, value in loo_state(result, self.verdict(key)).items():
                setattr(self.view, name, value)
        self.status.value = ""

    def _show(self, key: Any, result: LOOResult) -> None:
        self.results[key] = result
        if key == self._key:
            self.progress.value = len(result.removed)
            with self.view.hold_sync():
                for name, value in loo_state(result, self.verdict(key)).items():
                    setattr(self.view, name, value)

    def run(self, background: bool = True) -> None:
        """Retrain without each of the ``n_points`` most influential points of the current test point."""
        if self._test is None or self.busy:
            return
        key, (x, y) = self._key, self._test
        self._stop.clear()  # before the work starts: should_stop is read from its first step
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
                partial = getattr(error, "partial", None)
                if partial is not None:
                    self._show(key, partial)
                self.status.value = ""
                self.view.verdict = {
                    "agrees": False,
                    "headline": f"leave-one-out failed: {error}",
                    "figures": [],
                    "causes": [],
                }
            finally:
                self.run_button.disabled, self.stop_button.disabled = False, True

        self._launch(work, background)


def solve_state(diagnostics: Any, weight_decay: float, damping: float, stationarity: Any = None) -> dict:
    facts = solve_facts(diagnostics, weight_decay, damping, stationarity)
    trace = np.asarray(facts.pop("trace"), dtype=np.float64)
    trace = trace[np.isfinite(trace)]
    return {**facts, "trace": trace.astype(np.float32).tobytes()}


class DiagnosticsPanel(widgets.VBox):
    """The solve of the selected test point: its trace, its figures and warnings in words.

    The "Estimate Hessian eigenvalues" button runs ``explainer.curvature()`` and says whether the Hessian
    is positive definite and which damping the paper's rule suggests.
    """

    def __init__(self) -> None:
        self.view = SolveView()
        self.curvature_button = widgets.Button(
            description="Estimate Hessian eigenvalues", icon="calculator", layout=BUTTON
        )
        self.curvature_text = widgets.HTML("")
        self._explainer = None
        self.stationarity: Any = None
        self.curvature_button.on_click(lambda _: self.estimate_curvature())
        super().__init__([self.view, widgets.HBox([self.curvature_button, self.curvature_text])])

    @property
    def text(self) -> str:
        """The panel's figures as plain text."""
        return "\n".join([self.view.title] + [f"{k}: {v}" for k, v in self.view.facts] + self.view.warnings)

    def estimate_curvature(self) -> None:
        """Extreme eigenvalues of H, in words, with the damping to use if H is not positive definite."""
        if self._explainer is None:
            return
        import html
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
        self.curvature_text.value = html.escape(
            f"Hessian eigenvalues between {e.lambda_min:.3g} and {e.lambda_max:.3g} ({e.method}, weight decay "
            f"and damping included), condition number {e.condition_number:.3g}: {verdict}."
        )

    def update(self, explainer, diagnostics: Any = None) -> None:
        """Show ``diagnostics`` (the selected test point's solve; default the explainer's latest)."""
        self._explainer = explainer
        if diagnostics is None and explainer.diagnostics:
            diagnostics = explainer.diagnostics[-1]
        state = solve_state(diagnostics, explainer.weight_decay, explainer.damping, self.stationarity)
        with self.view.hold_sync():
            for name, value in state.items():
                setattr(self.view, name, value)
