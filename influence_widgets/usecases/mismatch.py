"""Debugging domain mismatch (the paper's Section 5.3): which training points, and which feature, cause the errors?

For the test points the model gets wrong, the influence of each training point is summed:
``harm_i = sum_j I_up,loss(z_i, z_test_j)`` over the wrong test points j (positive = upweighting z_i
raises their total loss). The most harmful points are then described: how much more harmful they are
than a typical point, which subgroup they come from, and which input features drive their influence,
by I_pert,loss (the gradient of harm_i with respect to the training input, summed over the wrong test
points, in loss units per unit of feature, without the 1/n) and by how far their feature values sit
from the training set's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..core.arrays import as_numpy
from ..core.errors import InfluenceInputError
from ..core.inputs import as_real


@dataclass
class MismatchReport:
    """What the wrong test predictions have in common, traced back to the training set.

    ``harm`` [n_train]: summed I_up,loss over the wrong test points. ``top`` [top_k]: training indices,
    most harmful first. ``feature_gradient`` [n_features]: the mean over ``top`` of |summed I_pert,loss|.
    ``feature_shift`` [n_features]: (mean over ``top`` - mean over training) / training std.
    """

    wrong_test: np.ndarray
    harm: np.ndarray
    top: np.ndarray
    feature_names: list[str]
    feature_gradient: np.ndarray
    feature_shift: np.ndarray
    test_error_by_group: dict[str, float]
    top_share_by_group: dict[str, float]
    train_share_by_group: dict[str, float]

    @property
    def harm_ratio(self) -> float:
        """Mean |harm| of the top points over the median |harm| of all training points."""
        return float(np.abs(self.harm[self.top]).mean() / max(np.median(np.abs(self.harm)), 1e-300))

    @property
    def responsible_feature(self) -> str:
        """The feature with the largest influence gradient among the top points."""
        return self.feature_names[int(np.argmax(self.feature_gradient))]

    @property
    def responsible_group(self) -> str | None:
        """The subgroup most over-represented among the top points, relative to the training set."""
        if not self.top_share_by_group:
            return None
        return max(self.top_share_by_group, key=lambda g: self.top_share_by_group[g] / self.train_share_by_group[g])

    def summary(self) -> str:
        lines = [
            f"{len(self.wrong_test)} wrong test predictions; their {len(self.top)} most harmful training points "
            f"are {self.harm_ratio:.0f}x as influential as the median training point."
        ]
        if self.test_error_by_group:
            errors = ", ".join(f"{g}: {e:.0%}" for g, e in self.test_error_by_group.items())
            lines.append(f"Test error by group: {errors}.")
            shares = ", ".join(
                f"{g}: {self.top_share_by_group[g]:.0%} of the top vs {self.train_share_by_group[g]:.1%} of training"
                for g in self.top_share_by_group
            )
            lines.append(f"Groups among the most harmful points: {shares}.")
        order = np.argsort(-self.feature_gradient)[:3]
        features = ", ".join(
            f"{self.feature_names[i]} (gradient {self.feature_gradient[i]:.3g}, shift {self.feature_shift[i]:+.1f} sd)"
            for i in order
        )
        lines.append(f"Features driving their influence: {features}.")
        return "\n".join(lines)


def _group_shares(groups: np.ndarray, indices: np.ndarray) -> dict[str, float]:
    return {str(g): float(np.mean(groups[indices] == g)) for g in np.unique(groups)}


def domain_mismatch_report(
    explainer,
    X_test: Any,
    y_test: Any,
    *,
    top_k: int = 10,
    feature_names: Sequence[str] | None = None,
    groups_train: Any = None,
    groups_test: Any = None,
) -> MismatchReport:
    """Trace the wrong predictions on ``X_test`` back to the training points and features behind them.

    Inputs must be flat [n, n_features] (tabular). ``groups_train``/``groups_test``: optional subgroup
    labels per row (for example "child"/"adult") for the per-group error and over-representation report.
    """
    x, y = explainer.coerce_test(X_test, y_test)
    if x.ndim != 2:
        raise InfluenceInputError(f"domain_mismatch_report needs tabular inputs [n, n_features]; got {tuple(x.shape)}")
    n_features = x.shape[1]
    names = [f"x{i}" for i in range(n_features)] if feature_names is None else list(feature_names)
    if len(names) != n_features:
        raise InfluenceInputError(f"feature_names has {len(names)} names but the inputs have {n_features} features")
    top_k = as_real(top_k, "top_k", minimum=1, maximum=explainer.n_train, integer=True, fix="pass e.g. top_k=10")
    group_arrays = []
    for name, groups, n in (("groups_train", groups_train, explainer.n_train), ("groups_test", groups_test, len(x))):
        array = None if groups is None else np.asarray(groups).astype(str)
        if array is not None and array.shape != (n,):
            raise InfluenceInputError(f"{name} must hold one label per row ({n}); got shape {array.shape}")
        group_arrays.append(array)
    g_train, g_test = group_arrays

    wrong = (explainer.predicted_classes(x) != y.long().cpu()).numpy()
    wrong_idx = np.flatnonzero(wrong)
    if len(wrong_idx) == 0:
        raise InfluenceInputError("the model gets every test point right: there is no mismatch to debug")
    x_wrong, y_wrong = x[wrong_idx], y[wrong_idx]
    harm = explainer.influence(x_wrong, y_wrong).double().sum(0).numpy()
    top = np.argsort(-harm, kind="stable")[:top_k]
    pert = explainer.influence_pert_loss(x_wrong, y_wrong, torch.as_tensor(top)).double().sum(0)  # [k, n_features]
    train = as_numpy(explainer.data.x, np.float64)
    spread = train.std(0)
    shift = (train[top].mean(0) - train.mean(0)) / np.where(spread > 0, spread, 1.0)

    error_by_group, top_share, train_share = {}, {}, {}
    if g_test is not None:
        error_by_group = {str(g): float(wrong[g_test == g].mean()) for g in np.unique(g_test)}
    if g_train is not None:
        top_share = _group_shares(g_train, top)
        train_share = _group_shares(g_train, np.arange(explainer.n_train))
    return MismatchReport(
        wrong_test=wrong_idx,
        harm=harm,
        top=top,
        feature_names=names,
        feature_gradient=pert.abs().mean(0).numpy(),
        feature_shift=shift,
        test_error_by_group=error_by_group,
        top_share_by_group=top_share,
        train_share_by_group=train_share,
    )
