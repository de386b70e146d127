"""Worker for ``bench/peers.py``: run one influence method on one saved task, in a process of its own.

The orchestrator saves each task (model state_dict, tensors, settings) to a folder and starts this
script once per method, with the Python of the virtual environment that holds the method's package
(this project's, pyDVL's, Captum's or Kronfluence's), so that every method gets a fresh process and its own peak
memory (``ru_maxrss``). Only ``torch`` is imported at the top; the package under test is imported
inside the method that needs it. The model classes come from ``influence_widgets/data/models.py``,
loaded by path so that the peers' environments need not install this project.

    python bench/peer_tasks.py --task-dir DIR --method pydvl-cg --settings '{"rtol": 1e-4}' --out-dir OUT

Writes ``OUT/result.json`` (timings in seconds, memory in MiB, versions, error if any) and
``OUT/scores.npy`` (the method's raw scores for the test points, [n_test, n_train], in the method's
own sign and scale; ``peers.py`` aligns them).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import itertools
import json
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, jvp, vmap

REPO = Path(__file__).resolve().parents[1]
BATCH = 256  # training points per chunk, for every method that takes a batch size (ours: InfluenceExplainer's default)

Scores = torch.Tensor
Fitted = tuple[Scores, Any]  # the raw scores [n_test, n_train] and the object that made them
Method = Callable[["Task", torch.Tensor, torch.Tensor, dict[str, Any]], Fitted]


# ---------------------------------------------------------------- the task


@functools.cache
def models_module() -> ModuleType:
    """``influence_widgets/data/models.py`` without importing the package (it needs only torch); loaded once,
    so that no method's timing pays for executing it."""
    spec = importlib.util.spec_from_file_location("iw_models", REPO / "influence_widgets" / "data" / "models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class PerExampleLoss(nn.Module):
    """A per-example loss as a module whose ``reduction`` is ``"none"`` (what Captum looks for)."""

    reduction = "none"

    def __init__(self, binary: bool) -> None:
        super().__init__()
        self.binary = binary

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.binary:
            return F.binary_cross_entropy_with_logits(outputs.squeeze(-1), targets, reduction="none")
        return F.cross_entropy(outputs, targets, reduction="none")


@dataclass
class Task:
    """A trained model, its data and the damped system H = (1/n) sum hess L_i + (wd + damping) I."""

    folder: Path
    spec: dict[str, Any]
    model: nn.Module
    per_example: PerExampleLoss
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def n(self) -> int:
        return len(self.y_train)

    @property
    def shift(self) -> float:
        """The multiple of the identity in H: weight decay plus damping."""
        return self.spec["weight_decay"] + self.spec["damping"]

    @property
    def checkpoint(self) -> str:
        return str(self.folder / "model.pt")

    def mean_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The training loss averaged over a batch, without the regulariser."""
        return self.per_example(outputs, targets).mean()


def tanh_mlp(widths: list[int]) -> nn.Sequential:
    """Linear layers of the given widths with tanh between them (``bench/million.py``'s 64-1000-1000-10)."""
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(itertools.pairwise(widths)):
        layers += [nn.Linear(a, b)] + ([nn.Tanh()] if k < len(widths) - 2 else [])
    return nn.Sequential(*layers)


def build_model(spec: dict[str, Any]) -> nn.Module:
    """The architecture named in the task, in the task's dtype, with the saved weights."""
    dtype = getattr(torch, spec["dtype"])
    if spec["model_class"] == "TanhMLP":
        return tanh_mlp(**spec["model_kwargs"]).to(dtype)
    module = models_module()
    return getattr(module, spec["model_class"])(**spec["model_kwargs"]).to(dtype)


def load_task(folder: Path) -> Task:
    spec = json.loads((folder / "task.json").read_text())
    model = build_model(spec)
    model.load_state_dict(torch.load(folder / "model.pt", weights_only=True))
    model.eval()
    data = torch.load(folder / "data.pt", weights_only=True)
    loss = PerExampleLoss(spec["binary"])
    return Task(folder, spec, model, loss, data["x_train"], data["y_train"], data["x_test"], data["y_test"])


# ---------------------------------------------------------------- gradients, Hessian, floor


def flat_parameters(model: nn.Module) -> tuple[torch.Tensor, Callable[[torch.Tensor], dict[str, torch.Tensor]]]:
    """theta as one [p] vector and the map back to named tensors."""
    named = {k: v.detach() for k, v in model.named_parameters()}
    sizes = [v.numel() for v in named.values()]

    def unflatten(theta: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: piece.view(v.shape) for (k, v), piece in zip(named.items(), torch.split(theta, sizes))}

    return torch.cat([v.reshape(-1) for v in named.values()]), unflatten


def per_example_grads(task: Task, x: torch.Tensor, y: torch.Tensor, model: nn.Module | None = None) -> torch.Tensor:
    """[b, p] rows of nabla_theta loss(z_i) by ``torch.func.vmap(grad)``, in chunks of ``BATCH``."""
    model = task.model if model is None else model
    theta, unflatten = flat_parameters(model)

    def single(t: torch.Tensor, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, unflatten(t), (xi.unsqueeze(0),))
        return task.per_example(out, yi.unsqueeze(0)).sum()

    one = vmap(grad(single), in_dims=(None, 0, 0))
    return torch.cat([one(theta, x[i : i + BATCH], y[i : i + BATCH]) for i in range(0, len(x), BATCH)])


def dense_hessian(task: Task, model: nn.Module, block: int = 128) -> torch.Tensor:
    """(1/n) sum_i hess loss(z_i), built from blocks of forward-over-reverse Hessian-vector products."""
    theta, unflatten = flat_parameters(model)
    p = theta.numel()
    hessian = torch.zeros(p, p, dtype=theta.dtype)
    for i in range(0, task.n, BATCH):
        x, y = task.x_train[i : i + BATCH].to(theta.dtype), task.y_train[i : i + BATCH]
        y = y.to(theta.dtype) if task.spec["binary"] else y

        def total(t: torch.Tensor, x: torch.Tensor = x, y: torch.Tensor = y) -> torch.Tensor:
            return task.per_example(functional_call(model, unflatten(t), (x,)), y).sum()

        def hvp(v: torch.Tensor, total: Callable = total) -> torch.Tensor:
            return jvp(grad(total), (theta,), (v,))[1]

        eye = torch.eye(p, dtype=theta.dtype)
        for start in range(0, p, block):
            hessian[:, start : start + block] += vmap(hvp, in_dims=1, out_dims=1)(eye[:, start : start + block])
    return hessian / task.n


def exact_reference(task: Task) -> dict[str, Any]:
    """I_up,loss = -g_test^T H^-1 g_train by a dense float64 solve, independent of every method under test."""
    model = build_model(task.spec).double()
    model.load_state_dict({k: v.double() for k, v in task.model.state_dict().items()})
    model.eval()
    double = Task(task.folder, task.spec, model, task.per_example, *_as_double(task))
    raw = dense_hessian(double, model)
    eigenvalues = torch.linalg.eigvalsh(raw)
    system = raw + task.shift * torch.eye(len(raw), dtype=raw.dtype)
    g_train = per_example_grads(double, double.x_train, double.y_train)
    g_test = per_example_grads(double, double.x_test, double.y_test)
    s_test = torch.linalg.solve(system, g_test.T).T
    return {
        "scores": -(s_test @ g_train.T),
        "hessian_lambda_min": float(eigenvalues[0]),
        "hessian_lambda_max": float(eigenvalues[-1]),
    }


def _as_double(task: Task) -> tuple[torch.Tensor, ...]:
    def cast(y: torch.Tensor) -> torch.Tensor:
        return y.double() if y.is_floating_point() else y

    return task.x_train.double(), cast(task.y_train), task.x_test.double(), cast(task.y_test)


def floor_seconds(task: Task, repeats: int = 5) -> float:
    """The floor: one pass of per-example gradients over the training set, best of ``repeats``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        per_example_grads(task, task.x_train, task.y_train)
        times.append(time.perf_counter() - start)
    return min(times)


def peak_rss_mib() -> float:
    """This process's peak resident set so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def own_peak_rss_mib() -> float:
    """This process's own peak resident set (``VmHWM``): unlike ``ru_maxrss``, which a process started by
    fork and exec inherits from its parent (Linux carries the old maximum over exec), it starts afresh."""
    for line in Path("/proc/self/status").read_text().splitlines() if Path("/proc/self/status").exists() else []:
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return peak_rss_mib()


# ---------------------------------------------------------------- this project


def _explainer(task: Task, settings: dict[str, Any]) -> Any:
    from influence_widgets import InfluenceExplainer
    from influence_widgets.data import binary_logistic_per_example, cross_entropy_per_example

    loss = binary_logistic_per_example if task.spec["binary"] else cross_entropy_per_example
    return InfluenceExplainer(
        task.model,
        loss,
        task.x_train,
        task.y_train,
        weight_decay=task.spec["weight_decay"],
        damping=task.spec["damping"],
        solver=settings.get("solver", "auto"),
        solver_options=settings.get("options"),
        batch_size=BATCH,
        progress=False,
    )


def run_ours(task: Task, x: torch.Tensor, y: torch.Tensor, settings: dict[str, Any]) -> Fitted:
    """``InfluenceExplainer(...).influence``: I_up,loss, the paper's sign, no 1/n."""
    explainer = _explainer(task, settings)
    return explainer.influence(x, y), explainer


def ours_scoring(task: Task, ex: Any, x: torch.Tensor, y: torch.Tensor, settings: dict[str, Any]) -> dict[str, Any]:
    """Times once s_test is known: a repeated ``influence`` (cache hit) and train gradients @ s_test (fresh)."""
    start = time.perf_counter()
    ex.influence(x, y)
    rescore = time.perf_counter() - start
    s_test = ex.s_test(x, y)
    fresh = _explainer(task, settings)
    start = time.perf_counter()
    _ = -(s_test @ fresh.train_gradients().T)
    from_s_test = time.perf_counter() - start
    extra = {"seconds_rescore_cached": rescore, "seconds_score_from_s_test": from_s_test}
    if ex.diagnostics:
        extra["diagnostics"] = ex.diagnostics[-1].summary()
    return extra


# ---------------------------------------------------------------- pyDVL


def even_batch(n: int, most: int = 2 * BATCH) -> int:
    """The largest divisor of n up to ``most``: pyDVL's Hessian operators average the batch means with equal
    weights (``ChunkAveraging``), which is the mean over points only when all batches are the same size."""
    return max(d for d in range(1, min(n, most) + 1) if n % d == 0)


def run_pydvl(task: Task, x: torch.Tensor, y: torch.Tensor, settings: dict[str, Any]) -> Fitted:
    """pyDVL 0.10 ``<Class>(model, loss, regularization=wd + damping, ...).fit(loader).influences``.

    pyDVL's Hessian is that of its (mean) loss, plus ``regularization`` I; its score is
    +g_test^T H^-1 g_train (no minus sign, no 1/n). ``EkfacInfluence`` takes no loss (cross-entropy, its
    own Fisher of the mean loss) and ``hessian_regularization`` instead. ``train_chunk``: score that many
    training points per ``influences`` call (pyDVL holds all their gradients at once; 1.08 M parameters x
    1,347 points would be 5.8 GB).
    """
    import pydvl.influence.torch as pydvl_torch
    from torch.utils.data import DataLoader, TensorDataset

    settings = dict(settings)
    name = settings.pop("class")
    cls = getattr(pydvl_torch, name)
    batch = settings.pop("loader_batch", even_batch(task.n))
    chunk = settings.pop("train_chunk", task.n)
    loader = DataLoader(TensorDataset(task.x_train, task.y_train), batch_size=batch)
    if name == "EkfacInfluence":
        model = cls(task.model, hessian_regularization=task.shift, **settings).fit(loader)
    else:
        model = cls(task.model, task.mean_loss, regularization=task.shift, **settings).fit(loader)
    pieces = [
        model.influences(x, y, task.x_train[i : i + chunk], task.y_train[i : i + chunk])
        for i in range(0, task.n, chunk)
    ]
    return torch.cat(pieces, dim=1), model


# ---------------------------------------------------------------- Captum


def captum_class(name: str) -> type:
    """A public class of ``captum.influence``, else from its private module (Arnoldi, in Captum 0.9)."""
    import captum.influence as public

    if hasattr(public, name):
        return getattr(public, name)
    from captum.influence._core import arnoldi_influence_function as private

    return getattr(private, name)


def run_captum(task: Task, x: torch.Tensor, y: torch.Tensor, settings: dict[str, Any]) -> Fitted:
    """Captum ``<Class>(model, train_dataset, checkpoint, loss_fn=per-example, ...).influence((x, y))``.

    Captum's Hessian is that of the *summed* training loss, so ``hessian_reg`` is n (wd + damping)
    and its score g_test^T (n H)^-1 g_train is -1/n times ours.
    """
    from torch.utils.data import TensorDataset

    settings = dict(settings)
    cls = captum_class(settings.pop("class"))
    dataset = TensorDataset(task.x_train, task.y_train)
    model = cls(
        task.model,
        dataset,
        task.checkpoint,
        loss_fn=task.per_example,
        batch_size=settings.pop("loader_batch", BATCH),
        hessian_reg=task.n * task.shift,
        **settings,
    )
    return model.influence((x, y)), model


# ---------------------------------------------------------------- Kronfluence


def run_kronfluence(task: Task, x: torch.Tensor, y: torch.Tensor, settings: dict[str, Any]) -> Fitted:
    """Kronfluence ``Analyzer.fit_all_factors`` + ``compute_pairwise_scores`` (``bench/peer_kronfluence.py``):
    +g_test^T (F + damping_factor I)^-1 g_train with F the Fisher of the mean loss, damping_factor = wd + damping."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from peer_kronfluence import run

    return run(task, x, y, settings)


METHODS: dict[str, Method] = {
    "ours": run_ours,
    "pydvl": run_pydvl,
    "captum": run_captum,
    "kronfluence": run_kronfluence,
}


# ---------------------------------------------------------------- one run


def versions() -> dict[str, str]:
    """Versions of torch and whichever packages under test this environment holds."""
    from importlib import metadata

    found = {"python": sys.version.split()[0], "torch": torch.__version__}
    for package in ("numpy", "pyDVL", "captum", "kronfluence", "influence_widgets"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    return found


def warm_up(task: Task, method: Method, settings: dict[str, Any]) -> None:
    """One untimed run on 16 training points and 1 test point, so that one-time costs (imports done
    lazily, torch.func's first calls, BLAS start-up) fall outside every timing alike."""
    small = replace(task, x_train=task.x_train[:16], y_train=task.y_train[:16])
    per_example_grads(small, small.x_train, small.y_train)
    with contextlib.suppress(Exception):  # the timed runs will report it
        method(small, task.x_test[:1], task.y_test[:1], settings)


def timed(fn: Callable[[], Fitted], repeats: int, budget: float) -> tuple[Fitted, float, int]:
    """Best wall time of up to ``repeats`` fresh end-to-end runs, the last result and the runs made: a
    further run only while the runs so far and one more of the slowest fit in ``budget`` seconds, so that
    millisecond methods get several samples and slow ones run once (the same rule for every method)."""
    best, slowest, spent, runs, result = float("inf"), 0.0, 0.0, 0, None
    while runs < max(1, repeats) and (runs == 0 or spent + slowest <= budget):
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
        best, slowest, spent, runs = min(best, seconds), max(slowest, seconds), spent + seconds, runs + 1
    return result, best, runs


def measure(
    task: Task,
    family: str,
    settings: dict[str, Any],
    n_test: int,
    repeats: int,
    budget: float,
    save: Callable[[dict], None],
    once: bool = False,
) -> dict[str, Any]:
    """The floor, memory after it, an untimed warm-up, times for 1 and ``n_test`` test points, peak memory.

    ``save`` gets the record after each step, so that a run stopped for time still tells what it did.
    ``once``: only the warm-up and one timed run for ``n_test`` points (``measure_once``).
    """
    if once:
        return measure_once(task, family, settings, n_test)
    method = METHODS[family]
    record: dict[str, Any] = {"floor_seconds": floor_seconds(task), "rss_baseline_mib": peak_rss_mib()}
    warm_up(task, method, settings)
    x, y = task.x_test[:n_test], task.y_test[:n_test]
    try:
        _, record["seconds_1"], record["runs_1"] = timed(lambda: method(task, x[:1], y[:1], settings), repeats, budget)
        save(record)
        (scores, fitted), record["seconds_m"], record["runs_m"] = timed(
            lambda: method(task, x, y, settings), repeats, budget
        )
        record["rss_peak_mib"] = peak_rss_mib()
        if family == "ours":
            record.update(ours_scoring(task, fitted, x, y, settings))
        record["scores"] = scores.detach().double().cpu()
    except Exception as error:  # a peer failing on a task is a result, not a crash
        record["rss_peak_mib"] = peak_rss_mib()
        record["error"] = f"{type(error).__name__}: {error}".strip()[:500]
        record["traceback"] = traceback.format_exc()[-3000:]
    return record


PACKAGES = {"ours": "influence_widgets", "pydvl": "pydvl.influence.torch", "captum": "captum.influence"}
PACKAGES["kronfluence"] = "kronfluence.analyzer"


def measure_once(task: Task, family: str, settings: dict[str, Any], n_test: int) -> dict[str, Any]:
    """For slow methods (``bench/factored.py``): one fresh run for ``n_test`` test points (factorisation +
    scores, ``seconds_m``), no floor, no 1-point timing. Untimed before it: the package's import and one pass of
    per-example gradients on 16 points (not a run of the method: on 16 points a rank-64 Lanczos alone can
    take longer than the real run). Memory: the process's own peak (``VmHWM``)."""
    method = METHODS[family]
    record: dict[str, Any] = {"rss_baseline_mib": own_peak_rss_mib()}
    importlib.import_module(PACKAGES[family])
    per_example_grads(task, task.x_train[:16], task.y_train[:16])
    x, y = task.x_test[:n_test], task.y_test[:n_test]
    try:
        start = time.perf_counter()
        scores, _ = method(task, x, y, settings)
        record["seconds_m"] = time.perf_counter() - start
        record["scores"] = scores.detach().double().cpu()
    except Exception as error:  # a peer failing on a task is a result, not a crash
        record["error"] = f"{type(error).__name__}: {error}".strip()[:500]
        record["traceback"] = traceback.format_exc()[-3000:]
    record["rss_peak_mib"] = own_peak_rss_mib()
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task-dir", type=Path, required=True)
    parser.add_argument("--method", required=True, help="a key of METHODS: ours, pydvl, captum or kronfluence")
    parser.add_argument("--settings", default="{}", help="JSON keyword arguments for the method")
    parser.add_argument("--n-test", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget", type=float, default=2.0, help="seconds that further timed runs may take")
    parser.add_argument("--reference", action="store_true", help="compute the exact float64 reference instead")
    parser.add_argument("--once", action="store_true", help="one timed run for --n-test points, no floor")
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args()
    threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
    torch.set_num_threads(threads)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    task = load_task(args.task_dir)
    common = {"method": args.method, "threads": threads, "versions": versions()}

    def save(record: dict[str, Any]) -> None:
        shown = {k: v for k, v in record.items() if k != "scores"}
        (args.out_dir / "result.json").write_text(json.dumps({**shown, **common}, indent=2, default=str))

    if args.reference:
        task.x_test, task.y_test = task.x_test[: args.n_test], task.y_test[: args.n_test]
        record = exact_reference(task)
    else:
        settings = json.loads(args.settings)
        record = measure(task, args.method, settings, args.n_test, args.repeats, args.budget, save, args.once)
    if "scores" in record:
        import numpy as np

        np.save(args.out_dir / "scores.npy", record["scores"].numpy())
    save(record)


if __name__ == "__main__":
    main()
