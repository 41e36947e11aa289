"""`imgarc classify`: a label and a confidence for every coded photo of an archive, read from its
latents (imgarc.api.latents: entropy decoding and the integer h_s only; g_s never runs), and
optionally the photos extracted into one folder per class.

Before anything is decoded, every selected photo's model and weights are checked against the
task's: latents of another model mean nothing to its classifier (TaskModelMismatchError).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgarc.api.decoder import EntryDecoder
from imgarc.api.extractor import Extractor
from imgarc.api.latents import ArchiveLatents, SkippedEntry
from imgarc.api.members import MemberSelection
from imgarc.api.results import Damaged, ExtractSummary, Progress
from imgarc.archive import EntryHeader
from imgarc.errors import UsageError
from imgarc.tasks.errors import TaskFileError, TaskModelMismatchError
from imgarc.tasks.features import FEATURES, photo_features
from imgarc.tasks.taskfile import LATENT_CLASSIFIER, Task


@dataclass
class Prediction:
    path: str
    label: str
    confidence: float  # the classifier's probability of `label`
    top: list[tuple[str, float]]  # the most likely classes, best first
    quality: int | None
    width: int
    height: int

    def as_json(self) -> dict:
        return {"path": self.path, "label": self.label, "confidence": round(self.confidence, 4),
                "top": [{"label": label, "confidence": round(p, 4)} for label, p in self.top],
                "quality": self.quality, "width": self.width, "height": self.height}


@dataclass
class ClassifyReport:
    predictions: list[Prediction]
    skipped: list[SkippedEntry]  # not coded photos: no latents
    damaged: list[Damaged]
    seconds: float
    seconds_decode: float = 0.0  # entropy decoding and the integer h_s
    seconds_classifier: float = 0.0
    extracted: dict[str, ExtractSummary] = field(default_factory=dict)  # per class, with --extract


def check_task(task: Task, path: Path | str = "the task") -> None:
    """TaskFileError unless `task` classifies latents with the features this imgarc computes."""
    if task.kind != LATENT_CLASSIFIER:
        raise TaskFileError(f"{path} is a {task.kind}, not a latent classifier: it reads pixels, not archives")
    if task.features != FEATURES:
        raise TaskFileError(f"{path} reads latent features {task.features!r}; this imgarc computes {FEATURES!r}: "
                            f"train it again with `imgarc learn`")


def check_models(task: Task, photos: list[tuple[int, EntryHeader]], archive: Path, task_path: Path | str) -> None:
    """TaskModelMismatchError naming the first photo coded with another model or other weights."""
    for _, h in photos:
        if h.model_id != task.model_id or h.weights_sha256.hex() != task.weights_sha256:
            others = sum(1 for _, o in photos if o.model_id != task.model_id or o.weights_sha256.hex() != task.weights_sha256)
            more = f" (and {others - 1} more photos)" if others > 1 else ""
            raise TaskModelMismatchError(
                f"{task_path} was trained on latents of model {task.describe_model()}, but {h.path!r} in {archive}"
                f"{more} was coded with model {h.model_id!r} (weights {h.weights_sha256.hex()[:12]}…): latents of "
                f"different models are not comparable; train a task for it with `imgarc learn DIR --model {h.model_id}`")


def classify_archive(archive: Path, task: Task, members: MemberSelection | None = None, strict: bool = False,
                     top: int = 5, progress: Progress | None = None, decoder: EntryDecoder | None = None,
                     task_path: Path | str = "the task", threads: int = 1) -> ClassifyReport:
    """Classify every coded photo of `archive` (or those `members` selects) from its latents."""
    check_task(task, task_path)
    started = time.perf_counter()
    latents = ArchiveLatents(archive, members, strict, decoder or EntryDecoder(), progress)
    check_models(task, latents.plan(), archive, task_path)
    classifier = task.classifier(threads)
    predictions = []
    spent = 0.0
    for photo in latents:
        t0 = time.perf_counter()
        probs = classifier.probabilities(photo_features(photo)[None])[0]
        spent += time.perf_counter() - t0
        ranked = np.argsort(-probs)[:max(1, top)]
        best = int(ranked[0])
        predictions.append(Prediction(photo.path, task.classes[best], float(probs[best]),
                                      [(task.classes[int(k)], float(probs[k])) for k in ranked],
                                      photo.quality, photo.width, photo.height))
    return ClassifyReport(predictions, latents.skipped, latents.damaged, time.perf_counter() - started,
                          latents.timings.model + latents.timings.coder, spent)


def member_pattern(path: str) -> str:
    """A member pattern that matches exactly the entry `path` (glob characters escaped)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in path)


def extract_by_class(archive: Path, predictions: list[Prediction], dest: Path, force: bool = False,
                     image_format: str = "keep", progress: Progress | None = None) -> dict[str, ExtractSummary]:
    """Extract each classified photo to DEST/<label>/<its path> (this decodes pixels: g_s runs)."""
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"{dest} is not a folder")
    if dest.exists() and any(dest.iterdir()) and not force:
        raise UsageError(f"{dest} is not empty; use --force to extract into it anyway")
    by_label: dict[str, list[str]] = {}
    for p in predictions:
        by_label.setdefault(p.label, []).append(p.path)
    out = {}
    for label, paths in sorted(by_label.items()):
        selection = MemberSelection(tuple(member_pattern(p) for p in paths))
        out[label] = Extractor(dest / label, force=force, image_format=image_format, progress=progress).extract(archive, selection)
    return out
