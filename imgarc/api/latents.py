"""Reading archives as data: the latents of every coded photo, without pixels.

For each photo entry: ŷ (the dequantized latents g_s would read), σ̂ and μ̂ (the hyperprior's
scale and mean of each latent, in ŷ's units), the integer symbols and the coding-table index of
each symbol, with the entry's name, size and quality. Only the entropy decoder and the integer
h_s run; the synthesis network g_s never does (no pixels are made), which is what makes this
several times cheaper than extracting.

`ArchiveLatents(archive)` iterates the photos of an archive one at a time (memory stays at one
photo's latents); entries that are not coded photos are skipped and listed, damaged ones listed.
`write_latents_npz` streams them into one .npz file; `load_latents_npz` reads it back.
"""

from __future__ import annotations

import os
import time
import zipfile
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np

from imgarc.api.decoder import EntryDecoder
from imgarc.api.extractor import ENTRY_ERRORS, iter_headers, open_archive
from imgarc.api.members import MemberSelection
from imgarc.api.results import Damaged, Progress, Timings
from imgarc.archive import KIND_IMAGE, KIND_STORED, EntryHeader
from imgarc.codec.image_codec import ImageCodec, LatentCode
from imgarc.codec.int_hyper import ACT_BITS
from imgarc.errors import ImgarcError, UsageError
from imgarc.fileio import NO_SPACE, forget_temp_file, new_temp_file, publish
from imgarc.ordered_pool import Task, failed, in_order, pool_workers

LATENTS_FORMAT = "imgarc-latents"
LATENTS_VERSION = 1
# A decoded photo's latents in the pools' budget unit (~9 bytes): ŷ, σ̂, μ̂, the symbols and the table
# indexes, 4 bytes each per latent, M latents per 16x16 pixels: ~20/256 bytes per pixel and channel.
LATENT_PIXELS_PER_UNIT = 115
Y_DOWNSCALE = 16  # g_a's four stride-2 layers: y is 1/16 of the (padded) photo (ImageCodec.latent_shapes)


class NotAPhotoError(ImgarcError):
    """An entry asked for as a photo is not a coded photo (a file kept byte-exact): it has no latents."""


class SkippedEntry(NamedTuple):
    """An entry that is not a coded photo, and why (it has no latents)."""

    path: str
    reason: str


@dataclass
class PhotoLatents:
    """One coded photo's latents, entropy-decoded (no synthesis network ran).

    Arrays are [M, h, w] on the latent grid of the padded photo (1/16 of its size for the
    shipped models); `rows`, `cols` are how many rows and columns of it cover the photo itself
    (the rest covers the edge-replicated padding).
    """

    index: int  # position in the archive
    path: str
    width: int
    height: int
    quality: int | None  # None: a single-rate model's entry
    original_size: int  # bytes of the original file
    payload_size: int  # bytes of coded latents in the archive
    model_id: str
    weights_sha256: str
    y_hat: np.ndarray  # float32: ŷ = (symbol + μ)·inv_gain, what g_s would read
    scales: np.ndarray  # float32: σ̂ in ŷ's units (the scale of the table each symbol was coded with)
    means: np.ndarray  # float32: μ̂ in ŷ's units
    y_symbols: np.ndarray  # int32: the coded integers
    scale_indexes: np.ndarray  # int32: the coding table of each symbol (from the integer h_s)
    z_symbols: np.ndarray  # int32 [N, h/4, w/4]: the hyper-latents
    rows: int
    cols: int

    @property
    def bpp(self) -> float:
        return self.payload_size * 8 / max(1, self.width * self.height)


def scale_levels(codec: ImageCodec) -> np.ndarray:
    """σ of each coding table (float64 [K]), recovered from the model's integer thresholds.

    Table k covers scales between thresholds T[k-1] and T[k], which sit at the geometric
    midpoints of log-spaced levels; a line fitted through log T gives the levels back to within
    0.3 % (the thresholds are rounded to 1/1024). Tables that are not log-spaced get the
    geometric mean of their two thresholds.
    """
    t = np.log(codec.tables.hyper.scale_thresholds.astype(np.float64) / (1 << ACT_BITS))
    if len(t) < 2:
        return np.exp(np.concatenate([t, t]))
    k = np.arange(len(t))
    slope, intercept = np.polyfit(k, t, 1)
    if np.abs(intercept + slope * k - t).max() < 0.02:
        return np.exp(intercept + slope * (np.arange(len(t) + 1) - 0.5))
    inner = (t[:-1] + t[1:]) / 2
    return np.exp(np.concatenate([[t[0] - (t[1] - t[0]) / 2], inner, [t[-1] + (t[-1] - t[-2]) / 2]]))


