"""K-FAC and EK-FAC against float64 ground truth built here from per-example Jacobians (torch.func.jacrev)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jacrev, vmap

from influence_widgets import InfluenceExplainer
from influence_widgets.core.errors import InfluenceInputError
from influence_widgets.core.solvers import EKFACOptions, EKFACSolver, KFACOptions, solver_options
from influence_widgets.data import cross_entropy_per_example, fit_lbfgs, load_digits

SHIFT = dict(weight_decay=0.01, damping=0.001)


def half_squared_error(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((out - y) ** 2).sum(1) / 2


def output_jacobians(model: nn.Module, names: list[str], x: torch.Tensor) -> torch.Tensor:
    """J_i = d f(x_i) / d theta for each row, [n, C, p], theta the named parameters flattened in order."""
    params = {name: p.detach() for name, p in model.named_parameters() if name in names}

    def single(flat: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(flat, [params[n].numel() for n in names])
        values = {n: piece.view(params[n].shape) for n, piece in zip(names, pieces)}
        return functional_call(model, values, (xi.unsqueeze(0),)).reshape(-1)

    theta = torch.cat([params[n].reshape(-1) for n in names])
    return vmap(jacrev(single), in_dims=(None, 0))(theta, x)


def gauss_newton(model, names, x, loss: str) -> torch.Tensor:
    """(1/n) sum_i J_i^T Lambda_i J_i with Lambda = I (half squared error) or diag(p) - p p^T (cross-entropy)."""
    jac = output_jacobians(model, names, x)
    if loss == "squared":
        return torch.einsum("nci,ncj->ij", jac, jac) / len(x)
    with torch.no_grad():
        p = torch.softmax(model(x), 1)
    lam = torch.diag_embed(p) - p.unsqueeze(2) * p.unsqueeze(1)
    return torch.einsum("nci,ncd,ndj->ij", jac, lam, jac) / len(x)


def loss_gradients(model, names, loss_fn, x, y) -> torch.Tensor:
    rows = []
    for xi, yi in zip(x, y):
        model.zero_grad()
        loss_fn(model(xi.unsqueeze(0)), yi.unsqueeze(0)).sum().backward()
        rows.append(torch.cat([p.grad.reshape(-1) for n, p in model.named_parameters() if n in names]))
    model.zero_grad()
    return torch.stack(rows)


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(np.corrcoef(a.reshape(-1).numpy(), b.reshape(-1).numpy())[0, 1])


@pytest.fixture(scope="module")
def linear_regression():
    torch.manual_seed(0)
    x = torch.randn(80, 6, dtype=torch.float64)
    y = torch.randn(80, 3, dtype=torch.float64)
    return nn.Linear(6, 3).double(), x, y


@pytest.fixture(scope="module")
def digits_mlp():
    torch.manual_seed(0)
    split = load_digits(dtype=torch.float64, seed=0)
    x, y = split.X_train[:300], split.y_train[:300]
    model = nn.Sequential(nn.Linear(64, 12), nn.Tanh(), nn.Linear(12, 10)).double()
    fit_lbfgs(model, cross_entropy_per_example, x, y, SHIFT["weight_decay"])
    return model, x, y, split.X_test[:5], split.y_test[:5]


@pytest.mark.parametrize("solver", ["kfac", "ekfac"])
def test_factors_equal_the_gauss_newton_matrix_of_one_linear_layer_with_squared_loss(linear_regression, solver):
    """One Linear layer, half squared error: Lambda_i = I, so GN = I (x) E[abar abar^T] is one Kronecker
    product and K-FAC (and EK-FAC) are exact: (GN + shift I)^-1 to 1e-10, and the solve equals solver='exact'."""
    model, x, y = linear_regression
    ex = InfluenceExplainer(model, half_squared_error, x, y, solver=solver, progress=False, **SHIFT)
    p = ex.n_params
    inverse, diagnostics = ex.solver.solve(ex.hessian, torch.eye(p, dtype=torch.float64))
    names = [n for n, _ in model.named_parameters()]
    expected = torch.linalg.inv(gauss_newton(model, names, x, "squared") + 0.011 * torch.eye(p, dtype=torch.float64))
    torch.testing.assert_close(inverse, expected, rtol=1e-10, atol=1e-12)
    assert diagnostics.converged and "approximation" in diagnostics.note and not diagnostics.warnings
    exact = InfluenceExplainer(model, half_squared_error, x, y, solver="exact", progress=False, **SHIFT)
    with warnings.catch_warnings():  # not trained: the stationarity warning
        warnings.simplefilter("ignore")
        scores, reference = ex.influence(x[:3], y[:3]), exact.influence(x[:3], y[:3])
    torch.testing.assert_close(scores, reference, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("params", "shapes"), [(None, [(3, 19), (4, 28)]), (["0.weight", "3.bias"], [(3, 18), (4, 1)])]
)
def test_ekfac_eigenvalues_are_the_gauss_newton_diagonal_in_the_kronecker_basis_for_conv_and_linear(params, shapes):
    """EK-FAC's S[k, l] = u_kl^T GN_layer u_kl with u_kl = q_G[:, k] (x) q_A[:, l]: checks the unfolded Conv2d
    patches, the bias column (or its absence, or a bias alone) and the index map against Jacobians."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, stride=2), nn.Tanh(), nn.Flatten(), nn.Linear(27, 4)).double()
    x = torch.randn(40, 2, 6, 6, dtype=torch.float64)
    y = torch.randint(0, 4, (40,))
    ex = InfluenceExplainer(
        model, cross_entropy_per_example, x, y, solver="ekfac", params=params, progress=False, **SHIFT
    )
    _, layers, fallback, factors, *_ = ex.solver.factors(ex.hessian)
    assert fallback.numel() == 0 and [layer.shape for layer in layers] == shapes
    gn = gauss_newton(model, ex.objective.names, x, "cross_entropy")
    for layer, f in zip(layers, factors):
        index = layer.index.reshape(-1)
        block = gn[index][:, index]  # [W | b] row-major
        basis = torch.kron(f.q_g, f.q_a)
        torch.testing.assert_close(f.corrected.reshape(-1), (basis.T @ block @ basis).diagonal(), rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("refits", [1, 2])
def test_ekfac_refits_its_factors_to_the_gauss_newton_block_for_conv_and_linear(refits):
    """The last refitted factor is the Frobenius-best one given the other, against the Jacobian GN block F
    (F4[o, c, p, d] = F[(o, c), (p, d)]): after 1 refit A = sum_op F4[o, :, p, :] G[o, p] / ||G||^2 with G
    K-FAC's own; after 2, G = sum_cd F4[:, c, :, d] A[c, d] / ||A||^2. And the error ||F - G (x) A|| of the
    refitted product is at most K-FAC's (each refit minimises it given the other factor)."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, stride=2), nn.Tanh(), nn.Flatten(), nn.Linear(27, 4)).double()
    x, y = torch.randn(40, 2, 6, 6, dtype=torch.float64), torch.randint(0, 4, (40,))
    options = EKFACOptions(basis_refits=refits)
    ex = InfluenceExplainer(
        model, cross_entropy_per_example, x, y, solver="ekfac", solver_options=options, progress=False, **SHIFT
    )
    kfac = InfluenceExplainer(model, cross_entropy_per_example, x, y, solver="kfac", progress=False, **SHIFT)
    _, layers, _, factors, *_ = ex.solver.factors(ex.hessian)
    _, _, _, kfac_factors, *_ = kfac.solver.factors(kfac.hessian)
    assert ex.solver.training_passes == 2 + refits and f"{refits} refit pass" in ex.solver.approximation()
    gn = gauss_newton(model, ex.objective.names, x, "cross_entropy")

    def matrices(f):
        return f.q_g @ torch.diag(f.lam_g) @ f.q_g.T, f.q_a @ torch.diag(f.lam_a) @ f.q_a.T

    for layer, f, k in zip(layers, factors, kfac_factors):
        out, cols = layer.shape
        index = layer.index.reshape(-1)
        block = gn[index][:, index]
        f4 = block.reshape(out, cols, out, cols)
        g, a = matrices(f)
        g_kfac, a_kfac = matrices(k)
        if refits == 1:
            torch.testing.assert_close(g, g_kfac, rtol=1e-9, atol=1e-14)
            best_a = torch.einsum("ocpd,op->cd", f4, g) / g.square().sum()
            torch.testing.assert_close(a, best_a, rtol=1e-8, atol=1e-13)
        else:
            best_g = torch.einsum("ocpd,cd->op", f4, a) / a.square().sum()
            torch.testing.assert_close(g, best_g, rtol=1e-8, atol=1e-13)
        refitted_error = torch.linalg.norm(block - torch.kron(g, a))
        assert refitted_error <= torch.linalg.norm(block - torch.kron(g_kfac, a_kfac)) * (1 + 1e-12)
        basis = torch.kron(f.q_g, f.q_a)  # and S is F's diagonal in the refitted basis
        torch.testing.assert_close(f.corrected.reshape(-1), (basis.T @ block @ basis).diagonal(), rtol=1e-9, atol=1e-14)


def test_empirical_fisher_uses_the_given_labels(linear_regression):
    """fisher='empirical', one Linear layer: EK-FAC's eigenvalues are the diagonal of (1/n) sum g_i g_i^T (the
    per-example loss gradients with the given labels) in the Kronecker basis."""
    model, x, y = linear_regression
    options = EKFACOptions(fisher="empirical")
    ex = InfluenceExplainer(
        model, half_squared_error, x, y, solver="ekfac", solver_options=options, progress=False, **SHIFT
    )
    _, layers, _, factors, *_ = ex.solver.factors(ex.hessian)
    rows = loss_gradients(model, [n for n, _ in model.named_parameters()], half_squared_error, x, y)
    empirical = rows.T @ rows / len(x)
    index = layers[0].index.reshape(-1)
    basis = torch.kron(factors[0].q_g, factors[0].q_a)
    torch.testing.assert_close(
        factors[0].corrected.reshape(-1), (basis.T @ empirical[index][:, index] @ basis).diagonal(), rtol=1e-9, atol=0
    )


def test_ekfac_as_accurate_as_kfac_against_the_damped_gauss_newton_solve(digits_mlp):
    """Small MLP on digits (64-12-10), cross-entropy. EK-FAC's eigenvalues are the best fit of each layer's
    Gauss-Newton block in its Kronecker eigenbasis, K-FAC's (basis_refits=0) or refitted (the default), so its
    Frobenius error is at most K-FAC's (a theorem, checked per layer). The influence scores against
    -g_test^T (GN + shift I)^-1 g_i: measured Pearson 0.850 (K-FAC), 0.840 (EK-FAC on K-FAC's basis), and
    0.817 at the default: on a model this small the refit is the worse basis (``auto`` picks the exact solve
    here); all drop the blocks between layers, which costs more (0.93 against the block-diagonal GN solve)."""
    model, x, y, x_test, y_test = digits_mlp
    names = [n for n, _ in model.named_parameters()]
    gn = gauss_newton(model, names, x, "cross_entropy")
    damped = gn + 0.011 * torch.eye(len(gn), dtype=torch.float64)
    train = loss_gradients(model, names, cross_entropy_per_example, x, y)
    test = loss_gradients(model, names, cross_entropy_per_example, x_test, y_test)
    reference = -test @ torch.linalg.solve(damped, train.T)
    found, errors = {}, {}
    for solver, options in [("kfac", None), ("ekfac", EKFACOptions(basis_refits=0)), ("ekfac refit", None)]:
        ex = InfluenceExplainer(
            model,
            cross_entropy_per_example,
            x,
            y,
            solver=solver.split()[0],
            solver_options=options,
            progress=False,
            **SHIFT,
        )
        found[solver] = pearson(ex.influence(x_test, y_test), reference)
        _, layers, _, factors, *_ = ex.solver.factors(ex.hessian)
        errors[solver] = []
        for layer, f in zip(layers, factors):
            index = layer.index.reshape(-1)
            basis = torch.kron(f.q_g, f.q_a)
            eigenvalues = torch.outer(f.lam_g, f.lam_a) if f.corrected is None else f.corrected
            approximation = basis @ torch.diag(eigenvalues.reshape(-1)) @ basis.T
            errors[solver].append(float(torch.linalg.norm(approximation - gn[index][:, index])))
    for ekfac in ("ekfac", "ekfac refit"):
        assert all(e <= k * (1 + 1e-12) for e, k in zip(errors[ekfac], errors["kfac"])), errors
    assert found["ekfac"] >= found["kfac"] - 0.02, found
    assert min(found.values()) > 0.8, found


@pytest.mark.parametrize(("solver", "passes"), [("kfac", 1), ("ekfac", 3)])
def test_factors_are_built_once_and_reused_for_new_points_and_another_damping(digits_mlp, solver, passes):
    model, x, y, x_test, y_test = digits_mlp
    ex = InfluenceExplainer(model, cross_entropy_per_example, x, y, solver=solver, progress=False, **SHIFT)
    before = ex.solver.work(ex.hessian, 1, len(x))
    assert before.hvp_points == passes * 10 * len(x) and before.memory_bytes[f"{solver} factors"] > 0
    ex.influence(x_test[:2], y_test[:2])
    ex.influence(x_test[2:], y_test[2:])
    assert ex.solver.training_passes == passes
    assert ex.solver.work(ex.hessian, 1, len(x)).hvp_points == 0
    damped = ex.with_damping(0.1)
    reused = damped.influence(x_test, y_test)
    assert damped.solver.training_passes == 0  # the factors came from the shared cache
    fresh = InfluenceExplainer(
        model, cross_entropy_per_example, x, y, solver=solver, progress=False, weight_decay=0.01, damping=0.1
    )
    torch.testing.assert_close(reused, fresh.influence(x_test, y_test), rtol=1e-12, atol=1e-14)
    assert fresh.solver.training_passes == passes


def test_sampled_labels_are_seeded_and_keyed(digits_mlp):
    """mc_samples=k samples labels from the softmax (seeded): the same seed gives the same factors, another
    seed other ones (a cache entry of its own); many samples approach the exact expectation."""
    model, x, y, x_test, y_test = digits_mlp

    def scores(**options):
        ex = InfluenceExplainer(
            model, cross_entropy_per_example, x, y, solver="kfac", solver_options=options, progress=False, **SHIFT
        )
        return ex.influence(x_test, y_test)

    one = scores(mc_samples=2, seed=0)
    torch.testing.assert_close(one, scores(mc_samples=2, seed=0), rtol=0, atol=0)
    assert not torch.equal(one, scores(mc_samples=2, seed=1))
    assert pearson(scores(mc_samples=64, seed=0), scores()) > 0.99


def test_the_users_model_is_untouched(digits_mlp):
    model, x, y, x_test, y_test = digits_mlp
    model[0].bias.requires_grad_(False)
    try:
        state = {k: v.clone() for k, v in model.state_dict().items()}
        flags = [p.requires_grad for p in model.parameters()]
        ex = InfluenceExplainer(
            model, cross_entropy_per_example, x, y, solver="ekfac", params=None, progress=False, **SHIFT
        )
        ex.influence(x_test, y_test)
        for name, value in model.state_dict().items():
            assert torch.equal(value, state[name])
        assert [p.requires_grad for p in model.parameters()] == flags
        for module in [*model.modules(), *ex.objective.module.modules()]:
            assert not module._forward_hooks and not module._forward_pre_hooks and not module._backward_hooks
        assert not any(p.requires_grad for p in ex.objective.module.parameters())  # the private copy's, as built
    finally:
        model[0].bias.requires_grad_(True)


def test_parameters_outside_linear_and_conv_layers_get_the_stated_diagonal_fallback():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(5, 4), nn.LayerNorm(4), nn.Tanh(), nn.Linear(4, 3)).double()
    x = torch.randn(50, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (50,))
    ex = InfluenceExplainer(model, cross_entropy_per_example, x, y, solver="kfac", progress=False, **SHIFT)
    b = torch.randn(ex.n_params, 2, dtype=torch.float64)
    solution, diagnostics = ex.solver.solve(ex.hessian, b)
    assert any("diagonal fallback" in w for w in diagnostics.warnings)
    names = [n for n, _ in model.named_parameters()]
    rows = loss_gradients(model, names, cross_entropy_per_example, x, y)
    layer_norm = slice(24, 32)  # 1.weight, 1.bias after 0.weight (20) and 0.bias (4)
    diagonal = rows[:, layer_norm].square().mean(0) + 0.011
    torch.testing.assert_close(solution[layer_norm], b[layer_norm] / diagonal.unsqueeze(1), rtol=1e-10, atol=0)
    with pytest.raises(InfluenceInputError, match=r"needs at least one nn\.Linear or nn\.Conv2d"):
        only_norm = InfluenceExplainer(
            model, cross_entropy_per_example, x, y, solver="ekfac", params="1", progress=False, **SHIFT
        )
        only_norm.solver.solve(only_norm.hessian, b[:8])


def test_bad_options_are_refused_with_the_fix():
    with pytest.raises(InfluenceInputError, match="fisher must be one of"):
        KFACOptions(fisher="fisher")
    with pytest.raises(InfluenceInputError, match="mc_samples must be >= 1"):
        EKFACOptions(mc_samples=0)
    with pytest.raises(InfluenceInputError, match=r"basis_refits must be >= 0 \(0: K-FAC's eigenbasis\)"):
        EKFACOptions(basis_refits=-1)
    with pytest.raises(InfluenceInputError, match="chunk_size must be int"):
        KFACOptions(chunk_size="big")
    with pytest.raises(InfluenceInputError, match="leave mc_samples=None"):
        KFACOptions(fisher="empirical", mc_samples=3)
    with pytest.raises(InfluenceInputError, match="unknown option"):
        solver_options("ekfac", {"damping": 0.1})
    assert solver_options("kfac", {"fisher": "empirical"}) == KFACOptions(fisher="empirical")


def test_undamped_singular_curvature_is_refused_with_a_damping():
    """Two identical input columns make A singular: with no weight decay and no damping the solve is refused."""
    torch.manual_seed(3)
    x = torch.randn(30, 3, dtype=torch.float64)
    x = torch.cat([x, x[:, :1]], dim=1)
    y = torch.randn(30, 2, dtype=torch.float64)
    ex = InfluenceExplainer(nn.Linear(4, 2).double(), half_squared_error, x, y, solver="kfac", progress=False)
    with pytest.raises(InfluenceInputError, match=r"singular.*Pass damping="):
        ex.solver.solve(ex.hessian, torch.ones(ex.n_params, 1, dtype=torch.float64))


def test_binary_cross_entropy_sampled_labels_are_bernoulli():
    """BCE on logits is recognised: its sampled labels are 0/1, and many of them approach the exact expectation."""
    torch.manual_seed(4)
    x = torch.randn(60, 4, dtype=torch.float64)
    y = (x[:, 0] > 0).to(torch.float64)
    model = nn.Linear(4, 1).double()

    def bce(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(out.squeeze(-1), target, reduction="none")

    def inverse(**options):
        ex = InfluenceExplainer(model, bce, x, y, solver="kfac", solver_options=options, progress=False, **SHIFT)
        return ex.solver.solve(ex.hessian, torch.eye(ex.n_params, dtype=torch.float64))[0]

    exact = inverse()
    # one Linear layer, one output: K-FAC's E[p (1 - p)] x E[abar abar^T], plus the shift
    with torch.no_grad():
        p = torch.sigmoid(model(x)).squeeze(1)
    abar = torch.cat([x, torch.ones(60, 1, dtype=torch.float64)], 1)
    kfac = (p * (1 - p)).mean() * (abar.T @ abar / 60) + 0.011 * torch.eye(5, dtype=torch.float64)
    torch.testing.assert_close(exact, torch.linalg.inv(kfac), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(inverse(mc_samples=400), exact, rtol=0.1, atol=1e-3)


def test_squared_loss_sampled_labels_are_gaussian(linear_regression):
    """Squared loss is neither cross-entropy nor BCE: its sampled labels are y ~ N(f, I), whose output gradients
    f - y have covariance I; many samples approach the exact factors (G = I)."""
    model, x, y = linear_regression

    def inverse(**options):
        ex = InfluenceExplainer(
            model, half_squared_error, x, y, solver="kfac", solver_options=options, progress=False, **SHIFT
        )
        return ex.solver.solve(ex.hessian, torch.eye(ex.n_params, dtype=torch.float64))[0]

    exact = inverse()
    sampled = inverse(mc_samples=500)
    assert float(torch.linalg.norm(sampled - exact) / torch.linalg.norm(exact)) < 0.1
    torch.testing.assert_close(inverse(mc_samples=500), sampled, rtol=0, atol=0)  # seeded


@pytest.mark.slow
def test_ekfac_end_to_end_on_the_digits_cnn_against_the_exact_solve():
    """The demo CNN (1,626 parameters, two Conv2d and a Linear layer) on all digits, float64, damping 0.01:
    influence of 1,347 training points on 10 test points, EK-FAC (Gauss-Newton, block-diagonal) against
    solver='exact' (the true Hessian). Measured: Pearson 0.773, Spearman 0.483 at the default (factors refitted
    once); 0.773, 0.476 on K-FAC's basis (basis_refits=0); K-FAC 0.752, 0.448."""
    from scipy.stats import pearsonr, spearmanr

    from influence_widgets.data.zoo import train_digits_model

    trained = train_digits_model("cnn", seed=0, dtype=torch.float64)
    split = trained.split
    x_test, y_test = split.X_test[:10], split.y_test[:10]
    scores = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for solver, options in [
            ("exact", None),
            ("kfac", None),
            ("ekfac", None),
            ("ekfac0", EKFACOptions(basis_refits=0)),
        ]:
            ex = InfluenceExplainer(
                trained.model,
                trained.loss_fn,
                split.X_train,
                split.y_train,
                weight_decay=trained.weight_decay,
                damping=0.01,
                solver=solver.rstrip("0"),
                solver_options=options,
                progress=False,
            )
            scores[solver] = ex.influence(x_test, y_test).reshape(-1).numpy()
            if solver == "ekfac":
                assert ex.solver.training_passes == 3 and ex.diagnostics[-1].note.startswith("EK-FAC")
    figures = {
        s: (pearsonr(scores[s], scores["exact"])[0], spearmanr(scores[s], scores["exact"])[0])
        for s in ("kfac", "ekfac", "ekfac0")
    }
    print({s: f"Pearson {p:.3f}, Spearman {r:.3f}" for s, (p, r) in figures.items()})
    assert figures["ekfac"][0] > 0.7 and figures["ekfac"][1] > 0.4
    assert figures["ekfac"][0] >= figures["kfac"][0] - 0.02
    assert figures["ekfac"][0] >= figures["ekfac0"][0] - 0.005 and figures["ekfac"][1] > figures["ekfac0"][1]


def test_ekfac_reuses_kfac_factors_from_the_shared_cache(digits_mlp):
    """An EK-FAC solver finding K-FAC's factors (same key, fisher, samples, seed) in the cache makes only its
    own passes: the refit of A (default basis_refits=1) and the correction; with basis_refits=0 the correction."""
    model, x, y, x_test, y_test = digits_mlp
    ex = InfluenceExplainer(model, cross_entropy_per_example, x, y, solver="kfac", progress=False, **SHIFT)
    ex.influence(x_test[:1], y_test[:1])
    solver = EKFACSolver(cache=ex.solver.cache)
    assert solver.work(ex.hessian, 1, len(x)).hvp_points == 2 * 10 * len(x)
    solver.solve(ex.hessian, torch.ones(ex.n_params, 1, dtype=torch.float64))
    assert solver.training_passes == 2
    george = EKFACSolver(EKFACOptions(basis_refits=0), cache=ex.solver.cache)
    assert george.work(ex.hessian, 1, len(x)).hvp_points == 10 * len(x)
    george.solve(ex.hessian, torch.ones(ex.n_params, 1, dtype=torch.float64))
    assert george.training_passes == 1


def test_a_layer_called_twice_is_refused_and_leaves_no_hooks():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.shared = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.shared(torch.tanh(self.shared(x)))

    torch.manual_seed(5)
    x = torch.randn(20, 3, dtype=torch.float64)
    y = torch.randint(0, 3, (20,))
    ex = InfluenceExplainer(Twice().double(), cross_entropy_per_example, x, y, solver="kfac", progress=False, **SHIFT)
    with pytest.raises(InfluenceInputError, match="more than once per forward pass"):
        ex.solver.solve(ex.hessian, torch.ones(ex.n_params, 1, dtype=torch.float64))
    assert not any(m._forward_hooks for m in ex.objective.module.modules())


def test_a_streamed_dataset_gives_the_same_factors_as_tensors(digits_mlp):
    """The factors stream over the training set in chunks: a Dataset read chunk by chunk (chunk_size 64, not a
    divisor of n) gives the scores of the tensors read whole."""
    from torch.utils.data import TensorDataset

    model, x, y, x_test, y_test = digits_mlp
    options = EKFACOptions(chunk_size=64)
    whole = InfluenceExplainer(model, cross_entropy_per_example, x, y, solver="ekfac", progress=False, **SHIFT)
    streamed = InfluenceExplainer(
        model,
        cross_entropy_per_example,
        TensorDataset(x, y),
        None,
        solver="ekfac",
        solver_options=options,
        progress=False,
        **SHIFT,
    )
    torch.testing.assert_close(
        streamed.influence(x_test, y_test), whole.influence(x_test, y_test), rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize("refit_inputs", [True, False])
def test_both_orders_of_the_refit_sum_equal_its_definition(refit_inputs):
    """The refit's sums over points and output vectors, sum D^T G D or sum D A D^T with D = sum_t g_t abar_t^T,
    through each D and through position-by-position matrices (the order chosen for wide layers over few
    positions), against the definition on random tensors: 7 points, 5 positions, 6 columns, 4 outputs, 2 vectors."""
    from influence_widgets.core.solvers.ekfac import _refit_through_gradients, _refit_through_positions

    generator = torch.Generator().manual_seed(6)
    abar = torch.randn(7, 5, 6, dtype=torch.float64, generator=generator)
    grads = [torch.randn(7, 5, 4, dtype=torch.float64, generator=generator) for _ in range(2)]
    size = 4 if refit_inputs else 6
    root = torch.randn(size, size, dtype=torch.float64, generator=generator)
    other = root @ root.T
    d = [torch.einsum("bto,btc->boc", g, abar) for g in grads]
    expected = sum(
        torch.einsum("boc,op,bpd->cd", m, other, m) if refit_inputs else torch.einsum("boc,cd,bpd->op", m, other, m)
        for m in d
    )
    for refit in (_refit_through_gradients, _refit_through_positions):
        torch.testing.assert_close(refit(abar, grads, other, refit_inputs), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.filterwarnings("ignore:the parameters are NOT at a minimum")
def test_a_chunk_holds_what_the_cost_preview_states_and_shrinks_to_chunk_bytes():
    """``bytes_per_point``: a chunk's float64 layer inputs abar [b, T, cols] and output gradients [r][b, T, out] take
    exactly the held part it predicts (Conv2d 6x6 -> 3x3: T = 9, cols 19, out 3; Linear: T = 1, cols 28, out 4;
    r = 4 outputs). With ``chunk_bytes`` of 5 points the passes use chunks of 5, the preview states them, and the
    scores equal those of the default chunks."""
    from contextlib import closing

    from influence_widgets.core.solvers.kronecker_memory import _Geometry, bytes_per_point, layer_geometry
    from influence_widgets.core.solvers.kronecker_pass import find_layers, layer_chunks, read_operator

    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, stride=2), nn.Tanh(), nn.Flatten(), nn.Linear(27, 4)).double()
    x, y = torch.randn(40, 2, 6, 6, dtype=torch.float64), torch.randint(0, 4, (40,))
    ex = InfluenceExplainer(model, cross_entropy_per_example, x, y, solver="ekfac", progress=False, **SHIFT)
    problem = read_operator(ex.hessian)
    layers, _, _ = find_layers(problem.objective)
    geometry = layer_geometry(problem, layers)
    assert geometry == [_Geometry(9, 19, 3), _Geometry(1, 28, 4)]
    assert not any(m._forward_hooks for m in ex.objective.module.modules())
    per_point = bytes_per_point(geometry, 4, rotates=True, fallback_floats=0)
    held_per_point = bytes_per_point(geometry, 4, rotates=False, fallback_floats=0)
    assert per_point - held_per_point == 8 * (9 * (19 + 4 * 3) + 2 * 3 * 19)  # the conv layer's copies and D
    with closing(layer_chunks(ex.solver, problem, layers, "test")) as chunks:
        chunk = next(chunks)
    held = sum(a.numel() * a.element_size() for a in chunk.inputs)
    held += sum(g.numel() * g.element_size() for grads in chunk.grads for g in grads)
    assert len(chunk.x) == 40 and held == 40 * held_per_point

    options = EKFACOptions(chunk_bytes=5 * per_point + 1)
    small = InfluenceExplainer(
        model, cross_entropy_per_example, x, y, solver="ekfac", solver_options=options, progress=False, **SHIFT
    )
    assert small.solver.chunk_points(problem, layers) == 5
    with closing(layer_chunks(small.solver, problem, layers, "test")) as chunks:
        assert [len(chunk.x) for chunk in chunks] == [5] * 8
    assert small.solver.work(small.hessian, 1, len(x)).memory_bytes["ekfac working chunk"] == 5 * per_point
    assert ex.solver.work(ex.hessian, 1, len(x)).memory_bytes["ekfac working chunk"] == 40 * per_point
    torch.testing.assert_close(small.influence(x[:3], y[:3]), ex.influence(x[:3], y[:3]), rtol=1e-9, atol=1e-12)


class _FoldedLinear(nn.Module):
    """A Linear applied to 5 rows of 9 per point, folded into the batch: [b, 45] -> [5 b, 9] -> [b, 20]."""

    def __init__(self) -> None:
        super().__init__()
        self.step = nn.Linear(9, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.step(x.reshape(-1, 9)).reshape(len(x), -1)


def test_layer_geometry_counts_rows_folded_into_the_batch():
    """A Linear on [5 b, 9] holds 5 rows of abar per training point, as ``layer_chunks`` sees them."""
    from contextlib import closing

    from influence_widgets.core.solvers.kronecker_memory import layer_geometry
    from influence_widgets.core.solvers.kronecker_pass import find_layers, layer_chunks, read_operator

    torch.manual_seed(7)
    x, y = torch.randn(12, 45, dtype=torch.float64), torch.randint(0, 20, (12,))
    ex = InfluenceExplainer(_FoldedLinear().double(), cross_entropy_per_example, x, y, solver="kfac", progress=False)
    problem = read_operator(ex.hessian)
    layers, _, _ = find_layers(problem.objective)
    assert [g.positions for g in layer_geometry(problem, layers)] == [5]
    with closing(layer_chunks(ex.solver, problem, layers, "test")) as chunks:
        assert next(chunks).inputs[0].shape == (60, 1, 10)  # 12 points x 5 rows, 9 inputs and the bias


def test_the_refit_sum_takes_the_position_order_for_a_wide_layer_over_few_positions(monkeypatch):
    """``_refit_sum`` on a layer over 2 positions with 50 inputs and outputs takes the position-by-position order
    (the cheaper by far) and equals the definition."""
    from influence_widgets.core.solvers import ekfac
    from influence_widgets.core.solvers.kronecker_pass import _Chunk

    generator = torch.Generator().manual_seed(8)
    abar = torch.randn(3, 2, 50, dtype=torch.float64, generator=generator)
    grads = [torch.randn(3, 2, 50, dtype=torch.float64, generator=generator) for _ in range(2)]
    other = torch.eye(50, dtype=torch.float64) + 0.1
    chunk = _Chunk(torch.zeros(3), torch.zeros(3), [abar], [grads])
    taken = []
    original = ekfac._refit_through_positions
    monkeypatch.setattr(ekfac, "_refit_through_positions", lambda *args: taken.append(True) or original(*args))
    found = ekfac._refit_sum(chunk, 0, other, True)
    d = [torch.einsum("bto,btc->boc", g, abar) for g in grads]
    expected = sum(torch.einsum("boc,op,bpd->cd", m, other, m) for m in d)
    assert taken == [True]
    torch.testing.assert_close(found, expected, rtol=1e-12, atol=1e-10)
