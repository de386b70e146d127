"""Scoring from linear layers' gradient factors equals scoring from the per-example gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from influence_widgets import InfluenceExplainer
from influence_widgets.data import cross_entropy_per_example

pytestmark = pytest.mark.filterwarnings("ignore::influence_widgets.core.errors.NotStationaryWarning")


class Twice(nn.Module):
    """One linear layer applied twice: its per-example gradient is a sum of two outer products."""

    def __init__(self) -> None:
        super().__init__()
        self.square = nn.Linear(6, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.square(torch.tanh(self.square(x)))))


def data(seed: int = 0):
    torch.manual_seed(seed)
    return torch.randn(90, 6, dtype=torch.float64), torch.randint(0, 3, (90,))


def pair(model, x, y, **kwargs):
    kwargs = {"weight_decay": 0.01, "damping": 2.0, "progress": False, "solver": "exact", **kwargs}
    cached = InfluenceExplainer(model, cross_entropy_per_example, x, y, **kwargs)
    streamed = InfluenceExplainer(model, cross_entropy_per_example, x, y, cache_gradients=False, **kwargs)
    return cached, streamed


@pytest.mark.parametrize("params", [None, ["2.weight", "2.bias"], ["0.weight", "2.weight"]])
def test_an_mlp_is_scored_from_its_factors_exactly(params):
    x, y = data()
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    cached, streamed = pair(model, x, y, params=params)
    expected = cached.influence(x[:4], y[:4])
    got = streamed.influence(x[:4], y[:4])
    assert streamed.layer_factors() is not None and streamed.cached_train_gradients() is None
    torch.testing.assert_close(got, expected, rtol=1e-11, atol=1e-13)
    assert all(not m._forward_hooks for m in streamed.model.modules()), "no hook is left behind"
    assert all(not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("kind", ["twice", "layer norm", "convolution"])
def test_models_whose_gradients_are_not_one_outer_product_stream_g(kind):
    x, y = data(1)
    if kind == "twice":
        model = Twice().double()
    elif kind == "layer norm":
        model = nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.Linear(8, 3)).double()
    else:
        x = x.reshape(90, 1, 2, 3)
        model = nn.Sequential(nn.Conv2d(1, 2, 2), nn.Flatten(), nn.Linear(4, 3)).double()
    cached, streamed = pair(model, x, y)
    torch.testing.assert_close(streamed.influence(x[:3], y[:3]), cached.influence(x[:3], y[:3]), rtol=1e-11, atol=1e-13)
    assert streamed.layer_factors() is None


def test_per_example_gradient_chunks_of_a_large_network_stay_within_256_mib():
    """At 1.08 M float32 parameters 256 rows of per-example gradients are 1.1 GB: calls take fewer points."""
    wide = torch.nn.Sequential(torch.nn.Linear(64, 1000), torch.nn.Tanh(), torch.nn.Linear(1000, 1000))
    x, y = torch.randn(300, 64), torch.randn(300, 1000)
    ex = InfluenceExplainer(wide, lambda out, t: (out - t).square().sum(1), x, y, weight_decay=0.1, progress=False)
    rows = ex.objective.gradient_chunk_points(ex.batch_size, streamed=False)
    assert rows * ex.n_params * 4 <= 2**28 < (rows + 1) * ex.n_params * 4
    sizes = [len(chunk) for _, chunk in ex.train_gradient_chunks()]
    assert max(sizes) == rows and sum(sizes) == 300
