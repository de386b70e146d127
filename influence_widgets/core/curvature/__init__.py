"""The curvature subsystem: the objective, its Hessian's products, explicit form, spectrum and preconditioner.

One job per module, imports pointing down this list:

* ``losses``: per-example losses and their closed-form output derivatives
* ``selection``: which parameters and which model output count
* ``linear_head``: closed forms for one selected linear layer that produces the outputs
* ``objective``: R(theta) (loss, weight decay, selected parameters), gradients and products
* ``module_blocks``: explicit-Hessian columns one layer at a time
* ``gauss_newton``: sum_i J_i^T A_i J_i from output Jacobians
* ``sources``: where the training-set sums come from (local chunks; Dask shards in ``core.distributed``)
* ``affine``: the parameter group the outputs are affine in
* ``preconditioner``: the damped Gauss-Newton preconditioner of CG
* ``explicit``: the explicit Hessian, assembled and verified
* ``operator``: Hessian-vector products (``TrainingHessian``, ``DenseOperator``)
* ``spectrum``: extreme eigenvalues (``lanczos_extremes``)
"""

from .operator import DenseOperator, HessianOperator, TrainingHessian
from .spectrum import EigenvalueEstimate, lanczos_extremes

__all__ = ["DenseOperator", "EigenvalueEstimate", "HessianOperator", "TrainingHessian", "lanczos_extremes"]
