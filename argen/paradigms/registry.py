"""The paradigm registry: every way of generating under a unique name.

A recipe names its paradigm (``paradigm: raster``) or takes the default of its task and its
tokenizer's layout; the trained generator records the name in its ``config.json``
(``_paradigm``) and ``sample.py`` reads it from there. Paradigms outside the package register
with :func:`register_paradigm` from a module that a recipe's ``plugins:``, ``sample.py
--plugin`` or the ``argen.plugins`` entry-point group imports (:mod:`argen.plugins`).
"""

from __future__ import annotations

import inspect
from pathlib import Path

from argen.paradigms.base import Paradigm
from argen.plugins import ENTRY_POINT_GROUP, load_entry_points

_PARADIGMS: dict[str, Paradigm] = {}


def register_paradigm(paradigm: Paradigm) -> Paradigm:
    """Register ``paradigm`` under ``paradigm.name``.

    A name already taken, or a second default for the same task and layout class, is an error:
    nothing takes over another paradigm's runs silently.
    """
    if not isinstance(paradigm, Paradigm):
        raise TypeError(f"register_paradigm takes a Paradigm instance, got {paradigm!r}")
    name = getattr(paradigm, "name", "")
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"{type(paradigm).__name__}.name must be an identifier, got {name!r}")
    if name in _PARADIGMS and same_definition(_PARADIGMS[name], paradigm):
        return _PARADIGMS[name]  # one plugin imported twice (--plugin and its entry point)
    if name in _PARADIGMS:
        raise ValueError(
            f"paradigm name {name!r} is taken by {type(_PARADIGMS[name]).__module__}."
            f"{type(_PARADIGMS[name]).__name__}; register {type(paradigm).__name__} under another name"
        )
    if paradigm.default:
        rival = _default(paradigm.task, paradigm.layout)
        if rival is not None:
            raise ValueError(
                f"{name!r} and {rival.name!r} both claim to be the default {paradigm.task} paradigm for "
                f"{paradigm.layout.__name__}; set default = False on one (recipes then name it)"
            )
    _PARADIGMS[name] = paradigm
    return paradigm


def same_definition(a: Paradigm, b: Paradigm) -> bool:
    """Whether two paradigms come from one class definition (one file imported twice)."""
    ta, tb = type(a), type(b)
    return ta.__qualname__ == tb.__qualname__ and inspect.getsourcefile(ta) == inspect.getsourcefile(tb)


def unregister_paradigm(name: str) -> None:
    """Remove a registered paradigm (tests, interactive sessions)."""
    _PARADIGMS.pop(name, None)


def _default(task: str, layout_class: type) -> Paradigm | None:
    return next(
        (p for p in _PARADIGMS.values() if p.default and p.task == task and p.layout is layout_class), None
    )


def registered() -> dict[str, Paradigm]:
    """Every registered paradigm by name (entry points loaded)."""
    load_entry_points()
    return dict(_PARADIGMS)


def get(name: str, recorded_in: str | Path | None = None) -> Paradigm:
    """The paradigm registered as ``name``; the error says how to register a missing one."""
    paradigms = registered()
    if name not in paradigms:
        where = f" (recorded in {recorded_in})" if recorded_in else ""
        raise ValueError(
            f"paradigm {name!r}{where} is not registered; registered: {sorted(paradigms)}. Load the module "
            f"that registers it (recipe key plugins:, sample.py --plugin MODULE_OR_FILE) or install the "
            f"package that provides it (entry-point group {ENTRY_POINT_GROUP!r})"
        )
    return paradigms[name]


def default_for(task: str, layout) -> Paradigm:
    """The default paradigm of ``task`` for tokens of ``layout``."""
    registered()
    paradigm = _default(task, type(layout))
    if paradigm is None or not paradigm.serves(layout):
        named = sorted(p.name for p in _PARADIGMS.values() if p.task == task and p.serves(layout))
        hint = f"; name one of {named} with paradigm:" if named else ""
        needs = next((p.requirement for p in _PARADIGMS.values() if p.task == task and p.requirement), "")
        raise ValueError(f"{needs or f'no default {task} paradigm generates {layout}'}{hint}")
    return paradigm
