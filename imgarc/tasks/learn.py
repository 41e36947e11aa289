"""`imgarc learn`: a labeled folder -> a trained latent classifier in a task file (needs torch).

Steps: scan the class folders (imgarc.tasks.dataset); hold out a split (or read a held-out
folder); encode every photo's latents under its flips/rotations and qualities (cached,
imgarc.tasks.latent_data); train under a time budget (imgarc.tasks.train); score the held-out
photos at every quality through the same ONNX graph `classify` runs; return the task.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from imgarc import __version__
from imgarc.codec.quality import QUALITIES
from imgarc.codec.registry import default_model_id, load_codec, resolve_model_id
from imgarc.errors import UsageError
from imgarc.runtime import usable_cores
from imgarc.tasks.dataset import LabeledSet, scan_labeled, split_holdout
from imgarc.tasks.errors import LabeledFolderError
from imgarc.tasks.evaluate import Accuracy, accuracy, predict
from imgarc.tasks.features import DIHEDRAL, FEATURES
from imgarc.tasks.latent_data import EncodedSet, Progress, encode_photos, heldout_pairs, training_pairs
from imgarc.tasks.network import latent_net
from imgarc.tasks.taskfile import LATENT_CLASSIFIER, Task
from imgarc.tasks.train import TrainConfig, TrainLog, TrainResult, train_classifier

DEFAULT_QUALITIES = (25, 50, 75, 95)


@dataclass
class LearnOptions:
    model_id: str | None = None  # None: the default model
    qualities: tuple[int, ...] = DEFAULT_QUALITIES
    augment: int = len(DIHEDRAL)  # flips/rotations encoded per training photo
    seconds: float = 180.0  # training budget
    clock: str = "wall"
    holdout: float = 0.2  # used when no held-out folder is given
    heldout_dir: Path | None = None
    cache: Path | None = None
    workers: int = 1
    threads: int = field(default_factory=usable_cores)
    seed: int = 0

    def check(self) -> None:
        if not self.qualities or any(not 1 <= q <= QUALITIES for q in self.qualities):
            raise UsageError(f"qualities must be between 1 and {QUALITIES}")
        if not 1 <= self.augment <= len(DIHEDRAL):
            raise UsageError(f"--augment must be between 1 and {len(DIHEDRAL)} (flips and rotations of a photo)")
        if self.seconds <= 0:
            raise UsageError("the training budget must be positive")


@dataclass
class LearnReport:
    task: Task
    train_images: int
    heldout_images: int
    left_out: list[tuple[Path, str]]  # files that are not photos, or photos that could not be coded
    heldout: dict[int, Accuracy]  # per quality
    overall: Accuracy  # every held-out photo at every quality
    encode_seconds: float
    training: TrainResult


@dataclass
class Stage:
    """What learn is doing, for a progress display: `encode` (done, total, name) or `train`."""

    name: str
    done: int = 0
    total: int = 0
    label: str = ""


def _encode(labeled: LabeledSet, pairs_of, model_id: str, options: LearnOptions,
            progress: Progress | None) -> EncodedSet:
    return encode_photos([im.path for im in labeled.images], pairs_of, model_id, options.cache, options.workers, progress)


def learn(labeled_dir: Path, options: LearnOptions, progress: Callable[[Stage], None] | None = None,
          log: Callable[[TrainLog], None] | None = None) -> LearnReport:
    """Train a latent classifier on `labeled_dir` (one subfolder per class) and score it."""
    options.check()
    model_id = resolve_model_id(options.model_id) if options.model_id else default_model_id()
    codec = load_codec(model_id)
    labeled = scan_labeled(labeled_dir)
    if options.heldout_dir is not None:
        train_set, held_set = labeled, scan_labeled(options.heldout_dir, labeled.classes, "held-out folder")
    else:
        train_set, held_set = split_holdout(labeled, options.holdout)
    left_out = [(p, "not a photo") for p in labeled.not_images + held_set.not_images]

    def stage(name: str) -> Progress | None:
        if progress is None:
            return None
        return lambda done, total, label: progress(Stage(name, done, total, label))

    started = time.perf_counter()
    qualities = tuple(options.qualities)
    encoded = _encode(train_set, lambda p, sha: training_pairs(sha, options.augment, qualities), model_id,
                      options, stage("encoding training photos"))
    held = _encode(held_set, lambda p, sha: heldout_pairs(qualities), model_id, options,
                   stage("encoding held-out photos"))
    encode_seconds = time.perf_counter() - started
    left_out += encoded.left_out + held.left_out
    samples, labels = [], []
    for features, n in zip(encoded.features, encoded.kept):
        for f in features.values():
            samples.append(f)
            labels.append(train_set.images[n].label)
    if not samples:
        raise LabeledFolderError(f"no photo in {labeled_dir} could be coded")
    missing = sorted(set(range(len(labeled.classes))) - set(labels))
    if missing:
        raise LabeledFolderError(f"class {labeled.classes[missing[0]]!r} has no photo imgarc can code")
    if progress:
        progress(Stage("training"))
    config = TrainConfig(seconds=options.seconds, clock=options.clock, threads=options.threads, seed=options.seed)
    spec = latent_net(samples[0].shape[0], len(labeled.classes))
    result = train_classifier(spec, _stacked(samples), np.array(labels), config, log)
    task = Task(LATENT_CLASSIFIER, FEATURES, list(labeled.classes), spec, result.arrays, codec.model_id,
                codec.weights_sha256)
    classifier = task.classifier(options.threads)
    held_labels = np.array([held_set.images[n].label for n in held.kept], dtype=np.int64)
    per_quality = {q: accuracy(predict(classifier, [f[(0, q)] for f in held.features]), held_labels) for q in qualities}
    overall = _pooled(per_quality.values())
    task.trained = {
        "labeled_folder": str(labeled_dir), "heldout_folder": str(options.heldout_dir) if options.heldout_dir else None,
        "holdout_fraction": None if options.heldout_dir else options.holdout,
        "training_photos": len(encoded.kept), "training_samples": len(samples), "heldout_photos": len(held.kept),
        "augment": options.augment, "qualities": list(qualities), "budget_seconds": options.seconds,
        "clock": options.clock, "steps": result.steps, "epochs": round(result.epochs, 2),
        "parameters": spec.parameters(), "heldout": {str(q): a.as_json() for q, a in per_quality.items()},
        "heldout_all": overall.as_json(), "imgarc": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    return LearnReport(task, len(encoded.kept), len(held.kept), left_out, per_quality, overall, encode_seconds, result)


def _stacked(samples: list[np.ndarray]) -> list[np.ndarray] | np.ndarray:
    """One array when every sample has the same shape (fast batches), else the list."""
    return np.stack(samples) if len({s.shape for s in samples}) == 1 else samples


def _pooled(scores) -> Accuracy:
    scores = list(scores)
    n = sum(a.count for a in scores)
    if not n:
        return Accuracy(0.0, 0.0, 0)
    return Accuracy(sum(a.top1 * a.count for a in scores) / n, sum(a.top5 * a.count for a in scores) / n, n)
