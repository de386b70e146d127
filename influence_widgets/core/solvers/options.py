"""Solver settings as small frozen dataclasses with documented defaults."""

from __future__ import annotations

import numbers
import typing
import warnings
from dataclasses import InitVar, dataclass, fields

import numpy as np
import torch

from ..errors import InfluenceInputError


def _check_field_types(options: object) -> None:
    """Each field must have its annotated type: ints for int fields (numpy and 0-d tensor integers are
    converted), real numbers for float fields, bools for bool fields, strings for str fields; None only
    where the annotation allows it. Bools are not numbers here."""
    hints = typing.get_type_hints(type(options))
    cls = type(options).__name__
    for f in fields(options):
        value = getattr(options, f.name)
        allowed = typing.get_args(hints[f.name]) or (hints[f.name],)
        if value is None and type(None) in allowed:
            continue
        if isinstance(value, (np.generic, np.ndarray, torch.Tensor)) and getattr(value, "ndim", 0) == 0:
            value = value.item()
        if bool in allowed:
            ok = isinstance(value, (bool, np.bool_))
        elif int in allowed:
            ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        elif float in allowed:
            ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
            value = float(value) if ok else value
        elif str in allowed:
            ok = isinstance(value, str)
        else:
            ok = True
        if not ok:
            names = " or ".join(t.__name__ for t in allowed)
            raise InfluenceInputError(
                f"{cls}.{f.name} must be {names}, got {getattr(options, f.name)!r} of type "
                f"{type(getattr(options, f.name)).__name__}; pass e.g. {cls}({f.name}={f.default!r})"
            )
        if int in allowed and not isinstance(value, bool):
            value = int(value)
        object.__setattr__(options, f.name, value)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InfluenceInputError(message)


@dataclass(frozen=True)
class ExactOptions:
    """Explicit Hessian, factorised once in float64 and reused for every right-hand side.

    max_params: refuse models with more selected parameters than this (the Hessian has p^2 entries).
    columns_per_pass: Hessian columns built per pass over the training set (``block=`` is its old name,
        still accepted).
    """

    max_params: int = 5000
    columns_per_pass: int = 128
    block: InitVar[int | None] = None

    def __post_init__(self, block: int | None) -> None:
        if block is not None:
            if isinstance(block, bool) or not isinstance(block, numbers.Integral) or block < 1:
                raise InfluenceInputError(
                    f"ExactOptions(block={block!r}): block, the old name of columns_per_pass, must be an int >= 1"
                )
            warnings.warn(
                "ExactOptions(block=...) is now ExactOptions(columns_per_pass=...)", DeprecationWarning, stacklevel=3
            )
            object.__setattr__(self, "columns_per_pass", int(block))
        _check_field_types(self)
        _require(self.max_params >= 1, f"ExactOptions.max_params must be >= 1, got {self.max_params}")
        _require(self.columns_per_pass >= 1, f"ExactOptions.columns_per_pass must be >= 1, got {self.columns_per_pass}")


PRECONDITIONERS = ("auto", "gauss-newton", "none")


@dataclass(frozen=True)
class CGOptions:
    """Matrix-free conjugate gradients on all right-hand sides at once.

    rtol: stop a column when ||H x - b|| <= rtol ||b||; None means 1e-8 in float64, 1e-5 in float32.
    max_iter: iteration cap; each iteration is one Hessian-vector product per unconverged column.
    block: share one Krylov space between all right-hand sides (block CG); False runs one CG
        recursion per column, batched (always the case for per-column operators).
    preconditioner: ``"gauss-newton"`` (block CG only: the damped Gauss-Newton matrix of the training
        loss, built once from per-example output Jacobians and factorised in float64), ``"none"``, or
        ``"auto"``: Gauss-Newton up to ``preconditioner_max_params`` parameters, where its p x p
        factor is cheap.
    preconditioner_points: training points (a seeded random subset when there are more) that the
        Gauss-Newton preconditioner is built from; it changes the speed of convergence, not the answer.
        None: sized to the solve, about (2 + m) p / C points for m right-hand sides and C outputs per
        point, between 256 and 4096 (``TrainingHessian.preconditioner_points``).
    preconditioner_max_params: the ``"auto"`` limit above.
    recycle: start each solve from the directions of earlier solves with the same Hessian (block CG),
        so that asking about one more test point gets cheaper as the session goes on.
    """

    rtol: float | None = None
    max_iter: int = 1000
    block: bool = True
    preconditioner: str = "auto"
    preconditioner_points: int | None = None
    preconditioner_max_params: int = 5000
    recycle: bool = True

    def __post_init__(self) -> None:
        _check_field_types(self)
        _require(self.rtol is None or 0 < self.rtol < 1, f"CGOptions.rtol must lie in (0, 1), got {self.rtol}")
        _require(self.max_iter >= 1, f"CGOptions.max_iter must be >= 1, got {self.max_iter}")
        _require(
            self.preconditioner in PRECONDITIONERS,
            f"CGOptions.preconditioner must be one of {PRECONDITIONERS}, got {self.preconditioner!r}",
        )
        _require(
            self.preconditioner_points is None or self.preconditioner_points >= 1,
            f"CGOptions.preconditioner_points must be >= 1 (or None, sized to the solve), got "
            f"{self.preconditioner_points}",
        )
        _require(
            self.preconditioner_max_params >= 1,
            f"CGOptions.preconditioner_max_params must be >= 1, got {self.preconditioner_max_params}",
        )


@dataclass(frozen=True)
class LissaOptions:
    """The stochastic LiSSA estimator (Agarwal et al. 2017) as used by Koh & Liang.

    Recursion: h_0 = v, h_j = v + h_{j-1} - (H_B h_{j-1}) / scale with H_B a minibatch
    estimate of H; the estimate of H^-1 v is h_depth / scale, averaged over ``repeats``.
    scale: must exceed lambda_max(H) / 2; None picks 1.1 x a Lanczos estimate of lambda_max.
    depth: recursion steps; None picks enough for the slowest direction to shrink by 1e-4,
        from scale / (weight_decay + damping), capped at ``max_depth`` (with a ``ConvergenceWarning``
        giving the figures, and ``converged=False``). A given scale is checked against lambda_max / 2.
    batch_size: training points per minibatch Hessian-vector product.
    tail_fraction: average the estimate over this last fraction of the recursion to cut the
        minibatch noise (0 keeps only the last step, as in the paper's code).
    """

    scale: float | None = None
    depth: int | None = None
    repeats: int = 1
    batch_size: int = 128
    max_depth: int = 10000
    tail_fraction: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        _check_field_types(self)
        _require(self.scale is None or self.scale > 0, f"LissaOptions.scale must be > 0, got {self.scale}")
        _require(self.depth is None or self.depth >= 1, f"LissaOptions.depth must be >= 1, got {self.depth}")
        _require(self.repeats >= 1, f"LissaOptions.repeats must be >= 1, got {self.repeats}")
        _require(self.batch_size >= 1, f"LissaOptions.batch_size must be >= 1, got {self.batch_size}")
        _require(self.max_depth >= 1, f"LissaOptions.max_depth must be >= 1, got {self.max_depth}")
        _require(
            0 <= self.tail_fraction < 1, f"LissaOptions.tail_fraction must lie in [0, 1), got {self.tail_fraction}"
        )
