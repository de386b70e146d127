"""Thread budgets: a library call uses at most the free cores and leaves the user's settings as they were."""

from __future__ import annotations

import pytest
import torch

from influence_widgets import InfluenceExplainer, InfluenceInputError
from influence_widgets.core import threads


@pytest.fixture
def user_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(before)
    threads.set_thread_policy("adaptive")


def test_the_budget_is_the_free_cores_capped_by_the_users_setting(monkeypatch, user_threads):
    monkeypatch.setattr(threads, "cores", lambda: 2)
    monkeypatch.setattr(threads, "busy_others", lambda: 4)  # 2x oversubscribed
    assert threads.budget(user_threads) == 1
    monkeypatch.setattr(threads, "busy_others", lambda: 0)
    assert threads.budget(user_threads) == 2
    assert threads.budget(1) == 1  # never more than the user set
    monkeypatch.setattr(threads, "busy_others", lambda: None)  # unknown: the user's setting
    assert threads.budget(user_threads) == 2


def test_the_users_thread_count_comes_back_after_nested_calls_and_errors(monkeypatch, user_threads):
    monkeypatch.setattr(threads, "busy_others", lambda: 5)
    with pytest.raises(RuntimeError), threads.thread_budget() as outer:
        assert outer == 1 and torch.get_num_threads() == 1
        with threads.thread_budget() as inner:
            assert inner == 1
        assert torch.get_num_threads() == 1  # the inner block does not restore early
        raise RuntimeError("boom")
    assert torch.get_num_threads() == user_threads


def test_policies_fixed_and_single(monkeypatch, user_threads):
    monkeypatch.setattr(threads, "busy_others", lambda: 5)
    threads.set_thread_policy("fixed")
    with threads.thread_budget() as used:
        assert used == user_threads == torch.get_num_threads()
    threads.set_thread_policy("single")
    monkeypatch.setattr(threads, "busy_others", lambda: 0)
    with threads.thread_budget() as used:
        assert used == 1 == torch.get_num_threads()
    assert torch.get_num_threads() == user_threads
    with pytest.raises(InfluenceInputError, match="thread policy must be one of"):
        threads.set_thread_policy("many")


def test_the_runnable_count_excludes_this_process():
    others = threads.busy_others()
    assert others is None or others >= 0


def test_an_explainer_call_runs_within_the_budget_and_restores(monkeypatch, user_threads):
    monkeypatch.setattr(threads, "busy_others", lambda: 5)
    seen = []
    model = torch.nn.Linear(3, 2).double()
    x, y = torch.randn(20, 3, dtype=torch.float64), torch.randint(0, 2, (20,))

    def loss(outputs, targets):
        seen.append(torch.get_num_threads())
        return torch.nn.functional.cross_entropy(outputs, targets, reduction="none")

    explainer = InfluenceExplainer(model, loss, x, y, weight_decay=0.1, progress=False)
    seen.clear()
    explainer.influence(x[:2], y[:2])
    assert seen and set(seen) == {1}  # every loss evaluation of the call ran on one thread
    assert torch.get_num_threads() == user_threads


def test_a_long_call_follows_the_load_and_still_restores(monkeypatch, user_threads):
    from influence_widgets.core.progress import progress_bar, progress_counter

    monkeypatch.setattr(threads, "REBALANCE_SECONDS", 0.0)
    monkeypatch.setattr(threads, "busy_others", lambda: 0)
    with threads.thread_budget():
        assert torch.get_num_threads() == 2
        monkeypatch.setattr(threads, "busy_others", lambda: 6)  # the machine fills up mid-call
        list(progress_bar(range(3), enabled=False, desc="work"))
        assert torch.get_num_threads() == 1
        monkeypatch.setattr(threads, "busy_others", lambda: 0)  # and empties again
        counter = progress_counter(enabled=False, desc="work", total=2)
        counter.update(1)
        counter.close()
        assert torch.get_num_threads() == 2
        monkeypatch.setattr(threads, "busy_others", lambda: 6)
        threads.rebalance()
    assert torch.get_num_threads() == user_threads
    threads.rebalance()  # outside a call: nothing changes
    assert torch.get_num_threads() == user_threads
