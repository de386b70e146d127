"""Static plots as PNG bytes, drawn with matplotlib's object API (no pyplot, no global state)."""

from __future__ import annotations

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..core.solvers import SolveDiagnostics
from ..core.validation import LOOResult


def figure_png(figure: Figure, dpi: int = 96) -> bytes:
    """Render a Figure to PNG bytes."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def loo_figure(result: LOOResult | None, total: int | None = None) -> Figure:
    """Predicted versus actual change in test loss (the paper's Figure 2), with the diagonal."""
    figure = Figure(figsize=(4.6, 4.2))
    ax = figure.add_subplot()
    if result is None or len(result.removed) == 0:
        ax.text(0.5, 0.5, "no retraining yet", ha="center", va="center", transform=ax.transAxes, color="#777")
        ax.set_axis_off()
        return figure
    values = [result.predicted, result.actual] + ([result.refined] if result.refined is not None else [])
    lo, hi = float(min(v.min() for v in values)), float(max(v.max() for v in values))
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="#999", lw=1, zorder=0)
    ax.scatter(result.predicted, result.actual, s=14, color="#1f77b4", label="first order (-I_up,loss / n)")
    if result.refined is not None:
        ax.scatter(result.refined, result.actual, s=14, marker="x", color="#d62728", label="Newton step")
    ax.set_xlabel("predicted change in test loss")
    ax.set_ylabel("actual change (retrained, minus drift)")
    done = f"{len(result.removed)}" + (f" of {total}" if total else "")
    title = f"{done} removals · Pearson {result.pearson:.3f} · Spearman {result.spearman:.3f}"
    if result.refined is not None and len(result.removed) > 1:
        title += f"\nNewton-refined Pearson {result.refined_pearson:.3f}"
    drift = float(np.abs(result.drift).max()) if result.drift.size else 0.0
    title += f"\nmax |drift| {drift:.1e}"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    return figure


def diagnostics_figure(diagnostics: SolveDiagnostics | None) -> Figure:
    """CG residuals or the LiSSA estimate's norm per step, on a log scale."""
    figure = Figure(figsize=(4.6, 3.0))
    ax = figure.add_subplot()
    if diagnostics is None:
        ax.text(0.5, 0.5, "no solve yet", ha="center", va="center", transform=ax.transAxes, color="#777")
        ax.set_axis_off()
        return figure
    if diagnostics.residuals.size > 1:
        ax.semilogy(np.arange(1, diagnostics.residuals.size + 1), diagnostics.residuals, color="#1f77b4")
        ax.set_ylabel("relative residual")
        ax.set_xlabel("CG iteration")
    elif diagnostics.estimate_norms.size:
        ax.plot(diagnostics.estimate_norms, color="#1f77b4")
        ax.set_ylabel("||estimate|| per right-hand side")
        ax.set_xlabel("LiSSA step (sampled)")
    else:
        ax.text(
            0.5,
            0.5,
            f"{diagnostics.solver}: direct solve\nrelative residual "
            f"{diagnostics.residuals[-1] if diagnostics.residuals.size else 0:.1e}",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_axis_off()
    ax.set_title(diagnostics.solver, fontsize=9)
    return figure


def describe_diagnostics(diagnostics: SolveDiagnostics | None, weight_decay: float, damping: float) -> str:
    """The solver's state in plain words."""
    if diagnostics is None:
        return "No inverse-Hessian solve has run yet."
    lines = [diagnostics.summary().split("\n")[0], f"weight decay {weight_decay:g}, damping {damping:g}"]
    if diagnostics.eigenvalues is not None:
        e = diagnostics.eigenvalues
        lines.append(f"Hessian eigenvalues between {e.lambda_min:.3g} and {e.lambda_max:.3g} ({e.method})")
    lines += [f"warning: {w}" for w in diagnostics.warnings]
    return "\n".join(lines)
