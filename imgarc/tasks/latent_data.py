"""Latent features of labeled photos, for training and evaluating a classifier, cached on disk.

Each photo is encoded once per flip/rotation (g_a and h_a: the augmentation is encoded, not
faked on the latent grid) and quantized at a quality, exactly as `compress` would code it (the
integer h_s chooses the tables); the features are what `classify` later reads from the archive
(imgarc.tasks.features). Training photos get one quality per flip/rotation, cycling through the
chosen qualities, so one classifier serves archives of every quality; held-out photos are
encoded unflipped at every quality.

The cache holds one float16 file per (photo content, flip/rotation, quality) under
`<cache>/<model id>-<weights sha256[:16]>/<features>/`: a photo's sha256 names it, so renamed or
moved photos hit and edited ones miss.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from imgarc.codec.image_codec import ImageCodec
from imgarc.codec.registry import load_codec
from imgarc.photo import Photo, read_photo
from imgarc.tasks.features import DIHEDRAL, FEATURES, code_features, dihedral

Pair = tuple[int, int]  # (flip/rotation index into DIHEDRAL, quality)
Progress = Callable[[int, int, str], None]


def default_cache_dir() -> Path:
    """$IMGARC_CACHE, else $XDG_CACHE_HOME/imgarc, else ~/.cache/imgarc; latents go in `latents/`."""
    base = os.environ.get("IMGARC_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "imgarc")
    return Path(base) / "latents"


def training_pairs(sha256: str, augment: int, qualities: tuple[int, ...]) -> list[Pair]:
    """A training photo's (flip/rotation, quality) pairs: the first `augment` of DIHEDRAL, each at
    one quality, cycling through `qualities` from a start the photo's hash picks."""
    start = int(sha256[:8], 16)
    return [(t, qualities[(start + t) % len(qualities)]) for t in range(augment)]


def heldout_pairs(qualities: tuple[int, ...]) -> list[Pair]:
    return [(0, q) for q in qualities]


@dataclass
class FeatureCache:
    """float16 features on disk (None: no cache)."""

    root: Path | None
    model_id: str
    weights_sha256: str

    @property
    def folder(self) -> Path | None:
        if self.root is None:
            return None
        return self.root / f"{self.model_id}-{self.weights_sha256[:16]}" / FEATURES.replace("/", "-").replace("+", "-")

    def path(self, sha256: str, pair: Pair) -> Path | None:
        folder = self.folder
        return None if folder is None else folder / sha256[:2] / f"{sha256}.t{pair[0]}.q{pair[1]}.npy"

    def get(self, sha256: str, pair: Pair) -> np.ndarray | None:
        path = self.path(sha256, pair)
        if path is None:
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):  # absent, or cut short by a killed run: computed again
            return None

    def put(self, sha256: str, pair: Pair, features: np.ndarray) -> None:
        path = self.path(sha256, pair)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
        with open(tmp, "wb") as f:
            np.save(f, features, allow_pickle=False)
        os.replace(tmp, path)


def encode_pairs(codec: ImageCodec, rgb: np.ndarray, pairs: list[Pair]) -> dict[Pair, np.ndarray]:
    """float16 features of `rgb` under each (flip/rotation, quality): g_a once per flip/rotation."""
    out: dict[Pair, np.ndarray] = {}
    for t in sorted({t for t, _ in pairs}):
        pixels = np.ascontiguousarray(dihedral(rgb, t))
        analysed = codec.transform(pixels)
        h, w = pixels.shape[:2]
        for tt, q in pairs:
            if tt == t:
                out[(t, q)] = code_features(codec, codec.quantize(analysed, q), h, w).astype(np.float16)
    return out


@dataclass
class _Job:
    path: Path
    pairs: list[Pair]


_worker_codec: ImageCodec | None = None


def _init_worker(model_id: str, cores: list[int]) -> None:
    global _worker_codec
    if cores and hasattr(os, "sched_setaffinity"):  # one core each: the networks' threads stay on it
        ident = multiprocessing.current_process()._identity
        os.sched_setaffinity(0, {cores[(ident[0] - 1 if ident else 0) % len(cores)]})
    _worker_codec = load_codec(model_id)


def _features_of(codec: ImageCodec, cache: FeatureCache, job: _Job) -> dict[Pair, np.ndarray] | str:
    """The features of one photo (cached ones read, the rest encoded and cached), or why it has none."""
    try:
        data = job.path.read_bytes()
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    sha = hashlib.sha256(data).hexdigest()
    found = {p: f for p in job.pairs if (f := cache.get(sha, p)) is not None}
    missing = [p for p in job.pairs if p not in found]
    if missing:
        photo = read_photo(data)
        if not isinstance(photo, Photo):
            return photo.reason
        for pair, features in encode_pairs(codec, photo.rgb, missing).items():
            cache.put(sha, pair, features)
            found[pair] = features
    return found


def _worker_job(cache: FeatureCache, job: _Job) -> dict[Pair, np.ndarray] | str:
    assert _worker_codec is not None
    return _features_of(_worker_codec, cache, job)


@dataclass
class EncodedSet:
    """Features per photo, in the order asked for; photos that could not be coded left out."""

    features: list[dict[Pair, np.ndarray]]
    kept: list[int]  # positions (in the paths asked for) of the photos that have features
    left_out: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0


def photo_sha256s(paths: list[Path]) -> Iterator[str]:
    for p in paths:
        yield hashlib.sha256(p.read_bytes()).hexdigest()


def encode_photos(paths: list[Path], pairs_of: Callable[[Path, str], list[Pair]], model_id: str,
                  cache_root: Path | None, workers: int = 1, progress: Progress | None = None) -> EncodedSet:
    """Features of every photo in `paths` for the pairs `pairs_of(path, sha256)` names.

    `workers` > 1 encodes in that many processes, each on one core of this process's.
    """
    started = time.perf_counter()
    codec = load_codec(model_id)
    cache = FeatureCache(cache_root, codec.model_id, codec.weights_sha256)
    jobs = [_Job(p, pairs_of(p, sha)) for p, sha in zip(paths, photo_sha256s(paths))]
    result = EncodedSet([], [])

    def collect(n: int, out: dict[Pair, np.ndarray] | str) -> None:
        if isinstance(out, str):
            result.left_out.append((paths[n], out))
        else:
            result.features.append(out)
            result.kept.append(n)
        if progress:
            progress(n + 1, len(jobs), paths[n].name)

    if workers <= 1 or len(jobs) < 2:
        for n, job in enumerate(jobs):
            collect(n, _features_of(codec, cache, job))
    else:
        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        context = multiprocessing.get_context("spawn")  # no fork under ONNX Runtime's threads
        with _one_blas_thread(), ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                 initargs=(codec.model_id, cores[:workers])) as pool:
            for n, out in enumerate(pool.map(_worker_job, [cache] * len(jobs), jobs, chunksize=8)):
                collect(n, out)
    result.seconds = time.perf_counter() - started
    return result


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Spawned workers read these at start-up: one BLAS thread each (the integer h_s's matrix
    products), as each is pinned to one core."""
    names = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {n: os.environ.get(n) for n in names}
    os.environ.update({n: "1" for n in names})
    try:
        yield
    finally:
        for n, v in saved.items():
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v


__all__ = ["DIHEDRAL", "EncodedSet", "FeatureCache", "default_cache_dir", "encode_pairs", "encode_photos",
           "heldout_pairs", "training_pairs"]
