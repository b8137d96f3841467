"""The method registry: one module per token-reduction method, the only place a method's name is matched.

Each module of this package defines a ``Method`` subclass (``methods/base.py``) and registers an instance
with ``register``: how to build the model, its training stages and loss, its FLOP accounting, its
benchmark variant and its config checks. The model builder, trainer, FLOP count, benchmark, the methods'
config checks (``load_config``) and ``tools/head_to_head.py`` ask the registry instead of branching on names.

Modules are imported on the first lookup (``pkgutil`` over this package), so a new method is one new
module (plus its config keys, configs and tests); nothing else lists the methods.

    >>> from iared_video.methods import method_names, get_method
    >>> get_method("tome").label
    'tome'
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Sequence
from typing import Any, cast

from fvcore.common.config import CfgNode
from torch import Tensor, nn

from iared_video.config import choice_errors, flat_keys, nearest
from iared_video.config import load_config as load_schema_config
from iared_video.methods.base import ORDER, Method
from iared_video.methods.stages import Stage, StagePlan
from iared_video.models.build import build_backbone
from iared_video.models.policy_model import PolicyOutput
from iared_video.models.weights import load_pretrained

__all__ = ["register", "get_method", "method_names", "registered_methods", "method_for_cfg", "method_of",
           "config_nodes", "config_errors", "load_config", "build_model", "build_policy", "stages_of",
           "model_gmacs_per_sample"]

_REGISTRY: dict[str, Method] = {}
_INTERNAL = {"base", "stages", "steps"}  # package modules that define no method
_loaded = False


def register(method: Method) -> Method:
    """Add ``method`` under ``method.name`` (a second method of the same name is an error)."""
    if method.name in _REGISTRY and _REGISTRY[method.name] is not method:
        raise ValueError(f"method {method.name!r} is registered twice")
    _REGISTRY[method.name] = method
    return method


def _load() -> None:
    """Import every method module of this package once (each registers its methods)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name not in _INTERNAL and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


def registered_methods() -> list[Method]:
    """Every registered method, in registration order (``base.ORDER`` first, then by module name)."""
    _load()
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(_REGISTRY.values(), key=lambda m: (rank.get(m.name, len(rank)), m.name))


def method_names() -> list[str]:
    """Names of the registered methods."""
    return [m.name for m in registered_methods()]


def get_method(name: str) -> Method:
    """The method registered as ``name`` (or labelled ``name`` in tables, e.g. ``"iared"``, ``"dense"``)."""
    _load()
    if name in _REGISTRY:
        return _REGISTRY[name]
    by_label = {m.label: m for m in _REGISTRY.values()}
    if name in by_label:
        return by_label[name]
    raise KeyError(f"unknown method {name!r}; registered: {method_names()}")


def method_for_cfg(cfg: Any) -> Method:
    """The method ``cfg`` selects (``METHOD.NAME``)."""
    _load()
    if cfg.METHOD.NAME not in _REGISTRY:
        raise KeyError(f"METHOD.NAME {cfg.METHOD.NAME!r} is no method; choices: {method_names()}")
    return _REGISTRY[cfg.METHOD.NAME]


def config_nodes() -> tuple[str, ...]:
    """Every method's config sections (``Method.config_nodes``), each once, in registry order."""
    return tuple(dict.fromkeys(node for m in registered_methods() for node in m.config_nodes))


def method_of(model: Any) -> Method:
    """The method a built model belongs to, from the class of its ``policy`` (the most specific match).

    A policy no method registers (a user's own ``DropPolicy``) gets the ``Method`` defaults: no policy cost,
    the blocks counted on the tokens its keep masks leave.
    """
    model = getattr(model, "module", model)  # DDP-wrapped
    mro = type(model.policy).__mro__
    owners = [(mro.index(m.policy_type), m) for m in registered_methods() if m.policy_type in mro]
    return min(owners, key=lambda pair: pair[0])[1] if owners else Method()


