"""Hessian-vector products over the training set on worker threads (curvature.chunk_threads): the same sum as
in one thread, whatever the number of workers, with the caller's thread settings untouched."""

from __future__ import annotations

import torch
from torch import nn

from influence_widgets import InfluenceExplainer
from influence_widgets.core import threads
from influence_widgets.core.curvature import chunk_threads
from influence_widgets.data import cross_entropy_per_example


def explainer(dtype=torch.float64) -> InfluenceExplainer:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 6 * 6, 4)).to(dtype)
    x, y = torch.randn(301, 1, 8, 8, dtype=dtype), torch.randint(0, 4, (301,))
    return InfluenceExplainer(model, cross_entropy_per_example, x, y, weight_decay=0.1, solver="cg", progress=False)


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


def test_the_operator_uses_workers_inside_a_library_call_and_restores_the_callers_threads():
    ex = explainer(torch.float32)
    vectors = torch.randn(ex.n_params, 2)
    threads.set_thread_policy("fixed")
    try:
        serial = ex.hessian.matvec(vectors)
    finally:
        threads.set_thread_policy("adaptive")
    before = torch.get_num_threads()
    with threads.thread_budget():
        workers = threads.chunk_workers()
        assert chunk_threads.usable(ex.objective, vectors) == (workers if workers > 1 else 0)
        parallel = ex.hessian.matvec(vectors)
    assert torch.get_num_threads() == before
    assert torch.allclose(parallel, serial, rtol=1e-5, atol=1e-6)


def test_no_workers_outside_a_library_call_or_under_the_fixed_policy():
    ex = explainer(torch.float32)
    assert threads.chunk_workers() == 1 and chunk_threads.usable(ex.objective, torch.zeros(1)) == 0
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
