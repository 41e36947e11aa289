"""Compress: files -> archive entries. One entry at a time through `entry()`, so a shard writer or
a worker pool can code entries without walking a folder; `compress_folder()` does the whole job,
coding photos side by side on every core this process may use (imgarc.ordered_pool) and writing
them in the folder's order: the archive's bytes do not depend on the number of workers."""

from __future__ import annotations

import os
import stat
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from imgarc.api.options import DEFAULT_QUALITY, CompressOptions
from imgarc.api.results import CompressSummary, EntryKind, EntryResult, LeftOut, Progress, Timings
from imgarc.archive import KIND_IMAGE, KIND_STORED, STORAGE_RAW, ArchiveWriter, EntryHeader, entry_name
from imgarc.archive.layout import pack_entry
from imgarc.archive.writer import stale_temp_files
from imgarc.codec.image_codec import ImageCodec
from imgarc.codec.padding import padded_size
from imgarc.codec.rate_control import CodedImage, code_at_quality, code_at_target_bpp, pack_latents
from imgarc.codec.registry import load_codec, model_for_quality, resolve_model_id
from imgarc.coders import DEFAULT_CODER, get_coder
from imgarc.errors import UnreadableFileError, UsageError
from imgarc.ordered_pool import Task, in_order, pool_workers
from imgarc.photo import NotCoded, Photo, pack_stored, photo_size, read_photo
from imgarc.runtime.device import resolve_device
from imgarc.shards.manifest import read_manifest, remove_shards

if TYPE_CHECKING:  # torch: imported only for --refine
    from imgarc.codec.refine import LatentRefiner

KEEP_ORIGINALS_NOTE = "--keep-originals: kept byte-exact"
WOULD_GROW_NOTE = "coding would not make it smaller: stored as it is"


@dataclass
class ArchivedEntry:
    """One file made ready for the archive: its header and payload, what to report, and a warning
    for the user (e.g. a photo whose data does not decode) or None."""

    header: EntryHeader
    payload: bytes
    result: EntryResult
    warning: str | None = None


@dataclass
class SourceFile:
    """A file read for the archive: its relative POSIX name, its bytes, and the header fields
    every entry has (`common`)."""

    name: str
    data: bytes
    common: dict


def read_source(path: Path, name: str) -> SourceFile:
    """The file `path`, to be stored under `name`. Raises UnreadableFileError when it cannot be read."""
    try:
        data = path.read_bytes()
        st = path.stat()
    except OSError as e:
        raise UnreadableFileError(f"{name}: cannot be read ({e.strerror or e})") from e
    path_text, path_bytes = entry_name(name)
    return SourceFile(name, data, dict(path=path_text, path_bytes=path_bytes, original_size=len(data),
                                       mtime_ns=st.st_mtime_ns, mode=st.st_mode & 0o7777))


def walk_folder(src: Path, skip: Path | None, warnings: list[str], left_out: list[LeftOut]) -> list[tuple[Path, str]]:
    """Regular files under src as (path, relative POSIX name), sorted. Links (to files or folders,
    loops included) and special files are skipped with a warning; `skip` (the archive itself, if it
    lies inside src) silently; unreadable folders go to `left_out`."""
    skip_id = _file_id(skip) if skip is not None else None
    files = []

    def unreadable(error: OSError) -> None:
        name = Path(error.filename).relative_to(src).as_posix() if error.filename else str(src)
        left_out.append(LeftOut(name, f"folder cannot be read ({error.strerror or error})"))

    for root, dirs, names in os.walk(src, followlinks=False, onerror=unreadable):
        dirs.sort()
        for name in list(dirs):
            if os.path.islink(os.path.join(root, name)):  # os.walk never descends into it
                warnings.append(f"{(Path(root) / name).relative_to(src).as_posix()}: symbolic link to a folder, not archived")
        for name in sorted(names):
            p = Path(root) / name
            rel = p.relative_to(src).as_posix()
            try:
                st = p.lstat()
            except OSError as e:
                left_out.append(LeftOut(rel, f"cannot be read ({e.strerror or e})"))
                continue
            if skip_id is not None and (st.st_dev, st.st_ino) == skip_id:
                continue
            if stat.S_ISLNK(st.st_mode):
                warnings.append(f"{rel}: symbolic link, not archived")
            elif not stat.S_ISREG(st.st_mode):
                warnings.append(f"{rel}: not a regular file, not archived")
            else:
                files.append((p, rel))
    return files


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def entry_bytes(header: EntryHeader, payload: bytes) -> int:
    """What an entry takes in the archive: its framed header and its payload."""
    return len(pack_entry(header.to_bytes())) + len(payload)


