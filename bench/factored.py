"""The factored solvers (K-FAC, EK-FAC, Arnoldi) side by side with Kronfluence and pyDVL, in one run.

Two tasks, every method in a process of its own (``bench/peer_tasks.py --once``: untimed, the package's
import and per-example gradients of 16 points; then one fresh run: factorisation + the test points against
every training point), each peer in its own virtual environment under ``bench/.venvs/`` (``bench/peers.py``
creates them):

* the tanh MLP 64-1000-1000-10 (1.08 M parameters, float32) on the digits, trained and damped as in
  ``bench/million.py`` (weight decay 1e-3, damping max(0.07, the curvature check's suggestion)); the
  reference is our block CG at relative residual 1e-6; Pearson and Spearman per test point, averaged;
* the digits CNN of ``bench/peers.py`` (weight decay 0.01, damping max(0.01, the suggestion)); the
  reference is the exact float64 solve of ``peer_tasks.exact_reference``; and leave-one-out: the 30
  training points of largest |exact influence| on the highest-loss test point, each removed and the
  model retrained ONCE (warm-started L-BFGS on a float64 copy, against a retraining with nothing
  removed); every method's predicted change -I_up,loss / n is correlated with the same actual changes.

Every method solves the same damped system H = F or Hessian of the mean loss + (wd + damping) I: ours with
``weight_decay`` and ``damping``, Kronfluence with ``damping_factor`` = wd + damping, pyDVL with
``hessian_regularization`` / ``regularization`` = wd + damping. Scores are aligned by each peer's
``Peer.factor`` (``bench/peers.py``) before any comparison; the fitted least-squares factor checks it.

    python bench/factored.py              # both tasks: bench/results/factored.{md,json}
    python bench/factored.py --quick      # smoke: MLP 64-100-100-10, ours kfac, Kronfluence EK-FAC, pyDVL EK-FAC,
                                          # 3 test points, LOO on 3 points (L-BFGS capped at 100 iterations)
    python bench/factored.py --check      # Kronfluence and ours against a dense solve where K-FAC is exact
    python bench/factored.py --only ours Kronfluence --tasks mlp
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from factored_report import write
from peer_kronfluence import linear_problem
from peer_tasks import tanh_mlp
from peers import BENCH, PEERS, VENVS, damping_for, ensure_venv, meta, run_worker, train_cnn, venv_python

from influence_widgets import CGOptions, InfluenceExplainer, LBFGSRetrain
from influence_widgets.core import statistics
from influence_widgets.data import cross_entropy_per_example, load_digits, squared_error_per_example
from influence_widgets.data.training import fit_adam, fit_lbfgs

MLP_WEIGHT_DECAY = 1e-3  # bench/million.py
MLP_MIN_DAMPING = 0.07
CNN_WEIGHT_DECAY = 0.01  # bench/peers.py
LOO_RETRAIN = LBFGSRetrain(max_iter=500, tolerance=1e-9)  # bench/loo.py's CNN setting
LOO_RETRAIN_QUICK = LBFGSRetrain(max_iter=100, tolerance=1e-9)


@dataclass(frozen=True)
class Run:
    """One method with its settings (JSON for the worker) and the words for the table."""

    label: str
    family: str
    settings: dict[str, Any]
    describe: str
    quick: bool = False


RUNS = [
    Run("ours kfac", "ours", {"solver": "kfac"}, "solver='kfac': true Fisher, exact expectation over labels", True),
    Run(
        "ours ekfac",
        "ours",
        {"solver": "ekfac"},
        "solver='ekfac': eigenvalue-corrected, exact expectation, factors refitted once to each layer's block "
        "(default basis_refits=1)",
    ),
    Run(
        "ours ekfac K-FAC basis",
        "ours",
        {"solver": "ekfac", "options": {"basis_refits": 0}},
        "solver='ekfac', basis_refits=0: K-FAC's eigenbasis (George et al. 2018), one pass fewer",
    ),
    Run("ours arnoldi", "ours", {"solver": "arnoldi"}, "solver='arnoldi': rank 64 (default), complement 1/shift"),
    Run(
        "Kronfluence EK-FAC",
        "kronfluence",
        {"strategy": "ekfac"},
        "strategy='ekfac', defaults: true Fisher from 1 sampled label per point, float32, batches of 256",
        True,
    ),
    Run(
        "Kronfluence K-FAC",
        "kronfluence",
        {"strategy": "kfac"},
        "strategy='kfac', defaults otherwise (as EK-FAC)",
    ),
    Run(
        "pyDVL EK-FAC",
        "pydvl",
        {"class": "EkfacInfluence", "update_diagonal": True, "loader_batch": 256, "train_chunk": 256},
        "EkfacInfluence(update_diagonal=True): the eigenvalue correction; nn.Linear layers only",
        True,
    ),
    Run(
        "pyDVL EK-FAC default",
        "pydvl",
        {"class": "EkfacInfluence", "loader_batch": 256, "train_chunk": 256},
        "EkfacInfluence() default update_diagonal=False: K-FAC eigenvalues",
    ),
    Run(
        "pyDVL Arnoldi",
        "pydvl",
        {"class": "ArnoldiInfluence", "rank": 64, "use_woodbury": True, "train_chunk": 256},
        "ArnoldiInfluence(rank=64 as ours, use_woodbury=True: the complement 1/shift as ours), batches of 449",
    ),
]


@dataclass
class Prepared:
    """A task saved where the workers read it, its reference scores and (CNN) the leave-one-out changes."""

    name: str
    folder: Path
    spec: dict[str, Any]
    reference: np.ndarray = field(repr=False)
    loo: dict[str, Any] | None = None


# ---------------------------------------------------------------- tasks


def train_mlp(widths: list[int], seed: int) -> tuple[torch.nn.Module, Any]:
    """bench/million.py's recipe: 200 full-batch Adam steps (lr 1e-3), then full-batch L-BFGS."""
    torch.manual_seed(seed)
    split = load_digits(seed=seed)
    model = tanh_mlp(widths)
    x, y = split.X_train, split.y_train
    fit_adam(model, cross_entropy_per_example, x, y, MLP_WEIGHT_DECAY, steps=200, lr=1e-3)
    fit_lbfgs(model, cross_entropy_per_example, x, y, MLP_WEIGHT_DECAY)
    return model, split


