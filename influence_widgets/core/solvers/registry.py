"""The solvers by name: adding one is its own file and one line here.

Each entry names the solver class, its options dataclass and one line for error messages and the
command line's help. ``solver="auto"`` chooses among them by size (``choose``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import InfluenceInputError
from .arnoldi import ArnoldiOptions, ArnoldiSolver
from .auto import FirstAnswerExactSolver
from .cg import CGSolver
from .ekfac import EKFACOptions, EKFACSolver
from .exact import ExactSolver
from .kfac import KFACOptions, KFACSolver
from .lissa import LissaSolver
from .options import CGOptions, ExactOptions, LissaOptions


@dataclass(frozen=True)
class SolverEntry:
    name: str
    solver: type
    options: type
    summary: str


REGISTRY: dict[str, SolverEntry] = {
    entry.name: entry
    for entry in (
        SolverEntry("exact", ExactSolver, ExactOptions, "the explicit Hessian, factorised once (small models)"),
        SolverEntry("cg", CGSolver, CGOptions, "block conjugate gradients, Gauss-Newton preconditioned"),
        SolverEntry("lissa", LissaSolver, LissaOptions, "LiSSA, stochastic estimation from minibatch products"),
        SolverEntry("arnoldi", ArnoldiSolver, ArnoldiOptions, "top-k eigenpairs (Lanczos), the rest as damping"),
        SolverEntry("kfac", KFACSolver, KFACOptions, "K-FAC, Kronecker-factored Fisher per Linear/Conv2d layer"),
        SolverEntry("ekfac", EKFACSolver, EKFACOptions, "EK-FAC, K-FAC's eigenbasis with corrected eigenvalues"),
    )
}

AUTO_EXACT_MAX_PARAMS = 3000
AUTO_EXACT_AFFINE_MAX_PARAMS = 5000
AUTO_EXACT_MAX_CURVED = 64


def solver_names() -> tuple[str, ...]:
    """``"auto"`` and every registered name, for choices and error messages."""
    return ("auto", *REGISTRY)


def check_solver_name(name: object) -> str:
    if not isinstance(name, str) or name not in solver_names():
        choices = ", ".join(repr(n) for n in solver_names())
        raise InfluenceInputError(f"unknown solver {name!r}; choose one of {choices}")
    return name


@dataclass(frozen=True)
class SolverChoice:
    """The solver a setting resolves to: its registered name and the class that runs it."""

    name: str
    solver: type


def choose(requested: str, n_params: int, n_curved: Callable[[], int]) -> SolverChoice:
    """A registered name is taken as given. ``"auto"`` becomes ``"exact"`` up to 3000 parameters, where one
    factorisation serves every test point (a click in the explorer is then a triangular solve), and up to
    5000 when at most 64 of them lie outside the group the outputs are affine in (``n_curved()``): each of
    those costs one Hessian-vector product, the affine block comes from Jacobians. Otherwise ``"cg"``.
    Where auto picks exact but the explicit Hessian is not cheap (more than 64 curved parameters), the
    first few test points are answered by block CG before it is built (``solvers.auto``)."""
    check_solver_name(requested)
    if requested != "auto":
        return SolverChoice(requested, REGISTRY[requested].solver)
    if n_params <= AUTO_EXACT_MAX_PARAMS or (
        n_params <= AUTO_EXACT_AFFINE_MAX_PARAMS and n_curved() <= AUTO_EXACT_MAX_CURVED
    ):
        first_by_cg = n_curved() > AUTO_EXACT_MAX_CURVED
        return SolverChoice("exact", FirstAnswerExactSolver if first_by_cg else ExactSolver)
    return SolverChoice("cg", CGSolver)
