"""Kronfluence (Grosse et al. 2023) as a peer of ``bench/peer_tasks.py``, and a check of its alignment with ours.

Kronfluence fits its factors on the *mean* of the per-example Fisher: covariances and EK-FAC's Lambda are
divided by the number of examples, and ``damping_factor`` is added to the eigenvalues (K-FAC: the products
lambda_G lambda_A; EK-FAC: the corrected Lambda), so its curvature is F + damping_factor I with F the
Fisher of the mean loss. It has no weight decay, so ``damping_factor`` = wd + damping gives the shift of
our H. Its pairwise score is +g_test^T (F + shift I)^-1 g_train (the gradient of ``compute_measurement``,
here the test point's loss, against that of the training point's loss): -1 times I_up,loss, no 1/n.
By default (``use_empirical_fisher=False``) it calls ``compute_train_loss(sample=True)`` for the factors:
labels drawn from the model's softmax, one per point and seeded (ours: the exact expectation over labels).

Only torch is imported at the top: this module runs in Kronfluence's environment (``bench/.venvs/kronfluence``).

    bench/.venvs/kronfluence/bin/python bench/peer_kronfluence.py --check    # alignment on a linear layer
"""

from __future__ import annotations

import argparse
import copy
import logging
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

PerExample = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
DTYPE_FIELDS = {
    "factor": (
        "activation_covariance_dtype",
        "gradient_covariance_dtype",
        "per_sample_gradient_dtype",
        "lambda_dtype",
    ),
    "score": ("per_sample_gradient_dtype", "precondition_dtype", "score_dtype"),
}


