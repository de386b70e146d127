"""Independent float64 numpy ground truth for linear models: gradients, Hessians, influence.

Parameter order follows torch's ``nn.Linear``: the weight matrix row-major, then the bias.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def linear_params(layer: nn.Linear) -> tuple[np.ndarray, np.ndarray]:
    return layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy()


def with_bias(x: np.ndarray) -> np.ndarray:
    return np.hstack([x, np.ones((len(x), 1))])


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def binary_logistic(layer: nn.Linear, x: np.ndarray, y: np.ndarray, weight_decay: float):
    """Per-example gradients [n, d+1] and the regularised mean Hessian [d+1, d+1]."""
    w, b = linear_params(layer)
    theta = np.concatenate([w.ravel(), b])
    xt = with_bias(x)
    s = sigmoid(xt @ theta)
    grads = (s - y)[:, None] * xt
    hessian = (xt * (s * (1 - s))[:, None]).T @ xt / len(x) + weight_decay * np.eye(len(theta))
    return grads, hessian


def binary_logistic_grads(layer: nn.Linear, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    w, b = linear_params(layer)
    xt = with_bias(x)
    return (sigmoid(xt @ np.concatenate([w.ravel(), b])) - y)[:, None] * xt


def _multiclass_permutation(k: int, d: int) -> np.ndarray:
    """perm[torch_index] = index in vec(Theta), Theta = [W | b] row-major, K x (d+1)."""
    perm = [row * (d + 1) + col for row in range(k) for col in range(d)]
    perm += [row * (d + 1) + d for row in range(k)]
    return np.asarray(perm)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def multiclass_logistic(layer: nn.Linear, x: np.ndarray, y: np.ndarray, weight_decay: float):
    """Per-example gradients [n, K(d+1)] and Hessian, in torch's parameter order."""
    w, b = linear_params(layer)
    k, d = w.shape
    xt = with_bias(x)
    theta = np.hstack([w, b[:, None]])
    probs = softmax(xt @ theta.T)
    residual = probs - np.eye(k)[y]
    grads_vec = (residual[:, :, None] * xt[:, None, :]).reshape(len(x), -1)
    hessian = np.zeros((k * (d + 1), k * (d + 1)))
    for p_i, x_i in zip(probs, xt):
        hessian += np.kron(np.diag(p_i) - np.outer(p_i, p_i), np.outer(x_i, x_i))
    hessian = hessian / len(x) + weight_decay * np.eye(k * (d + 1))
    perm = _multiclass_permutation(k, d)
    return grads_vec[:, perm], hessian[np.ix_(perm, perm)]


def multiclass_logit_grads(layer: nn.Linear, x: np.ndarray) -> np.ndarray:
    """Gradient of the predicted class's logit, in torch's parameter order."""
    w, b = linear_params(layer)
    k, d = w.shape
    xt = with_bias(x)
    predicted = (xt @ np.hstack([w, b[:, None]]).T).argmax(1)
    grads_vec = (np.eye(k)[predicted][:, :, None] * xt[:, None, :]).reshape(len(x), -1)
    return grads_vec[:, _multiclass_permutation(k, d)]


def least_squares(layer: nn.Linear, x: np.ndarray, y: np.ndarray, weight_decay: float):
    """Loss (1/2)(theta . x~ - y)^2: gradients r_i x~_i and Hessian X~^T X~ / n + lambda I."""
    w, b = linear_params(layer)
    xt = with_bias(x)
    residual = xt @ np.concatenate([w.ravel(), b]) - y
    return residual[:, None] * xt, xt.T @ xt / len(x) + weight_decay * np.eye(xt.shape[1])


def influence_matrix(test_grads: np.ndarray, train_grads: np.ndarray, hessian: np.ndarray) -> np.ndarray:
    """I_up,loss = -g_test^T H^-1 g_train, [n_test, n_train]."""
    return -test_grads @ np.linalg.solve(hessian, train_grads.T)


def as_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()
