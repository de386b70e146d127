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
