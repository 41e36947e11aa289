"""Labeled photos: a folder with one subfolder per class (`DIR/<class>/**/<photo>`).

Which files are images is decided from their headers (Pillow, or the HEIF signature), without
decoding pixels; files that are not are left out and counted. A class folder with no images,
fewer than two classes, or a held-out folder with a class the training folder lacks is a
LabeledFolderError.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from imgarc.photo.heif import is_heif
from imgarc.photo.model import CODED_FORMATS
from imgarc.tasks.errors import LabeledFolderError
from imgarc.tasks.taskfile import valid_class_name


@dataclass(frozen=True)
class LabeledImage:
    path: Path
    label: int  # index into the set's classes


@dataclass
class LabeledSet:
    root: Path
    classes: list[str]
    images: list[LabeledImage]
    not_images: list[Path] = field(default_factory=list)  # files in class folders that are not photos

    @property
    def labels(self) -> np.ndarray:
        return np.array([i.label for i in self.images], dtype=np.int64)

    def subset(self, positions: list[int]) -> LabeledSet:
        return LabeledSet(self.root, self.classes, [self.images[p] for p in positions])


def is_photo_file(path: Path) -> bool:
    """Whether `path` holds a photo imgarc codes, from its header alone."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
        if is_heif(head):
            return True
        with Image.open(path) as im:
            return im.format in CODED_FORMATS
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False


def scan_labeled(root: Path, classes: list[str] | None = None, what: str = "labeled folder") -> LabeledSet:
    """The images under `root`'s class folders (sorted). With `classes` (a held-out folder checked
    against its training set), every class folder must be one of them; labels index `classes`."""
    if not root.is_dir():
        raise LabeledFolderError(f"{what} {root} is not a folder (give a folder with one subfolder per class)")
    try:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as e:
        raise LabeledFolderError(f"cannot read {what} {root}: {e.strerror or e}") from e
    names = [p.name for p in folders]
    if classes is None:
        if len(folders) < 2:
            raise LabeledFolderError(f"{what} {root} has {len(folders)} class folder(s); a classifier needs 2 or more "
                                     f"(one subfolder per class, the photos inside)")
        classes = names
    else:
        unknown = [n for n in names if n not in classes]
        if unknown:
            raise LabeledFolderError(f"{what} {root} has class folder {unknown[0]!r}, which the training folder does not have")
    for name in names:
        if not valid_class_name(name):
            raise LabeledFolderError(f"class folder name {name!r} in {root} cannot be a class name")
    images: list[LabeledImage] = []
    not_images: list[Path] = []
    for folder in folders:
        found = 0
        for dirpath, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                path = Path(dirpath) / name
                if is_photo_file(path):
                    images.append(LabeledImage(path, classes.index(folder.name)))
                    found += 1
                else:
                    not_images.append(path)
        if not found:
            raise LabeledFolderError(f"class folder {folder} has no images; add photos to it or remove it")
    return LabeledSet(root, list(classes), images, not_images)


def split_holdout(labeled: LabeledSet, fraction: float) -> tuple[LabeledSet, LabeledSet]:
    """(training, held-out): `fraction` of each class's images, evenly spaced in name order
    (deterministic); a class keeps at least one training image."""
    if not 0 < fraction < 1:
        raise LabeledFolderError(f"the held-out fraction must be between 0 and 1, not {fraction}")
    train, held = [], []
    for label in range(len(labeled.classes)):
        positions = [p for p, im in enumerate(labeled.images) if im.label == label]
        n_held = min(len(positions) - 1, max(1, round(len(positions) * fraction))) if len(positions) > 1 else 0
        chosen = set(np.linspace(0, len(positions) - 1, n_held).round().astype(int).tolist()) if n_held else set()
        for k, p in enumerate(positions):
            (held if k in chosen else train).append(p)
    return labeled.subset(sorted(train)), labeled.subset(sorted(held))
