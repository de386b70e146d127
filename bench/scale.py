"""Larger than memory: influence over 200,000 training points streamed from disk, G never held.

A synthetic 10-class set (inputs [n, 64], float32) is written to a memory-mapped file and read through
a ``torch.utils.data.Dataset``; an MLP with 50,826 parameters is fit with a few epochs of Adam. G would
take n x p x 4 bytes (38 GiB here); the explainer streams it in chunks of ``--chunk`` points instead.

Reported, side by side in one run: the cost preview against the measured time, the throughput of the
streamed scoring pass (training points scored per second, 10 test points), the peak resident memory,
and random projection to k dimensions: the speed-up of scoring 10 further test points once the
projected gradients are cached, with the overlap of its top-10 lists against the exact scores.

    python bench/scale.py [--n 200000] [--chunk 1024] [--dims 256 2048] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from influence_widgets import InfluenceExplainer, LissaOptions
from influence_widgets.data import cross_entropy_per_example

N_FEATURES, N_CLASSES = 64, 10


class MemmapDataset(Dataset):
    """(x_i, y_i) read from memory-mapped files: the inputs live on disk, not in memory."""

    def __init__(self, x_path: Path, y_path: Path, n: int) -> None:
        self.x = np.memmap(x_path, dtype=np.float32, mode="r", shape=(n, N_FEATURES))
        self.y = np.memmap(y_path, dtype=np.int64, mode="r", shape=(n,))

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(np.array(self.x[i])), torch.tensor(int(self.y[i]))


def write_synthetic(directory: Path, n: int, seed: int) -> MemmapDataset:
    """Gaussian classes around random centres, with 5% of labels noisy, written chunk by chunk."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.0, (N_CLASSES, N_FEATURES)).astype(np.float32)
    x = np.memmap(directory / "x.f32", dtype=np.float32, mode="w+", shape=(n, N_FEATURES))
    y = np.memmap(directory / "y.i64", dtype=np.int64, mode="w+", shape=(n,))
    for start in range(0, n, 50_000):
        stop = min(n, start + 50_000)
        labels = rng.integers(0, N_CLASSES, stop - start)
        x[start:stop] = centres[labels] + rng.normal(0, 1.5, (stop - start, N_FEATURES)).astype(np.float32)
        noisy = rng.random(stop - start) < 0.05
        labels[noisy] = rng.integers(0, N_CLASSES, int(noisy.sum()))
        y[start:stop] = labels
    x.flush()
    y.flush()
    return MemmapDataset(directory / "x.f32", directory / "y.i64", n)


