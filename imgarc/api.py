"""The library's front door: compress a folder, extract, list and verify an archive.

The one place that glues the codec (image <-> latents), the coders (latents <-> bytes) and
the container (entries <-> file). The CLI calls only this module.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, NoReturn

from imgarc.archive import (
    KIND_IMAGE,
    KIND_STORED,
    STORAGE_LZMA,
    STORAGE_RAW,
    ArchiveReader,
    ArchiveWriter,
    EntryHeader,
    resolve_inside,
    safe_relative_path,
)
from imgarc.errors import (
    ArchiveError,
    DamagedArchiveError,
    DestinationError,
    ImageError,
    ImgarcError,
    LatentStreamError,
    ModelError,
    OutOfSpaceError,
    UsageError,
)
from imgarc.fileio import NO_SPACE, write_file_atomic
from imgarc.ordered_pool import OneIntraOpThread, Task, decode_workers, in_order
from imgarc.output_format import check_extract_format, check_photo_fields, entry_output_path, photo_file_bytes
from imgarc.photo_io import MAX_PIXELS, NotCoded, Photo, read_photo
from imgarc.stored import StoredPayload, pack_stored, unpack_stored

DEFAULT_QUALITY = 75
DEFAULT_CODER = "rans"
KEEP_ORIGINALS_NOTE = "--keep-originals: kept byte-exact"

# progress(done, total, label): called after each entry.
Progress = Callable[[int, int, str], None]


@dataclass
class EntryResult:
    path: str
    kind: str  # "image" or "stored"
    original_bytes: int
    archived_bytes: int  # payload bytes in the archive
    pixels: int = 0  # coded images only
    note: str | None = None

    @property
    def bpp(self) -> float | None:
        return self.archived_bytes * 8 / self.pixels if self.pixels else None


@dataclass
class CompressSummary:
    archive: Path
    archive_bytes: int
    entries: list[EntryResult]
    warnings: list[str]
    seconds: float
    seconds_model: float = 0.0  # g_a/h_a/h_s
    seconds_coder: float = 0.0  # latent entropy coding


@dataclass
class ExtractSummary:
    entries: list[EntryResult]
    seconds: float
    seconds_model: float = 0.0
    seconds_coder: float = 0.0


@dataclass
class EntryListing:
    index: int
    header: EntryHeader | None
    error: str | None = None  # set when the entry header itself is damaged


@dataclass
class VerifyReport:
    checked: int
    damaged: list[tuple[str, str]] = field(default_factory=list)  # (entry, what is wrong)

    @property
    def ok(self) -> bool:
        return not self.damaged


@dataclass
class SalvageSummary:
    entries: list[EntryResult]  # extracted, byte-identical to what an undamaged archive gives
    damaged: list[tuple[str, str]]  # (entry or byte range, what is wrong): each one not extracted
    warnings: list[str]  # damage that cost no entry (a damaged footer or index)
    index_rebuilt: bool  # the index was unusable: entries were found by scanning for entry headers
    seconds: float


# --------------------------------------------------------------------------- compress


def _walk(src: Path, skip: set[Path], warnings: list[str]) -> list[tuple[Path, str]]:
    """Regular files under src as (path, relative POSIX name), sorted; links/specials skipped."""
    files = []
    for root, dirs, names in os.walk(src, followlinks=False):
        dirs.sort()
        for name in sorted(names):
            p = Path(root) / name
            rel = p.relative_to(src).as_posix()
            if p.resolve() in skip:
                continue
            if p.is_symlink():
                warnings.append(f"{rel}: symbolic link, not archived")
            elif not p.is_file():
                warnings.append(f"{rel}: not a regular file, not archived")
            else:
                files.append((p, rel))
    return files


def _stored_payload(data: bytes) -> StoredPayload:
    return pack_stored(data)  # raw, LZMA, or JPEG XL for a JPEG (imgarc.stored)


class _Timer:
    def __init__(self) -> None:
        self.model = 0.0
        self.coder = 0.0


def _encode_photo(photo: Photo, codec, coder, timer: _Timer, quality: int, target_bpp: float | None):
    """The photo's CodedImage (payload and the quality it was coded at), its height and width."""
    from imgarc.codec.rate_control import code_at_quality, code_at_target_bpp

    t0 = time.perf_counter()
    analysed = codec.transform(photo.rgb)
    t1 = time.perf_counter()
    h, w = photo.rgb.shape[:2]
    if target_bpp is None:
        coded = code_at_quality(codec, coder, analysed, quality)
    else:
        coded = code_at_target_bpp(codec, coder, analysed, h * w, target_bpp)
    t2 = time.perf_counter()
    timer.model += t1 - t0
    timer.coder += t2 - t1  # includes the integer h_s: small next to the coder
    return coded, h, w


