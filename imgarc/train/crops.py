"""Random training crops from a folder of photos, held decoded in memory.

Decoding 680 JPEGs per epoch would cost more than the network step on 2 cores, so every
photo is decoded once into a uint8 array (~300 MB for the shared training set).
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from imgarc.errors import UsageError

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


def load_photos(folder: Path, min_side: int) -> list[np.ndarray]:
    """Every decodable photo under `folder` as an RGB uint8 HxWx3 array, sorted by path.

    Photos smaller than `min_side` on either side are skipped (they cannot give a crop).
    """
    if not folder.is_dir():
        raise UsageError(f"training folder {folder} does not exist")
    photos = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES):
        try:
            with Image.open(path) as im:
                rgb = np.asarray(im.convert("RGB"))
        except OSError:
            continue  # unreadable files are not training data
        if min(rgb.shape[:2]) >= min_side:
            photos.append(rgb)
    if not photos:
        raise UsageError(f"no photos of at least {min_side}x{min_side} pixels found under {folder}")
    return photos


class CropSampler:
    """Batches of random crops with random horizontal flips, as uint8 NHWC.

    uint8 keeps the host-to-device copy a quarter of float's; the trainer converts on the device.
    `scale_jitter` S > 1: each crop is cut from a square s times its side, s log-uniform in
    [1, S] (as far as the photo allows), and scaled down to the crop (Lanczos, as the shared
    set's larger photos were): one photo yields crops at many scales, so a few hundred photos
    look like more. Never scaled up: that would teach the codec blur.
    """

    def __init__(self, photos: list[np.ndarray], crop: int, seed: int, scale_jitter: float = 1.0):
        self.photos = photos
        self.crop = crop
        self.scale_jitter = scale_jitter
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int) -> np.ndarray:
        c = self.crop
        out = np.empty((size, c, c, 3), dtype=np.uint8)
        for i in range(size):
            photo = self.photos[self.rng.integers(len(self.photos))]
            h, w = photo.shape[:2]
            side = c
            if self.scale_jitter > 1.0:
                largest = min(self.scale_jitter, min(h, w) / c)
                side = min(int(round(c * np.exp(self.rng.uniform(0.0, np.log(largest))))), h, w)
            top = self.rng.integers(h - side + 1)
            left = self.rng.integers(w - side + 1)
            patch = photo[top : top + side, left : left + side]
            if side != c:
                patch = np.asarray(Image.fromarray(patch).resize((c, c), Image.Resampling.LANCZOS))
            if self.rng.random() < 0.5:
                patch = patch[:, ::-1]
            out[i] = patch
        return out


def prefetched(make_batch: Callable[[], np.ndarray], depth: int = 3) -> Iterator[np.ndarray]:
    """`make_batch()` results, produced by a background thread `depth` batches ahead.

    On a GPU the network step is shorter than cropping on the CPU; overlapping the two keeps
    the device busy. The thread is a daemon: an abandoned iterator does not hold the process.
    """
    batches: queue.Queue[np.ndarray] = queue.Queue(maxsize=depth)

    def produce() -> None:
        while True:
            batches.put(make_batch())

    threading.Thread(target=produce, daemon=True).start()
    while True:
        yield batches.get()
