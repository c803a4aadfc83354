"""``python -m argen.paradigms [--plugin MODULE_OR_FILE]``: the registered paradigms, their
tasks, layouts, whether each is its task's default, and their recipe options."""

from __future__ import annotations

import argparse
from dataclasses import fields

from argen.paradigms import load_plugins, registered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--plugin", action="append", default=[], help="import a module or .py file first")
    load_plugins(parser.parse_args(argv).plugin)
    print(f"{'name':<20} {'task':<10} {'layout':<20} {'default':<8} options")
    for name, paradigm in sorted(registered().items()):
        options = ", ".join(f.name for f in fields(paradigm.Options)) or "-"
        default = "yes" if paradigm.default else ""
        print(f"{name:<20} {paradigm.task:<10} {paradigm.layout.__name__:<20} {default:<8} {options}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