def config_errors(cfg: Any, depth: int) -> list[str]:
    """The method keys' values, every method's checks of its own config section, and the selected method's needs.

    Methods sharing a section (the fixed-ratio drops) report a problem of it once.
    """
    errors = _choice_errors(cfg)
    if cfg.METHOD.NAME not in method_names():
        return errors
    selected = method_for_cfg(cfg)
    for method in registered_methods():
        errors += method.config_errors(cfg, depth, method is selected)
    return list(dict.fromkeys(errors + selected.requirement_errors(cfg)))


def _choice_errors(cfg: Any) -> list[str]:
    """``METHOD.NAME``, ``BENCHMARK.METHODS_AT_KEEP`` items and every method's choice keys (``Method.choices``)."""
    errors, names = [], method_names()
    if cfg.METHOD.NAME not in names:
        errors.append(f"METHOD.NAME must be one of {names}, got {cfg.METHOD.NAME!r}{nearest(cfg.METHOD.NAME, names)}")
    at_keep = tuple(m.name for m in registered_methods() if m.knob is not None)
    for item in cfg.BENCHMARK.METHODS_AT_KEEP:
        if item not in at_keep:
            errors.append(f"BENCHMARK.METHODS_AT_KEEP items must be in {list(at_keep)}, got {item!r}"
                          f"{nearest(item, at_keep)}")
    choices = {key: options for m in registered_methods() for key, options in m.choices.items()}
    return errors + choice_errors(flat_keys(cfg), choices, {})


def load_config(path: str | None = None, opts: Sequence[str] | None = None) -> CfgNode:
    """``iared_video.config.load_config`` (merge, schema validation), then the methods' checks (``config_errors``).

    The entry points load configs here; ``iared_video.config`` alone knows no method.
    """
    return load_schema_config(path, opts, checks=(config_errors,))


def stages_of(cfg: CfgNode) -> list[Stage]:
    """The training stages of the method ``cfg`` selects."""
    return method_for_cfg(cfg).stages(StagePlan.from_cfg(cfg))


def build_policy(cfg: CfgNode, dim: int) -> nn.Module:
    """The policy (or token reducer) of the method ``cfg`` selects, for tokens of width ``dim``: the method's
    ``build_policy`` where it has one, else the policy of the model it builds on a fresh backbone."""
    method = method_for_cfg(cfg)
    if hasattr(method, "build_policy"):
        return method.build_policy(cfg, dim)
    return cast(nn.Module, method.build(cfg, build_backbone(cfg)).policy)  # every wrapped model has one


def build_model(cfg: CfgNode) -> nn.Module:
    """Backbone (``models.build_backbone``) wrapped by the method ``cfg`` selects (``METHOD.NAME``):
    ``model(x)`` gives logits, ``model(x, return_policy=True)`` a ``PolicyOutput``. ``MODEL.PRETRAINED``
    is loaded over the whole model."""
    model = method_for_cfg(cfg).build(cfg, build_backbone(cfg))
    if cfg.MODEL.PRETRAINED:
        load_pretrained(model, cfg.MODEL.PRETRAINED)
    return model


def model_gmacs_per_sample(model: nn.Module, tokens: PolicyOutput | Tensor | Sequence, num_patches: int | None = None,
                           modes: Sequence[str] | None = None) -> Tensor:
    """GMACs per sample of a wrapped model's forward from its token counts, as its method counts them.

    The method (``iared_video.methods.method_of``) supplies the policy's cost; drop policies use
    ``group_gmacs_per_sample``, token reducers (ToMe, EViT) their own per-block count.

    Args:
        model: the wrapped model, possibly DDP-wrapped (dimensions are read from its modules).
        tokens: ``PolicyOutput`` or per-group kept counts, see ``token_counts``.
        num_patches: N, required with raw counts.
        modes: the modes the forward ran with (default all ``"greedy"``).

    Returns:
        ``(B,)`` float64 GMACs.
    """
    model = getattr(model, "module", model)  # DDP-wrapped
    return method_of(model).gmacs_per_sample(model, tokens, num_patches, modes)
