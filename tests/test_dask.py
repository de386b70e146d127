"""Influence over a training set sharded across a dask.distributed LocalCluster equals the single-process result."""

from __future__ import annotations

import threading

import pytest
import torch
from torch.utils.data import ConcatDataset, TensorDataset

from influence_widgets import InfluenceExplainer, InfluenceInputError

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
        ) as cluster,
        distributed.Client(cluster) as dask_client,
    ):
        yield dask_client


def make(trained, X_train=None, y_train=None, loss_fn=None, **kwargs):
    return InfluenceExplainer(
        trained.model,
        loss_fn or trained.loss_fn,
        trained.X_train if X_train is None else X_train,
        trained.y_train if X_train is None else y_train,
        weight_decay=trained.weight_decay,
        progress=False,
        **kwargs,
    )


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("solver", ["exact", "cg"])
def test_sharded_scores_equal_single_process_scores(binary_logreg, client, solver):
    x_test, y_test = binary_logreg.X_test, binary_logreg.y_test
    local = make(binary_logreg, solver=solver)
    reference = local.influence(x_test, y_test)
    sharded = make(binary_logreg, solver=solver)
    assert relative(sharded.influence(x_test, y_test, client=client), reference) < 1e-6
    assert len(sharded.distribute(client).shards) == 4  # two per worker by default
    assert relative(sharded.self_influence(client=client), local.self_influence()) < 1e-6
    change = sharded.predicted_loss_change(x_test, y_test, client=client)
    assert relative(change, -reference / local.n_train) < 1e-6


def test_the_same_vectors_sent_again_and_again_give_the_same_products(binary_logreg, client):
    """Restarted solves and repeated queries send identical vectors; Dask's hashed scatter keys made the
    second send race with the release of the first (lost dependencies, or a gather that never returned)."""
    sharded = make(binary_logreg).distribute(client)
    vectors = torch.randn(sharded.hessian.size, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    reference = sharded.hessian_sum(vectors)
    products: list[torch.Tensor] = []

    def repeat() -> None:
        for _ in range(40):
            products.append(sharded.hessian_sum(vectors))

    worker = threading.Thread(target=repeat, daemon=True)  # a hang fails this test instead of stalling the run
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive(), f"hessian_sum hung after {len(products)} repeated calls"
    assert len(products) == 40 and all(torch.allclose(p, reference, rtol=1e-12, atol=0) for p in products)


def test_a_concat_datasets_parts_are_the_shards(binary_logreg, client):
    x, y = binary_logreg.X_train, binary_logreg.y_train
    parts = ConcatDataset(
        [TensorDataset(x[:100], y[:100]), TensorDataset(x[100:170], y[100:170]), TensorDataset(x[170:], y[170:])]
    )
    ex = make(binary_logreg, parts, None, solver="cg", cache_gradients=False)
    reference = make(binary_logreg, solver="cg").influence(binary_logreg.X_test, binary_logreg.y_test)
    assert relative(ex.influence(binary_logreg.X_test, binary_logreg.y_test, client=client), reference) < 1e-6
    assert ex.distribute(client).starts == [0, 100, 170]


def test_a_worker_killed_mid_computation_is_retried_without_wrong_or_missing_scores(binary_logreg, client, tmp_path):
    marker = tmp_path / "a-worker-died"
    from dask_support import DiesOnceOnAWorker

    reference = make(binary_logreg, solver="cg").influence(binary_logreg.X_test, binary_logreg.y_test)
    ex = make(binary_logreg, loss_fn=DiesOnceOnAWorker(str(marker)), solver="cg")
    scores = ex.influence(binary_logreg.X_test, binary_logreg.y_test, client=client)
    assert marker.exists(), "no worker died: the test did not exercise a retry"
    assert scores.shape == reference.shape and bool(torch.isfinite(scores).all())
    assert relative(scores, reference) < 1e-6
    client.wait_for_workers(2, timeout=60)


def test_bad_input_for_distributed_work(binary_logreg, client):
    ex = make(binary_logreg)
    with pytest.raises(InfluenceInputError, match=r"client must be a dask\.distributed\.Client"):
        ex.influence(binary_logreg.X_test, binary_logreg.y_test, client="tcp://127.0.0.1:8786")
    with pytest.raises(InfluenceInputError, match="n_shards must be a positive integer"):
        ex.distribute(client, n_shards=0)
    x, y = binary_logreg.X_train, binary_logreg.y_train
    mixed = ConcatDataset([TensorDataset(x[:100], y[:100]), TensorDataset(x[100:, :63], y[100:])])
    with pytest.raises(InfluenceInputError, match=r"shard 1 of the ConcatDataset yields inputs of shape \(63,\)"):
        make(binary_logreg, mixed, None)


def test_a_network_s_explicit_hessian_from_the_cluster_s_sums_equals_the_local_one(client):
    """The cluster is a source of sums for the same TrainingHessian: its affine group is checked on the workers
    and its explicit Hessian comes from products there (no layer-wise shortcut), equal to the local one."""
    from influence_widgets.data import cross_entropy_per_example, load_digits

    split = load_digits(dtype=torch.float64, seed=0)
    x, y = split.X_train[:60], split.y_train[:60]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 3), torch.nn.Tanh(), torch.nn.Linear(3, 10)).double()
    ex = InfluenceExplainer(
        model, cross_entropy_per_example, x, y, weight_decay=0.01, damping=0.1, solver="exact", progress=False
    )
    local = ex.hessian.explicit()
    remote_hessian = ex.distribute(client, n_shards=3).hessian
    assert torch.equal(remote_hessian.affine_mask(), ex.hessian.affine_mask())  # the last layer, on both
    remote = remote_hessian.explicit()
    assert local.method == "layer-wise" and remote.method == "products"
    assert relative(remote.matrix, local.matrix) < 1e-12
