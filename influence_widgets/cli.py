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
    model: str = "logreg", n_test: int = 3, top: int = 5, solver: str = "auto", seed: int = 0, progress: bool = True
) -> str:
    """Train the built-in model on the digits, explain the ``n_test`` highest-loss test points, return a report."""
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
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = explainer.curvature()
        if not report.is_positive_definite:
            damping = report.suggested_damping
            explainer = InfluenceExplainer(
                trained.model,
                trained.loss_fn,
                split.X_train,
                split.y_train,
                weight_decay=trained.weight_decay,
                damping=damping,
                solver=solver,
                progress=progress,
            )
            damping_note = f", damping {damping:.2g} (smallest Hessian eigenvalue {report.eigenvalues.lambda_min:.2g})"
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
    lines.append(f"\n{explainer.diagnostics[-1].summary()}\ntotal time {time.perf_counter() - start:.1f} s")
    return "\n".join(lines)


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
    args = parser.parse_args(argv)
    if args.n_test < 1 or args.top < 1:
        parser.error("--n-test and --top must be at least 1")
    print(run_demo(args.model, args.n_test, args.top, args.solver, args.seed, progress=not args.no_progress))
    return 0


if __name__ == "__main__":
    sys.exit(main())
