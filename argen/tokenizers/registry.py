"""The tokenizer registry: every tokenizer class once, by class name (how its checkpoints name
it) and, where a recipe trains it, by kind (``tokenizer: vq`` in a recipe).

A tokenizer outside the package registers with :func:`register_tokenizer` from a plugin
module (:mod:`argen.plugins`); its recipe section is its class's ``Config``.
"""

from __future__ import annotations

from torch import nn

from argen.plugins import load_entry_points

_CLASSES: dict[str, type[nn.Module]] = {}
_KINDS: dict[str, type[nn.Module]] = {}


def register_tokenizer(cls: type[nn.Module], kind: str | None = None) -> type[nn.Module]:
    """Register ``cls`` (an ``nn.Module`` with a dataclass ``Config``); ``kind`` is the name
    recipes train it by (None: it is derived from another tokenizer, not trained by a recipe).
    A taken class name or kind is an error."""
    if not isinstance(getattr(cls, "Config", None), type):
        raise TypeError(f"{cls.__name__} needs a dataclass Config (its constructor's argument)")
    taken = _CLASSES.get(cls.__name__)
    if taken is not None and taken is not cls:
        raise ValueError(f"a tokenizer class named {cls.__name__} is already registered ({taken.__module__})")
    if kind is not None and _KINDS.get(kind, cls) is not cls:
        raise ValueError(f"tokenizer kind {kind!r} is taken by {_KINDS[kind].__name__}")
    _CLASSES[cls.__name__] = cls
    if kind is not None:
        _KINDS[kind] = cls
    return cls


def tokenizer_classes() -> dict[str, type[nn.Module]]:
    """Every registered tokenizer class by class name (entry points loaded)."""
    load_entry_points()
    return dict(_CLASSES)


def tokenizer_kinds() -> dict[str, type[nn.Module]]:
    """The tokenizers recipes train, by kind (entry points loaded)."""
    load_entry_points()
    return dict(_KINDS)


def class_for_config(config) -> type[nn.Module]:
    """The registered tokenizer built from ``config`` (each class names its config type)."""
    for cls in tokenizer_classes().values():
        if cls.Config is type(config):
            return cls
    raise ValueError(f"no registered tokenizer is built from a {type(config).__name__}")