class Compressor:
    """Codes files into archive entries with one set of CompressOptions (model loaded once)."""

    def __init__(self, options: CompressOptions | None = None) -> None:
        self.options = options or CompressOptions()
        self.coder = get_coder(self.options.coder)
        self.timings = Timings()
        self._timings_lock = threading.Lock()  # photos are coded on several threads
        self._codec: ImageCodec | None = None
        self._refiner: LatentRefiner | None = None  # made when first used (needs torch)
        self._refiner_lock = threading.Lock()

    @property
    def codec(self) -> ImageCodec:
        """The model photos are coded with (loaded on first use)."""
        if self._codec is None:
            o = self.options
            model_id = resolve_model_id(o.model_id, o.quality) if o.model_id else model_for_quality(o.quality, o.tune).model_id
            self._codec = load_codec(model_id, resolve_device(o.device))
        return self._codec

    @property
    def refiner(self) -> LatentRefiner:
        """The latent refiner of `--refine` (made once, on the first photo: it needs torch)."""
        with self._refiner_lock:
            if self._refiner is None:
                # torch is imported only when refinement is asked for: the lean install has none.
                from imgarc.codec.refine import LatentRefiner

                self._refiner = LatentRefiner(self.codec, self.options.refine_steps)
            return self._refiner

    def code_photo(self, photo: Photo) -> CodedImage:
        """The photo's coded payload and the quality it was coded at."""
        t0 = time.perf_counter()
        rgb = photo.take_pixels()
        analysed = self.codec.transform(rgb)
        if not self.options.refine_steps:
            del rgb  # the photo's pixels are not needed again: freed before the latent stage
        t1 = time.perf_counter()
        o = self.options
        quality = o.quality
        if o.target_bpp is not None:
            coded = code_at_target_bpp(self.codec, self.coder, analysed, photo.height * photo.width, o.target_bpp)
            quality = coded.quality
        elif not o.refine_steps:
            # One coding: the unquantized latents become the symbols in place.
            coded = code_at_quality(self.codec, self.coder, analysed, quality, consume=True)
        refining = 0.0
        if o.refine_steps:  # at the quality asked for, or the one the target's search picked unrefined
            t2 = time.perf_counter()
            code = self.refiner.refine(rgb, analysed, quality)
            refining = time.perf_counter() - t2  # g_s and its gradients: network time
            coded = CodedImage(quality, pack_latents(self.codec, self.coder, code))
        with self._timings_lock:
            self.timings.model += t1 - t0 + refining
            self.timings.coder += time.perf_counter() - t1 - refining  # includes the integer h_s: small next to the coder
        return coded

    def entry(self, path: Path, name: str) -> ArchivedEntry:
        """The archive entry of the file `path`, stored under the relative POSIX `name`.
        Raises UnreadableFileError when the file cannot be read."""
        return self.entry_of(read_source(path, name))

    def entry_of(self, source: SourceFile) -> ArchivedEntry:
        """The archive entry of a file already read (thread-safe: the pool codes several at once)."""
        data, common = source.data, source.common
        photo = NotCoded(KEEP_ORIGINALS_NOTE) if self.options.keep_originals else read_photo(data)
        warning = None
        if isinstance(photo, Photo):
            coded = self.photo_entry(photo, self.code_photo(photo), common)
            raw = EntryHeader(kind=KIND_STORED, storage=STORAGE_RAW, note=WOULD_GROW_NOTE, **common)
            if entry_bytes(coded.header, coded.payload) < entry_bytes(raw, data):  # headers included
                return coded
            note = WOULD_GROW_NOTE
        else:
            note = photo.reason
            warning = f"{source.name}: {photo.reason}" if photo.warning else None
        stored = pack_stored(data)
        header = EntryHeader(kind=KIND_STORED, storage=stored.storage, original_sha256=stored.original_sha256,
                             note=note, **common)
        return ArchivedEntry(header, stored.payload,
                             EntryResult(common["path"], EntryKind.STORED, len(data), len(stored.payload), note=note),
                             warning)

    def footprint(self, source: SourceFile) -> int:
        """What coding the file holds in memory at once (the pool's budget unit): 0 for a file
        that is not a photo or is kept as it is."""
        size = None if self.options.keep_originals else photo_size(source.data)
        if size is None:
            return 0
        w, h = size
        padded = padded_size(h, w, self.codec.stride)
        # --refine runs g_s forward and back in its tiles: about what decoding the photo holds.
        refining = self.codec.synthesis_footprint(*padded) if self.options.refine_steps else 0
        return self.codec.analysis_footprint(*padded) + refining

    def photo_entry(self, photo: Photo, coded: CodedImage, common: dict) -> ArchivedEntry:
        """The entry of a coded photo; `common`: the EntryHeader fields every entry has."""
        codec = self.codec
        h, w = photo.height, photo.width
        ph, pw = padded_size(h, w, codec.stride)
        header = EntryHeader(
            kind=KIND_IMAGE, model_id=codec.model_id, weights_sha256=bytes.fromhex(codec.weights_sha256),
            tables_sha256=bytes.fromhex(codec.tables_sha256), coder=self.coder.name, width=w, height=h,
            padded_width=pw, padded_height=ph, quality=coded.quality, **photo.header_fields, **common,
        )
        result = EntryResult(common["path"], EntryKind.PHOTO, common["original_size"], len(coded.payload), h * w)
        return ArchivedEntry(header, coded.payload, result)

    def entry_or_left_out(self, path: Path, name: str, strict: bool, left_out: list[LeftOut]) -> ArchivedEntry | None:
        """entry(path, name); None when the file cannot be read, which is then added to `left_out`
        (`strict`: UnreadableFileError instead, so that nothing is published)."""
        source = self.source_or_left_out(path, name, strict, left_out)
        return None if source is None else self.entry_of(source)

    @staticmethod
    def source_or_left_out(path: Path, name: str, strict: bool, left_out: list[LeftOut]) -> SourceFile | None:
        """read_source(path, name), or None with the reason added to `left_out` (see entry_or_left_out)."""
        try:
            return read_source(path, name)
        except UnreadableFileError as e:
            if strict:
                raise UnreadableFileError(f"{e}; nothing was written (--strict)") from e
            left_out.append(LeftOut(name, str(e).removeprefix(f"{name}: ")))
            return None

    def entry_tasks(self, files: list[tuple[Path, str]], strict: bool, left_out: list[LeftOut]) -> Iterator[Task]:
        """One pool task per readable file, keyed by (its position in `files`, its name). Files are
        read here, in the caller's thread and in order, as the pool asks for them."""
        for n, (path, name) in enumerate(files):
            source = self.source_or_left_out(path, name, strict, left_out)
            if source is not None:
                yield Task((n, name), lambda source=source: self.entry_of(source), self.footprint(source))

    def compress_folder(self, src: Path, archive: Path, force: bool = False, progress: Progress | None = None,
                        strict: bool = False) -> CompressSummary:
        """Archive every regular file under `src` into `archive`, published atomically: never over a
        file that appeared meanwhile unless `force`. Unreadable files are left out and listed in the
        summary's `left_out` (`strict`: raise UnreadableFileError instead, publishing nothing)."""
        started = time.perf_counter()
        warnings: list[str] = []
        left_out: list[LeftOut] = []
        files = files_to_archive(src, archive, force, strict, warnings, left_out)
        warnings += self.stale_temp_warnings(archive, force)
        replaced = read_manifest(archive) if force else None
        summary = self.compress_files(files, archive, force, progress, strict)
        if replaced is not None:  # a sharded archive of that name, replaced: its shards go too
            remove_shards(archive, replaced)
        return replace(summary, warnings=warnings + summary.warnings, left_out=left_out + summary.left_out,
                       seconds=time.perf_counter() - started)

    def compress_files(self, files: list[tuple[Path, str]], archive: Path, force: bool = False,
                       progress: Progress | None = None, strict: bool = False) -> CompressSummary:
        """Archive `files` ((path, entry name), in archive order) into `archive`, published
        atomically (see compress_folder); a file that cannot be read is left out (`strict`: raise)."""
        started = time.perf_counter()
        model_before, coder_before = self.timings.model, self.timings.coder  # a Compressor may code several archives
        if not self.options.keep_originals:
            _ = self.codec  # a missing model is reported before the archive is created
        results: list[EntryResult] = []
        warnings: list[str] = []
        left_out: list[LeftOut] = []
        with ArchiveWriter(archive, replace=force) as writer:
            for (n, name), coded in in_order(self.entry_tasks(files, strict, left_out), pool_workers()):
                entry = coded.result()
                writer.add(entry.header, entry.payload)
                results.append(entry.result)
                if entry.warning:
                    warnings.append(entry.warning)
                if progress:
                    progress(n + 1, len(files), name)
        return CompressSummary(archive, archive.stat().st_size, results, warnings, time.perf_counter() - started,
                               self.timings.model - model_before, self.timings.coder - coder_before, left_out)

    @staticmethod
    def stale_temp_warnings(archive: Path, remove: bool, names: Callable[[str], bool] | None = None) -> list[str]:
        """Temp files of earlier runs to this archive (`names`: to the files of the folder it
        accepts) whose process is gone (a kill -9, a power cut)."""
        out = []
        for stale in stale_temp_files(archive, names):
            if remove:
                stale.unlink(missing_ok=True)
                out.append(f"removed {stale}, left by an earlier run that was killed (--force)")
            else:
                out.append(f"{stale} was left by an earlier run that was killed; delete it, or run with --force to remove it")
        return out


