"""Inverse-Hessian solvers behind one interface: ``solve(operator, rhs [p, m]) -> (x [p, m], diagnostics)``.

A solver declares what it can do (``base.Solver``); the registry (``registry.py``) names them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from ..caches import KeyedCache
from ..errors import InfluenceInputError
from .arnoldi import ArnoldiOptions, ArnoldiSolver
from .auto import FirstAnswerExactSolver
from .base import SolveDiagnostics, Solver, SolverDefaults, SolverWork
from .cg import CGSolver
from .ekfac import EKFACOptions, EKFACSolver
from .exact import ExactSolver
from .kfac import KFACOptions, KFACSolver
from .lissa import LissaSolver
from .options import CGOptions, ExactOptions, LissaOptions
from .registry import REGISTRY, SolverChoice, SolverEntry, check_solver_name, choose, solver_names


def solver_options(name: str, options: Any = None) -> Any:
    """The options of solver ``name``: its options dataclass as given, built from a dict of its fields,
    or its defaults for None."""
    options_cls = REGISTRY[check_solver_name(name)].options
    if options is None:
        return options_cls()
    if isinstance(options, Mapping):
        known = {f.name for f in fields(options_cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise InfluenceInputError(
                f"unknown option(s) {unknown} for solver {name!r}; valid options are {sorted(known)}"
            )
        return options_cls(**options)
    if not isinstance(options, options_cls):
        raise InfluenceInputError(
            f"solver {name!r} takes {options_cls.__name__}, got {type(options).__name__}; "
            f"pass {options_cls.__name__}(...) or a dict of its fields"
        )
    return options


def make_solver(
    name: str,
    options: Any = None,
    progress: bool = False,
    cache: KeyedCache | None = None,
    solver_cls: type | None = None,
) -> Solver:
    """Build solver ``name`` from its options (an options dataclass, a dict of its fields, or None).

    ``solver_cls``: the class to run it with, where ``choose`` picked a variant (``auto``'s exact solver
    that answers its first test points by CG); ``cache``: where solvers keep what outlives one solve."""
    solver_cls = REGISTRY[check_solver_name(name)].solver if solver_cls is None else solver_cls
    return solver_cls(solver_options(name, options), progress=progress, cache=cache)


__all__ = [
    "REGISTRY",
    "ArnoldiOptions",
    "ArnoldiSolver",
    "CGOptions",
    "CGSolver",
    "EKFACOptions",
    "EKFACSolver",
    "ExactOptions",
    "ExactSolver",
    "FirstAnswerExactSolver",
    "KFACOptions",
    "KFACSolver",
    "LissaOptions",
    "LissaSolver",
    "SolveDiagnostics",
    "Solver",
    "SolverChoice",
    "SolverDefaults",
    "SolverEntry",
    "SolverWork",
    "check_solver_name",
    "choose",
    "make_solver",
    "solver_names",
    "solver_options",
]
