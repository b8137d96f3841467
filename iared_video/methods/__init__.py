"""The method registry: one module per token-reduction method, the only place a method's name is matched.

Each module of this package defines a ``Method`` subclass (``methods/base.py``) and registers an instance
with ``register``: how to build the model, its training stages and loss, its FLOP accounting, its
benchmark variant and its config checks. The trainer, curriculum, FLOP counter, benchmark, config
validation and ``tools/head_to_head.py`` ask the registry instead of branching on names.

Modules are imported on the first lookup (``pkgutil`` over this package), so a new method is one new
module (plus its config keys, configs and tests); nothing else lists the methods.

    >>> from iared_video.methods import method_names, get_method
    >>> get_method("tome").label
    'tome'
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from iared_video.methods.base import Method

__all__ = ["register", "get_method", "method_names", "registered_methods", "method_for_cfg", "method_of",
           "policy_choices", "config_errors"]

_REGISTRY: dict[str, Method] = {}
_INTERNAL = {"base"}  # package modules that define no method
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
    from iared_video.methods.base import ORDER

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


def policy_choices() -> tuple[str, ...]:
    """The values ``IARED.POLICY`` accepts (each selects one method, refined by a method's flag)."""
    return tuple(dict.fromkeys(m.policy_key for m in registered_methods()))


def method_for_cfg(cfg: Any) -> Method:
    """The method ``cfg`` selects: ``IARED.POLICY``, refined by a method's flag (``IARED.GUMBEL``)."""
    candidates = [m for m in registered_methods() if m.policy_key == cfg.IARED.POLICY]
    if not candidates:
        raise KeyError(f"IARED.POLICY {cfg.IARED.POLICY!r} selects no method; choices: {list(policy_choices())}")
    flagged = [m for m in candidates if m.flag and _flag_value(cfg, m.flag)]
    plain = [m for m in candidates if not m.flag]
    return (flagged or plain)[0]


def _flag_value(cfg: Any, key: str) -> bool:
    node = cfg
    for part in key.split("."):
        node = node[part]
    return bool(node)


def method_of(model: Any) -> Method:
    """The method a built model belongs to, from the class of its ``policy`` (the most specific match).

    A policy no method registers (a user's own ``DropPolicy``) gets the ``Method`` defaults: no policy cost,
    the blocks counted on the tokens its keep masks leave.
    """
    from iared_video.methods.base import Method

    model = getattr(model, "module", model)  # DDP-wrapped
    mro = type(model.policy).__mro__
    owners = [(mro.index(m.policy_type), m) for m in registered_methods() if m.policy_type in mro]
    return min(owners, key=lambda pair: pair[0])[1] if owners else Method()


def config_errors(cfg: Any, depth: int) -> list[str]:
    """Every method's checks of its own config section, and the selected method's requirements."""
    errors: list[str] = []
    for method in registered_methods():
        if method.flag and _flag_value(cfg, method.flag) and cfg.IARED.POLICY != method.policy_key:
            errors.append(f"{method.flag} needs IARED.POLICY {method.policy_key}, got {cfg.IARED.POLICY!r}")
    if cfg.IARED.POLICY not in policy_choices():
        return errors
    selected = method_for_cfg(cfg)
    for method in registered_methods():
        errors += method.config_errors(cfg, depth, method is selected)
    return errors + selected.requirement_errors(cfg)