def mlp_damping(model: torch.nn.Module, split: Any) -> float:
    """max(0.07, the curvature check's suggested damping), as bench/million.py."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probe = explainer(model, split, MLP_WEIGHT_DECAY, 0.0, "cg")
        return max(MLP_MIN_DAMPING, probe.curvature(steps=60).suggested_damping)


def explainer(model: torch.nn.Module, split: Any, wd: float, damping: float, solver: str, **kw: Any) -> Any:
    return InfluenceExplainer(
        model, cross_entropy_per_example, split.X_train, split.y_train,
        weight_decay=wd, damping=damping, solver=solver, progress=False, **kw,
    )  # fmt: skip


def save_task(folder: Path, model: torch.nn.Module, split: Any, order: torch.Tensor, spec: dict[str, Any]) -> None:
    folder.mkdir(parents=True)
    torch.save(model.state_dict(), folder / "model.pt")
    data = {"x_train": split.X_train, "y_train": split.y_train}
    data |= {"x_test": split.X_test[order], "y_test": split.y_test[order]}
    torch.save(data, folder / "data.pt")
    (folder / "task.json").write_text(json.dumps(spec, indent=2))


def prepare_mlp(args: argparse.Namespace, root: Path) -> Prepared:
    """Train the MLP, pick the damping, save the task, CG reference at rtol 1e-6 for the first test points."""
    start = time.perf_counter()
    model, split = train_mlp(args.widths, args.seed)
    trained = time.perf_counter() - start
    damping = mlp_damping(model, split)
    widths = "-".join(map(str, args.widths))
    spec = common_spec("mlp", f"tanh MLP {widths}, float32", model, split, MLP_WEIGHT_DECAY, damping)
    spec |= {"model_class": "TanhMLP", "model_kwargs": {"widths": args.widths}, "training_seconds": trained}
    folder = root / "mlp"
    save_task(folder, model, split, torch.arange(len(split.y_test)), spec)
    reference_ex = explainer(model, split, MLP_WEIGHT_DECAY, damping, "cg", solver_options=CGOptions(rtol=1e-6))
    start = time.perf_counter()
    reference = reference_ex.influence(split.X_test[: args.n_test], split.y_test[: args.n_test]).double().numpy()
    spec["reference"] = f"block CG at relative residual 1e-6 (ours), {time.perf_counter() - start:.1f} s"
    return Prepared("mlp", folder, spec, reference)


def common_spec(name: str, title: str, model: torch.nn.Module, split: Any, wd: float, damping: float) -> dict:
    return {
        "task": name, "title": title, "binary": False, "dtype": "float32", "weight_decay": wd,
        "damping": damping, "shift": wd + damping, "n_train": len(split.y_train),
        "n_params": sum(p.numel() for p in model.parameters()),
    }  # fmt: skip


def prepare_cnn(args: argparse.Namespace, root: Path) -> Prepared:
    """bench/peers.py's CNN; the highest-loss test point first; exact float64 reference; leave-one-out once."""
    model, loss_fn, split, model_spec = train_cnn(args.seed)
    damping, _ = damping_for(model, loss_fn, split)
    with torch.no_grad():
        worst = int(torch.argmax(loss_fn(model(split.X_test), split.y_test)))
    order = torch.cat([torch.tensor([worst]), torch.tensor([i for i in range(len(split.y_test)) if i != worst])])
    spec = common_spec("cnn", "digits CNN (tanh), float32", model, split, CNN_WEIGHT_DECAY, damping) | model_spec
    folder = root / "cnn"
    save_task(folder, model, split, order, spec)
    result = run_worker(sys.executable, folder, "ours", {}, args.n_test, 1, args.threads, reference=True, timeout=3600)
    if "error" in result:
        raise RuntimeError(f"the exact reference failed: {result['error']}")
    reference = np.load(folder / "out_reference" / "scores.npy")
    spec["reference"] = "exact damped solve in float64 (dense Hessian, bench/peer_tasks.exact_reference)"
    retrain = LOO_RETRAIN_QUICK if args.quick else LOO_RETRAIN
    loo = leave_one_out(model, split, order[0], damping, reference[0], args.loo_points, retrain)
    return Prepared("cnn", folder, spec, reference, loo)


