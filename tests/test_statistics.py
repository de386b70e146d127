"""Spearman with one tie rule (average ranks, as scipy), Euclidean distances and the to-numpy rule, written once."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from influence_widgets.core.arrays import as_numpy, distances_to
from influence_widgets.core.statistics import average_ranks, pearson, spearman
from influence_widgets.core.validation import LOOResult


def test_tied_values_share_the_mean_of_the_ranks_they_span():
    np.testing.assert_array_equal(average_ranks([10, 20, 20, 30]), [0, 1.5, 1.5, 3])
    np.testing.assert_array_equal(average_ranks([5, 5, 5]), [1, 1, 1])
    values = np.random.default_rng(0).integers(0, 4, size=50)
    np.testing.assert_allclose(average_ranks(values), stats.rankdata(values) - 1)


@pytest.mark.parametrize("seed", range(5))
def test_spearman_with_ties_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 5, size=40).astype(float)  # many ties
    b = a + rng.integers(0, 3, size=40)
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b)[0], abs=1e-12)
    assert pearson(a, b) == pytest.approx(stats.pearsonr(a, b)[0], abs=1e-12)
    # the order of tied points does not change the answer (ordinal ranks would)
    order = rng.permutation(40)
    assert spearman(a[order], b[order]) == pytest.approx(spearman(a, b), abs=1e-12)


def test_spearman_without_ties_is_the_correlation_of_the_orders_and_nan_below_two_points():
    a, b = np.array([0.3, -1.0, 2.0, 0.1]), np.array([1.0, 0.0, 3.0, 2.0])
    order = lambda v: np.argsort(np.argsort(v))  # noqa: E731
    assert spearman(a, b) == pytest.approx(np.corrcoef(order(a), order(b))[0, 1], abs=1e-15)
    assert np.isnan(spearman([1.0], [2.0])) and np.isnan(pearson([1.0], [2.0]))


def test_the_leave_one_out_result_ranks_ties_by_the_same_rule():
    predicted, actual = np.array([1.0, 1.0, 2.0, 3.0, 3.0, 0.5]), np.array([0.2, 0.1, 0.4, 0.4, 0.9, 0.0])
    empty = np.zeros(0)
    result = LOOResult(np.zeros(6, int), np.arange(6), predicted, actual, None, empty)
    assert result.spearman == pytest.approx(stats.spearmanr(predicted, actual)[0], abs=1e-12)


def test_distances_are_euclidean_rows_to_a_point_and_tensors_become_arrays():
    rows = np.array([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0]])
    np.testing.assert_allclose(distances_to(rows, np.array([0.0, 0.0])), [0, 5, np.sqrt(2)])
    tensor = torch.tensor([[1.5, 2.0]], dtype=torch.float64, requires_grad=True) * 2
    array = as_numpy(tensor, np.float32)
    assert isinstance(array, np.ndarray) and array.dtype == np.float32
    np.testing.assert_array_equal(array, [[3.0, 4.0]])
    assert as_numpy([1, 2]).tolist() == [1, 2]
