"""Time to score every training point with each solver, as a ratio over the per-example-gradient floor.

Small CNN on the built-in digits (float32). The floor is one pass of per-example gradients over the
training set, which no influence method can beat. Each solver runs end to end on a fresh explainer
(train gradients, test gradients, inverse-Hessian solve, one matrix product) for 1 and for 50 test
points; "rescore" is asking again for the same 50 points, which the cache turns into a matrix product.
Accuracy is the Pearson correlation with the exact damped solve on the same 50 points.

    python bench/solvers.py [--weight-decay 0.01] [--solvers exact cg lissa] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import torch

from influence_widgets import InfluenceExplainer
from influence_widgets.data.zoo import train_digits_model


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--solvers", nargs="+", default=["exact", "auto", "cg", "lissa"])
    parser.add_argument("--damping", type=float, default=0.01, help="at least the non-convexity check's suggestion")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    trained = train_digits_model("cnn", seed=args.seed, weight_decay=args.weight_decay, dtype=torch.float32)
    split = trained.split

    def explainer(solver: str, damping: float = 0.0) -> InfluenceExplainer:
        return InfluenceExplainer(
            trained.model,
            trained.loss_fn,
            split.X_train,
            split.y_train,
            weight_decay=trained.weight_decay,
            damping=damping,
            solver=solver,
            progress=False,
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = explainer("exact").curvature()
    damping = max(args.damping, report.suggested_damping)
    floors = []
    for _ in range(3):
        ex = explainer("cg", damping)
        floors.append(timed(ex.train_gradients)[1])
    floor = min(floors)
    x50, y50 = split.X_test[:50], split.y_test[:50]
    print(
        f"small CNN, {sum(p.numel() for p in trained.model.parameters())} parameters, n_train = {len(split.y_train)}, "
        f"weight decay {trained.weight_decay}, damping {damping:.3g} "
        f"(lambda_min {report.eigenvalues.lambda_min:.3g}, lambda_max {report.eigenvalues.lambda_max:.3g})"
    )
    print(f"floor: one pass of per-example gradients = {floor * 1000:.1f} ms\n")
    rows = []
    reference = None
    for solver in args.solvers:
        one = timed(lambda s=solver: explainer(s, damping).influence(split.X_test[:1], split.y_test[:1]))[1]
        ex = explainer(solver, damping)
        influence, fifty = timed(lambda ex=ex: ex.influence(x50, y50))
        rescore = timed(lambda ex=ex: ex.influence(x50, y50))[1]
        values = influence.double().numpy().ravel()
        if solver == "exact":
            reference = values
        pearson = float(np.corrcoef(values, reference)[0, 1]) if reference is not None else float("nan")
        rows.append(
            {
                "solver": solver,
                "seconds_1": one,
                "seconds_50": fifty,
                "seconds_rescore_50": rescore,
                "ratio_1": one / floor,
                "ratio_50": fifty / floor,
                "ratio_rescore_50": rescore / floor,
                "pearson_vs_exact": pearson,
                "diagnostics": ex.diagnostics[-1].summary(),
            }
        )
    print(f"{'solver':<8}{'1 test pt':>12}{'50 test pts':>14}{'rescore 50':>12}{'Pearson vs exact':>18}")
    for r in rows:
        print(
            f"{r['solver']:<8}{r['ratio_1']:>11.1f}x{r['ratio_50']:>13.1f}x{r['ratio_rescore_50']:>11.2f}x"
            f"{r['pearson_vs_exact']:>18.5f}"
        )
    print(
        "\n(ratios over the floor; seconds:",
        ", ".join(f"{r['solver']} {r['seconds_1']:.2f}/{r['seconds_50']:.2f}" for r in rows),
        ")",
    )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"floor_seconds": floor, "damping": damping, "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
