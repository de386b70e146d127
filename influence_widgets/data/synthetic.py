"""Synthetic tabular data with a planted domain mismatch, after the paper's hospital example (Section 5.3).

Patients are described by a few standardised numbers and binary flags; the target is readmission
(1 = readmitted). In the population, children are rarely readmitted. The training set keeps only a
handful of children, all of them readmitted, so a model learns "child => readmitted" and gets the
test set's children wrong. Influence should point at those few training children and at ``is_child``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

READMISSION_FEATURES = (
    "is_child",
    "age",
    "prior_visits",
    "medications",
    "length_of_stay",
    "diabetic",
    "emergency_admission",
    "lab_procedures",
)


@dataclass
class TabularSplit:
    """A train/test split of standardised features, binary 0./1. targets and a subgroup name per row."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    feature_names: list[str]
    groups_train: np.ndarray
    groups_test: np.ndarray
    planted_group: str
    planted_feature: str


def _patients(rng: np.random.Generator, n: int, child_share: float) -> tuple[np.ndarray, np.ndarray]:
    """Raw features [n, 8] and readmission labels [n] drawn from the population."""
    is_child = rng.random(n) < child_share
    age = np.where(is_child, rng.uniform(1, 14, n), rng.uniform(18, 90, n))
    prior_visits = rng.poisson(np.where(is_child, 0.5, 2.0))
    medications = rng.poisson(np.where(is_child, 2.0, 8.0))
    length_of_stay = rng.gamma(2.0, np.where(is_child, 1.0, 2.5))
    diabetic = rng.random(n) < np.where(is_child, 0.01, 0.25)
    emergency = rng.random(n) < 0.4
    lab_procedures = rng.normal(40, 15, n).clip(0)
    adult_logit = (
        -5.0
        + 0.05 * (age - 50)
        + 1.0 * prior_visits
        + 0.15 * medications
        + 0.25 * length_of_stay
        + 1.2 * diabetic
        + 1.5 * emergency
    )
    logit = np.where(is_child, -3.0, adult_logit)
    readmitted = rng.random(n) < 1 / (1 + np.exp(-logit))
    features = np.stack(
        [is_child, age, prior_visits, medications, length_of_stay, diabetic, emergency, lab_procedures], axis=1
    ).astype(np.float64)
    return features, readmitted.astype(np.float64)


def make_readmission(
    n_train: int = 2000,
    n_test: int = 1000,
    *,
    children_kept: int = 4,
    child_share: float = 0.08,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> TabularSplit:
    """Hospital readmission with a planted mismatch: ``children_kept`` children in training, all readmitted.

    The test set is drawn from the population (``child_share`` children, mostly not readmitted).
    Continuous features are standardised with the training set's mean and spread; flags stay 0/1.
    """
    if children_kept < 1 or children_kept >= n_train:
        raise ValueError(f"children_kept must lie in [1, n_train), got {children_kept}")
    rng = np.random.default_rng(seed)
    adults, adult_labels = [], []
    while sum(len(a) for a in adults) < n_train - children_kept:
        x, y = _patients(rng, 4 * n_train, child_share)
        adults.append(x[x[:, 0] == 0])
        adult_labels.append(y[x[:, 0] == 0])
    x_adult = np.concatenate(adults)[: n_train - children_kept]
    y_adult = np.concatenate(adult_labels)[: n_train - children_kept]
    children = np.empty((0, x_adult.shape[1]))
    while len(children) < children_kept:
        x, y = _patients(rng, 4 * n_train, child_share)
        children = np.concatenate([children, x[(x[:, 0] == 1) & (y == 1)]])  # rare: drawn by rejection
    x_train = np.concatenate([x_adult, children[:children_kept]])
    y_train = np.concatenate([y_adult, np.ones(children_kept)])
    order = rng.permutation(n_train)
    x_train, y_train = x_train[order], y_train[order]
    x_test, y_test = _patients(rng, n_test, child_share)

    continuous = [1, 2, 3, 4, 7]
    mean, std = x_train[:, continuous].mean(0), x_train[:, continuous].std(0)
    for x in (x_train, x_test):
        x[:, continuous] = (x[:, continuous] - mean) / std

    def group(x: np.ndarray) -> np.ndarray:
        return np.where(x[:, 0] == 1, "child", "adult")

    return TabularSplit(
        X_train=torch.as_tensor(x_train, dtype=dtype),
        y_train=torch.as_tensor(y_train, dtype=dtype),
        X_test=torch.as_tensor(x_test, dtype=dtype),
        y_test=torch.as_tensor(y_test, dtype=dtype),
        feature_names=list(READMISSION_FEATURES),
        groups_train=group(x_train),
        groups_test=group(x_test),
        planted_group="child",
        planted_feature="is_child",
    )
