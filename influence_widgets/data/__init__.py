"""Built-in data sets, small models and trainers used by the demo, notebooks and tests."""

from ..core.curvature.losses import binary_logistic_per_example, cross_entropy_per_example, squared_error_per_example
from .datasets import Split, load_digits
from .models import LogisticRegression, SmallCNN
from .synthetic import TabularSplit, make_readmission
from .training import fit_adam, fit_lbfgs, fit_to_minimum, gradient_norm, objective_value

__all__ = [
    "LogisticRegression",
    "SmallCNN",
    "Split",
    "TabularSplit",
    "binary_logistic_per_example",
    "cross_entropy_per_example",
    "fit_adam",
    "fit_lbfgs",
    "fit_to_minimum",
    "gradient_norm",
    "load_digits",
    "make_readmission",
    "objective_value",
    "squared_error_per_example",
]
