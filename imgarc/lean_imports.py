"""Keep `import compressai` from importing what imgarc never runs (about 4.5 s per process).

`import compressai` imports every subpackage. Its point-cloud transforms and its transform
registry import torch_geometric (3.2 s on this machine), and its entropy models import
scipy.stats (1.6 s), which they use only to build tables (`update()`, at export). Every
imgarc command loads CompressAI's image models, so before the first compressai import this
module puts placeholders in `sys.modules`:

- `compressai.datasets`, `compressai.transforms` and `scipy.stats` become deferred modules:
  the real module is imported on first attribute access, so nothing that uses them breaks.
- `compressai.registry.transforms` becomes a small stand-in whose TRANSFORMS registry starts
  empty (the real one is pre-filled with torchvision's and torch_geometric's transforms, for
  CompressAI's config-driven training scripts, which imgarc does not use).

It does nothing when compressai is already imported or is not the version these names were
checked against (pyproject pins it); `tests/test_lean_imports.py` fails if the saving is lost.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import types
from pathlib import Path

CHECKED_COMPRESSAI = "1.2.8"


class DeferredModule(types.ModuleType):
    """Stands in for a module in sys.modules; the first attribute it lacks imports the real one."""

    def __getattr__(self, attr: str):
        # Tools that scan sys.modules (inspect.getmodule, which torch runs at import) probe
        # dunders such as __file__: answer those without importing. __path__ is different:
        # importing a submodule needs the real package's.
        if attr.startswith("__") and attr != "__path__":
            raise AttributeError(attr)
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        real = importlib.import_module(name)
        parent_name, _, child = name.rpartition(".")
        parent = sys.modules.get(parent_name)
        if parent is not None and getattr(parent, child, None) is self:
            setattr(parent, child, real)
        return getattr(real, attr)


def _transform_registry_stand_in() -> types.ModuleType:
    module = types.ModuleType("compressai.registry.transforms")
    module.TRANSFORMS = {}

    def register_transform(name: str):
        def decorator(cls):
            module.TRANSFORMS[name] = cls
            return cls

        return decorator

    module.register_transform = register_transform
    return module


def _compressai_version() -> str | None:
    """Read from compressai/version.py without importing compressai (importlib.metadata costs 80 ms)."""
    spec = importlib.util.find_spec("compressai")
    if spec is None or not spec.submodule_search_locations:
        return None
    try:
        text = (Path(list(spec.submodule_search_locations)[0]) / "version.py").read_text()
    except OSError:
        return None
    found = re.search(r'__version__ = "([^"]+)"', text)
    return found.group(1) if found else None


def install() -> None:
    if "compressai" in sys.modules or _compressai_version() != CHECKED_COMPRESSAI:
        return
    for name in ("compressai.datasets", "compressai.transforms", "scipy.stats"):
        sys.modules.setdefault(name, DeferredModule(name))
    sys.modules.setdefault("compressai.registry.transforms", _transform_registry_stand_in())