def compress_folder(
    src: Path,
    archive: Path,
    quality: int = DEFAULT_QUALITY,
    coder_name: str = DEFAULT_CODER,
    model_id: str | None = None,
    force: bool = False,
    progress: Progress | None = None,
    target_bpp: float | None = None,
    keep_originals: bool = False,
    tune: str | None = None,
) -> CompressSummary:
    """Archive every regular file under `src` into `archive` (written atomically).

    Photos are coded at `quality`, or, with `target_bpp`, each at the quality whose coded size
    is nearest that many bits per pixel (the quality used is recorded per entry).
    `keep_originals`: no photo is coded; every file is kept byte-exact (imgarc.stored).
    `tune`: without `model_id`, use a model trained for this metric ("psnr" or "msssim").
    """
    from imgarc.codec.padding import padded_size
    from imgarc.codec.registry import load_codec, model_for_quality
    from imgarc.coders import get_coder

    started = time.perf_counter()
    if not 1 <= quality <= 100:
        raise UsageError(f"--quality must be between 1 and 100, not {quality}")
    if target_bpp is not None and not 0 < target_bpp <= 24:
        raise UsageError(f"--target-bpp must be above 0 and at most 24, not {target_bpp}")
    if not src.exists():
        raise UsageError(f"{src} does not exist")
    if not src.is_dir():
        raise UsageError(f"{src} is not a folder (imgarc archives folders)")
    if archive.exists() and not force:
        raise UsageError(f"{archive} already exists; use --force to replace it")
    if archive.is_dir():
        raise UsageError(f"{archive} is a folder; give a file name for the archive")
    warnings: list[str] = []
    files = _walk(src, {archive.resolve()}, warnings)
    if not files:
        raise UsageError(f"{src} has no files to archive")
    coder = get_coder(coder_name)
    # --keep-originals codes nothing: no model to load (and no torch to import).
    codec = None if keep_originals else load_codec(model_id or model_for_quality(quality, tune).model_id)
    timer = _Timer()
    results: list[EntryResult] = []
    with ArchiveWriter(archive) as writer:
        for n, (path, rel) in enumerate(files):
            try:
                data = path.read_bytes()
                st = path.stat()
            except OSError as e:
                raise UsageError(f"cannot read {path}: {e.strerror}; nothing was written") from e
            common = dict(path=rel, original_size=len(data), mtime_ns=st.st_mtime_ns, mode=st.st_mode & 0o7777)
            photo = NotCoded(KEEP_ORIGINALS_NOTE) if keep_originals else read_photo(data)
            note = None
            if isinstance(photo, Photo):
                coded, h, w = _encode_photo(photo, codec, coder, timer, quality, target_bpp)
                payload = coded.payload
                if len(payload) + photo.side_bytes < len(data):  # metadata and alpha ride in the header
                    ph, pw = padded_size(h, w, codec.stride)
                    header = EntryHeader(
                        kind=KIND_IMAGE, model_id=codec.model_id, weights_sha256=bytes.fromhex(codec.weights_sha256),
                        tables_sha256=bytes.fromhex(codec.tables_sha256), coder=coder.name, width=w, height=h,
                        padded_width=pw, padded_height=ph, quality=coded.quality, **photo.header_fields, **common,
                    )
                    writer.add(header, payload)
                    results.append(EntryResult(rel, "image", len(data), len(payload), h * w))
                    if progress:
                        progress(n + 1, len(files), rel)
                    continue
                note = "coding would not make it smaller: stored as it is"
            else:
                note = photo.reason
                if photo.warning:
                    warnings.append(f"{rel}: {photo.reason}")
            stored = _stored_payload(data)
            payload = stored.payload
            writer.add(EntryHeader(kind=KIND_STORED, storage=stored.storage, original_sha256=stored.original_sha256,
                                   note=note, **common), payload)
            results.append(EntryResult(rel, "stored", len(data), len(payload), note=note))
            if progress:
                progress(n + 1, len(files), rel)
    return CompressSummary(archive, archive.stat().st_size, results, warnings,
                           time.perf_counter() - started, timer.model, timer.coder)


