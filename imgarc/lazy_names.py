"""A package's public names, each imported from its module when first used (PEP 562).

Every imgarc command imports the whole CLI (typer needs every command's options), and through
it the packages the commands use: with their names imported eagerly, `imgarc list` or a one-photo
`extract` paid ~0.1 s for compress, update, latents and the classifiers it never runs.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_names(package: str, module_of: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """(__getattr__, __dir__, __all__) for `package`, whose public names live in the modules
    `module_of` gives (relative to the package when they start with '.')."""
    names = sorted(module_of)

    def getattr_(name: str) -> Any:
        if name not in module_of:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = module_of[name]
        value = getattr(importlib.import_module(package + module if module.startswith(".") else module), name)
        setattr(importlib.import_module(package), name, value)  # later reads skip getattr_
        return value

    return getattr_, lambda: names, names
