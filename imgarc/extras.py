"""What needs imgarc's optional `[train]` extra (torch, CompressAI, ...), checked before it is used.

The lean install (compress, extract, list, verify on ONNX Runtime) has none of these packages;
training, the bench, the `ref` coder, the torch runtime and CompressAI's pretrained models do.
"""

from __future__ import annotations

import importlib.util

from imgarc.errors import MissingExtraError

TRAIN_EXTRA = "pip install 'imgarc[train]'"


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def require(what: str, *modules: str) -> None:
    """Raise MissingExtraError naming `what` and the missing packages unless all are installed."""
    missing = [m for m in modules if not installed(m)]
    if missing:
        raise MissingExtraError(f"{what} needs {', '.join(missing)}, which come with imgarc's training extra: {TRAIN_EXTRA}")
