"""Streaming the training set from a Dataset or DataLoader, never holding G, and random projection of gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from closed_form import as_numpy, binary_logistic, influence_matrix
from torch.utils.data import DataLoader, Dataset, TensorDataset

from influence_widgets import InfluenceExplainer, InfluenceInputError


class DigitsOnDemand(Dataset):
    """A map-style dataset that builds each (x, y) pair when asked, as a disk-backed dataset would."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x.numpy(), y.numpy()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i].copy(), self.y[i].copy()


class InputsOnly(Dataset):
    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i]


def ground_truth(trained):
    train_grads, hessian = binary_logistic(
        trained.model.linear, as_numpy(trained.X_train), as_numpy(trained.y_train), trained.weight_decay
    )
    test_grads, _ = binary_logistic(
        trained.model.linear, as_numpy(trained.X_test), as_numpy(trained.y_test), trained.weight_decay
    )
    return train_grads, test_grads, hessian


def relative_error(estimate: torch.Tensor, truth: np.ndarray) -> float:
    return float(np.linalg.norm(as_numpy(estimate) - truth) / np.linalg.norm(truth))


def sources(trained):
    yield "TensorDataset", TensorDataset(trained.X_train, trained.y_train)
    yield "DataLoader", DataLoader(TensorDataset(trained.X_train, trained.y_train), batch_size=50, shuffle=False)
    yield "on-demand Dataset", DigitsOnDemand(trained.X_train, trained.y_train)


@pytest.mark.parametrize("solver", ["exact", "cg"])
def test_streamed_influence_matches_closed_form_without_holding_gradients(binary_logreg, solver):
    train_grads, test_grads, hessian = ground_truth(binary_logreg)
    truth = influence_matrix(test_grads, train_grads, hessian)
    self_truth = -np.einsum("ij,ji->i", train_grads, np.linalg.solve(hessian, train_grads.T))
    for name, source in sources(binary_logreg):
        ex = InfluenceExplainer(
            binary_logreg.model,
            binary_logreg.loss_fn,
            source,
            None,
            weight_decay=binary_logreg.weight_decay,
            solver=solver,
            batch_size=37,
            cache_gradients=False,
            progress=False,
        )
        influence = ex.influence(binary_logreg.X_test, binary_logreg.y_test)
        assert relative_error(influence, truth) < 1e-6, name
        assert relative_error(ex.self_influence(), self_truth) < 1e-6, name
        assert relative_error(ex.influence_params([3, 5]), -np.linalg.solve(hessian, train_grads[[3, 5]].T).T) < 1e-6
        assert ex.cached_train_gradients() is None, "a streaming explainer must not hold G"


def test_projected_influence_is_unbiased_and_its_error_shrinks_like_one_over_root_dim(binary_logreg):
    train_grads, test_grads, hessian = ground_truth(binary_logreg)
    truth = influence_matrix(test_grads, train_grads, hessian)
    ex = InfluenceExplainer(
        binary_logreg.model,
        binary_logreg.loss_fn,
        binary_logreg.X_train,
        binary_logreg.y_train,
        weight_decay=binary_logreg.weight_decay,
        progress=False,
    )
    x, y = binary_logreg.X_test, binary_logreg.y_test
    estimates = np.stack([as_numpy(ex.approximate_influence(x, y, 8, seed=s)) for s in range(200)])
    # unbiased: each entry's mean over projections sits within its standard error of the exact value
    # (|z| averages 0.80 for an unbiased estimate; a bias of one standard deviation of a single
    # projection would make it about 14)
    z = np.abs(estimates.mean(0) - truth) / (estimates.std(0) / np.sqrt(len(estimates)))
    assert z.mean() < 1.2, z.mean()
    # the estimate improves with the dimension; at dim = p it ranks the most harmful points well
    # its error shrinks like 1/sqrt(dim): averaged over projections, a quarter of the error at 16x the dimension
    error = {
        dim: np.mean(
            [
                np.linalg.norm(as_numpy(ex.approximate_influence(x, y, dim, seed=s)) - truth) / np.linalg.norm(truth)
                for s in range(10)
            ]
        )
        for dim in (4, 64)
    }
    assert 2.5 < error[4] / error[64] < 6.5, error


def test_streaming_bad_input_is_refused(binary_logreg):
    data = TensorDataset(binary_logreg.X_train, binary_logreg.y_train)
    kwargs = dict(weight_decay=binary_logreg.weight_decay, progress=False)
    model, loss = binary_logreg.model, binary_logreg.loss_fn
    with pytest.raises(InfluenceInputError, match="pass y_train=None"):
        InfluenceExplainer(model, loss, data, binary_logreg.y_train, **kwargs)
    with pytest.raises(InfluenceInputError, match="shuffle=False"):
        InfluenceExplainer(model, loss, DataLoader(data, batch_size=8, shuffle=True), None, **kwargs)
    with pytest.raises(InfluenceInputError, match="batch_size must be a positive integer"):
        InfluenceExplainer(model, loss, data, None, batch_size=0, **kwargs)
    with pytest.raises(InfluenceInputError, match=r"\(input, target\) pairs"):
        InfluenceExplainer(model, loss, InputsOnly(binary_logreg.X_train), None, **kwargs)
    ex = InfluenceExplainer(model, loss, data, None, cache_gradients=False, **kwargs)
    with pytest.raises(InfluenceInputError, match="cache_gradients is off"):
        ex.train_gradients()
    with pytest.raises(InfluenceInputError, match="need X_train and y_train as tensors"):
        ex.validate_loo(binary_logreg.X_test[:1], binary_logreg.y_test[:1], n_points=2)
    for dim in (0, ex.n_params + 1):
        with pytest.raises(InfluenceInputError, match="projection dimension must be an integer in"):
            ex.approximate_influence(binary_logreg.X_test, binary_logreg.y_test, dim)
    with pytest.raises(InfluenceInputError, match="cache_gradients must be True, False or 'auto'"):
        InfluenceExplainer(model, loss, data, None, cache_gradients="yes", **kwargs)


@pytest.mark.parametrize("solver", ["exact", "cg"])
def test_a_dataset_is_read_at_most_batch_size_items_at_a_time(binary_logreg, solver):
    sizes = []

    def recording_collate(items):
        sizes.append(len(items))
        return torch.utils.data.default_collate(items)

    t = binary_logreg
    loader = DataLoader(TensorDataset(t.X_train, t.y_train), batch_size=64, collate_fn=recording_collate)
    ex = InfluenceExplainer(
        t.model, t.loss_fn, loader, None, weight_decay=t.weight_decay, solver=solver, batch_size=16, progress=False
    )
    reference = InfluenceExplainer(
        t.model, t.loss_fn, t.X_train, t.y_train, weight_decay=t.weight_decay, progress=False
    )
    scores = ex.influence(t.X_test, t.y_test)
    torch.testing.assert_close(scores, reference.influence(t.X_test, t.y_test), rtol=1e-5, atol=1e-8)
    assert sizes and max(sizes) <= 16
