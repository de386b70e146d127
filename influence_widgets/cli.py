"""The command line: ``influence-widgets demo`` explains a few digit predictions on built-in data."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import torch

from .core import InfluenceExplainer
from .data.zoo import train_digits_model


def _format_rows(title: str, indices: torch.Tensor, influence: torch.Tensor, labels: torch.Tensor, n: int) -> str:
    lines = [f"  {title}", f"    {'train #':>8} {'label':>5} {'I_up,loss':>12} {'change in test loss if removed':>32}"]
    for i in indices.tolist():
        value = float(influence[i])
        lines.append(f"    {i:>8d} {int(labels[i]):>5d} {value:>12.4g} {-value / n:>+32.4g}")
    return "\n".join(lines)


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

    With ``report``, also write a self-contained HTML explorer of the 12 highest-loss test points, with a
    leave-one-out check of ``loo_points`` retrainings for the first one.
    """
    start = time.perf_counter()
    trained = train_digits_model(model, seed=seed)
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
    with torch.no_grad():
        outputs = explainer.objective.outputs(split.X_test.to(explainer.objective.dtype))
        losses = trained.loss_fn(outputs, split.y_test)
    chosen = torch.argsort(losses, descending=True)[:n_test]
    influence = explainer.influence(split.X_test[chosen], split.y_test[chosen])
    n = explainer.n_train
    accuracy = float((outputs.argmax(1) == split.y_test).double().mean())
    lines = [
        f"influence-widgets demo: {model} on the built-in digits ({n} train / {len(split.y_test)} test, "
        f"test accuracy {accuracy:.3f}), weight decay {trained.weight_decay}{damping_note}, "
        f"solver {explainer.solver_name}, {explainer.n_params} parameters",
        "I_up,loss > 0: harmful (upweighting raises the test loss); removing a point changes the test loss by "
        "-I_up,loss / n.",
    ]
    for row, test_index in enumerate(chosen.tolist()):
        probs = torch.softmax(outputs[test_index], dim=0)
        predicted = int(probs.argmax())
        lines.append(
            f"\ntest #{test_index}: label {int(split.y_test[test_index])}, predicted {predicted} "
            f"(p = {float(probs[predicted]):.2f}), test loss {float(losses[test_index]):.3f}"
        )
        scores = influence[row]
        helpful = torch.argsort(scores)[:top]
        harmful = torch.argsort(scores, descending=True)[:top]
        lines.append(_format_rows("most helpful (removing raises the test loss)", helpful, scores, split.y_train, n))
        lines.append(_format_rows("most harmful (removing lowers the test loss)", harmful, scores, split.y_train, n))
    lines.append(f"\n{explainer.diagnostics[-1].summary()}")
    if report is not None:
        lines.append(_write_report(explainer, split, losses, report, loo_points, model))
    lines.append(f"total time {time.perf_counter() - start:.1f} s")
    return "\n".join(lines)


def _write_report(explainer, split, losses, path: str, loo_points: int, model: str) -> str:
    from .core.validation import LBFGSRetrain
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
        loo_retrain=LBFGSRetrain(max_iter=200, tolerance=1e-9) if model == "cnn" else "lbfgs",
    )
    if loo_points > 0:
        explorer.loo.run(background=False)
    explorer.save_html(path, test_indices=range(len(shown)), title=f"influence_widgets demo: {model} on digits")
    summary = explorer.loo.results[0].summary() if loo_points > 0 else "skipped"
    return f"leave-one-out check of test #{int(shown[0])}: {summary}\nwrote {path} (opens offline in a browser)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="influence-widgets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="explain a few test predictions of a model trained on the digits")
    demo.add_argument("--model", choices=["logreg", "cnn"], default="logreg")
    demo.add_argument("--n-test", type=int, default=3, help="test points to explain (the highest-loss ones)")
    demo.add_argument("--top", type=int, default=5, help="helpful and harmful training points to list")
    demo.add_argument("--solver", choices=["auto", "exact", "cg", "lissa"], default="auto")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    demo.add_argument("--report", default="influence-report.html", help="where to write the HTML explorer")
    demo.add_argument("--no-report", action="store_true", help="print only; write no HTML report")
    demo.add_argument("--loo", type=int, default=10, help="leave-one-out retrainings shown in the report")
    args = parser.parse_args(argv)
    if args.n_test < 1 or args.top < 1 or args.loo < 0:
        parser.error("--n-test and --top must be at least 1, --loo at least 0")
    report = None if args.no_report else args.report
    text = run_demo(args.model, args.n_test, args.top, args.solver, args.seed, not args.no_progress, report, args.loo)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
