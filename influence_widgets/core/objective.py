"""The training objective as a pure function of a flat parameter vector.

R(theta) = (1/n) sum_i loss(z_i, theta) + (lambda/2) ||theta||^2, where theta is the
flattened vector of the selected parameters (all trainable ones by default). The
user's module is deep-copied once and only ever called through
``torch.func.functional_call``, so nothing touches the user's model.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.func import functional_call, grad, jvp, vmap

from .errors import FrozenParameterWarning, InfluenceInputError, ModelModeWarning

if TYPE_CHECKING:
    from .linear_head import LinearHead

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_GRADIENT_CHUNK_BYTES = 2**26  # closed-form per-example gradients computed at once
_MODE_DEPENDENT = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._NormBase)


ParamsSpec = Sequence[str] | str | nn.Module | nn.Parameter | Mapping[str, torch.Tensor] | None
OutputSelector = int | str | Callable[[Any], torch.Tensor] | None

_PARAMS_FORMS = (
    "None (every parameter with requires_grad=True), a name or module prefix ('fc', 'fc.weight'), a list of "
    "them, a submodule of the model (model.fc), its parameters (model.fc.parameters()), or a dict such as "
    "dict(model.fc.named_parameters())"
)


def _keys_of(model: nn.Module, params: Any) -> list[str]:
    """The entries of ``params`` as parameter names or module prefixes of ``model``."""
    by_identity = {id(p): name for name, p in model.named_parameters()}
    if isinstance(params, nn.Module):
        modules = {id(m): name for name, m in model.named_modules()}
        if id(params) not in modules:
            raise InfluenceInputError(
                f"params is a {type(params).__name__} that is not a submodule of the model; pass one of the "
                f"model's own submodules (e.g. model.fc) or parameter names. Accepted forms: {_PARAMS_FORMS}"
            )
        prefix = modules[id(params)]
        return [name for name, _ in params.named_parameters(prefix=prefix)] if prefix else [None]
    if isinstance(params, torch.Tensor):
        params = [params]
    elif isinstance(params, Mapping):
        params = list(params.values()) if all(isinstance(v, torch.Tensor) for v in params.values()) else params
    if isinstance(params, (str, bytes)) or not isinstance(params, Iterable):
        raise InfluenceInputError(f"params={params!r} is not a parameter selection; pass {_PARAMS_FORMS}")
    keys: list[Any] = []
    for entry in params:
        if isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[1], torch.Tensor):
            entry = entry[1]  # from named_parameters(): match the tensor, its name may be relative
        if isinstance(entry, torch.Tensor):
            if id(entry) not in by_identity:
                raise InfluenceInputError(
                    f"params holds a tensor of shape {tuple(entry.shape)} that is not a parameter of the model; pass "
                    "the model's own parameters (not copies) or their names"
                )
            keys.append(by_identity[id(entry)])
        elif isinstance(entry, str):
            keys.append(entry)
        else:
            raise InfluenceInputError(f"params contains {entry!r} of type {type(entry).__name__}; pass {_PARAMS_FORMS}")
    return keys


def select_parameter_names(model: nn.Module, params: ParamsSpec) -> list[str]:
    """Names of the parameters that count, in the model's own order.

    ``params=None`` selects every parameter with ``requires_grad=True``. Otherwise: a full parameter name
    (``"fc.weight"``) or module prefix (``"fc"``), a list of them, a submodule, parameter tensors
    (``model.fc.parameters()``) or a dict of them. Frozen parameters selected explicitly count, with a
    ``FrozenParameterWarning``.
    """
    named = [name for name, _ in model.named_parameters()]
    if params is None:
        chosen = [name for name, p in model.named_parameters() if p.requires_grad]
        if not chosen:
            raise InfluenceInputError(
                "the model has no parameters with requires_grad=True; pass params=[...] to choose which count"
            )
        return chosen
    if isinstance(params, str):
        params = [params]
    keys = _keys_of(model, params)
    if None in keys:  # the model itself
        keys = named
    chosen_set: set[str] = set()
    for key in keys:
        matches = [name for name in named if name == key or name.startswith(key + ".")]
        if not matches:
            raise InfluenceInputError(f"unknown parameter name {key!r}; the model's parameters are {named}")
        chosen_set.update(matches)
    if not chosen_set:
        raise InfluenceInputError(f"params selects no parameters; pass at least one. Accepted forms: {_PARAMS_FORMS}")
    frozen = [name for name, p in model.named_parameters() if name in chosen_set and not p.requires_grad]
    if frozen and not getattr(model, "_influence_private_copy", False):  # the copies made here are all frozen
        warnings.warn(
            f"params selects {frozen[:5]}{' ...' if len(frozen) > 5 else ''} with requires_grad=False (frozen); they "
            "count as selected. If they were not trained, leave them out of params",
            FrozenParameterWarning,
            stacklevel=4,
        )
    return [name for name in named if name in chosen_set]


def check_parameter_tensors(model: nn.Module, names: list[str]) -> None:
    """The selected parameters must hold values, in float32 or float64, on one device, with one dtype."""
    named = dict(model.named_parameters())
    chosen = [(name, named[name]) for name in names]
    meta = [name for name, p in chosen if p.is_meta]
    if meta:
        raise InfluenceInputError(
            f"the model's parameters {meta[:3]} are on the meta device and hold no values; load the trained "
            "weights first (model.to_empty(device='cpu') then model.load_state_dict(...))"
        )
    low = [(name, p.dtype) for name, p in chosen if p.dtype not in (torch.float32, torch.float64)]
    if low:
        raise InfluenceInputError(
            f"the model's parameter {low[0][0]!r} is {low[0][1]}; influence needs float32 or float64 (second "
            "derivatives in half precision are noise). Pass a float32 copy: copy.deepcopy(model).float()"
        )
    dtypes = {p.dtype for _, p in chosen}
    devices = {p.device for _, p in chosen}
    if len(dtypes) > 1 or len(devices) > 1:
        raise InfluenceInputError(
            f"the selected parameters mix dtypes {sorted(map(str, dtypes))} or devices {sorted(map(str, devices))}; "
            "move the model to one device and dtype first (model.to(device, torch.float32))"
        )


class _SelectedForward:
    """The private copy's ``forward``: the model's own, then the chosen output of a tuple, dict or object."""

    def __init__(self, module: nn.Module, selector: OutputSelector) -> None:
        self.module = module
        self.selector = selector

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return select_output(type(self.module).forward(self.module, *args, **kwargs), self.selector)


def select_output(out: Any, selector: OutputSelector) -> Any:
    """``out`` itself (selector None), ``out[i]``, ``out[key]`` or ``out.key``, or ``selector(out)``."""
    if selector is None:
        return out
    if callable(selector):
        return selector(out)
    if isinstance(selector, str) and not isinstance(out, Mapping) and hasattr(out, selector):
        return getattr(out, selector)
    try:
        return out[selector]
    except (KeyError, IndexError, TypeError) as error:
        keys = list(out.keys()) if isinstance(out, Mapping) else f"{len(out)} items" if hasattr(out, "__len__") else ""
        raise InfluenceInputError(
            f"output={selector!r} does not select anything from the model's {type(out).__name__} output ({keys}); "
            "pass the index or key of the logits, or a function output=lambda out: ..."
        ) from error


def describe_output(out: Any) -> str:
    """What a non-tensor model output is, and the ``output=`` that would select a tensor from it."""
    if isinstance(out, Mapping):
        tensors = [k for k, v in out.items() if isinstance(v, torch.Tensor)]
        hint = f"output={tensors[0]!r}" if tensors else "output=lambda out: ..."
        return f"a {type(out).__name__} with keys {list(out.keys())}; pass {hint} to select the outputs the loss takes"
    if isinstance(out, (tuple, list)):
        tensors = [i for i, v in enumerate(out) if isinstance(v, torch.Tensor)]
        hint = f"output={tensors[0]}" if tensors else "output=lambda out: ..."
        return f"a {type(out).__name__} of {len(out)} items; pass {hint} (the index of the logits) to select one"
    return f"a {type(out).__name__}; pass output='attribute name' or output=lambda out: ... returning a tensor"


class Objective:
    """Per-example losses, gradients and Hessian-vector products of one model.

    Shapes: ``theta`` is [p]; inputs are [b, *feature_shape]; per-example gradients
    are [b, p]; Hessian-vector products take and return [p, m].
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        params: ParamsSpec = None,
        output: OutputSelector = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise InfluenceInputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise InfluenceInputError("loss_fn must be callable as loss_fn(outputs, targets)")
        if output is not None and not (
            (isinstance(output, (int, str)) and not isinstance(output, bool)) or callable(output)
        ):
            raise InfluenceInputError(
                f"output must be an index, a key or a function of the model's output, got {output!r}; e.g. "
                "output=0 for a model returning (logits, features), output='logits' for a dict"
            )
        self.names = select_parameter_names(model, params)
        check_parameter_tensors(model, self.names)
        if model.training and any(isinstance(m, _MODE_DEPENDENT) for m in model.modules()):
            warnings.warn(
                "the model is in training mode and has dropout or batch-norm layers; influence is computed "
                "in eval mode (your model is left as it is). Call model.eval() to silence this warning.",
                ModelModeWarning,
                stacklevel=3,
            )
        self.module = copy.deepcopy(model).eval()
        self.module._influence_private_copy = True
        if isinstance(self.module.__dict__.get("forward"), _SelectedForward):  # another explainer's copy
            del self.module.forward  # select from the model's own output again, not from a selection
        self.output = output
        if output is not None:  # every call of the copy (functional_call included) returns the selected output
            self.module.forward = _SelectedForward(self.module, output)
        for p in self.module.parameters():
            p.requires_grad_(False)
        named = dict(self.module.named_parameters())
        self.shapes = [named[name].shape for name in self.names]
        self.numels = [named[name].numel() for name in self.names]
        self.theta = torch.cat([named[name].detach().reshape(-1) for name in self.names]).clone()
        self.loss_fn = loss_fn
        self.linear_head: LinearHead | None = None  # closed forms when set (see ``linear_head.py``)

    @property
    def size(self) -> int:
        """Number of selected parameters p."""
        return self.theta.numel()

    @property
    def dtype(self) -> torch.dtype:
        return self.theta.dtype

    @property
    def device(self) -> torch.device:
        return self.theta.device

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a flat [p] vector into the named parameter tensors."""
        pieces = torch.split(theta, self.numels)
        return {name: piece.view(shape) for name, piece, shape in zip(self.names, pieces, self.shapes)}

    def outputs(self, x: torch.Tensor, theta: torch.Tensor | None = None) -> torch.Tensor:
        """Model outputs for a batch ``x`` at ``theta`` (default: the trained parameters, which the private
        module copy holds itself, so it runs without re-parametrisation)."""
        if theta is None:
            return self.module(x)
        return functional_call(self.module, self.unflatten(theta), (x,))

    def batch_values(self, fn: LossFn, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``fn(outputs, y)`` for a batch at ``theta``, one value per example, [b]."""
        return fn(self.outputs(x, theta), y)

    def _single_value(self, fn: LossFn, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return fn(self.outputs(x.unsqueeze(0), theta), y.unsqueeze(0)).sum()

    def per_example_grads(
        self, x: torch.Tensor, y: torch.Tensor, fn: LossFn | None = None, theta: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Rows of nabla_theta fn(z_i, theta) for a batch, shape [b, p] (no regulariser)."""
        fn = self.loss_fn if fn is None else fn
        if theta is None and self.linear_head is not None:
            rows = self.linear_head.per_example_grads(self, x, y, fn)
            if rows is not None:
                return rows
        theta = self.theta if theta is None else theta

        def single(t: torch.Tensor, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
            return self._single_value(fn, t, xi, yi)

        return vmap(grad(single), in_dims=(None, 0, 0))(theta, x, y)

    def gradient_chunk_points(self, batch_size: int, streamed: bool) -> int:
        """Training points per per-example-gradient call: ``batch_size``, or for the closed-form linear layer
        on tensors (it holds just the b x p rows) up to 8 batch sizes, in at most 64 MiB of rows."""
        if streamed or self.linear_head is None:
            return batch_size
        return max(batch_size, min(8 * batch_size, _GRADIENT_CHUNK_BYTES // (self.size * self.theta.element_size())))

    def hessian_sum_matvec(
        self, x: torch.Tensor, y: torch.Tensor, vectors: torch.Tensor, theta: torch.Tensor | None = None
    ) -> torch.Tensor:
        """sum_i nabla^2 loss(z_i) @ vectors over a batch, [p, m] -> [p, m] (forward-over-reverse)."""
        theta = self.theta if theta is None else theta

        def total_loss(t: torch.Tensor) -> torch.Tensor:
            return self.loss_fn(self.outputs(x, t), y).sum()

        gradient = grad(total_loss)

        def hvp(v: torch.Tensor) -> torch.Tensor:
            return jvp(gradient, (theta,), (v,))[1]

        return vmap(hvp, in_dims=1, out_dims=1)(vectors)

    def per_point_hessian_matvec(self, x: torch.Tensor, y: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        """Column j of the result is nabla^2 loss(z_j) @ vectors[:, j]: one point per column, [p, k] -> [p, k]."""

        def one(xi: torch.Tensor, yi: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            gradient = grad(lambda t: self._single_value(self.loss_fn, t, xi, yi))
            return jvp(gradient, (self.theta,), (v,))[1]

        return vmap(one, in_dims=(0, 0, 1), out_dims=1)(x, y, vectors)

    def input_grads_of_score(self, x: torch.Tensor, y: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
        """nabla_x [direction . nabla_theta loss(x, y)] for each row of a batch, shape like ``x``.

        ``direction`` is [p]; this is the building block of I_pert,loss.
        """

        def score(xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
            g = grad(lambda t: self._single_value(self.loss_fn, t, xi, yi))(self.theta)
            return torch.dot(g, direction)

        return vmap(grad(score), in_dims=(0, 0))(x, y)