# --------------------------------------------------------------------------- decode


def _image_codec_for(header: EntryHeader):
    from imgarc.codec.registry import how_to_get_model, load_codec

    codec = load_codec(header.model_id)
    if codec.weights_sha256 != header.weights_sha256.hex():
        raise ModelError(
            f"{header.path!r} was made with other weights for model {header.model_id!r} "
            f"(sha256 {header.weights_sha256.hex()[:12]}…, installed {codec.weights_sha256[:12]}…); "
            f"{how_to_get_model(header.model_id)}"
        )
    if codec.tables_sha256 != header.tables_sha256.hex():
        raise ModelError(f"{header.path!r} was coded with other coding tables than model {header.model_id!r} has; refusing to decode")
    return codec


def _decode_latents(header: EntryHeader, payload: bytes, timer: _Timer):
    from imgarc.codec.image_codec import LatentCode
    from imgarc.codec.padding import padded_size
    from imgarc.codec.payload import unpack_image_payload
    from imgarc.coders import CODER_NAMES, get_coder

    if header.coder not in CODER_NAMES:
        raise ArchiveError(f"{header.path!r} uses coder {header.coder!r}, unknown to this imgarc; upgrade imgarc")
    codec = _image_codec_for(header)
    w, h = header.width, header.height
    padded = padded_size(h, w, codec.stride) if w > 0 and h > 0 else (0, 0)
    # The padded area bounds decode memory: a 1-pixel-tall, 40M-wide header must not pass.
    if not (0 < padded[0] * padded[1] <= MAX_PIXELS) or (header.padded_height, header.padded_width) != padded:
        raise LatentStreamError(f"image size {w}x{h} (padded {header.padded_width}x{header.padded_height}) is inconsistent")
    coder = get_coder(header.coder)
    z_stream, y_stream = unpack_image_payload(payload)
    z_shape, y_shape = codec.latent_shapes(header.padded_height, header.padded_width)
    t0 = time.perf_counter()
    z = coder.decode(z_stream, codec.z_indexes(z_shape), codec.tables.z).reshape(z_shape)
    t1 = time.perf_counter()
    gains = codec.gains_for(header.quality)
    y_indexes, y_means = codec.y_indexes_and_means(z, gains)
    t2 = time.perf_counter()
    y = coder.decode(y_stream, y_indexes.ravel(), codec.tables.y).reshape(y_shape)
    t3 = time.perf_counter()
    timer.coder += (t1 - t0) + (t3 - t2)
    timer.model += t2 - t1
    return codec, LatentCode(z, y, y_indexes, y_means, gains)


def _decode_stored(header: EntryHeader, payload: bytes) -> bytes:
    return unpack_stored(header.storage, payload, header.original_size, header.original_sha256, header.path)


def _entry_file_bytes(header: EntryHeader, payload: bytes, timer: _Timer, image_format: str = "keep") -> bytes:
    """The bytes of the file an entry extracts to."""
    if header.kind == KIND_STORED:
        return _decode_stored(header, payload)
    if header.kind != KIND_IMAGE:
        raise ArchiveError(f"{header.path!r} has entry kind {header.kind}, unknown to this imgarc; upgrade imgarc")
    codec, code = _decode_latents(header, payload, timer)
    t0 = time.perf_counter()
    rgb = codec.synthesize(code, header.height, header.width)
    timer.model += time.perf_counter() - t0
    return photo_file_bytes(rgb, header, image_format)  # source format (or --format), metadata, alpha


# Per-entry problems that leave the other entries extractable.
ENTRY_ERRORS = (ArchiveError, LatentStreamError, ImageError, ModelError, DestinationError)


def _dest_is_usable(dest: Path, force: bool) -> None:
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"{dest} exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise UsageError(f"{dest} is not empty; use --force to extract into it (files of the same name are replaced)")


SALVAGE_HINT = "run `imgarc extract --salvage ARCHIVE DEST` to recover its intact entries"


