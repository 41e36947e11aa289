"""Scoring a classifier: top-k accuracy over samples of any size (no torch)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from imgarc.tasks.onnx_classifier import Classifier


@dataclass(frozen=True)
class Accuracy:
    top1: float
    top5: float
    count: int

    def as_json(self) -> dict:
        return {"top1": round(self.top1, 4), "top5": round(self.top5, 4), "images": self.count}


def predict(classifier: Classifier, samples: list[np.ndarray], batch: int = 64) -> np.ndarray:
    """Class probabilities [n, classes]; samples of the same shape run together."""
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        groups[s.shape].append(i)
    out = np.zeros((len(samples), classifier.spec.classes), dtype=np.float32)
    for positions in groups.values():
        for k in range(0, len(positions), batch):
            part = positions[k:k + batch]
            out[part] = classifier.probabilities(np.stack([samples[i] for i in part]).astype(np.float32))
    return out


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> Accuracy:
    """Top-1 and top-5 (top-k for fewer than 5 classes) accuracy."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        return Accuracy(0.0, 0.0, 0)
    ranked = np.argsort(-probabilities, axis=1)
    top5 = (ranked[:, :5] == labels[:, None]).any(1).mean()
    return Accuracy(float((ranked[:, 0] == labels).mean()), float(top5), len(labels))