def make_task(per_example: PerExample, sampler: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """A ``kronfluence.Task``: summed per-example losses of a batch; ``sample=True`` swaps in sampled labels."""
    from kronfluence.task import Task

    class SummedLoss(Task):
        def compute_train_loss(self, batch: Any, model: nn.Module, sample: bool = False) -> torch.Tensor:
            x, y = batch
            outputs = model(x)
            if sample:
                with torch.no_grad():
                    y = sampler(outputs)
            return per_example(outputs, y).sum()

        def compute_measurement(self, batch: Any, model: nn.Module) -> torch.Tensor:
            x, y = batch
            return per_example(model(x), y).sum()

    return SummedLoss()


def categorical(outputs: torch.Tensor) -> torch.Tensor:
    """One label per row from the softmax of the logits (Kronfluence's true-Fisher recipe for cross-entropy)."""
    return torch.multinomial(torch.softmax(outputs.detach(), dim=-1), 1).squeeze(-1)


def bernoulli(outputs: torch.Tensor) -> torch.Tensor:
    """One 0/1 label per row from the sigmoid of a single logit."""
    return torch.bernoulli(torch.sigmoid(outputs.detach().squeeze(-1)))


def pairwise_scores(
    model: nn.Module,
    task: Any,
    train: torch.utils.data.Dataset,
    query: torch.utils.data.Dataset,
    shift: float,
    settings: dict[str, Any],
) -> torch.Tensor:
    """Fit Kronfluence's factors on ``train`` and score every (query, train) pair: raw scores [n_query, n_train].

    ``settings``: ``strategy`` ("ekfac" or "kfac"), ``empirical`` (use_empirical_fisher), ``batch``
    (per-device batch for factors and training points), ``float64`` (every Kronfluence dtype in float64),
    ``seed`` (for the sampled labels). Factors and scores go to a temporary folder, removed afterwards.
    """
    from kronfluence.analyzer import Analyzer, prepare_model
    from kronfluence.arguments import FactorArguments, ScoreArguments

    torch.manual_seed(settings.get("seed", 0))
    wide = {name: torch.float64 for name in DTYPE_FIELDS["factor"]} if settings.get("float64") else {}
    factor_args = FactorArguments(
        strategy=settings.get("strategy", "ekfac"),
        use_empirical_fisher=settings.get("empirical", False),
        **wide,
    )
    wide = {name: torch.float64 for name in DTYPE_FIELDS["score"]} if settings.get("float64") else {}
    score_args = ScoreArguments(damping_factor=shift, **wide)
    batch = settings.get("batch", 256)
    prepared = prepare_model(copy.deepcopy(model), task)
    folder = tempfile.mkdtemp(prefix="kronfluence_")
    try:
        analyzer = Analyzer(
            "bench",
            prepared,
            task,
            cpu=True,
            log_level=logging.WARNING,
            disable_tqdm=True,
            output_dir=folder,
        )
        analyzer.fit_all_factors(
            "factors", train, per_device_batch_size=batch, factor_args=factor_args, overwrite_output_dir=True
        )
        analyzer.compute_pairwise_scores(
            "scores",
            "factors",
            query,
            train,
            per_device_query_batch_size=len(query),
            per_device_train_batch_size=batch,
            score_args=score_args,
            overwrite_output_dir=True,
        )
        return analyzer.load_pairwise_scores("scores")["all_modules"].clone()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run(task: Any, x: torch.Tensor, y: torch.Tensor, settings: dict[str, Any]) -> tuple[torch.Tensor, Any]:
    """The worker's method (``peer_tasks.Task`` in, raw scores out): +g_test^T (F + (wd + damping) I)^-1 g_train."""
    from torch.utils.data import TensorDataset

    sampler = bernoulli if task.spec["binary"] else categorical
    loss = make_task(task.per_example, sampler)
    train = TensorDataset(task.x_train, task.y_train)
    scores = pairwise_scores(task.model, loss, train, TensorDataset(x, y), task.shift, settings)
    return scores, None


# ---------------------------------------------------------------- the alignment check


def squared_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1/2 (f - y)^2 per example, for one output (the output Hessian is 1)."""
    return 0.5 * (outputs.squeeze(-1) - targets) ** 2


def linear_problem(
    n: int = 200, d: int = 12, shift: float = 0.05, seed: int = 0
) -> tuple[nn.Module, torch.Tensor, torch.Tensor, float, torch.Tensor]:
    """One ``nn.Linear(d, 1)`` with 1/2 (f - y)^2 on random data in float64, and the exact damped I_up,loss
    of its first 5 points against all: (model, x, y, shift, scores [5, n]).

    With one output and a unit output Hessian the Hessian of the mean loss is exactly A = (1/n) sum abar abar^T
    (abar = [x; 1]) and K-FAC's G is 1: K-FAC and EK-FAC are both exact here.
    """
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    y = torch.randn(n, generator=generator, dtype=torch.float64)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(d, 1)).double()  # Kronfluence wraps children: a bare Linear recurses
    abar = torch.cat([x, torch.ones(n, 1, dtype=torch.float64)], dim=1)
    g = (model(x).squeeze(-1) - y).detach()[:, None] * abar  # per-example gradients of [W | b]
    hessian = abar.T @ abar / n + shift * torch.eye(d + 1, dtype=torch.float64)
    return model, x, y, shift, -(torch.linalg.solve(hessian, g[:5].T).T @ g.T)


def check() -> float:
    """Kronfluence's K-FAC and EK-FAC against ``linear_problem``'s exact scores, in float64 (I_up,loss = -1 x
    Kronfluence's score); returns the largest relative error. The 'sampled' loss has output gradient 1 for
    every point (``sample=True`` returns 1/2 (f - (f - 1))^2), so that G = 1 exactly, not by sampling."""
    from torch.utils.data import TensorDataset

    model, x, y, shift, exact = linear_problem()

    def unit_gradient(outputs: torch.Tensor) -> torch.Tensor:
        return outputs.detach().squeeze(-1) - 1.0

    task = make_task(squared_error, unit_gradient)
    worst = 0.0
    for strategy in ("kfac", "ekfac"):
        settings = {"strategy": strategy, "float64": True, "batch": 64}
        raw = pairwise_scores(model, task, TensorDataset(x, y), TensorDataset(x[:5], y[:5]), shift, settings)
        error = float((-raw - exact).norm() / exact.norm())
        print(f"Kronfluence {strategy}: ||(-1 x Kronfluence) - exact|| / ||exact|| = {error:.2e}")
        worst = max(worst, error)
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="Kronfluence against the exact solve on a linear layer")
    args = parser.parse_args()
    if args.check:
        worst = check()
        print("alignment: ok" if worst < 1e-8 else f"alignment: FAILED ({worst:.2e})")
        raise SystemExit(0 if worst < 1e-8 else 1)
    parser.print_help()


if __name__ == "__main__":
    main()