def _open_reader(archive: Path) -> ArchiveReader:
    """ArchiveReader(archive); a damaged frame's error says how to recover the entries."""
    try:
        return ArchiveReader(archive)
    except DamagedArchiveError as e:
        raise DamagedArchiveError(f"{e}; {SALVAGE_HINT}") from e


def _write_entry_file(target: Path, data: bytes, header: EntryHeader) -> None:
    """Write one extracted file; what is in the way is a per-entry DestinationError."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if e.errno in NO_SPACE:
            raise OutOfSpaceError(f"the disk is full: cannot create the folder {target.parent}") from e
        why = "a file of that name is in the way" if isinstance(e, (FileExistsError, NotADirectoryError)) else e.strerror
        raise DestinationError(f"cannot create the folder {target.parent}: {why}") from e
    # setuid/setgid/sticky bits are kept in the archive but not applied (as tar does for non-root)
    write_file_atomic(target, data, header.mtime_ns, header.mode & 0o777)


@dataclass
class _DecodedEntry:
    header: EntryHeader
    data: bytes  # the bytes of the file it extracts to
    timer: _Timer


def _decoding_task(name: str, read_header: Callable[[], EntryHeader], read_payload: Callable[[], bytes],
                   image_format: str, threads: OneIntraOpThread) -> Task[str, _DecodedEntry]:
    """Read an entry here (the reader is not thread-safe); its decoding runs on the pool.
    A damaged entry becomes a task that raises, so it is reported in archive order, under its
    path when its header is readable."""
    try:
        header = read_header()
        name = header.path
        payload = read_payload()
        activations = 0
        if header.kind == KIND_IMAGE:
            synthesis_width = _image_codec_for(header).architecture.N  # loads the model here, once
            activations = (header.padded_height or 0) * (header.padded_width or 0) * synthesis_width
            threads.pin()
    except ENTRY_ERRORS as e:
        return Task(name, partial(_raise, e))
    return Task(header.path, partial(_decode_entry, header, payload, image_format), activations)


def _raise(error: Exception) -> NoReturn:
    raise error


def _decode_entry(header: EntryHeader, payload: bytes, image_format: str) -> _DecodedEntry:
    safe_relative_path(header.path)
    timer = _Timer()
    return _DecodedEntry(header, _entry_file_bytes(header, payload, timer, image_format), timer)


def _write_decoded(decoded: _DecodedEntry, dest: Path, timer: _Timer, image_format: str, taken: set[str]) -> EntryResult:
    """Write one decoded entry's file under `dest` (atomically).

    `image_format` (extract --format) may change a coded photo's format and extension; `taken`
    holds the names already used, so a renamed photo never replaces another file.
    """
    header, data = decoded.header, decoded.data
    out_path = entry_output_path(header, image_format, taken)
    target = resolve_inside(dest, safe_relative_path(out_path))
    _write_entry_file(target, data, header)
    taken.add(out_path)
    timer.model += decoded.timer.model
    timer.coder += decoded.timer.coder
    image = header.kind == KIND_IMAGE
    return EntryResult(out_path, "image" if image else "stored", len(data), header.payload_size,
                       header.width * header.height if image else 0)


def extract_archive(archive: Path, dest: Path, force: bool = False, progress: Progress | None = None,
                    image_format: str = "keep") -> ExtractSummary:
    """Extract every entry; damaged entries are skipped and reported in one error at the end.

    `image_format`: `keep` (each photo in its source format) or `png`/`jpeg`/`webp`
    (imgarc.output_format says how names change).
    """
    image_format = check_extract_format(image_format)
    started = time.perf_counter()
    timer = _Timer()
    results: list[EntryResult] = []
    failures: list[tuple[str, str]] = []
    workers = decode_workers()
    with _open_reader(archive) as reader, OneIntraOpThread(workers > 1) as threads:
        _dest_is_usable(dest, force)
        dest.mkdir(parents=True, exist_ok=True)
        taken = _entry_paths(reader)  # a photo renamed by --format must not take another file's name
        tasks = (_decoding_task(f"#{i + 1}", partial(reader.header, i), partial(reader.payload, i), image_format, threads)
                 for i in range(len(reader)))
        for n, (name, decoded) in enumerate(in_order(tasks, workers)):
            try:
                results.append(_write_decoded(decoded.result(), dest, timer, image_format, taken))
            except ENTRY_ERRORS as e:
                failures.append((name, str(e)))
            if progress:
                progress(n + 1, len(reader), name)
    if failures:
        listed = "; ".join(f"{n}: {d}" for n, d in failures[:5]) + (" …" if len(failures) > 5 else "")
        raise ArchiveError(f"{len(failures)} of {len(results) + len(failures)} entries could not be extracted "
                           f"(the other {len(results)} were): {listed}")
    return ExtractSummary(results, time.perf_counter() - started, timer.model, timer.coder)


def _entry_paths(reader: ArchiveReader) -> set[str]:
    paths = set()
    for i in range(len(reader)):
        try:
            paths.add(reader.header(i).path)
        except ArchiveError:
            pass  # reported when the loop reaches it
    return paths


def salvage_archive(archive: Path, dest: Path, force: bool = False, progress: Progress | None = None,
                    image_format: str = "keep") -> SalvageSummary:
    """Extract every entry of a damaged or truncated archive whose CRCs check out.

    Uses the index when it is intact, else rebuilds it by scanning for entry headers
    (imgarc.archive.salvage). Returns what was extracted and what was not; never raises for
    damage to entries (the caller decides how to report `damaged`). `image_format` as for
    extract_archive.
    """
    from imgarc.archive.salvage import SalvageReader

    image_format = check_extract_format(image_format)
    started = time.perf_counter()
    timer = _Timer()
    results: list[EntryResult] = []
    workers = decode_workers()
    with SalvageReader(archive) as reader, OneIntraOpThread(workers > 1) as threads:
        plan = reader.plan
        damaged = [(d.name, d.detail) for d in plan.damaged]
        _dest_is_usable(dest, force)
        dest.mkdir(parents=True, exist_ok=True)
        written: set[str] = set()
        taken = {found.header.path for found in plan.entries}  # as in extract_archive
        tasks = (_decoding_task(found.header.path, lambda found=found: found.header, partial(reader.payload, found),
                                image_format, threads) for found in plan.entries)
        for n, (name, decoded) in enumerate(in_order(tasks, workers)):
            try:
                if name in written:  # a crafted or rescanned archive: never let one entry overwrite another
                    raise DestinationError(f"a second entry named {name!r}; the first one was extracted")
                results.append(_write_decoded(decoded.result(), dest, timer, image_format, taken))
                written.add(name)
            except ENTRY_ERRORS as e:
                damaged.append((name, str(e)))
            if progress:
                progress(n + 1, len(plan.entries), name)
    return SalvageSummary(results, damaged, plan.warnings, plan.index_rebuilt, time.perf_counter() - started)


def list_archive(archive: Path) -> list[EntryListing]:
    """Every entry's header; damaged headers are listed with their error."""
    with _open_reader(archive) as reader:
        out = []
        for i in range(len(reader)):
            try:
                out.append(EntryListing(i, reader.header(i)))
            except ArchiveError as e:
                out.append(EntryListing(i, None, str(e)))
        return out


def verify_archive(archive: Path, progress: Progress | None = None) -> VerifyReport:
    """Check every CRC and decode every entry's data (image latents fully entropy-decoded)."""
    timer = _Timer()
    with _open_reader(archive) as reader:
        report = VerifyReport(checked=len(reader))
        for i in range(len(reader)):
            name = f"#{i + 1}"
            try:
                header = reader.header(i)
                name = header.path
                safe_relative_path(header.path)
                payload = reader.payload(i)
                if header.kind == KIND_IMAGE:
                    _decode_latents(header, payload, timer)
                    check_photo_fields(header)  # alpha plane, SOURCE_INFO
                else:
                    _entry_file_bytes(header, payload, timer)
            except ENTRY_ERRORS as e:
                report.damaged.append((name, str(e)))
            if progress:
                progress(i + 1, len(reader), name)
    return report


__all__ = [
    "CompressSummary", "DEFAULT_CODER", "DEFAULT_QUALITY", "EntryListing", "EntryResult", "ExtractSummary",
    "ImgarcError", "SalvageSummary", "VerifyReport", "compress_folder", "extract_archive", "list_archive",
    "salvage_archive", "verify_archive",
]