def latent_grid_size(codec: ImageCodec, height: int, width: int) -> tuple[int, int]:
    """Rows and columns of the latent grid that cover a height x width photo (not its padding)."""
    return -(-height // Y_DOWNSCALE), -(-width // Y_DOWNSCALE)


def code_latents(codec: ImageCodec, code: LatentCode) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ŷ, σ̂, μ̂) in ŷ's units, float32 [M, h, w], of integer latents: what a decoded entry gives.

    The same function serves latents decoded from an archive and latents of a photo quantized
    in memory (a classifier's training data), so both see identical numbers.
    """
    y_hat = codec.y_hat(code)
    levels = scale_levels(codec).astype(np.float32)
    scales = levels[np.clip(code.y_indexes, 0, len(levels) - 1)]
    means = code.y_means
    if code.gains is not None:
        inv = code.gains.as_float("inv_gain")[:, None, None]
        scales, means = scales * inv, means * inv
    return y_hat, scales.astype(np.float32), means.astype(np.float32)


def photo_latents(decoder: EntryDecoder, index: int, header: EntryHeader, payload: bytes,
                  timings: Timings | None = None) -> PhotoLatents:
    """The latents of one coded-photo entry (raises NotAPhotoError for any other entry)."""
    if header.kind != KIND_IMAGE:
        raise NotAPhotoError(f"{header.path!r} is not a coded photo ({not_a_photo_reason(header)}): it has no latents")
    decoded = decoder.latents(header, payload, timings)
    codec, code = decoded.codec, decoded.code
    y_hat, scales, means = code_latents(codec, code)
    rows, cols = latent_grid_size(codec, header.height, header.width)
    return PhotoLatents(
        index=index, path=header.path, width=header.width, height=header.height, quality=header.quality,
        original_size=header.original_size, payload_size=len(payload), model_id=header.model_id,
        weights_sha256=header.weights_sha256.hex(), y_hat=y_hat, scales=scales, means=means,
        y_symbols=code.y_symbols, scale_indexes=code.y_indexes.astype(np.int32, copy=False), z_symbols=code.z_symbols,
        rows=min(rows, y_hat.shape[1]), cols=min(cols, y_hat.shape[2]),
    )


def not_a_photo_reason(header: EntryHeader) -> str:
    if header.kind == KIND_STORED:
        return f"kept byte-exact: {header.note}" if header.note else "kept byte-exact"
    return f"entry kind {header.kind}, unknown to this imgarc"


@dataclass
class ArchiveLatents:
    """The coded photos of an archive (or of the entries `members` selects), one at a time.

    Iterating decodes the photos' latents side by side and yields them in archive order. Entries that are not coded photos
    are listed in `skipped`, or with `strict` (and whenever `members` names entries) raise
    NotAPhotoError before anything is decoded. Damaged entries are listed in `damaged` and the
    others still come. `timings` adds up entropy decoding and the integer h_s.
    """

    archive: Path
    members: MemberSelection | None = None
    strict: bool = False
    decoder: EntryDecoder = field(default_factory=EntryDecoder)
    progress: Progress | None = None
    workers: int = field(default_factory=pool_workers)  # photos decoded side by side (imgarc.ordered_pool)
    skipped: list[SkippedEntry] = field(default_factory=list)
    damaged: list[Damaged] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)
    seconds: float = 0.0

    _plan: list[tuple[int, EntryHeader]] | None = field(default=None, init=False, repr=False)

    def plan(self) -> list[tuple[int, EntryHeader]]:
        """(position, header) of the coded photos to decode, read once (no payload is read): the
        rest is recorded in `skipped` and `damaged`, or raises NotAPhotoError (see the class)."""
        if self._plan is None:
            self._plan = self._read_headers()
        return self._plan

    def _read_headers(self) -> list[tuple[int, EntryHeader]]:
        with open_archive(self.archive) as reader:
            headers = list(iter_headers(reader))
            chosen = (self.members.select(headers, str(self.archive), "nothing was read")
                      if self.members is not None else [i for i, _ in headers])
        out, not_photos = [], []
        for i in chosen:
            header = headers[i][1]
            if isinstance(header, ImgarcError):
                self.damaged.append(Damaged(f"#{i + 1}", str(header)))
            elif header.kind != KIND_IMAGE:
                not_photos.append(SkippedEntry(header.path, not_a_photo_reason(header)))
            else:
                out.append((i, header))
        named = self.members is not None and bool(self.members.include)
        if not_photos and (self.strict or named):
            first = not_photos[0]
            more = f" (and {len(not_photos) - 1} more)" if len(not_photos) > 1 else ""
            raise NotAPhotoError(f"{first.path!r} in {self.archive} is not a coded photo ({first.reason}){more}: "
                                 f"it has no latents; nothing was read")
        self.skipped.extend(not_photos)
        return out

    def __iter__(self) -> Iterator[PhotoLatents]:
        started = time.perf_counter()
        chosen = self.plan()
        with open_archive(self.archive) as reader:
            tasks = (self._task(reader, i, header) for i, header in chosen)
            for n, (header, decoded) in enumerate(in_order(tasks, self.workers)):
                photo = None
                try:
                    photo, timings = decoded.result()
                    self.timings.add(timings)
                except ENTRY_ERRORS as e:
                    self.damaged.append(Damaged(header.path, str(e)))
                if self.progress:
                    self.progress(n + 1, len(chosen), header.path)
                if photo is not None:
                    yield photo
        self.seconds = time.perf_counter() - started

    def _task(self, reader, index: int, header: EntryHeader) -> Task[EntryHeader, tuple[PhotoLatents, Timings]]:
        """Read an entry's payload and load its model here; its decoding runs on the pool. A
        damaged entry becomes a task that raises, reported in archive order."""
        try:
            payload = reader.payload(index)
            codec = self.decoder.codec_for(header)
            footprint = header.padded_height * header.padded_width * codec.architecture.M // LATENT_PIXELS_PER_UNIT
        except ENTRY_ERRORS as e:
            return failed(header, e)
        return Task(header, partial(self._decode, index, header, payload), footprint)

    def _decode(self, index: int, header: EntryHeader, payload: bytes) -> tuple[PhotoLatents, Timings]:
        timings = Timings()
        return photo_latents(self.decoder, index, header, payload, timings), timings


# Per-photo arrays in a latents .npz, each stored as `<name>/<k>` for the k-th photo.
NPZ_ARRAYS = ("y_hat", "scales", "means", "y_symbols", "scale_indexes", "z_symbols")
# Per-photo scalars, stored as one array each over all photos.
NPZ_FIELDS = ("index", "width", "height", "quality", "original_size", "payload_size", "rows", "cols")
NPZ_TEXT = ("path", "model_id", "weights_sha256")


def write_latents_npz(photos: Iterator[PhotoLatents], out: Path, force: bool = False) -> int:
    """Stream every photo's latents into the .npz file `out` (written to a temp name, then
    published atomically; never over an existing file unless `force`). Returns the photo count.

    Layout (np.load reads it, no pickle): `path`, `model_id`, `weights_sha256` (str arrays) and
    `index`, `width`, `height`, `quality` (0: single-rate), `original_size`, `payload_size`,
    `rows`, `cols` (int64), one value per photo; per photo k, `y_hat/k`, `scales/k`, `means/k`
    (float32), `y_symbols/k`, `scale_indexes/k`, `z_symbols/k` (int32); `format` and `version`.
    """
    if out.exists() and not force:
        raise UsageError(f"{out} already exists; use --force to replace it")
    if out.is_dir():
        raise UsageError(f"{out} is a folder; give a file name for the latents (.npz)")
    tmp: Path | None = None
    try:
        fd, tmp = new_temp_file(out)
        table: dict[str, list] = {k: [] for k in NPZ_FIELDS + NPZ_TEXT}
        count = 0
        with open(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
                for p in photos:
                    for key in NPZ_ARRAYS:
                        _write_array(z, f"{key}/{count}", getattr(p, key))
                    for key, values in table.items():
                        value = getattr(p, key)
                        values.append(0 if key == "quality" and value is None else value)
                    count += 1
                for key, values in table.items():
                    kind = np.int64 if key in NPZ_FIELDS else str
                    _write_array(z, key, np.array(values, dtype=kind) if values else np.zeros(0, kind))
                _write_array(z, "format", np.array(LATENTS_FORMAT))
                _write_array(z, "version", np.array(LATENTS_VERSION))
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, out, replace=force)
        tmp = None
        return count
    except OSError as e:
        if e.errno in NO_SPACE:
            raise ImgarcError(f"the disk is full while writing {out}; nothing was left half-written") from e
        if isinstance(e, FileExistsError):
            raise UsageError(f"{out} appeared while writing it; it was left as it is") from e
        raise ImgarcError(f"cannot write {out}: {e.strerror or e}") from e
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
            forget_temp_file(tmp)


def _write_array(z: zipfile.ZipFile, key: str, array: np.ndarray) -> None:
    with z.open(f"{key}.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


def load_latents_npz(path: Path) -> list[dict]:
    """A latents .npz (write_latents_npz) as one dict per photo: its fields and arrays."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["format"]) != LATENTS_FORMAT:
                raise KeyError("format")
            count = len(data["path"])
            return [{**{k: data[k][i].item() for k in NPZ_FIELDS + NPZ_TEXT},
                     **{k: data[f"{k}/{i}"] for k in NPZ_ARRAYS}} for i in range(count)]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise ImgarcError(f"{path} is not a latents file written by `imgarc latents --out` ({e})") from e


__all__ = ["ArchiveLatents", "NotAPhotoError", "PhotoLatents", "SkippedEntry", "code_latents", "latent_grid_size",
           "load_latents_npz", "photo_latents", "scale_levels", "write_latents_npz"]
