"""A ResNet-18-sized network on synthetic 32 x 32 images: the factored solvers' time and peak memory at scale.

Issue 15, item 8: run once where a GPU is at hand (everything follows the model's device). The network is
ResNet-18's layout for 32 x 32 inputs (a 3 x 3 stem, four stages of two basic blocks, 64-512 channels,
BatchNorm, 10 classes: 11.2 M parameters at ``--width 64``), trained briefly with SGD on synthetic images
whose class shifts their mean (learnable, no download). For each solver: the time of its factors plus one
test point, then of ``--test`` further test points, the cost preview (``estimate_cost``) stated before the
work, and the peak memory (CUDA's allocator on a GPU, the process's resident peak on a CPU).

    python bench/gpu_scale.py                                   # 10,000 points, 100 test points, on cuda if present
    python bench/gpu_scale.py --n-train 512 --test 5 --width 8  # a CPU smoke run of the script (about a minute)
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import torch
from torch import nn

from influence_widgets import InfluenceExplainer
from influence_widgets.data import cross_entropy_per_example

WEIGHT_DECAY = 5e-4
DAMPING = 1e-3


class BasicBlock(nn.Module):
    def __init__(self, inputs: int, outputs: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.shortcut = nn.Sequential()
        if stride != 1 or inputs != outputs:
            self.shortcut = nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def resnet18(width: int = 64, classes: int = 10) -> nn.Module:
    widths = [width, 2 * width, 4 * width, 8 * width]
    layers: list[nn.Module] = [nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
    inputs = width
    for stage, outputs in enumerate(widths):
        for block in range(2):
            layers.append(BasicBlock(inputs, outputs, 2 if stage > 0 and block == 0 else 1))
            inputs = outputs
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(inputs, classes)]
    return nn.Sequential(*layers)


def synthetic_images(n: int, seed: int, classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """[n, 3, 32, 32] float32 images and their labels: noise plus a fixed pattern per class."""
    generator = torch.Generator().manual_seed(seed)
    patterns = torch.randn(classes, 3, 32, 32, generator=torch.Generator().manual_seed(1234))
    labels = torch.randint(0, classes, (n,), generator=generator)
    return torch.randn(n, 3, 32, 32, generator=generator) + 0.5 * patterns[labels], labels


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, device: torch.device) -> None:
    """A few epochs of SGD with momentum and weight decay (the influence is taken at these weights)."""
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=WEIGHT_DECAY)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=generator).split(128):
            optimiser.zero_grad()
            loss = cross_entropy_per_example(model(x[batch].to(device)), y[batch].to(device)).mean()
            loss.backward()
            optimiser.step()
    model.eval()


def peak_memory(device: torch.device) -> int:
    """Bytes: CUDA's allocator peak since the last reset, else the process's resident peak (VmHWM)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    with open("/proc/self/status") as handle:
        line = next(line for line in handle if line.startswith("VmHWM"))
    return int(line.split()[1]) * 1024


def timed(fn, device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--test", type=int, default=100)
    parser.add_argument("--width", type=int, default=64, help="channels of the first stage (ResNet-18: 64)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--solvers", nargs="+", default=["kfac", "ekfac"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    x_train, y_train = synthetic_images(args.n_train, seed=0)
    x_test, y_test = synthetic_images(args.test + 1, seed=1)
    model = resnet18(args.width).to(device)
    _, training = timed(lambda: train(model, x_train, y_train, args.epochs, device), device)
    p = sum(t.numel() for t in model.parameters())
    print(f"ResNet-18 layout, width {args.width}: {p:,} parameters, {args.n_train:,} training points on {device} "
          f"(trained {args.epochs} epochs in {training:.0f} s)")  # fmt: skip
    rows = []
    for name in args.solvers:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ex = InfluenceExplainer(
                model, cross_entropy_per_example, x_train.to(device), y_train.to(device),
                weight_decay=WEIGHT_DECAY, damping=DAMPING, solver=name, progress=False,
            )  # fmt: skip
            preview = ex.estimate_cost(n_test=1)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            _, first = timed(lambda ex=ex: ex.influence(x_test[:1].to(device), y_test[:1].to(device)), device)
            rest = x_test[1:].to(device), y_test[1:].to(device)
            _, more = timed(lambda ex=ex, rest=rest: ex.influence(*rest), device)
        row = {
            "solver": name,
            "factors_and_one_test_point_s": first,
            "further_test_points": args.test,
            "further_test_points_s": more,
            "peak_memory_bytes": peak_memory(device),
            "preview": str(preview).splitlines()[0],
        }
        rows.append(row)
        print(f"{name}: factors + 1 test point {first:.1f} s; {args.test} more test points {more:.1f} s; "
              f"peak memory {row['peak_memory_bytes'] / 2**30:.2f} GiB; preview: {row['preview']}")  # fmt: skip
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"parameters": p, "n_train": args.n_train, "device": str(device), "rows": rows}, handle)


if __name__ == "__main__":
    main()
