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
        SolverEntry("ekfac", EKFACSolver, EKFACOptions, "EK-FAC, Kronecker eigenbases with corrected eigenvalues"),
    )
}

AUTO_EXACT_MAX_PARAMS = 3000
AUTO_EXACT_AFFINE_MAX_PARAMS = 5000
AUTO_EXACT_MAX_CURVED = 64
# A CG solve costs a few tens of Hessian-vector products over the training set, each about n_train x p
# point-parameter products: at 1,347 points x 1.08 M parameters (1.5e9) one test point took 6.9 s on 2 cores,
# so up to 2e8 a new test point stays near a second and CG, exact to its tolerance, is the choice.
AUTO_CG_MAX_WORK = 2e8
AUTO_ARNOLDI_MAX_BYTES = 2 * 2**30  # its float64 Lanczos basis, p x krylov_dim; more goes to EK-FAC
AUTO_FACTORED_MIN_SHARE = 0.9  # EK-FAC when Linear/Conv2d layers hold at least this share of the parameters


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
    """The solver a setting resolves to: its registered name, the class that runs it, and (``"auto"``) why."""

    name: str
    solver: type
    reason: str | None = None


def choose(
    requested: str,
    n_params: int,
    n_curved: Callable[[], int],
    n_train: int = 0,
    factored_share: Callable[[], float] = lambda: 0.0,
) -> SolverChoice:
    """A registered name is taken as given. ``"auto"`` chooses by size, and says why in ``reason``:

    * ``"exact"`` up to 3000 parameters, where one factorisation serves every test point (a click in the
      explorer is then a triangular solve), and up to 5000 when at most 64 of them lie outside the group the
      outputs are affine in (``n_curved()``: each costs one Hessian-vector product, the affine block comes
      from Jacobians). Where the explicit Hessian is not cheap (more than 64 curved parameters), the first
      few test points are answered by block CG before it is built (``solvers.auto``);
    * ``"cg"`` while n_train x p is at most 2e8 (a new test point near a second on 2 cores);
    * beyond, a factored solver, computed once and then cheap per test point: ``"arnoldi"`` (the most
      accurate of them, Pearson 0.9995 against CG on the 1.08 M-parameter MLP) while its float64 Lanczos
      basis fits in 2 GiB, else ``"ekfac"`` when Linear/Conv2d layers hold 90 % of the parameters
      (``factored_share()``), else ``"cg"``.
    """
    check_solver_name(requested)
    if requested != "auto":
        return SolverChoice(requested, REGISTRY[requested].solver)
    if n_params <= AUTO_EXACT_MAX_PARAMS or (
        n_params <= AUTO_EXACT_AFFINE_MAX_PARAMS and n_curved() <= AUTO_EXACT_MAX_CURVED
    ):
        first_by_cg = n_curved() > AUTO_EXACT_MAX_CURVED
        reason = f"auto chose exact: {n_params:,} parameters, one factorisation of H serves every test point"
        return SolverChoice("exact", FirstAnswerExactSolver if first_by_cg else ExactSolver, reason)
    work = n_train * n_params
    if work <= AUTO_CG_MAX_WORK:
        reason = (
            f"auto chose cg: {n_params:,} parameters, too many for the explicit Hessian; n_train x p = {work:.2g} "
            f"<= {AUTO_CG_MAX_WORK:.0g}, so a solve per test point stays cheap"
        )
        return SolverChoice("cg", CGSolver, reason)
    basis = n_params * ArnoldiOptions().steps(n_params) * 8
    scale = f"n_train x p = {work:.2g} > {AUTO_CG_MAX_WORK:.0g} makes every CG solve slow; a factored solver is "
    if basis <= AUTO_ARNOLDI_MAX_BYTES:
        reason = (
            f"auto chose arnoldi: {scale}built once, then a test point costs one projection; its Lanczos basis "
            f"takes {basis / 2**20:,.0f} MiB (<= {AUTO_ARNOLDI_MAX_BYTES / 2**30:.0f} GiB). Check it with "
            "check_approximation()"
        )
        return SolverChoice("arnoldi", ArnoldiSolver, reason)
    share = factored_share()
    if share >= AUTO_FACTORED_MIN_SHARE:
        reason = (
            f"auto chose ekfac: {scale}needed, and Arnoldi's Lanczos basis would take {basis / 2**30:.1f} GiB; "
            f"Linear/Conv2d layers hold {share:.0%} of the parameters. Check it with check_approximation()"
        )
        return SolverChoice("ekfac", EKFACSolver, reason)
    reason = (
        f"auto chose cg: {scale}not: Arnoldi's basis would take {basis / 2**30:.1f} GiB and Linear/Conv2d layers "
        f"hold only {share:.0%} of the parameters (EK-FAC needs {AUTO_FACTORED_MIN_SHARE:.0%})"
    )
    return SolverChoice("cg", CGSolver, reason)
