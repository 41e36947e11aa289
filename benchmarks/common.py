"""Helpers shared by the benchmark scripts: digests, reading a folder, loading images, the machine line.

The scripts run as `python benchmarks/NAME.py`, so this folder is on sys.path: `from common import ...`.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np


def array_digest(*arrays: np.ndarray) -> str:
    """sha256 of arrays' values, dtypes and shapes (equal digests: equal arrays)."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
        h.update(str((a.dtype, a.shape)).encode())
    return h.hexdigest()


def files_under(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (recursive) by relative POSIX path; {} when it does not exist."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()} if folder.exists() else {}


def files_digest(files: dict[str, bytes]) -> str:
    """sha256 of a set of files (names and contents), as files_under gives them."""
    return hashlib.sha256(b"".join(k.encode() + b"\0" + hashlib.sha256(v).digest() for k, v in sorted(files.items()))).hexdigest()


def first_files(folder: Path, pattern: str = "*", limit: int | None = None) -> list[Path]:
    """The entries of `folder` matching `pattern`, sorted by name; the first `limit` when given."""
    found = sorted(folder.glob(pattern))
    return found[:limit] if limit else found


def load_rgb(source: Path | bytes) -> np.ndarray:
    """An image file (a path, or its bytes) as RGB uint8 [H, W, 3]."""
    from PIL import Image

    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
        return np.asarray(im.convert("RGB"))


def machine_line() -> str:
    """One line for a report: CPU, cores, Python, torch, OS (imgarc.bench.machine.describe_machine)."""
    from imgarc.bench.machine import describe_machine

    m = describe_machine()
    v = m["versions"]
    return (f"{m['cpu']}, {m['cores']} cores, Python {v['python']}, torch {v.get('torch', 'not installed')}, {m['os']}"
            + (f", imgarc {m['git_commit']}" if m["git_commit"] else ""))
