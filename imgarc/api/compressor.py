"""Compress: files -> archive entries. One entry at a time through `entry()`, so a shard writer or
a worker pool can code entries without walking a folder; `compress_folder()` does the whole job."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from imgarc.api.options import CompressOptions
from imgarc.api.results import CompressSummary, EntryKind, EntryResult, Progress, Timings
from imgarc.archive import KIND_IMAGE, KIND_STORED, ArchiveWriter, EntryHeader
from imgarc.archive.packed import stored_size
from imgarc.codec.image_codec import ImageCodec
from imgarc.codec.padding import padded_size
from imgarc.codec.rate_control import CodedImage, code_at_quality, code_at_target_bpp
from imgarc.codec.registry import load_codec, model_for_quality, resolve_model_id
from imgarc.coders import get_coder
from imgarc.errors import UsageError
from imgarc.photo import NotCoded, Photo, pack_stored, read_photo

KEEP_ORIGINALS_NOTE = "--keep-originals: kept byte-exact"
WOULD_GROW_NOTE = "coding would not make it smaller: stored as it is"
PACKABLE_METADATA = ("exif", "icc_profile", "xmp")  # LZMA-packed in the entry header when that is smaller


@dataclass
class ArchivedEntry:
    """One file made ready for the archive: its header and payload, what to report, and a warning
    for the user (e.g. a photo whose data does not decode) or None."""

    header: EntryHeader
    payload: bytes
    result: EntryResult
    warning: str | None = None


def walk_folder(src: Path, skip: set[Path], warnings: list[str]) -> list[tuple[Path, str]]:
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


def side_bytes(photo: Photo) -> int:
    """Bytes a coded photo's entry carries beside its payload (metadata and alpha), as the header
    will hold them: EXIF, ICC and XMP LZMA-packed when that is smaller."""
    return sum(stored_size(v) if k in PACKABLE_METADATA else len(v)
               for k, v in photo.header_fields.items() if isinstance(v, bytes))


class Compressor:
    """Codes files into archive entries with one set of CompressOptions (model loaded once)."""

    def __init__(self, options: CompressOptions | None = None) -> None:
        self.options = options or CompressOptions()
        self.coder = get_coder(self.options.coder)
        self.timings = Timings()
        self._codec: ImageCodec | None = None

    @property
    def codec(self) -> ImageCodec:
        """The model photos are coded with (loaded on first use)."""
        if self._codec is None:
            o = self.options
            model_id = resolve_model_id(o.model_id, o.quality) if o.model_id else model_for_quality(o.quality, o.tune).model_id
            self._codec = load_codec(model_id)
        return self._codec

    def code_photo(self, photo: Photo) -> CodedImage:
        """The photo's coded payload and the quality it was coded at."""
        t0 = time.perf_counter()
        analysed = self.codec.transform(photo.rgb)
        t1 = time.perf_counter()
        h, w = photo.rgb.shape[:2]
        if self.options.target_bpp is None:
            coded = code_at_quality(self.codec, self.coder, analysed, self.options.quality)
        else:
            coded = code_at_target_bpp(self.codec, self.coder, analysed, h * w, self.options.target_bpp)
        self.timings.model += t1 - t0
        self.timings.coder += time.perf_counter() - t1  # includes the integer h_s: small next to the coder
        return coded

    def entry(self, path: Path, name: str) -> ArchivedEntry:
        """The archive entry of the file `path`, stored under the relative POSIX `name`."""
        try:
            data = path.read_bytes()
            st = path.stat()
        except OSError as e:
            raise UsageError(f"cannot read {path}: {e.strerror}; nothing was written") from e
        common = dict(path=name, original_size=len(data), mtime_ns=st.st_mtime_ns, mode=st.st_mode & 0o7777)
        photo = NotCoded(KEEP_ORIGINALS_NOTE) if self.options.keep_originals else read_photo(data)
        warning = None
        if isinstance(photo, Photo):
            coded = self.code_photo(photo)
            if len(coded.payload) + side_bytes(photo) < len(data):
                return self._photo_entry(photo, coded, common)
            note = WOULD_GROW_NOTE
        else:
            note = photo.reason
            warning = f"{name}: {photo.reason}" if photo.warning else None
        stored = pack_stored(data)
        header = EntryHeader(kind=KIND_STORED, storage=stored.storage, original_sha256=stored.original_sha256,
                             note=note, **common)
        return ArchivedEntry(header, stored.payload,
                             EntryResult(name, EntryKind.STORED, len(data), len(stored.payload), note=note), warning)

    def _photo_entry(self, photo: Photo, coded: CodedImage, common: dict) -> ArchivedEntry:
        codec = self.codec
        h, w = photo.rgb.shape[:2]
        ph, pw = padded_size(h, w, codec.stride)
        header = EntryHeader(
            kind=KIND_IMAGE, model_id=codec.model_id, weights_sha256=bytes.fromhex(codec.weights_sha256),
            tables_sha256=bytes.fromhex(codec.tables_sha256), coder=self.coder.name, width=w, height=h,
            padded_width=pw, padded_height=ph, quality=coded.quality, **photo.header_fields, **common,
        )
        result = EntryResult(common["path"], EntryKind.PHOTO, common["original_size"], len(coded.payload), h * w)
        return ArchivedEntry(header, coded.payload, result)

    def compress_folder(self, src: Path, archive: Path, force: bool = False,
                        progress: Progress | None = None) -> CompressSummary:
        """Archive every regular file under `src` into `archive` (written atomically)."""
        started = time.perf_counter()
        if not src.exists():
            raise UsageError(f"{src} does not exist")
        if not src.is_dir():
            raise UsageError(f"{src} is not a folder (imgarc archives folders)")
        if archive.exists() and not force:
            raise UsageError(f"{archive} already exists; use --force to replace it")
        if archive.is_dir():
            raise UsageError(f"{archive} is a folder; give a file name for the archive")
        warnings: list[str] = []
        files = walk_folder(src, {archive.resolve()}, warnings)
        if not files:
            raise UsageError(f"{src} has no files to archive")
        if not self.options.keep_originals:
            _ = self.codec  # a missing model is reported before the archive is created
        results: list[EntryResult] = []
        with ArchiveWriter(archive) as writer:
            for n, (path, name) in enumerate(files):
                entry = self.entry(path, name)
                writer.add(entry.header, entry.payload)
                results.append(entry.result)
                if entry.warning:
                    warnings.append(entry.warning)
                if progress:
                    progress(n + 1, len(files), name)
        return CompressSummary(archive, archive.stat().st_size, results, warnings,
                               time.perf_counter() - started, self.timings.model, self.timings.coder)
