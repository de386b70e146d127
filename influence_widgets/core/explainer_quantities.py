"""The influence quantities of Koh & Liang (2017), each one solve and one product away from s_test.

Signs and units: I_up,loss has the paper's sign (positive = harmful) and no 1/n; removing z changes the
test loss by about -I_up,loss / n (``predicted_loss_change``). Test points are rows, training points columns.
"""

from __future__ import annotations

from typing import Any

import torch

from .distributed import check_client
from .errors import InfluenceInputError
from .explainer_inputs import Measurement
from .explainer_solves import SolveMethods
from .inputs import as_real, check_indices
from .refinement import newton_removal_steps


class InfluenceQuantities(SolveMethods):
    """I_up,loss, its leave-one-out prediction (first order or Newton-refined), I_up,params, I_pert,loss,
    self-influence and a random-projection estimate."""

    def influence(
        self, X_test: Any, y_test: Any, measurement: Measurement | None = None, *, client: Any = None
    ) -> torch.Tensor:
        """I_up,loss(z_i, z_test) = -nabla L(z_test)^T H^-1 nabla L(z_i), shape [n_test, n_train].

        The paper's sign: positive = harmful (upweighting z_i raises the test loss), negative =
        helpful. No 1/n: divide by -n for the change on removal (``predicted_loss_change``). With a
        ``measurement`` (e.g. ``measurements.predicted_class_logit``) it is the influence on that
        quantity instead of the test loss. With a ``dask.distributed.Client``, the passes over the
        training set (scores and Hessian-vector products) run on its workers, shard by shard.
        """
        if client is not None:
            check_client(client)
        x, y = self.coerce_test(X_test, y_test)
        if measurement is not None:
            self._check_model_and_loss(measurement, "measurement")
        s_test = self._s_test(x, y, measurement, client)
        return self._scores(-s_test) if client is None else self.distribute(client).scores(-s_test)

    def influence_of(
        self, X_test: Any, y_test: Any, X: Any, y: Any, measurement: Measurement | None = None
    ) -> torch.Tensor:
        """I_up,loss(z, z_test) for points z = (x, y) that need not be in the training set, [n_test, k] (CPU).

        -nabla L(z_test)^T H^-1 nabla L(z), with H the training set's Hessian as everywhere: the influence of
        adding z with weight eps (candidate points, augmentations, a planned attack), same sign (positive =
        harmful) and units (no 1/n) as ``influence``; for a training point it equals that point's column of
        ``influence``. Adding z at weight 1/n changes the test loss by about +I / n. pyDVL calls this
        ``influences(x_test, y_test, x, y)``. The points are checked like test points.
        """
        x_test, y_targets = self.coerce_test(X_test, y_test)
        if measurement is not None:
            self._check_model_and_loss(measurement, "measurement")
        s_test = self._s_test(x_test, y_targets, measurement)
        x, targets = self.coerce_test(X, y)
        gradients = self._per_example_grads(x, targets, None, "gradients of the points")
        return (-s_test @ gradients.T).cpu()

    def predicted_loss_change(
        self,
        X_test: Any,
        y_test: Any,
        measurement: Measurement | None = None,
        *,
        refine: str | None = None,
        top_k: int = 40,
        client: Any = None,
    ) -> torch.Tensor:
        """Predicted change in each test loss if each training point were removed, [n_test, n_train].

        Equals -I_up,loss / n (first order in eps = -1/n). Positive: removing the point would raise
        the test loss, so the point was helpful. With ``refine="newton"`` the ``top_k`` entries of each
        row with the largest |influence| are replaced by L(z_test, theta_-z) - L(z_test, theta_hat), with
        theta_-z one Newton step of the leave-one-out objective (see ``core.refinement``).
        """
        if refine is not None and refine != "newton":
            raise InfluenceInputError(f"unknown refine={refine!r}; use refine='newton' or None")
        if refine is not None:
            top_k = as_real(
                top_k, "top_k", minimum=1, maximum=self.n_train, integer=True, fix=f"pass 1..{self.n_train}"
            )
        first_order = -self.influence(X_test, y_test, measurement, client=client) / self.n_train
        if refine is None:
            return first_order
        x, y = self.coerce_test(X_test, y_test)
        top = torch.argsort(first_order.abs(), dim=1, descending=True)[:, :top_k]
        removed = torch.unique(top)
        changes = self.newton_loss_change(x, y, removed, measurement)
        refined = first_order.clone()
        column = {int(i): k for k, i in enumerate(removed)}
        for row in range(len(top)):
            cols = [column[int(i)] for i in top[row]]
            refined[row, top[row]] = changes[row, cols]
        return refined

    def newton_loss_change(
        self, X_test: Any, y_test: Any, train_indices: Any, measurement: Measurement | None = None
    ) -> torch.Tensor:
        """L(z_test, theta_-z) - L(z_test, theta_hat) with theta_-z one Newton step, [n_test, k] (CPU)."""
        x, y = self.coerce_test(X_test, y_test)
        idx = check_indices(train_indices, self.n_train, "train_indices")
        if self.settings.curvature != "hessian":
            raise InfluenceInputError(
                "the Newton step of a removal uses each removed point's own Hessian, so it is defined for "
                "curvature='hessian' only; with curvature='gauss_newton' use the first-order prediction (refine=None)"
            )
        fn = self.objective.loss_fn if measurement is None else measurement
        steps = newton_removal_steps(self, idx)
        x, y = x.to(self.objective.device), y.to(self.objective.device)
        theta = self.objective.theta
        with torch.no_grad():
            before = self.objective.batch_values(fn, theta, x, y)
            after = torch.stack([self.objective.batch_values(fn, theta + step, x, y) for step in steps], dim=1)
        return (after - before[:, None]).cpu()

    def influence_params(self, train_indices: Any) -> torch.Tensor:
        """I_up,params(z) = d theta / d eps = -H^-1 nabla L(z), shape [k, p] for k training points.

        Removing z moves the parameters by about -I_up,params / n = H^-1 nabla L(z) / n.
        """
        idx = check_indices(train_indices, self.n_train, "train_indices")
        self.stationarity()
        return (-self.inverse_hvp(self.gradients_at(idx).T).T).cpu()

    def influence_pert_loss(
        self, X_test: Any, y_test: Any, train_indices: Any, measurement: Measurement | None = None
    ) -> torch.Tensor:
        """I_pert,loss(z, z_test) = -nabla L(z_test)^T H^-1 nabla_x nabla_theta L(z), [n_test, k, *x_shape].

        The gradient of I_up,loss(z, z_test) with respect to the training input x of z (theta and H
        held fixed). Moving the training input from x to x + delta and retraining changes the test
        loss by about (1/n) delta . I_pert,loss, so a step along +I_pert,loss raises the test loss.
        """
        idx = check_indices(train_indices, self.n_train, "train_indices")
        x_train, y_train = self.data.take(idx)
        if not x_train.is_floating_point():
            raise InfluenceInputError("I_pert,loss needs continuous inputs; X_train is not floating point")
        x, y = self.coerce_test(X_test, y_test)
        if measurement is not None:
            self._check_model_and_loss(measurement, "measurement")
        s_test = self._s_test(x, y, measurement)
        rows = []
        for direction in s_test:
            chunks = [
                self.objective.input_grads_of_score(
                    x_train[start : start + self.batch_size], y_train[start : start + self.batch_size], -direction
                )
                for start in range(0, len(idx), self.batch_size)
            ]
            rows.append(torch.cat(chunks))
        return torch.stack(rows).cpu()

    def self_influence(self, *, client: Any = None) -> torch.Tensor:
        """I_up,loss(z_i, z_i) = -nabla L(z_i)^T H^-1 nabla L(z_i) for every training point, shape [n_train].

        Non-positive when H is positive definite; rank by magnitude (larger = the point leans more on
        itself, typical of mislabelled or atypical points). Costs n inverse-Hessian products. With a
        Dask ``client``, the gradients come from the workers shard by shard.
        """
        self.check_training_data_unchanged()
        if client is not None:
            check_client(client)
        self.stationarity()
        if client is None:
            chunks = self.train_gradient_chunks(desc="self-influence")
        else:
            chunks = self.distribute(client).gradient_chunks()
        values = []
        for _, shard in chunks:
            for start in range(0, len(shard), self.batch_size):
                block = shard[start : start + self.batch_size].to(self.objective.device)
                values.append(-(self.inverse_hvp(block.T, client).T * block).sum(1).cpu())
        return torch.cat(values)

    def approximate_influence(self, X_test: Any, y_test: Any, dim: int, seed: int = 0) -> torch.Tensor:
        """I_up,loss estimated through a random projection to ``dim`` dimensions, [n_test, n_train].

        -(P^T s_test) . (P^T nabla L(z_i)) with P [p, dim] Gaussian, entries N(0, 1/dim), so that
        E[P P^T] = I and the estimate is unbiased; its error shrinks like 1/sqrt(dim). Same sign and
        units as ``influence``. The projected gradients [n, dim] are cached per (dim, seed), so later
        test points cost n x dim instead of a pass of per-example gradients: fast approximate ranking
        when G itself does not fit in memory. s_test is exact (the configured solver).
        """
        dim = as_real(dim, "dim", integer=True, fix=f"the projection dimension, an integer in [1, p = {self.n_params}]")
        if not 1 <= dim <= self.n_params:
            raise InfluenceInputError(
                f"the projection dimension must be an integer in [1, p = {self.n_params}], got dim={dim!r}"
            )
        seed = as_real(seed, "seed", integer=True, fix="pass an integer seed")
        x, y = self.coerce_test(X_test, y_test)
        key = ("projection", self._objective_key, self._data_key, dim, seed)
        if key not in self._cache:
            generator = torch.Generator().manual_seed(seed)
            projection = torch.randn(self.n_params, dim, generator=generator, dtype=torch.float32)
            projection = projection.div_(dim**0.5).to(self.objective.device, self.objective.dtype)
            projected = torch.empty(self.n_train, dim, dtype=self.objective.dtype, device=self.objective.device)
            for start, grads in self.train_gradient_chunks(desc="projected gradients"):  # filled in place: one copy
                torch.matmul(grads, projection, out=projected[start : start + len(grads)])
            self._cache.put(key, (projection, projected))
        projection, projected = self._cache.get(key)
        return (-(self._s_test(x, y, None) @ projection) @ projected.T).cpu()