def files_to_archive(src: Path, archive: Path, force: bool, strict: bool, warnings: list[str],
                     left_out: list[LeftOut], skip: Callable[[Path], bool] = lambda path: False) -> list[tuple[Path, str]]:
    """walk_folder(src) for a compress into `archive`, less the files `skip` names, after one
    clear line for a source that is not a folder or an archive name that cannot be used; with
    `strict`, an unreadable file stops it (nothing written); no file at all is one line too."""
    if not src.exists():
        raise UsageError(f"{src} does not exist")
    if not src.is_dir():
        raise UsageError(f"{src} is not a folder (imgarc archives folders)")
    if archive.exists() and not force:
        raise UsageError(f"{archive} already exists; use --force to replace it, or --update to add to it")
    if archive.is_dir():
        raise UsageError(f"{archive} is a folder; give a file name for the archive")
    files = [(path, name) for path, name in walk_folder(src, archive, warnings, left_out) if not skip(path)]
    if strict and left_out:
        raise UnreadableFileError(f"{left_out[0].path}: {left_out[0].reason}; nothing was written (--strict)")
    if not files:
        raise UsageError(f"{src} has no files to archive")
    return files


def compress_folder(src: Path, archive: Path, quality: int = DEFAULT_QUALITY, coder_name: str = DEFAULT_CODER,
                    model_id: str | None = None, force: bool = False, progress: Progress | None = None,
                    target_bpp: float | None = None, keep_originals: bool = False,
                    tune: str | None = None, refine_steps: int = 0) -> CompressSummary:
    """Archive every regular file under `src` into `archive` (see CompressOptions)."""
    options = CompressOptions(quality, target_bpp, coder_name, model_id, tune, keep_originals, refine_steps=refine_steps)
    return Compressor(options).compress_folder(src, archive, force=force, progress=progress)
