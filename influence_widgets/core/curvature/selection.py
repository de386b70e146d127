"""What counts in the objective: the selected parameters (``params=``) and the selected output (``output=``)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import FrozenParameterWarning, InfluenceInputError

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


class SelectedForward:
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
