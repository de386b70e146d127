"""Hessian-vector products over the training set on worker threads (curvature.chunk_threads): the same sum as
in one thread, whatever the number of workers, with the caller's thread settings untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from influence_widgets import InfluenceExplainer
from influence_widgets.core import threads
from influence_widgets.core.curvature import chunk_threads
from influence_widgets.data import cross_entropy_per_example


def explainer(dtype=torch.float64, damping: float = 0.0) -> InfluenceExplainer:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 6 * 6, 4)).to(dtype)
    x, y = torch.randn(301, 1, 8, 8, dtype=dtype), torch.randint(0, 4, (301,))
    return InfluenceExplainer(
        model, cross_entropy_per_example, x, y, weight_decay=0.1, damping=damping, solver="cg", progress=False
    )


def test_worker_threads_sum_the_same_products_as_one_thread_in_float64():
    ex = explainer()
    vectors = torch.randn(ex.n_params, 3, dtype=torch.float64)
    x, y = ex.hessian.source.take(torch.arange(ex.n_train))
    one_thread = ex.objective.hessian_sum_matvec(x, y, vectors)
    for workers in (2, 4):
        on_workers = chunk_threads.hessian_sum(ex.objective, x, y, vectors, workers, per_call=50)
        assert torch.allclose(on_workers, one_thread, rtol=1e-12, atol=1e-12)
    two = chunk_threads.hessian_sum(ex.objective, x, y, vectors, 2, per_call=50)
    four = chunk_threads.hessian_sum(ex.objective, x, y, vectors, 4, per_call=50)
    assert torch.equal(two, four)  # the pieces do not depend on the workers


@pytest.mark.parametrize("others", [0, 3], ids=["idle", "busy"])
def test_the_operator_uses_workers_inside_a_library_call_and_restores_the_callers_threads(monkeypatch, others):
    ex = explainer(torch.float32)
    vectors = torch.randn(ex.n_params, 2)
    threads.set_thread_policy("fixed")
    try:
        serial = ex.hessian.matvec(vectors)
    finally:
        threads.set_thread_policy("adaptive")
    monkeypatch.setattr(threads, "busy_others", lambda: others)  # the load, fixed: the test reads it twice
    before = torch.get_num_threads()
    own = min(before, threads.cores())
    expected = 2 * own if own > 1 and others else own  # twice the user's threads while others are runnable
    with threads.thread_budget():
        assert threads.chunk_workers() == expected
        assert chunk_threads.usable(ex.objective, vectors.device) == (expected if expected > 1 else 0)
        busy_only = expected if expected > 1 and others else 0
        assert chunk_threads.usable(ex.objective, vectors.device, busy_only=True) == busy_only
        parallel = ex.hessian.matvec(vectors)
    assert torch.get_num_threads() == before
    assert torch.allclose(parallel, serial, rtol=1e-5, atol=1e-6)


def test_no_workers_outside_a_library_call_or_under_the_fixed_policy():
    ex = explainer(torch.float32)
    assert threads.chunk_workers() == 1 and chunk_threads.usable(ex.objective, torch.device("cpu")) == 0
    threads.set_thread_policy("fixed")
    try:
        with threads.thread_budget():
            assert threads.chunk_workers() == 1
    finally:
        threads.set_thread_policy("adaptive")


def test_a_forked_child_starts_its_own_workers():
    import multiprocessing

    ex = explainer(torch.float32)
    vectors = torch.randn(ex.n_params, 2)
    with threads.thread_budget():
        expected = ex.hessian.matvec(vectors)  # the parent's pool exists now

    def child(queue) -> None:
        with threads.thread_budget():
            queue.put(ex.hessian.matvec(vectors).numpy().tolist())

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=child, args=(queue,))
    process.start()
    found = torch.tensor(queue.get(timeout=60))
    process.join(timeout=60)
    assert process.exitcode == 0 and torch.allclose(found, expected, rtol=1e-5, atol=1e-6)


def test_layer_wise_columns_by_reverse_products_on_workers_match_forward_products():
    from influence_widgets.core.curvature.module_blocks import block_columns, find_module_blocks

    ex = explainer()
    x, y = ex.hessian.source.take(torch.arange(ex.n_train))
    curved = ~ex.hessian.affine.everywhere()
    blocks = find_module_blocks(ex.objective, x[:1], curved)
    assert blocks is not None
    for block in blocks:
        columns = block.columns[:7]
        forward = block_columns(ex.objective, block, x, y, columns)
        assert torch.allclose(
            block_columns(ex.objective, block, x, y, columns, reverse=True), forward, rtol=1e-12, atol=1e-12
        )

        def product(mine, xs, ys, block=block, columns=columns):
            return block_columns(mine, block, xs, ys, columns, reverse=True)

        two = chunk_threads.piece_sum(ex.objective, x, y, product, 2, per_call=40)
        assert torch.equal(two, chunk_threads.piece_sum(ex.objective, x, y, product, 4, per_call=40))
        assert torch.allclose(two, forward, rtol=1e-12, atol=1e-12)


def test_the_explicit_hessian_assembled_on_workers_equals_the_autograd_hessian(monkeypatch):
    ex = explainer()
    x, y = ex.hessian.source.take(torch.arange(ex.n_train))
    theta = ex.objective.theta.detach()
    full = torch.func.hessian(lambda t: ex.objective.loss_fn(ex.objective.outputs(x, t), y).mean())(theta)
    full += ex.hessian.shift * torch.eye(len(theta), dtype=torch.float64)
    monkeypatch.setattr(chunk_threads, "chunk_workers", lambda busy_only=False: 4)
    assert chunk_threads.usable(ex.objective, x.device) == 4
    built = ex.hessian.explicit(block=16)
    assert built.method == "layer-wise"
    assert torch.allclose(built.matrix, full, rtol=1e-10, atol=1e-12)


def test_per_example_gradients_on_workers_are_the_same_calls_as_in_one_thread(monkeypatch):
    ex = explainer()
    serial = ex.objective.per_example_grads(*ex.hessian.source.take(torch.arange(ex.n_train)))
    monkeypatch.setattr(chunk_threads, "chunk_workers", lambda busy_only=False: 4)
    assert ex._gradient_workers(50) == (4, 50 * chunk_threads.PIECES_PER_CORE * chunk_threads.cores())
    with threads.thread_budget():
        on_workers = ex.train_gradients()
    assert torch.allclose(on_workers, serial, rtol=1e-12, atol=1e-14)


def test_gradients_stay_in_this_thread_on_an_idle_machine(monkeypatch):
    monkeypatch.setattr(threads, "busy_others", lambda: 0)
    with threads.thread_budget():
        assert threads.chunk_workers(busy_only=True) == 1
        assert threads.chunk_workers() == min(torch.get_num_threads(), threads.cores())


def test_lissa_columns_on_workers_are_the_serial_recursions(monkeypatch):
    from influence_widgets.core.solvers.lissa import LissaSolver
    from influence_widgets.core.solvers.options import LissaOptions

    ex = explainer(damping=0.5)  # an untrained model: H is indefinite without it
    rhs = torch.randn(ex.n_params, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    solver = LissaSolver(LissaOptions(depth=40, batch_size=64, repeats=2))
    serial, serial_diagnostics = solver.solve(ex.hessian, rhs)
    found = {}
    for workers in (2, 4):
        monkeypatch.setattr(chunk_threads, "chunk_workers", lambda busy_only=False, w=workers: w)
        assert ex.hessian.sample_workers() == workers
        found[workers], diagnostics = solver.solve(ex.hessian, rhs)
        assert torch.allclose(found[workers], serial, rtol=1e-10, atol=1e-12)
        assert torch.allclose(
            torch.as_tensor(diagnostics.estimate_norms), torch.as_tensor(serial_diagnostics.estimate_norms)
        )
    assert torch.equal(found[2], found[4])  # the column groups do not depend on the workers
