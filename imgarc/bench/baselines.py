"""The fixed baselines (DESIGN.md): JPEG, WebP, AVIF through Pillow; 7-Zip and TAR as real binaries.

JPEG uses Pillow's defaults (4:2:0), WebP method=6, AVIF speed=6, each over a quality grid
that spans the learned codec's bpp range on Kodak (about 0.1-2 bpp).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class PillowCodec:
    name: str  # "jpeg", "webp", "avif"
    label: str
    pillow_format: str
    suffix: str
    fixed: dict = field(default_factory=dict)  # settings besides quality, recorded in the report
    default_qualities: tuple[int, ...] = ()

    def options(self, quality: int) -> dict:
        return {"quality": quality, **self.fixed}

    def unavailable(self) -> str | None:
        """Why this Pillow cannot write the format, or None when it can."""
        from PIL import features

        feature = {"JPEG": "jpg", "WEBP": "webp", "AVIF": "avif"}[self.pillow_format]
        return None if features.check(feature) else f"this Pillow was built without {self.label} support"


# Grids picked on Kodak so that each codec runs from ~0.15 to ~1.5-2 bpp.
PILLOW_CODECS = {
    "jpeg": PillowCodec("jpeg", "JPEG", "JPEG", ".jpg", {}, (5, 15, 30, 50, 75)),
    "webp": PillowCodec("webp", "WebP", "WEBP", ".webp", {"method": 6}, (2, 15, 35, 55, 75)),
    "avif": PillowCodec("avif", "AVIF", "AVIF", ".avif", {"speed": 6}, (15, 30, 45, 60, 75)),
}


@dataclass(frozen=True)
class Archiver:
    """A general-purpose archiver run as its own binary on the source folder."""

    id: str  # "7z", "7z-mx9", "tar", "tar-xz"
    family: str  # "7z" or "tar"
    label: str
    binaries: tuple[str, ...]  # the first one on PATH is used
    suffix: str
    options: tuple[str, ...] = ()

    def binary(self) -> str | None:
        for name in self.binaries:
            path = shutil.which(name)
            if path:
                return path
        return None

    def compress_argv(self, binary: str, src: Path, archive: Path) -> list[str]:
        if self.family == "7z":  # run in src so that the archive holds relative names
            return [binary, "a", "-bd", "-bso0", "-bsp0", *self.options, str(archive), "."]
        # Name-sorted with numeric owners: the same folder gives the same bytes on every run.
        return [binary, "-c", *self.options, "-f", str(archive), "--sort=name", "--numeric-owner", "--owner=0",
                "--group=0", "-C", str(src), "."]

    def extract_argv(self, binary: str, archive: Path, dest: Path) -> list[str]:
        if self.family == "7z":
            return [binary, "x", "-bd", "-bso0", "-bsp0", f"-o{dest}", str(archive)]
        return [binary, "-x", "-f", str(archive), "-C", str(dest)]

    def version(self, binary: str) -> str:
        """The binary's version line, for the report."""
        args = [binary] if self.family == "7z" else [binary, "--version"]
        try:
            out = subprocess.run(args, capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return "unknown"
        lines = [line.strip() for line in out.splitlines() if line.strip()]
        return lines[0] if lines else "unknown"


SEVEN_ZIP = ("7zz", "7z", "7za")
ARCHIVERS = {
    "7z": Archiver("7z", "7z", "7-Zip (7zz a, default)", SEVEN_ZIP, ".7z"),
    "7z-mx9": Archiver("7z-mx9", "7z", "7-Zip (7zz a -mx9)", SEVEN_ZIP, ".7z", ("-mx9",)),
    "tar": Archiver("tar", "tar", "TAR (plain)", ("tar",), ".tar"),
    "tar-xz": Archiver("tar-xz", "tar", "TAR + xz (tar -J)", ("tar",), ".tar.xz", ("-J",)),
}

# --baselines names: a family name selects all its variants.
BASELINE_NAMES = ("7z", "tar", "jpeg", "webp", "avif")
