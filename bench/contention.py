"""The CNN demo's work and the solvers on an idle and on a loaded machine, side by side in one run.

"Loaded": this script starts its own busy processes (pure Python loops, ``--busy``, default twice the
cores: 2x oversubscription), which stop by themselves after ``--busy-seconds`` and are stopped as soon
as each loaded measurement ends. Every measurement runs in a fresh process of its own, idle then loaded,
one right after the other, so that the ratio loaded / idle is taken under the same background (other
users of the machine included). Each is run under the library's thread policies:

- ``adaptive`` (the default): each explainer call uses the cores free of other runnable work
  (``influence_widgets.core.threads``), at most torch's own setting, restored afterwards;
- ``fixed``: the user's settings untouched (torch's default, one thread per core): what the library did before;
- ``omp1``: ``fixed`` with ``OMP_NUM_THREADS=1`` in the environment, the workaround a user would need.

Workloads: ``demo`` is ``influence-widgets demo --model cnn --report ... --loo 0`` after its training
(the trained model is loaded from disk: training lives in ``data/``, see the note printed at the end);
``train`` is the demo's training alone; ``solvers`` is exact, CG and LiSSA end to end on a fresh
explainer for 1 and for 50 test points (LiSSA: 10) on the float32 CNN (damping 0.011).

    python bench/contention.py                         # demo + solvers, adaptive and fixed, idle and loaded
    python bench/contention.py --workloads solvers --policies adaptive fixed omp1
    python bench/contention.py --json bench/results/contention.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
WORKLOADS = ("demo", "train", "solvers")
POLICIES = ("adaptive", "fixed", "omp1", "single")
DAMPING = 0.011
BUSY_LOOP = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


# ---------------------------------------------------------------- the busy processes


class Busy:
    """``count`` busy Python processes that end by themselves after ``seconds`` (or when stopped)."""

    def __init__(self, count: int, seconds: float) -> None:
        self.count, self.seconds = count, seconds
        self.processes: list[subprocess.Popen] = []

    def __enter__(self) -> Busy:
        code = BUSY_LOOP.format(seconds=self.seconds)
        self.processes = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(self.count)]
        time.sleep(0.5)  # let them reach the scheduler
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# ---------------------------------------------------------------- one measurement, in a process of its own


def prepare(folder: Path, workloads: list[str]) -> None:
    """Train the models once (untimed) and save them where the workers read them."""
    import torch

    from influence_widgets.data.zoo import train_digits_model

    if "demo" in workloads:
        torch.save(train_digits_model("cnn", seed=0), folder / "demo.pt")  # the CLI's demo: float64
    if "solvers" in workloads:
        torch.save(train_digits_model("cnn", seed=0, dtype=torch.float32), folder / "cnn32.pt")


def worker(workload: str, policy: str, folder: Path) -> dict[str, Any]:
    """Run one workload under ``policy``; seconds per part."""
    import torch

    from influence_widgets.core.threads import set_thread_policy

    set_thread_policy("fixed" if policy == "omp1" else policy)
    warnings.simplefilter("ignore")
    found: dict[str, Any] = {"torch_threads": torch.get_num_threads()}
    if workload == "train":
        from influence_widgets.data.zoo import train_digits_model

        start = time.perf_counter()
        train_digits_model("cnn", seed=0)
        found["seconds"] = {"train": time.perf_counter() - start}
        return found
    if workload == "demo":
        import influence_widgets.cli as cli

        trained = torch.load(folder / "demo.pt", weights_only=False)
        cli.train_digits_model = lambda *a, **k: trained  # the demo after its training
        start = time.perf_counter()
        cli.run_demo("cnn", progress=False, report=str(folder / f"report_{os.getpid()}.html"), loo_points=0)
        found["seconds"] = {"demo": time.perf_counter() - start}
        return found
    from influence_widgets import InfluenceExplainer

    trained = torch.load(folder / "cnn32.pt", weights_only=False)
    split = trained.split

    def explainer(solver: str) -> InfluenceExplainer:
        return InfluenceExplainer(
            trained.model, trained.loss_fn, split.X_train, split.y_train, weight_decay=trained.weight_decay,
            damping=DAMPING, solver=solver, progress=False,
        )  # fmt: skip

    seconds = {}
    explainer("cg").train_gradients()  # one-time costs (torch.func's first calls) count for none
    start = time.perf_counter()
    explainer("cg").train_gradients()
    seconds["floor"] = time.perf_counter() - start
    for solver, m in (("exact", 1), ("cg", 1), ("exact", 50), ("cg", 50), ("lissa", 10)):
        start = time.perf_counter()
        explainer(solver).influence(split.X_test[:m], split.y_test[:m])
        seconds[f"{solver} {m}"] = time.perf_counter() - start
    found["seconds"] = seconds
    return found


def measure(workload: str, policy: str, folder: Path, timeout: float) -> dict[str, Any]:
    env = dict(os.environ)
    if policy == "omp1":
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    command = [sys.executable, __file__, "--worker", workload, "--policy", policy, "--folder", str(folder)]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"stopped after {timeout:.0f} s"}
    if done.returncode != 0:
        return {"error": " ".join(done.stderr.strip().splitlines()[-2:])[:300]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - started
    return result


# ---------------------------------------------------------------- the report


def load_now() -> str:
    with open("/proc/loadavg") as handle:
        return handle.read().split()[3]


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| workload | part | policy | idle s | loaded s | loaded / idle |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        idle, loaded = row["idle"], row["loaded"]
        if "error" in idle or "error" in loaded:
            lines.append(f"| {row['workload']} | - | {row['policy']} | {idle.get('error', '')} | "
                         f"{loaded.get('error', '')} | - |")  # fmt: skip
            continue
        for part, seconds in idle["seconds"].items():
            after = loaded["seconds"][part]
            lines.append(
                f"| {row['workload']} | {part} | {row['policy']} | {seconds:.2f} | {after:.2f} | "
                f"**{after / seconds:.2f}x** |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=["demo", "solvers"], choices=WORKLOADS)
    parser.add_argument("--policies", nargs="+", default=["adaptive", "fixed"], choices=POLICIES)
    parser.add_argument("--busy", type=int, default=2 * (os.cpu_count() or 1), help="busy processes when loaded")
    parser.add_argument("--busy-seconds", type=float, default=900, help="the busy processes end by themselves then")
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed to one measurement")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--worker", choices=WORKLOADS, help=argparse.SUPPRESS)
    parser.add_argument("--policy", choices=POLICIES, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.policy, args.folder)))
        return
    print(f"{os.cpu_count()} cores; loaded = {args.busy} busy processes beside the measurement", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="contention_") as tmp:
        folder = Path(tmp)
        prepare(folder, args.workloads)
        for workload in args.workloads:
            for policy in args.policies:
                row: dict[str, Any] = {"workload": workload, "policy": policy, "runnable_before": load_now()}
                row["idle"] = measure(workload, policy, folder, args.timeout)
                with Busy(args.busy, min(args.busy_seconds, args.timeout)):
                    row["loaded"] = measure(workload, policy, folder, args.timeout)
                rows.append(row)
                print("\n".join(table([row]).splitlines()[2:]), flush=True)
    text = table(rows)
    print("\n" + text)
    print(
        "\nloaded / idle: each pair measured one right after the other in fresh processes; 'idle' is the machine "
        "as it was (other users included). Training (data/) is not an explainer call: see the 'train' workload."
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"busy": args.busy, "cores": os.cpu_count(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
