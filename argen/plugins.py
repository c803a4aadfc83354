"""Code outside the package that registers paradigms and tokenizers: modules or ``.py`` files
named by a recipe (``plugins:``) or ``sample.py --plugin``, and the ``argen.plugins``
entry points of installed packages (``pip install`` a plugin package and its registrations
are there in every argen process)."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import pkgutil
import sys
from importlib.metadata import entry_points
from pathlib import Path

ENTRY_POINT_GROUP = "argen.plugins"

_entry_points_loaded = False


def load_plugins(specs: list[str] | tuple[str, ...] = ()) -> None:
    """Import each plugin once: a module name (``my_pkg.paradigm``) or a ``.py`` file path; the
    module registers its paradigms and tokenizers on import."""
    for spec in specs:
        if spec.endswith(".py"):
            load_file(Path(spec))
            continue
        try:
            importlib.import_module(spec)
        except ModuleNotFoundError as err:
            raise ValueError(f"plugin {spec}: {err}") from None


def load_file(path: Path) -> None:
    if not path.is_file():
        raise ValueError(f"plugin {path}: no such file")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    name = f"argen_plugin_{path.stem}_{digest}"  # one module per file, whatever its name
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


def load_entry_points() -> None:
    """Import the modules of the ``argen.plugins`` entry points of installed packages, once."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            point.load()
        except Exception as err:
            raise ImportError(
                f"entry point {point.name} = {point.value} ({ENTRY_POINT_GROUP}) failed to load: {err}"
            ) from err


def import_package_modules(package: str, path: list[str]) -> None:
    """Import every public module of ``package`` (its ``__path__``), so that a module dropped
    into ``argen/tokenizers/`` or ``argen/paradigms/`` registers itself with no other edit."""
    for info in pkgutil.iter_modules(path):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
