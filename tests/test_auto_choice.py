"""solver="auto" chooses by size between exact, CG and the factored solvers, and says why in the diagnostics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from influence_widgets import InfluenceExplainer
from influence_widgets.core.solvers import choose
from influence_widgets.core.solvers.registry import AUTO_ARNOLDI_MAX_BYTES, AUTO_CG_MAX_WORK
from influence_widgets.data import cross_entropy_per_example

MILLION = 1_076_010  # the tanh MLP 64-1000-1000-10


def never(what: str):
    def called() -> float:
        raise AssertionError(f"{what} should not be needed for this choice")

    return called


@pytest.mark.parametrize(
    ("n_params", "n_train", "share", "expected", "because"),
    [
        (1_626, 1_347, None, "exact", "one factorisation of H serves every test point"),
        (50_000, 1_347, None, "cg", "so a solve per test point stays cheap"),
        (MILLION, 1_347, None, "arnoldi", "Lanczos basis takes 1,215 MiB"),
        (11_000_000, 10_000, 0.99, "ekfac", "Linear/Conv2d layers hold 99% of the parameters"),
        (11_000_000, 10_000, 0.5, "cg", "hold only 50% of the parameters"),
    ],
)
def test_auto_chooses_by_size_and_says_why(n_params, n_train, share, expected, because):
    curved = (lambda: n_params) if n_params <= 5000 else never("n_curved")
    shares = (lambda: share) if share is not None else never("factored_share")
    choice = choose("auto", n_params, curved, n_train=n_train, factored_share=shares)
    assert choice.name == expected
    assert choice.reason.startswith(f"auto chose {expected}: ") and because in choice.reason


def test_the_thresholds_sit_where_the_rule_says():
    edge = int(AUTO_CG_MAX_WORK // 1000)
    assert choose("auto", edge, lambda: edge, n_train=1000).name == "cg"
    assert choose("auto", edge + 1, lambda: edge, n_train=1000).name == "arnoldi"
    too_big = AUTO_ARNOLDI_MAX_BYTES // (148 * 8) + 1  # krylov_dim 2 x 64 + 20
    assert choose("auto", too_big, lambda: 0, n_train=1000, factored_share=lambda: 1.0).name == "ekfac"


def test_a_named_solver_is_taken_as_given_with_no_reason():
    choice = choose("kfac", MILLION, never("n_curved"), n_train=1_347, factored_share=never("factored_share"))
    assert choice.name == "kfac" and choice.reason is None


@pytest.mark.filterwarnings("ignore:the parameters are NOT at a minimum")
def test_the_explainer_puts_the_reason_into_every_solves_diagnostics():
    torch.manual_seed(0)
    x, y = torch.randn(1000, 64, dtype=torch.float64), torch.randint(0, 10, (1000,))
    wide = nn.Sequential(nn.Linear(64, 3000), nn.Tanh(), nn.Linear(3000, 10)).double()  # 225,010 parameters
    ex = InfluenceExplainer(wide, cross_entropy_per_example, x, y, damping=0.1, progress=False)
    assert ex.solver_name == "arnoldi" and "n_train x p = 2.3e+08 > 2e+08" in ex.solver_reason
    small = nn.Linear(64, 10).double()
    ex = InfluenceExplainer(small, cross_entropy_per_example, x, y, weight_decay=0.01, progress=False)
    ex.influence(x[:2], y[:2])
    assert ex.diagnostics[-1].note.startswith("auto chose exact: 650 parameters")
    named = InfluenceExplainer(small, cross_entropy_per_example, x, y, weight_decay=0.01, solver="cg", progress=False)
    named.influence(x[:2], y[:2])
    assert named.solver_reason is None and named.diagnostics[-1].note is None
