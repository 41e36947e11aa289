"""A short description of the machine a bench ran on, for the report."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from importlib.metadata import PackageNotFoundError, version

import PIL

from imgarc import __version__ as imgarc_version
from imgarc.runtime import chosen_runtime


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def describe_machine() -> dict:
    """CPU, cores, memory, load at the start, and the versions that decide the numbers."""
    versions = {"imgarc": imgarc_version, "python": platform.python_version(), "pillow": PIL.__version__}
    try:
        import torch

        versions["torch"] = torch.__version__
    except ImportError:
        pass
    for package in ("compressai", "onnxruntime", "pillow-heif", "pillow-jxl-plugin", "constriction"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            pass
    versions["runtime"] = chosen_runtime().value  # where imgarc's networks run (IMGARC_RUNTIME)
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "memory_gib": _memory_gib(),
            "os": f"{platform.system()} {platform.release()}", "load_average_at_start": load_average(),
            "git_commit": _git_commit(), "versions": versions}
