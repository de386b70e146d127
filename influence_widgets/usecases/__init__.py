"""The paper's use cases as plain functions over the core (Section 5)."""

from .attack import AttackResult, training_set_attack
from .behaviour import LocalitySummary, compare_models, influence_locality
from .mislabel import TriageResult, review_order, review_scores, simulate_triage
from .mismatch import MismatchReport, domain_mismatch_report

__all__ = [
    "AttackResult",
    "LocalitySummary",
    "MismatchReport",
    "TriageResult",
    "compare_models",
    "domain_mismatch_report",
    "influence_locality",
    "review_order",
    "review_scores",
    "simulate_triage",
    "training_set_attack",
]
