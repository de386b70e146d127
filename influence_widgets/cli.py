"""influence-widgets demo: train a built-in model on the digits, then say which training points
helped or hurt its worst test predictions, check that against leave-one-out retraining, and
write an HTML explorer that opens offline."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from .core import InfluenceExplainer
from .core.predictions import predicted_classes
from .core.retrain import LBFGSRetrain
from .core.solvers import REGISTRY, solver_names
from .core.validation import LOOResult
from .data.zoo import train_digits_model

DEFAULT_REPORT = "influence-report.html"
AGREEMENT_PEARSON = 0.9  # the leave-one-out check agrees when first-order Pearson reaches this


class OutputNotWritable(Exception):
    """The report path cannot be written; the message names the path and the fix."""


def check_writable(path: str) -> Path:
    """Make sure ``path`` can be written before any work starts (nothing is left behind)."""
    target = Path(path).expanduser()
    fix = f"pass --out with a writable file path (for example --out ./{DEFAULT_REPORT}), or --no-report"
    if target.is_dir():
        raise OutputNotWritable(f"cannot write the report to {str(target)!r}: it is a directory; {fix}")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise OutputNotWritable(
            f"cannot write the report to {str(target)!r}: folder {str(parent)!r} does not exist; {fix}"
        )
    existed = target.exists()
    try:
        with open(target, "a"):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise OutputNotWritable(f"cannot write the report to {str(target)!r}: {reason}; {fix}") from error
    if not existed:
        os.remove(target)
    return target


def _format_rows(title: str, indices: torch.Tensor, change: torch.Tensor, labels: torch.Tensor) -> str:
    lines = [f"  {title}", f"    {'train #':>8}  {'label':>5}  {'change in test loss if removed':>30}"]
    for i in indices.tolist():
        lines.append(f"    {i:>8d}  {int(labels[i]):>5d}  {float(change[i]):>+30.4f}")
    return "\n".join(lines)


def loo_verdict(result: LOOResult) -> str:
    """The leave-one-out check in words: agrees or not, with Pearson, Spearman, slope and drift."""
    if len(result.removed) < 2:
        return "leave-one-out check: too few retrainings to judge (run at least 2)"
    drift = float(abs(result.drift).max()) if result.drift.size else 0.0
    effect = float(abs(result.actual).max())
    agrees = result.pearson >= AGREEMENT_PEARSON
    words = "agrees with retraining" if agrees else "does NOT agree with retraining"
    text = (
        f"leave-one-out check: {words} ({len(result.removed)} retrainings without the most influential points): "
        f"Pearson {result.pearson:.3f}, Spearman {result.spearman:.3f}, slope {result.slope():.2f}; "
        f"drift of a retraining with nothing removed {drift:.1e} against effects up to {effect:.1e}"
    )
    if result.refined is not None:
        text += f"; Newton-refined Pearson {result.refined_pearson:.3f}"
    if result.stopped_early:
        text += "; stopped early"
    if not agrees:
        cause = (
            "the drift is as large as the effects: the model is not at a minimum of its objective"
            if drift >= 0.2 * effect
            else "the objective is non-convex here, so the local quadratic model does not hold"
        )
        text += f". Likely cause: {cause}"
    return text + f" ({result.seconds_total:.0f} s)."


def _retrain_method(model: str) -> LBFGSRetrain | str:
    return LBFGSRetrain(max_iter=80, tolerance=1e-9) if model == "cnn" else "lbfgs"


def run_demo(
    model: str = "logreg",
    n_test: int = 3,
    top: int = 5,
    solver: str = "auto",
    seed: int = 0,
    progress: bool = True,
    report: str | None = None,
    loo_points: int = 10,
) -> str:
    """Train the built-in model on the digits, explain the ``n_test`` highest-loss test points, return the text.

    Test and training points are named by their position in the built-in split, in the text and in the
    report alike. The leave-one-out check retrains without the ``loo_points`` most influential points of the
    worst test point. With ``report``, also write a self-contained HTML explorer of the 12 highest-loss
    test points.
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    trained = train_digits_model(model, seed=seed, progress=progress)
    split = trained.split
    explainer = InfluenceExplainer(
        trained.model,
        trained.loss_fn,
        split.X_train,
        split.y_train,
        weight_decay=trained.weight_decay,
        solver=solver,
        progress=progress,
    )
    damping_note = ""
    if model == "cnn":  # non-convex: the paper's rule, damping at least |lambda_min|
        explainer, curvature = explainer.positive_definite()
        if explainer.damping > 0:
            lam_min = curvature.eigenvalues.lambda_min
            damping_note = f", damping {explainer.damping:.2g} (smallest Hessian eigenvalue {lam_min:.2g})"
    outputs = explainer.outputs(split.X_test)
    losses = explainer.losses(split.X_test, split.y_test)
    classes = predicted_classes(outputs)
    chosen = torch.argsort(losses, descending=True)[:n_test]
    change = explainer.predicted_loss_change(split.X_test[chosen], split.y_test[chosen])
    n = explainer.n_train
    accuracy = float((classes == split.y_test).double().mean())
    lines = [
        f"influence-widgets demo: {model} on the built-in digits ({n} training / {len(split.y_test)} test points, "
        f"test accuracy {accuracy:.3f})",
        f"  {explainer.n_params} parameters, weight decay {trained.weight_decay:g}{damping_note}, "
        f"trained to gradient norm {trained.gradient_norm:.1e}, solver {explainer.solver_name}",
        "The change in a test point's loss if one training point were removed and the model retrained:",
        "positive means the point helped that prediction, negative means it hurt it.",
    ]
    for row, test_index in enumerate(chosen.tolist()):
        probs = torch.softmax(outputs[test_index], dim=0)
        predicted = int(classes[test_index])
        lines.append(
            f"\ntest #{test_index}: label {int(split.y_test[test_index])}, predicted {predicted} "
            f"(probability {float(probs[predicted]):.2f}), test loss {float(losses[test_index]):.3f}"
        )
        scores = change[row]
        helpful = torch.argsort(scores, descending=True)[:top]
        harmful = torch.argsort(scores)[:top]
        lines.append(_format_rows("most helpful (removing it raises the test loss)", helpful, scores, split.y_train))
        lines.append(_format_rows("most harmful (removing it lowers the test loss)", harmful, scores, split.y_train))
    solve = explainer.diagnostics[-1]
    lines.append(f"\nsolve: {solve.summary()}")
    worst = int(chosen[0])
    if report is not None:
        result, written = _write_report(explainer, split, losses, report, loo_points, model, progress)
    else:
        written = None
        result = None
        if loo_points > 0:
            x, y = split.X_test[worst : worst + 1], split.y_test[worst : worst + 1]
            result = explainer.validate_loo(x, y, n_points=loo_points, retrain=_retrain_method(model))
    if result is not None:
        lines.append(f"test #{worst}, {loo_verdict(result)}")
    if written is not None:
        lines.append(f"report: {written} (one HTML file, opens offline in a browser)")
    lines.append(f"done in {time.perf_counter() - start:.0f} s ({time.process_time() - cpu_start:.0f} s of CPU time)")
    return "\n".join(lines)


