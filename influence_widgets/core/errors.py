"""Errors and warnings that the backend raises, each naming the problem and the fix."""

from __future__ import annotations


class InfluenceInputError(ValueError):
    """Bad input to the influence backend; the message says what is wrong and what to do."""


class SolverDivergedError(RuntimeError):
    """An iterative inverse-Hessian solver blew up; the message names the setting to change."""


class InfluenceWarning(UserWarning):
    """Base class of the warnings this package emits."""


class ConvergenceWarning(InfluenceWarning):
    """An iterative solver stopped before reaching its tolerance."""


class NonConvexWarning(InfluenceWarning):
    """The Hessian has a negative eigenvalue, so H^-1 is not a well-posed influence."""


class ModelModeWarning(InfluenceWarning):
    """The model was in training mode with layers that behave differently in eval mode."""


class NotStationaryWarning(InfluenceWarning):
    """The trained parameters are far from a minimum of the training objective, so influence (a
    derivative at a minimum) and leave-one-out retraining disagree; see ``InfluenceExplainer.stationarity()``."""


class FrozenParameterWarning(InfluenceWarning):
    """``params`` selects parameters with ``requires_grad=False``: they count, as asked."""


class InsufficientMemoryError(InfluenceInputError, MemoryError):
    """An O(p^2) allocation would not fit in the memory available; the message names the alternative."""


class DistributedWorkError(RuntimeError):
    """A Dask query failed or timed out after its retries (workers lost); the message says what to do."""
