"""Inverse-Hessian solvers behind one interface: ``solve(operator, rhs [p, m]) -> (x [p, m], diagnostics)``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any

from ..errors import InfluenceInputError
from .auto import FirstAnswerExactSolver
from .base import SolveDiagnostics, Solver
from .cg import CGSolver
from .exact import ExactSolver
from .lissa import LissaSolver
from .options import CGOptions, ExactOptions, LissaOptions

SOLVERS = {"exact": (ExactSolver, ExactOptions), "cg": (CGSolver, CGOptions), "lissa": (LissaSolver, LissaOptions)}
AUTO_EXACT_MAX_PARAMS = 3000
AUTO_EXACT_AFFINE_MAX_PARAMS = 5000
AUTO_EXACT_MAX_CURVED = 64


def resolve_solver_name(name: str, n_params: int, n_curved: Callable[[], int] | None = None) -> str:
    """``"auto"`` becomes ``"exact"`` up to 3000 parameters, where one factorisation serves every test
    point (a click in the explorer is then a triangular solve), and up to 5000 when at most 64 of them
    lie outside the group the outputs are affine in (``n_curved()``): each of those costs one
    Hessian-vector product, the affine block comes from Jacobians. Otherwise ``"cg"``. Other names are
    checked and returned as given."""
    if not isinstance(name, str) or (name not in SOLVERS and name != "auto"):
        raise InfluenceInputError(f"unknown solver {name!r}; choose one of 'auto', 'exact', 'cg', 'lissa'")
    if name != "auto":
        return name
    if n_params <= AUTO_EXACT_MAX_PARAMS:
        return "exact"
    cheap = n_params <= AUTO_EXACT_AFFINE_MAX_PARAMS and n_curved is not None and n_curved() <= AUTO_EXACT_MAX_CURVED
    return "exact" if cheap else "cg"


def answers_first_by_cg(requested: str, resolved: str, n_curved: Callable[[], int]) -> bool:
    """Whether ``"auto"``, having chosen ``"exact"``, answers its first test points by block CG
    (``solvers.auto``): when the explicit Hessian is not cheap, more than 64 parameters outside the
    affine group, each a column of Hessian-vector products."""
    return requested == "auto" and resolved == "exact" and n_curved() > AUTO_EXACT_MAX_CURVED


def make_solver(name: str, options: Any = None, progress: bool = False, first_answers_by_cg: bool = False) -> Solver:
    """Build a solver from its name and options (an options dataclass, a dict of its fields, or None).

    ``first_answers_by_cg`` (``"exact"`` only): the ``FirstAnswerExactSolver`` of ``"auto"``."""
    solver_cls, options_cls = SOLVERS[name]
    if options is None:
        options = options_cls()
    elif isinstance(options, Mapping):
        known = {f.name for f in fields(options_cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise InfluenceInputError(
                f"unknown option(s) {unknown} for solver {name!r}; valid options are {sorted(known)}"
            )
        options = options_cls(**options)
    elif not isinstance(options, options_cls):
        raise InfluenceInputError(
            f"solver {name!r} takes {options_cls.__name__}, got {type(options).__name__}; "
            f"pass {options_cls.__name__}(...) or a dict of its fields"
        )
    if name == "exact":
        return FirstAnswerExactSolver(options, progress=progress) if first_answers_by_cg else solver_cls(options)
    return solver_cls(options, progress=progress)


__all__ = [
    "CGOptions",
    "CGSolver",
    "ExactOptions",
    "ExactSolver",
    "FirstAnswerExactSolver",
    "LissaOptions",
    "LissaSolver",
    "SolveDiagnostics",
    "Solver",
    "answers_first_by_cg",
    "make_solver",
    "resolve_solver_name",
]
