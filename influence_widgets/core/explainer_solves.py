"""Inverse-Hessian products of the explainer: H^-1 v with its solver, s_test per test point (cached by
content), and the stationarity check that the first query makes."""

from __future__ import annotations

import hashlib
import warnings
from typing import Any

import torch

from .curvature import TrainingHessian
from .curvature.gauss_newton_operator import GaussNewtonOperator
from .distributed import ShardedTraining, check_client
from .errors import InfluenceInputError, NotStationaryWarning
from .explainer_gradients import GradientMethods
from .explainer_inputs import Measurement
from .inputs import as_real
from .solvers import SolveDiagnostics, Solver
from .stationarity import StationarityReport, measure_stationarity


class SolveMethods(GradientMethods):
    """H^-1 @ vectors and s_test = H^-1 nabla L(z_test), with diagnostics of every solve."""

    hessian: TrainingHessian | GaussNewtonOperator
    solver: Solver
    diagnostics: list[SolveDiagnostics]
    solver_reason: str | None

    _sharded: dict[str, ShardedTraining]
    weight_decay: float
    damping: float

    def stationarity(self) -> StationarityReport:
        """How far theta-hat is from a minimum of R: ||grad R|| against the typical per-example gradient.

        Computed once (one pass of batch gradients and up to 256 per-example gradients) and cached; a
        ``NotStationaryWarning`` with the figure and the fix when ``ratio`` exceeds the threshold. The
        first influence query and ``validate_loo`` call it, and the report goes into ``diagnostics``.
        """
        key = ("stationarity", self._objective_key, self._data_key, self.weight_decay)
        report = self._cache.get(key)
        if report is None:
            self.check_training_data_unchanged()
            report = self._cache.put(key, measure_stationarity(self))
            if not report.is_stationary:
                warnings.warn(report.summary(), NotStationaryWarning, stacklevel=3)
        return report

    def inverse_hvp(self, vectors: torch.Tensor, client: Any = None) -> torch.Tensor:
        """H^-1 @ vectors for vectors [p, m] with the configured solver; diagnostics go to ``self.diagnostics``.

        With a Dask ``client``, the solver's full Hessian-vector products run on the cluster.
        """
        if vectors.ndim != 2 or vectors.shape[0] != self.n_params:
            raise InfluenceInputError(f"vectors must have shape [{self.n_params}, m], got {tuple(vectors.shape)}")
        operator = self.hessian
        if client is not None and not self.solver.holds_explicit_hessian(self.hessian):
            operator = self.distribute(client).hessian  # the same H (the same key), its products on the cluster
            if isinstance(self.hessian, GaussNewtonOperator):  # its explicit form from the cluster, products here
                operator = GaussNewtonOperator(operator, self.hessian.source)
        solution, diagnostics = self.solver.solve(operator, vectors.to(self.objective.device, self.objective.dtype))
        if self.solver_reason is not None:
            diagnostics.note = "; ".join(filter(None, (self.solver_reason, diagnostics.note)))
        self.diagnostics.append(diagnostics)
        return solution

    def _test_keys(self, x: torch.Tensor, y: torch.Tensor, measurement: Measurement | None) -> list[tuple[Any, ...]]:
        """One key per test point: what s_test depends on (H and its damping, the solver and its options, the
        measurement) and the point's content."""
        x_np = x.detach().cpu().contiguous().numpy()
        y_np = y.detach().cpu().contiguous().numpy()
        solve = (self.hessian.key, self.damping, type(self.solver).__name__, self.solver.options, id(measurement))
        return [
            ("s_test", solve, hashlib.blake2b(x_np[i].tobytes() + y_np[i].tobytes(), digest_size=16).digest())
            for i in range(len(x_np))
        ]

    def _s_test(
        self, x: torch.Tensor, y: torch.Tensor, measurement: Measurement | None, client: Any = None
    ) -> torch.Tensor:
        keys = self._test_keys(x, y, measurement)
        first_row_of_new_key: dict[tuple[Any, ...], int] = {}
        found = {key: self._cache.get(key) for key in keys}
        for row, key in enumerate(keys):
            if found[key] is None:
                first_row_of_new_key.setdefault(key, row)
        if first_row_of_new_key:
            report = self.stationarity()
            rows = torch.tensor(list(first_row_of_new_key.values()))
            grads = self._per_example_grads(x[rows], y[rows], measurement, "test gradients")
            solutions = self.inverse_hvp(grads.T, client).T
            if not report.is_stationary:
                self.diagnostics[-1].warnings.append(report.summary())
            for key, solution in zip(first_row_of_new_key, solutions):
                found[key] = self._cache.put(key, solution)
        return torch.stack([found[key] for key in keys])

    def s_test(
        self, X_test: Any, y_test: Any, measurement: Measurement | None = None, *, client: Any = None
    ) -> torch.Tensor:
        """s_test = H^-1 nabla L(z_test) per test point, [n_test, p] (CPU); cached per test point."""
        x, y = self.coerce_test(X_test, y_test)
        if measurement is not None:
            self._check_model_and_loss(measurement, "measurement")
        return self._s_test(x, y, measurement, client).cpu()

    def distribute(
        self, client: Any, n_shards: int | None = None, *, timeout: float | None = None, retries: int | None = None
    ) -> ShardedTraining:
        """Place the model and the training set on a Dask cluster, in ``n_shards`` contiguous shards
        (default: two per worker; a ``ConcatDataset``'s own parts). Kept per client and reused by every
        method called with ``client=``; call again with ``n_shards`` to reshard. ``timeout`` (seconds per
        gather, default 120) and ``retries`` (default 3) bound a query when workers are lost: it is
        resubmitted afresh, then refused with a ``DistributedWorkError``."""
        check_client(client)
        if timeout is not None:
            timeout = as_real(timeout, "timeout", strictly_above=0, fix="pass a number of seconds, e.g. 120")
        if retries is not None:
            retries = as_real(retries, "retries", minimum=0, integer=True, fix="pass e.g. retries=3")
        sharded = self._sharded.get(client.id)
        if sharded is None or (n_shards is not None and len(sharded.shards) != n_shards):
            sharded = self._sharded[client.id] = ShardedTraining(self, client, n_shards)
        if timeout is not None:
            sharded.timeout = timeout
        if retries is not None:
            sharded.retries = retries
        return sharded
