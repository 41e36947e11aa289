"""`imgarc learn`: a labeled folder -> a trained latent classifier in a task file (needs torch).

Steps: scan the class folders (imgarc.tasks.dataset); hold out a split (or read a held-out
folder); encode every photo's latents under its flips/rotations and qualities (cached,
imgarc.tasks.latent_data); train under a time budget (imgarc.tasks.train); score the held-out
photos at every quality through the same ONNX graph `classify` runs; return the task.

With `joint`, the classifier and the model's encoder then train together (imgarc.tasks.joint)
into a new model id, exported into a model catalog imgarc reads; the held-out photos are encoded
again with it and scored, and the task returned is made for that model.
"""

from __future__ import annotations

import datetime
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from imgarc import __version__
from imgarc.codec.quality import QUALITIES
from imgarc.codec.registry import catalog_dirs, default_model_id, find_model, list_models, load_codec, resolve_model_id
from imgarc.codec.weights import load_weights
from imgarc.codec.zoo import is_zoo_id
from imgarc.errors import UsageError
from imgarc.runtime import usable_cores
from imgarc.tasks.dataset import LabeledSet, scan_labeled, split_holdout
from imgarc.tasks.errors import LabeledFolderError
from imgarc.tasks.evaluate import Accuracy, accuracy, predict
from imgarc.tasks.features import DIHEDRAL, FEATURES
from imgarc.tasks.joint import ENCODER, JointConfig, JointLog, JointResult, joint_finetune, load_photos
from imgarc.tasks.latent_data import EncodedSet, Progress, encode_photos, heldout_pairs, training_pairs
from imgarc.tasks.network import latent_net
from imgarc.tasks.taskfile import LATENT_CLASSIFIER, Task
from imgarc.tasks.train import TrainConfig, TrainLog, TrainResult, train_classifier
from imgarc.train.publish import publish_network_variant

DEFAULT_QUALITIES = (25, 50, 75, 95)


@dataclass
class JointOptions:
    """Joint fine-tuning after the classifier is trained: the variant's id, where it goes."""

    model_id: str
    export_dir: Path  # a model catalog folder imgarc reads (on IMGARC_MODEL_PATH, or the installed assets)
    config: JointConfig = field(default_factory=JointConfig)

    def check(self, parent_id: str) -> None:
        if is_zoo_id(parent_id):
            raise UsageError(f"--joint fine-tunes imgarc's own models, not the zoo model {parent_id}")
        if any(r.model_id == self.model_id for r in list_models()):
            raise UsageError(f"a model {self.model_id!r} is already installed; give --joint a new model id")
        if not self.model_id or any(c in self.model_id for c in "/\\:") or self.model_id.startswith("."):
            raise UsageError(f"{self.model_id!r} cannot be a model id (it names the weights file)")
        if self.export_dir.resolve() not in [d.resolve() for d in catalog_dirs()]:
            raise UsageError(f"{self.export_dir} is not a model folder imgarc reads: add it to IMGARC_MODEL_PATH "
                             f"or leave out --export-dir")
        if not os.access(self.export_dir, os.W_OK):  # found now, not after the fine-tuning
            raise UsageError(f"cannot write the --joint model into {self.export_dir}: give --export-dir a folder of "
                             f"yours and add it to IMGARC_MODEL_PATH")
        self.config.check()


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
    joint: JointOptions | None = None

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
    # With joint fine-tuning: the plain classifier's held-out scores (on the parent's latents)
    # and the run; `heldout` and `overall` are then the joint task's, on the variant's latents.
    plain: dict[int, Accuracy] | None = None
    joint: JointResult | None = None


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
          log: Callable[[TrainLog], None] | None = None, joint_log: Callable[[JointLog], None] | None = None) -> LearnReport:
    """Train a latent classifier on `labeled_dir` (one subfolder per class) and score it (and
    with `options.joint`, fine-tune it jointly with the encoder into a new model)."""
    options.check()
    model_id = resolve_model_id(options.model_id) if options.model_id else default_model_id()
    if options.joint:
        options.joint.check(model_id)
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
    report = LearnReport(task, len(encoded.kept), len(held.kept), left_out, per_quality, overall, encode_seconds, result)
    if options.joint:
        train_photos = [train_set.images[n] for n in encoded.kept]
        _joint_stage(report, options, options.joint, [im.path for im in train_photos],
                     np.array([im.label for im in train_photos]), held_set, stage, progress, joint_log)
    return report


def _joint_stage(report: LearnReport, options: LearnOptions, joint: JointOptions, paths: list[Path], labels: np.ndarray,
                 held_set: LabeledSet, stage: Callable[[str], Progress | None], progress: Callable[[Stage], None] | None,
                 log: Callable[[JointLog], None] | None) -> None:
    """Fine-tune the encoder and the report's classifier together, export the variant, and make
    the report's task, scores and record the variant's."""
    plain = report.task
    parent = find_model(plain.model_id)
    weights, _ = load_weights(parent.path)
    if progress:
        progress(Stage("reading training photos"))
    photos = load_photos(paths)
    keep = [i for i, p in enumerate(photos) if p is not None]
    if progress:
        progress(Stage("joint fine-tuning"))
    config = replace(joint.config, qualities=tuple(options.qualities))  # trained at the qualities it is scored at
    result = joint_finetune(weights, plain, [photos[i] for i in keep], labels[keep], config, log)
    record = {"parent": parent.model_id, "gamma": config.gamma, "qualities": list(config.qualities),
              "steps": result.steps, "seconds": round(result.seconds), "photos": len(keep),
              "labeled_folder": plain.trained.get("labeled_folder"), "classes": len(plain.classes)}
    meta = {**weights.meta, "parent": parent.model_id, "joint_task": record}
    description = (f"{parent.model_id}'s encoder fine-tuned with a {len(plain.classes)}-class task "
                   f"(γ {config.gamma:g}); decodes with {parent.model_id}'s decoder")
    sha = publish_network_variant(weights, result.model, ENCODER, joint.model_id, joint.export_dir, parent.quality,
                                  description, meta)
    held = _encode(held_set, lambda p, sha: heldout_pairs(config.qualities), joint.model_id, options,
                   stage("encoding held-out photos with the variant"))
    task = Task(LATENT_CLASSIFIER, FEATURES, list(plain.classes), plain.network, result.arrays, joint.model_id, sha)
    classifier = task.classifier(options.threads)
    held_labels = np.array([held_set.images[n].label for n in held.kept], dtype=np.int64)
    per_quality = {q: accuracy(predict(classifier, [f[(0, q)] for f in held.features]), held_labels)
                   for q in config.qualities}
    report.plain, report.joint = report.heldout, result
    report.heldout, report.overall = per_quality, _pooled(per_quality.values())
    task.trained = {**plain.trained, "joint": record | {"plain_heldout": plain.trained["heldout"]},
                    "heldout": {str(q): a.as_json() for q, a in per_quality.items()},
                    "heldout_all": report.overall.as_json()}
    report.task = task


def _stacked(samples: list[np.ndarray]) -> list[np.ndarray] | np.ndarray:
    """One array when every sample has the same shape (fast batches), else the list."""
    return np.stack(samples) if len({s.shape for s in samples}) == 1 else samples


def _pooled(scores) -> Accuracy:
    scores = list(scores)
    n = sum(a.count for a in scores)
    if not n:
        return Accuracy(0.0, 0.0, 0)
    return Accuracy(sum(a.top1 * a.count for a in scores) / n, sum(a.top5 * a.count for a in scores) / n, n)