def train(dataset: Dataset, weight_decay: float, epochs: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(N_FEATURES, 256), nn.Tanh(), nn.Linear(256, 128), nn.Tanh(), nn.Linear(128, 10))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=weight_decay)
    loader = DataLoader(dataset, batch_size=512, shuffle=True, generator=torch.Generator().manual_seed(seed))
    for _ in range(epochs):
        for x, y in loader:
            optimiser.zero_grad()
            cross_entropy_per_example(model(x), y).mean().backward()
            optimiser.step()
    return model.eval()


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def top10_overlap(approx: torch.Tensor, exact: torch.Tensor) -> float:
    """Mean share of the 10 most harmful and the 10 most helpful points that both rankings agree on."""
    shares = []
    for a, e in zip(approx, exact):
        for sign in (1, -1):
            top_a = set(torch.topk(sign * a, 10).indices.tolist())
            top_e = set(torch.topk(sign * e, 10).indices.tolist())
            shares.append(len(top_a & top_e) / 10)
    return float(np.mean(shares))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--dims", type=int, nargs="+", default=[256, 2048])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    weight_decay, damping = 1e-3, 0.05  # damping above |lambda_min| (about 0.03 here), the paper's rule
    with tempfile.TemporaryDirectory() as tmp:
        dataset = write_synthetic(Path(tmp), args.n, args.seed)
        model = train(dataset, weight_decay, args.epochs, args.seed)
        test = [dataset[i] for i in range(20)]  # stand-ins for test points; any inputs of the right shape do
        x_test = torch.stack([x for x, _ in test]) + 0.1
        y_test = torch.stack([y for _, y in test])
        # LiSSA with its scale from Lanczos on a 4,096-point sample and a fixed depth: s_test costs depth
        # minibatch products instead of passes over all the training points
        sample_x, sample_y = (torch.stack(t) for t in zip(*(dataset[i] for i in range(4096))))
        sample = InfluenceExplainer(
            model, cross_entropy_per_example, sample_x, sample_y, weight_decay=weight_decay, damping=damping
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the sample is damped like the explainer; only lambda_max is used
            lambda_max = sample.curvature(steps=20).eigenvalues.lambda_max
        lissa = LissaOptions(scale=1.5 * lambda_max, depth=300, batch_size=128, seed=args.seed)
        ex = InfluenceExplainer(
            model,
            cross_entropy_per_example,
            dataset,
            None,
            weight_decay=weight_decay,
            damping=damping,
            solver="lissa",
            solver_options=lissa,
            batch_size=args.chunk,
            cache_gradients=False,
            progress=False,
        )
        preview = ex.estimate_cost(n_test=10, sample_size=256)
        _, first_seconds = timed(lambda: ex.influence(x_test[:10], y_test[:10]))  # s_test, then one streamed pass
        _, seconds = timed(lambda: ex.influence(x_test[:10], y_test[:10]))  # s_test cached: the streamed pass alone
        ex.s_test(x_test[10:], y_test[10:])
        report = {
            "n_train": ex.n_train,
            "n_params": ex.n_params,
            "chunk": args.chunk,
            "gradient_matrix_gib": ex.n_train * ex.n_params * 4 / 2**30,
            "preview_seconds": preview.seconds,
            "preview": preview.summary(),
            "first_influence_seconds": first_seconds,
            "streamed_pass_seconds": seconds,
            "points_scored_per_second": ex.n_train / seconds,
            "peak_rss_gib_after_streaming": peak_rss_gib(),
            "projections": [],
        }
        exact_next, exact_next_seconds = timed(lambda: ex.influence(x_test[10:], y_test[10:]))
        report["streamed_next_10_seconds"] = exact_next_seconds
        for dim in args.dims:
            _, build = timed(lambda dim=dim: ex.approximate_influence(x_test[:10], y_test[:10], dim))
            approx, query = timed(lambda dim=dim: ex.approximate_influence(x_test[10:], y_test[10:], dim))
            report["projections"].append(
                {
                    "dim": dim,
                    "first_query_seconds": build,
                    "next_10_seconds": query,
                    "speed_up_next_10": exact_next_seconds / query,
                    "top10_overlap": top10_overlap(approx, exact_next),
                    "pearson": float(np.corrcoef(approx.ravel().numpy(), exact_next.ravel().numpy())[0, 1]),
                }
            )
        report["peak_rss_gib"] = peak_rss_gib()
    print(
        f"{report['n_train']:,} training points streamed from disk, {report['n_params']:,} parameters, chunks of "
        f"{args.chunk} (G would be {report['gradient_matrix_gib']:.1f} GiB)"
    )
    print(f"cost preview: {report['preview']}")
    print(
        f"influence of 10 new test points: {first_seconds:.1f} s measured, {preview.seconds:.1f} s previewed; the "
        f"streamed scoring pass alone: {seconds:.1f} s, {report['points_scored_per_second']:,.0f} training points "
        "scored per second"
    )
    for row in report["projections"]:
        print(
            f"projection to k={row['dim']}: first query {row['first_query_seconds']:.1f} s, next 10 test points "
            f"{row['next_10_seconds']:.3f} s ({row['speed_up_next_10']:.0f}x faster than streaming again), top-10 "
            f"overlap {row['top10_overlap']:.2f}, Pearson {row['pearson']:.3f}"
        )
    print(f"peak resident memory: {report['peak_rss_gib']:.2f} GiB")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
