"""The fixed baselines (DESIGN.md): JPEG, WebP, AVIF, HEIC, JPEG XL through Pillow; 7-Zip and TAR as real binaries.

JPEG uses Pillow's defaults (4:2:0), WebP method=6, AVIF speed=6; HEIC (HEVC through libheif
and x265) and JPEG XL (libjxl) go through their Pillow plugins, pillow-heif and
pillow-jxl-plugin, at the plugins' defaults (HEIC 4:2:0; JPEG XL effort 7). Each runs over a
quality grid that spans the learned codec's bpp range on Kodak (about 0.1-2 bpp).
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class PillowCodec:
    name: str  # "jpeg", "webp", "avif", "heic", "jxl"
    label: str
    pillow_format: str
    suffix: str
    fixed: dict = field(default_factory=dict)  # settings besides quality, recorded in the report
    default_qualities: tuple[int, ...] = ()
    plugin: str | None = None  # the module that teaches Pillow the format (None: Pillow's own)
    package: str | None = None  # its pip name, for the skip reason and the version

    def options(self, quality: int) -> dict:
        return {"quality": quality, **self.fixed}

    def prepare(self) -> None:
        """Make Pillow able to read and write the format (import and register the plugin)."""
        if self.plugin is None:
            return
        module = importlib.import_module(self.plugin)
        if self.plugin == "pillow_heif":
            module.register_heif_opener()  # pillow-heif registers HEIF only when asked

    def unavailable(self) -> str | None:
        """Why this Pillow cannot write the format, or None when it can."""
        from PIL import Image, features

        if self.plugin is None:
            feature = {"JPEG": "jpg", "WEBP": "webp", "AVIF": "avif"}[self.pillow_format]
            return None if features.check(feature) else f"this Pillow was built without {self.label} support"
        try:
            self.prepare()
        except ImportError as e:
            return f"{self.package} is not installed ({e}; pip install {self.package})"
        if self.plugin == "pillow_heif":
            import pillow_heif

            if not pillow_heif.libheif_info().get("HEIF"):
                return f"{self.package}'s libheif has no HEVC encoder"
        if self.pillow_format not in Image.SAVE:
            return f"{self.package} did not register a {self.label} writer with Pillow"
        return None

    def version(self) -> str:
        """The encoder's version, for the report."""
        import PIL
        # Here, not at the top: every command imports this module (its qualities are the bench's
        # option defaults), and importlib.metadata costs ~0.02 s of each start.
        from importlib.metadata import PackageNotFoundError, version

        if self.package is None:
            return f"Pillow {PIL.__version__}"
        try:
            text = f"{self.package} {version(self.package)}"
        except PackageNotFoundError:
            return "unknown"
        if self.plugin == "pillow_heif":
            import pillow_heif

            info = pillow_heif.libheif_info()
            text += f", libheif {info.get('libheif')}, {info.get('HEIF')}"
        return text


# Grids picked on Kodak so that each codec runs from ~0.1-0.2 to ~1.3-2 bpp.
PILLOW_CODECS = {
    "jpeg": PillowCodec("jpeg", "JPEG", "JPEG", ".jpg", {}, (5, 15, 30, 50, 75)),
    "webp": PillowCodec("webp", "WebP", "WEBP", ".webp", {"method": 6}, (2, 15, 35, 55, 75)),
    "avif": PillowCodec("avif", "AVIF", "AVIF", ".avif", {"speed": 6}, (15, 30, 45, 60, 75)),
    "heic": PillowCodec("heic", "HEIC", "HEIF", ".heic", {}, (12, 20, 30, 40, 50), "pillow_heif", "pillow-heif"),
    "jxl": PillowCodec("jxl", "JPEG XL", "JXL", ".jxl", {}, (1, 20, 45, 65, 80), "pillow_jxl", "pillow-jxl-plugin"),
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
BASELINE_NAMES = ("7z", "tar", "jpeg", "webp", "avif", "heic", "jxl")
