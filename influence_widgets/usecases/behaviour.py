"""Understanding model behaviour (the paper's Section 5.1): is a model's influence local in input space?

An RBF model's most influential points are its nearest neighbours; a network's need not be. The
summary numbers: the Spearman correlation between |I_up,loss| and Euclidean distance over the training
set (strongly negative = local; tied values share their mean rank), and the mean distance of the 10 most
helpful points against the mean distance of all training points.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..core.arrays import as_numpy, distances_to
from ..core.inputs import check_feature_shape
from ..core.statistics import spearman


@dataclass(frozen=True)
class LocalitySummary:
    """For one test point: how strongly influence follows Euclidean distance."""

    spearman_abs_influence_distance: float
    mean_distance_top10_helpful: float
    mean_distance_all: float

    @property
    def locality_ratio(self) -> float:
        """Mean distance of the 10 most helpful points over the mean distance of all (small = local)."""
        return self.mean_distance_top10_helpful / self.mean_distance_all


def influence_locality(explainer, x_test: Any, y_test: Any, features: Any = None) -> list[LocalitySummary]:
    """A ``LocalitySummary`` per test point; distances in input space, or in ``features(x)`` space."""
    x, y = explainer.coerce_test(x_test, y_test)
    check_feature_shape(x, explainer.data.feature_shape, "x_test")
    influence = explainer.influence(x, y).double().numpy()
    with torch.no_grad():
        train = explainer.data.x if features is None else features(explainer.data.x)
        test = x if features is None else features(x)
    train = as_numpy(train, np.float64).reshape(len(train), -1)
    test = as_numpy(test, np.float64).reshape(len(test), -1)
    summaries = []
    for row, point in zip(influence, test):
        distances = distances_to(train, point)
        helpful = np.argsort(row, kind="stable")[:10]  # most negative I_up,loss = most helpful
        summaries.append(
            LocalitySummary(spearman(np.abs(row), distances), float(distances[helpful].mean()), float(distances.mean()))
        )
    return summaries


def compare_models(explainers: dict[str, Any], x_test: Any, y_test: Any, features: Any = None) -> dict[str, dict]:
    """Locality of each named explainer's influence on the same test points, averaged over them."""
    out = {}
    for name, explainer in explainers.items():
        summaries = influence_locality(explainer, x_test, y_test, features)
        out[name] = {
            "spearman_abs_influence_distance": float(np.mean([s.spearman_abs_influence_distance for s in summaries])),
            "locality_ratio": float(np.mean([s.locality_ratio for s in summaries])),
            "summaries": summaries,
        }
    return out
