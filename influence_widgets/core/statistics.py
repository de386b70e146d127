"""Rank and linear correlation, written once (leave-one-out agreement, influence against distance)."""

from __future__ import annotations

import numpy as np


def average_ranks(values) -> np.ndarray:
    """Ranks 0..n-1 of ``values`` (flattened), ties sharing the mean of the ranks they span.

    [10, 20, 20, 30] -> [0, 1.5, 1.5, 3]: the tie rule of ``scipy.stats.rankdata`` (less one).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(v, kind="stable")
    ordered = v[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(v)]
    ranks = np.empty(len(v))
    ranks[order] = np.repeat((starts + ends - 1) / 2, ends - starts)
    return ranks


def pearson(a, b) -> float:
    """Pearson correlation of two equally long 1-D arrays; NaN for fewer than two values."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(np.corrcoef(a, b)[0, 1]) if len(a) > 1 else float("nan")


def spearman(a, b) -> float:
    """Spearman rank correlation: Pearson of the average ranks (ties share their mean rank, as in
    ``scipy.stats.spearmanr``); NaN for fewer than two values."""
    return pearson(average_ranks(a), average_ranks(b)) if np.size(a) > 1 else float("nan")