def leave_one_out(
    model: torch.nn.Module, split: Any, row: torch.Tensor, damping: float, exact: np.ndarray, k: int, retrain: Any
) -> dict[str, Any]:
    """Actual change of the test loss after removing each of the k points of largest |exact I_up,loss|,
    retrained once on a float64 copy (``validate_loo``: warm-started L-BFGS, drift baseline)."""
    top = np.argsort(-np.abs(exact), kind="stable")[:k]
    model64 = copy.deepcopy(model).double()
    x_train = split.X_train.double()
    ex = InfluenceExplainer(
        model64, cross_entropy_per_example, x_train, split.y_train,
        weight_decay=CNN_WEIGHT_DECAY, damping=damping, solver="exact", progress=False,
    )  # fmt: skip
    x, y = split.X_test[row : row + 1].double(), split.y_test[row : row + 1]
    result = ex.validate_loo(x, y, select=torch.as_tensor(top), refine=False, retrain=retrain)
    return {
        "removed": result.removed.tolist(),
        "actual": result.actual.tolist(),
        "seconds": result.seconds_total,
        "test_row": int(row),
        "retrain": repr(retrain),
    }


# ---------------------------------------------------------------- running and comparing


def correlations(aligned: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Mean over test points of Pearson and Spearman over the training points; relative error; fitted factor."""
    return {
        "pearson": float(np.mean([statistics.pearson(a, r) for a, r in zip(aligned, reference)])),
        "spearman": float(np.mean([statistics.spearman(a, r) for a, r in zip(aligned, reference)])),
        "rel_error": float(np.linalg.norm(aligned - reference) / np.linalg.norm(reference)),
    }


def loo_figures(aligned: np.ndarray, loo: dict[str, Any], n: int) -> dict[str, float]:
    """Pearson (the LOO R) and Spearman between predicted (-I_up,loss / n) and actual changes of the test loss."""
    predicted = -aligned[0, loo["removed"]] / n
    actual = loo["actual"]
    return {"loo_r": statistics.pearson(predicted, actual), "loo_spearman": statistics.spearman(predicted, actual)}


def measure(run: Run, task: Prepared, python: str | None, why_not: str | None, args: argparse.Namespace) -> dict:
    row: dict[str, Any] = {"task": task.name, "method": run.label, "family": run.family, "describe": run.describe}
    row["settings"] = run.settings
    if why_not is not None:
        return {**row, "error": f"not installed: {why_not}"}
    tag = run.label.replace(" ", "_")
    started = time.perf_counter()
    result = run_worker(python, task.folder, run.family, run.settings, args.n_test, 1, args.threads,
                        timeout=args.timeout, tag=tag, once=True)  # fmt: skip
    row["wall_seconds_process"] = time.perf_counter() - started
    row |= {k: v for k, v in result.items() if k not in ("traceback", "method")}
    path = task.folder / f"out_{tag}" / "scores.npy"
    if "error" in result or not path.exists():
        return row
    raw = np.load(path)
    row["nan"] = not bool(np.isfinite(raw).all())
    if row["nan"]:
        return row
    aligned = raw * PEERS[run.family].factor(task.spec["n_train"])
    row |= correlations(aligned, task.reference)
    row["fitted_factor"] = float((raw * task.reference).sum() / max((raw * raw).sum(), 1e-300))
    if task.loo is not None:
        row |= loo_figures(aligned, task.loo, task.spec["n_train"])
    return row


def one_line(row: dict[str, Any]) -> str:
    head = f"  {row['method']:<22}"
    if "error" in row:
        return head + f"error: {row['error'][:200]}"
    loo = f"  LOO R {row['loo_r']:.3f}" if "loo_r" in row else ""
    return head + (
        f"{row['seconds_m']:7.1f} s  peak {row['rss_peak_mib']:6.0f} MiB  Pearson {row.get('pearson', np.nan):.4f}"
        f"  Spearman {row.get('spearman', np.nan):.4f}  factor {row.get('fitted_factor', np.nan):.3g}{loo}"
    )


def benchmark(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    chosen = [r for r in RUNS if r.quick or not args.quick]
    chosen = [r for r in chosen if not args.only or any(r.label.lower().startswith(o.lower()) for o in args.only)]
    environments: dict[str, tuple[str | None, str | None]] = {"ours": (sys.executable, None)}
    for family in sorted({r.family for r in chosen} - {"ours"}):
        print(f"environment for {PEERS[family].name}: {VENVS / family}", flush=True)
        why_not = ensure_venv(PEERS[family], args.setup)
        environments[family] = (None if why_not else str(venv_python(family)), why_not)
    tasks, rows = [], []
    for name in args.tasks:
        print(f"\n== {name}: training, damping, reference", flush=True)
        task = (prepare_mlp if name == "mlp" else prepare_cnn)(args, root)
        print(f"  {task.spec['title']}: p = {task.spec['n_params']:,}, damping {task.spec['damping']:.3g}", flush=True)
        tasks.append({**task.spec, "loo": task.loo})
        if task.loo is not None:
            exact = loo_figures(task.reference, task.loo, task.spec["n_train"])
            tasks[-1]["loo"] |= exact
            print(f"  leave-one-out ({len(task.loo['removed'])} points, {task.loo['seconds']:.0f} s): exact LOO R "
                  f"{exact['loo_r']:.3f}", flush=True)  # fmt: skip
        for run in chosen:
            rows.append(measure(run, task, *environments[run.family], args))
            print(one_line(rows[-1]), flush=True)
    found = meta(args, environments) | {"loo_points": args.loo_points, "widths": args.widths}
    return {"meta": found, "tasks": tasks, "rows": rows}


# ---------------------------------------------------------------- the alignment check


def check() -> bool:
    """Ours (kfac, ekfac) and Kronfluence (K-FAC, EK-FAC, in its environment) against the dense solve on one
    nn.Linear(d, 1) with squared loss, where the Kronecker factorisation is exact: all must agree to ~1e-12."""
    model, x, y, shift, exact = linear_problem()
    ok = True
    for solver in ("kfac", "ekfac"):
        ex = InfluenceExplainer(
            model, squared_error_per_example, x, y, weight_decay=0.0, damping=shift, solver=solver, progress=False
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an untrained layer: not at a minimum, irrelevant to the algebra
            error = float((ex.influence(x[:5], y[:5]) - exact).norm() / exact.norm())
        print(f"ours {solver}: ||ours - exact|| / ||exact|| = {error:.2e}")
        ok &= error < 1e-10
    why_not = ensure_venv(PEERS["kronfluence"], False)
    if why_not:
        print(f"Kronfluence not installed: {why_not}")
        return False
    command = [str(venv_python("kronfluence")), str(BENCH / "peer_kronfluence.py"), "--check"]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    print(done.stdout.strip() or done.stderr[-2000:])
    return ok and done.returncode == 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=BENCH / "results")
    parser.add_argument(
        "--quick", action="store_true", help="MLP 64-100-100-10, 3 methods, 3 test points, LOO on 3 points"
    )
    parser.add_argument("--check", action="store_true", help="only the alignment check on a linear layer")
    parser.add_argument("--setup", action="store_true", help="recreate the peers' virtual environments first")
    parser.add_argument("--only", nargs="+", default=None, help="runs whose label starts with one of these")
    parser.add_argument("--tasks", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn"])
    parser.add_argument("--n-test", type=int, default=None, help="test points (default 10; quick 3)")
    parser.add_argument("--loo-points", type=int, default=None, help="training points removed (default 30; quick 8)")
    parser.add_argument("--widths", type=int, nargs="+", default=None, help="MLP widths (default 64 1000 1000 10)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads per method")
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed to one method's process")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="keep the task folders (models, data, scores) here")
    args = parser.parse_args()
    args.n_test = args.n_test or (3 if args.quick else 10)
    args.loo_points = args.loo_points or (3 if args.quick else 30)
    args.widths = args.widths or ([64, 100, 100, 10] if args.quick else [64, 1000, 1000, 10])
    args.repeats, args.budget = 1, 0.0  # for peers.meta: one run per method
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    if args.check:
        ok = check()
        print("all alignments: ok" if ok else "alignment: FAILED")
        raise SystemExit(0 if ok else 1)
    if args.keep is not None:
        shutil.rmtree(args.keep, ignore_errors=True)
        report = benchmark(args, args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="factored_") as tmp:
            report = benchmark(args, Path(tmp))
    write(report, args.out_dir)


if __name__ == "__main__":
    main()