def _write_report(explainer, split, losses, path: str, loo_points: int, model: str, progress: bool):
    from .widgets import explore

    shown = torch.argsort(losses, descending=True)[:12]
    explorer = explore(
        explainer,
        split.X_test[shown],
        split.y_test[shown],
        images_train=split.images_train,
        images_test=split.images_test[shown.numpy()],
        class_names=split.class_names,
        loo_points=loo_points,
        loo_retrain=_retrain_method(model),
        test_ids=shown.tolist(),
    )
    result = None
    if loo_points > 0:
        explorer.loo.run(background=False)
        if explorer.loo.error is not None:
            raise explorer.loo.error
        result = next(iter(explorer.loo.results.values()), None)  # the worst test point, shown first
    explorer.save_html(path, test_indices=range(len(shown)), title=f"influence_widgets demo: {model} on digits")
    return result, path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="influence-widgets", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="explain a few test predictions of a model trained on the built-in digits",
        description=(
            "Train a model on the built-in digits (to a minimum of its objective), list the training points "
            "that helped and hurt its worst test predictions, check the predictions against leave-one-out "
            f"retraining, and write an offline HTML explorer (default ./{DEFAULT_REPORT}). "
            "logreg is convex and quick; cnn trains a small network to a minimum first and takes longer."
        ),
    )
    demo.add_argument(
        "--model",
        choices=["logreg", "cnn"],
        default="logreg",
        help="the built-in model to train: logreg (default) or cnn",
    )
    demo.add_argument(
        "--n-test", type=int, default=3, metavar="N", help="test points to explain, highest loss first (default 3)"
    )
    demo.add_argument(
        "--top", type=int, default=5, metavar="K", help="helpful and harmful training points to list (default 5)"
    )
    demo.add_argument(
        "--solver",
        choices=solver_names(),
        default="auto",
        help="inverse-Hessian solver (default auto): "
        + "; ".join(f"{entry.name}: {entry.summary}" for entry in REGISTRY.values()),
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of the split and the training (default 0)")
    demo.add_argument(
        "--loo", type=int, default=10, metavar="N", help="leave-one-out retrainings (default 10; 0 skips the check)"
    )
    demo.add_argument(
        "--out",
        "--report",
        dest="out",
        default=DEFAULT_REPORT,
        metavar="PATH",
        help=f"where to write the HTML explorer (default ./{DEFAULT_REPORT})",
    )
    demo.add_argument("--no-report", action="store_true", help="print only; write no HTML file")
    demo.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="CPU threads for PyTorch (default 1: the demo's small operations run slower, not faster, on more)",
    )
    demo.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true", help="hide the progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.n_test < 1 or args.top < 1 or args.loo < 0 or args.threads < 1:
        parser.error("--n-test, --top and --threads must be at least 1, --loo at least 0")
    report = None
    if not args.no_report:
        try:
            report = str(check_writable(args.out))
        except OutputNotWritable as error:
            print(f"influence-widgets demo: error: {error}", file=sys.stderr)
            return 2
    torch.set_num_threads(args.threads)
    text = run_demo(args.model, args.n_test, args.top, args.solver, args.seed, not args.quiet, report, args.loo)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
