"""A network of a million parameters: factorisation once, then the time of each new test point, and accuracy.

The tanh MLP 64-1000-1000-10 (1.08 M parameters, float32) on the built-in digits, trained with weight
decay 1e-3 (Adam, then full-batch L-BFGS), damped as ``curvature()`` suggests (at least 0.07). The
reference is block CG at relative residual 1e-6 for the test points; every other solver is compared with
it by Pearson and Spearman over the training points (mean over test points). For each solver: the time of
its one-off work plus the first ``--test`` test points, then the kernel time of one more new test point
(what a click in the explorer costs: test gradient, solve, scoring from the layer factors), the median of
5. Everything runs in this process, one solver after the other, side by side.

    python bench/million.py [--solvers arnoldi ekfac kfac] [--test 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import torch
from torch import nn

from influence_widgets import CGOptions, InfluenceExplainer
from influence_widgets.core import statistics
from influence_widgets.core.solvers import solver_names
from influence_widgets.data import cross_entropy_per_example, load_digits
from influence_widgets.data.training import fit_adam, fit_lbfgs, gradient_norm
from influence_widgets.widgets import explore

WEIGHT_DECAY = 1e-3


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def train(seed: int):
    torch.manual_seed(seed)
    split = load_digits(seed=seed)
    model = nn.Sequential(nn.Linear(64, 1000), nn.Tanh(), nn.Linear(1000, 1000), nn.Tanh(), nn.Linear(1000, 10))
    fit_adam(model, cross_entropy_per_example, split.X_train, split.y_train, WEIGHT_DECAY, steps=200, lr=1e-3)
    fit_lbfgs(model, cross_entropy_per_example, split.X_train, split.y_train, WEIGHT_DECAY)
    return model, split


def correlations(estimate: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    pearson = [statistics.pearson(a, r) for a, r in zip(estimate, reference)]
    spearman = [statistics.spearman(a, r) for a, r in zip(estimate, reference)]
    return float(np.mean(pearson)), float(np.mean(spearman))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = [name for name in ("arnoldi", "ekfac", "kfac") if name in solver_names()]
    parser.add_argument("--solvers", nargs="+", default=default)
    parser.add_argument("--test", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    (model, split), training_seconds = timed(lambda: train(args.seed))
    x_train, y_train = split.X_train, split.y_train
    x_test, y_test = split.X_test[: args.test], split.y_test[: args.test]
    clicks = [(split.X_test[args.test + k], split.y_test[args.test + k]) for k in range(5)]
    norm = gradient_norm(model, cross_entropy_per_example, x_train, y_train, WEIGHT_DECAY)

    def explainer(solver: str, damping: float, **kwargs) -> InfluenceExplainer:
        return InfluenceExplainer(
            model,
            cross_entropy_per_example,
            x_train,
            y_train,
            weight_decay=WEIGHT_DECAY,
            damping=damping,
            solver=solver,
            progress=False,
            **kwargs,
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probe = explainer("cg", 0.0)
        report, curvature_seconds = timed(lambda: probe.curvature(steps=60))
    damping = max(0.07, report.suggested_damping)
    p = probe.n_params
    print(
        f"MLP 64-1000-1000-10: {p:,} parameters, {len(x_train)} training points, trained in {training_seconds:.0f} s "
        f"to ||grad R|| {norm:.1e}; lambda_min {report.eigenvalues.lambda_min:.3g}, damping {damping:.3g} "
        f"(Lanczos {curvature_seconds:.0f} s)"
    )
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        floor_explainer = explainer("cg", damping, cache_gradients=False)
        _, floor = timed(lambda: [None for _ in floor_explainer.train_gradient_chunks()])
        reference_explainer = explainer("cg", damping, solver_options=CGOptions(rtol=1e-6))
        reference, reference_seconds = timed(lambda: reference_explainer.influence(x_test, y_test).double().numpy())
        _, reference_click = timed(lambda: reference_explainer.influence(*clicks[0]))
        rows.append(("cg (reference, rtol 1e-6)", reference_seconds, reference_click, float("nan"), 1.0, 1.0, 0))
        for name in args.solvers:
            ex = explainer(name, damping)
            values, seconds = timed(lambda ex=ex: ex.influence(x_test, y_test).double().numpy())
            click_times = [timed(lambda ex=ex, c=c: ex.influence(*c))[1] for c in clicks]
            pearson, spearman = correlations(values, reference)
            memory = sum(ex.solver.work(ex.hessian, 1, ex.n_train).memory_bytes.values())
            shown = split.X_test[args.test + 5 : args.test + 11], split.y_test[args.test + 5 : args.test + 11]
            explorer = explore(ex, *shown, images_train=split.images_train, images_test=split.images_test[:6])
            show_times = [timed(lambda i=i, e=explorer: e.show(i))[1] for i in range(1, 6)]
            row = (name, seconds, float(np.median(click_times)), float(np.median(show_times)), pearson, spearman)
            rows.append((*row, memory))
    print(f"floor (one pass of per-example gradients): {floor:.2f} s")
    header = f"factorisation + {args.test} test points | one more test point | explorer, new point"
    print(f"| method | {header} | Pearson | Spearman | memory |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, seconds, click, show, pearson, spearman, memory in rows:
        figures = f"{seconds:.1f} s | {click:.3f} s | {show:.3f} s | {pearson:.4f} | {spearman:.4f}"
        print(f"| {name} | {figures} | {memory / 2**20:.0f} MiB |")
    if args.json:
        keys = ("method", "seconds", "click_seconds", "explorer_seconds", "pearson", "spearman", "memory_bytes")
        with open(args.json, "w") as handle:
            json.dump({"floor": floor, "damping": damping, "rows": [dict(zip(keys, r)) for r in rows]}, handle)


if __name__ == "__main__":
    main()
