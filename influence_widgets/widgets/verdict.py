"""The leave-one-out check and the solve of a test point, in words the views show."""

from __future__ import annotations

from typing import Any

import numpy as np

AGREES_PEARSON = 0.9  # the paper's Figure 2 shows Pearson 0.86 to 0.99; 0.9 is where we call it agreement
SLOPE_RANGE = (0.5, 2.0)  # predicted magnitudes within a factor of 2 of retraining
DRIFT_RATIO = 0.3  # drift at least this fraction of the mean |actual change| swamps the effects


def stationarity_words(report: Any) -> str | None:
    """One line from a ``StationarityReport`` (or None when there is none)."""
    if report is None:
        return None
    summary = getattr(report, "summary", None)
    if callable(summary):
        return str(summary()).split("\n")[0]
    ratio = getattr(report, "ratio", None)
    return None if ratio is None else f"gradient norm / per-example gradient scale = {ratio:.2g}"


def _finite(value: float) -> bool:
    return value is not None and np.isfinite(value)


def loo_verdict(result: Any, stationarity: Any = None, min_eigenvalue: float | None = None) -> dict:
    """Agreement of predicted and actual changes, the figures, and where it fails the likely causes.

    Returns {"agrees": bool | None, "headline": str, "figures": [[name, value]], "causes": [str]}.
    ``stationarity`` is the explainer's ``StationarityReport`` if known (``result.stationarity`` wins).
    """
    n = len(result.removed)
    stationarity = getattr(result, "stationarity", None) or stationarity
    drift = float(np.abs(result.drift).max()) if result.drift.size else 0.0
    effect = float(np.abs(result.actual).mean()) if n else 0.0
    figures = [
        ["removals", f"{n}" + (" (stopped early)" if result.stopped_early else "")],
        ["Pearson", f"{result.pearson:.3f}"],
        ["Spearman", f"{result.spearman:.3f}"],
        ["slope", f"{result.slope():.3f}"],
        ["max |drift|", f"{drift:.2e}"],
        ["mean |actual change|", f"{effect:.2e}"],
    ]
    if result.refined is not None and n > 1:
        figures.insert(4, ["Newton-refined Pearson", f"{result.refined_pearson:.3f}"])
    station_line = stationarity_words(stationarity)
    if station_line:
        figures.append(["stationarity", station_line])
    if n < 3:
        return {
            "agrees": None,
            "headline": f"{n} removal(s) so far: too few to judge the agreement (3 or more are needed).",
            "figures": figures,
            "causes": [],
        }
    slope = result.slope()
    agrees = _finite(result.pearson) and result.pearson >= AGREES_PEARSON and SLOPE_RANGE[0] <= slope <= SLOPE_RANGE[1]
    causes: list[str] = []
    if not agrees:
        if stationarity is not None and getattr(stationarity, "is_stationary", True) is False:
            ratio = getattr(stationarity, "ratio", float("nan"))
            causes.append(
                f"the model is not at a minimum (gradient {ratio:.2g} times the per-example scale): "
                "train longer or polish with L-BFGS"
            )
        if effect > 0 and drift >= DRIFT_RATIO * effect:
            causes.append(
                f"the drift ({drift:.2e}) is as large as the effects ({effect:.2e}): retraining from theta-hat "
                "moves the model even with nothing removed, so theta-hat is not a minimum of the objective"
            )
        if min_eigenvalue is not None and min_eigenvalue <= 0:
            causes.append(
                f"the objective is not convex here (smallest Hessian eigenvalue {min_eigenvalue:.3g}): "
                "add damping or weight decay"
            )
        refined = result.refined_pearson
        if _finite(refined) and refined >= AGREES_PEARSON and not result.pearson >= AGREES_PEARSON:
            causes.append(
                f"the Newton-refined prediction agrees (Pearson {refined:.3f}): the removed points move the "
                "parameters beyond the first-order regime"
            )
        if (
            _finite(result.pearson)
            and result.pearson >= AGREES_PEARSON
            and not SLOPE_RANGE[0] <= slope <= SLOPE_RANGE[1]
        ):
            causes.append(f"the order is right but the scale is off (slope {slope:.2f}): check damping")
        if not causes:
            causes.append(
                "no cause found in the figures: retraining may not have converged, or the changes are too "
                "small to measure (try more removals or a tighter retraining tolerance)"
            )
    word = "agrees" if agrees else "does not agree"
    headline = (
        f"The influence prediction {word} with retraining: Pearson {result.pearson:.2f}, Spearman "
        f"{result.spearman:.2f}, slope {slope:.2f}, drift {drift:.1e} over {n} removals."
    )
    return {"agrees": bool(agrees), "headline": headline, "figures": figures, "causes": causes}


def solve_facts(diagnostics: Any, weight_decay: float, damping: float, stationarity: Any = None) -> dict:
    """The SolveView's state for one solve: title, facts as [name, value], the trace and its kind."""
    if diagnostics is None:
        return {
            "title": "No inverse-Hessian solve has run yet.",
            "facts": [],
            "warnings": [],
            "trace": np.zeros(0),
            "trace_kind": "",
        }
    facts = [
        ["solver", diagnostics.solver],
        ["converged", "yes" if diagnostics.converged else "NO"],
        ["time", f"{diagnostics.seconds:.3f} s"],
    ]
    if diagnostics.iterations:
        facts.append(["iterations", str(diagnostics.iterations)])
    if diagnostics.hessian_vector_products:
        facts.append(["Hessian-vector products", str(diagnostics.hessian_vector_products)])
    if diagnostics.residuals.size:
        facts.append(["final relative residual ||Hx - b|| / ||b||", f"{diagnostics.residuals[-1]:.2e}"])
    if diagnostics.preconditioner:
        facts.append(["preconditioner", diagnostics.preconditioner])
    if diagnostics.scale is not None:
        facts.append(["LiSSA scale", f"{diagnostics.scale:.3g}"])
    if diagnostics.eigenvalues is not None:
        e = diagnostics.eigenvalues
        facts.append(["Hessian eigenvalues", f"{e.lambda_min:.3g} to {e.lambda_max:.3g} ({e.method})"])
        facts.append(["condition number", f"{e.condition_number:.3g}"])
    facts.append(["weight decay, damping", f"{weight_decay:g}, {damping:g}"])
    line = stationarity_words(stationarity)
    if line:
        facts.append(["stationarity", line])
    if diagnostics.residuals.size > 1:
        trace, kind = diagnostics.residuals, "relative residual per CG iteration"
    elif diagnostics.estimate_norms.size > 1:
        trace, kind = diagnostics.estimate_norms, "||estimate|| per LiSSA step (sampled)"
    else:
        trace, kind = np.zeros(0), ""
    how = "iterative" if kind else "direct (one factorisation, no iterations to trace)"
    title = f"{diagnostics.solver}: {how} solve of {diagnostics.n_rhs} right-hand side(s)"
    warnings = list(diagnostics.warnings)
    if stationarity is not None and getattr(stationarity, "is_stationary", True) is False:
        warnings.append("the model is not at a minimum of the training objective: " + (line or ""))
    return {"title": title, "facts": facts, "warnings": warnings, "trace": np.asarray(trace), "trace_kind": kind}
