"""Extract: archive entries -> files under a destination folder.

One pipeline for both ways of finding entries: the archive's index (`extract`) or the salvage
scan of a damaged archive (`salvage`). Entries decode side by side on a few threads
(imgarc.ordered_pool) and are written in archive order, each atomically.
"""

from __future__ import annotations

import errno
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

from imgarc.api.decoder import EntryDecoder
from imgarc.api.members import MemberSelection
from imgarc.api.results import (Damaged, EntryKind, EntryResult, ExtractSummary, Progress, SalvageSummary,
                                Timings)
from imgarc.archive import KIND_IMAGE, ArchiveReader, EntryHeader, disk_name, resolve_inside, safe_relative_path
from imgarc.archive.salvage import FoundEntry, SalvagePlan, SalvageReader
from imgarc.errors import (ArchiveError, DamagedArchiveError, DestinationError, ImageError, ImgarcError, LatentStreamError,
                           ModelError, OutOfSpaceError, UsageError)
from imgarc.fileio import NO_SPACE, write_file_atomic
from imgarc.ordered_pool import Task, failed, in_order, pool_workers
from imgarc.photo import check_extract_format, photo_output_path
from imgarc.shards.manifest import read_manifest
from imgarc.shards.reader import MAX_OPEN_SHARDS, ShardedReader

# Per-entry problems that leave the other entries extractable.
ENTRY_ERRORS = (ArchiveError, LatentStreamError, ImageError, ModelError, DestinationError)
SALVAGE_HINT = "run `imgarc extract --salvage ARCHIVE DEST` to recover its intact entries"


def open_archive(archive: Path) -> ArchiveReader | ShardedReader:
    """ArchiveReader(archive), or a ShardedReader when `archive` is a shard manifest; a damaged
    frame's error says how to recover the entries."""
    manifest = read_manifest(archive)
    if manifest is not None:
        return ShardedReader(archive, manifest)
    try:
        return ArchiveReader(archive)
    except DamagedArchiveError as e:
        raise DamagedArchiveError(f"{e}; {SALVAGE_HINT}") from e


@dataclass
class EntrySource:
    """An entry to extract, read lazily in the caller's thread (readers are not thread-safe)."""

    name: str  # for messages until its header is read: "#3", or the path
    read_header: Callable[[], EntryHeader]
    read_payload: Callable[[], bytes]


@dataclass
class _Decoded:
    header: EntryHeader
    data: bytes  # the bytes of the file it extracts to
    timings: Timings = field(default_factory=Timings)


def extracted_path(header: EntryHeader, image_format: str, taken: set[str]) -> str:
    """Where an entry is extracted to, relative to the destination: its name (exact bytes where
    the archive has them), with a photo's extension changed by --format."""
    header = replace(header, path=disk_name(header.path, header.path_bytes))
    return photo_output_path(header, image_format, taken) if header.kind == KIND_IMAGE else header.path


def write_entry_file(target: Path, data: bytes, header: EntryHeader, replace: bool = True) -> None:
    """Write one extracted file; what is in the way is a per-entry DestinationError (`replace`: see
    fileio.publish)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if e.errno in NO_SPACE:
            raise OutOfSpaceError(f"the disk is full: cannot create the folder {target.parent}") from e
        why = "a file of that name is in the way" if isinstance(e, (FileExistsError, NotADirectoryError)) else e.strerror
        raise DestinationError(f"cannot create the folder {target.parent}: {why}") from e
    # setuid/setgid/sticky bits are kept in the archive but not applied (as tar does for non-root)
    write_file_atomic(target, data, header.mtime_ns, header.mode & 0o777, replace)


class Extractor:
    """Writes entries' files under `dest` (which must be empty unless `force`).

    `image_format`: `keep` (each photo in its source format) or `png`/`jpeg`/`webp`
    (imgarc.photo.output_format says how names change). `decoder`: how entries are decoded
    (a subclass may memoize or record; the default decodes).
    """

    def __init__(self, dest: Path, force: bool = False, image_format: str = "keep",
                 decoder: EntryDecoder | None = None, progress: Progress | None = None) -> None:
        self.dest = dest
        self.force = force
        self.image_format = check_extract_format(image_format)
        self.decoder = decoder or EntryDecoder()
        self.progress = progress

    def extract(self, archive: Path, members: MemberSelection | None = None) -> ExtractSummary:
        """Extract every entry (`members`: those it selects; no other entry's payload is read);
        damaged entries are skipped and reported in one error at the end."""
        started = time.perf_counter()
        with open_archive(archive) as reader:
            chosen = range(len(reader)) if members is None else members.select(iter_headers(reader), str(archive))
            sources = [EntrySource(f"#{i + 1}", partial(reader.header, i), partial(reader.payload, i))
                       for i in chosen]
            taken = _readable_paths(reader)
            results, failures, timings = self._extract(sources, taken)
        if failures:
            listed = "; ".join(f"{n}: {d}" for n, d in failures[:5]) + (" …" if len(failures) > 5 else "")
            raise ArchiveError(f"{len(failures)} of {len(results) + len(failures)} entries could not be extracted "
                               f"(the other {len(results)} were): {listed}")
        return ExtractSummary(results, time.perf_counter() - started, timings.model, timings.coder)

    def salvage(self, archive: Path, members: MemberSelection | None = None) -> SalvageSummary:
        """Extract every entry of a damaged or truncated archive whose CRCs check out (`members`:
        those of them it selects).

        Uses the index when it is intact, else rebuilds it by scanning for entry headers
        (imgarc.archive.salvage); a shard manifest's shards each so, a missing shard reported.
        Never raises for damage to entries: it is in `damaged`.
        """
        started = time.perf_counter()
        manifest = read_manifest(archive)
        shards = [archive] if manifest is None else [archive.parent / record.name for record in manifest.shards]
        found_entries: list[tuple[Path, SalvagePlan, FoundEntry]] = []
        damaged: list[Damaged] = []
        warnings: list[str] = []
        index_rebuilt = False
        for shard in shards:  # planned one at a time: thousands of shards are not thousands of open files
            try:
                with SalvageReader(shard) as reader:
                    plan = reader.plan
            except (ImgarcError, OSError) as e:
                if manifest is None:
                    raise
                damaged.append(Damaged(shard.name, f"shard not salvaged: {getattr(e, 'strerror', None) or e}"))
                continue
            found_entries += [(shard, plan, found) for found in plan.entries]
            damaged += [Damaged(d.name, d.detail) for d in plan.damaged]
            warnings += plan.warnings if manifest is None else [f"{shard.name}: {w}" for w in plan.warnings]
            index_rebuilt |= plan.index_rebuilt
        taken = {found.header.path for _, _, found in found_entries}
        if members is not None:
            chosen = members.select(enumerate(found.header for _, _, found in found_entries), str(archive))
            found_entries = [found_entries[k] for k in chosen]
        with _SalvageReaders() as readers:
            sources = [EntrySource(found.header.path, partial(lambda h: h, found.header),
                                   partial(readers.payload, shard, plan, found)) for shard, plan, found in found_entries]
            results, failures, _ = self._extract(sources, taken)
        return SalvageSummary(results, damaged + failures, warnings, index_rebuilt, time.perf_counter() - started)

    def _extract(self, sources: list[EntrySource], taken: set[str]) -> tuple[list[EntryResult], list[Damaged], Timings]:
        """Decode and write every source in order. `taken`: the paths of the archive's entries, so
        a photo renamed by --format never takes another file's name."""
        self._check_destination()
        results: list[EntryResult] = []
        failures: list[Damaged] = []
        timings = Timings()
        written: set[str] = set()
        tasks = (self._task(source) for source in sources)
        for n, (name, decoded) in enumerate(in_order(tasks, pool_workers())):
            try:
                if name in written:  # a crafted or rescanned archive: never let one entry overwrite another
                    raise DestinationError(f"a second entry named {name!r}; the first one was extracted")
                results.append(self._write(decoded.result(), timings, taken))
                written.add(name)
            except ENTRY_ERRORS as e:
                failures.append(Damaged(name, str(e)))
            if self.progress:
                self.progress(n + 1, len(sources), name)
        return results, failures, timings

    def _check_destination(self) -> None:
        dest = self.dest
        if dest.exists() and not dest.is_dir():
            raise UsageError(f"{dest} exists and is not a folder")
        try:
            if dest.is_dir() and any(dest.iterdir()) and not self.force:
                raise UsageError(f"{dest} is not empty; use --force to extract into it (files of the same name are replaced)")
            dest.mkdir(parents=True, exist_ok=True)
            if not os.access(dest, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        except OSError as e:
            if e.errno in NO_SPACE:
                raise OutOfSpaceError(f"the disk is full: cannot create {dest}") from e
            raise DestinationError(f"cannot extract into {dest}: {e.strerror or e}") from e

    def _task(self, source: EntrySource) -> Task[str, _Decoded]:
        """Read an entry here; its decoding runs on the pool. A damaged entry becomes a task that
        raises, so it is reported in archive order, under its path when its header is readable."""
        name = source.name
        try:
            header = source.read_header()
            name = header.path
            payload = source.read_payload()
            activations = 0
            if header.kind == KIND_IMAGE:
                codec = self.decoder.codec_for(header)  # loads the model here, once
                activations = codec.synthesis_footprint(header.padded_height or 0, header.padded_width or 0)
        except ENTRY_ERRORS as e:
            return failed(name, e)
        return Task(header.path, partial(self._decode, header, payload), activations)

    def _decode(self, header: EntryHeader, payload: bytes) -> _Decoded:
        safe_relative_path(header.path)
        timings = Timings()
        return _Decoded(header, self.decoder.file_bytes(header, payload, self.image_format, timings), timings)

    def _write(self, decoded: _Decoded, timings: Timings, taken: set[str]) -> EntryResult:
        header, data = decoded.header, decoded.data
        out_path = extracted_path(header, self.image_format, taken)
        # Without --force the destination was empty: a file there now appeared meanwhile, and stays.
        write_entry_file(resolve_inside(self.dest, safe_relative_path(out_path)), data, header, replace=self.force)
        taken.add(out_path)
        timings.add(decoded.timings)
        image = header.kind == KIND_IMAGE
        return EntryResult(out_path, EntryKind.PHOTO if image else EntryKind.STORED, len(data), header.payload_size,
                           header.width * header.height if image else 0)


class _SalvageReaders:
    """Payloads of planned files, at most MAX_OPEN_SHARDS of them open at once (least recently
    used closed first; reopened with their plan, no new scan)."""

    def __init__(self) -> None:
        self._open: OrderedDict[Path, SalvageReader] = OrderedDict()

    def payload(self, path: Path, plan: SalvagePlan, found: FoundEntry) -> bytes:
        reader = self._open.pop(path, None) or SalvageReader(path, plan)
        self._open[path] = reader
        if len(self._open) > MAX_OPEN_SHARDS:
            self._open.popitem(last=False)[1].close()
        return reader.payload(found)

    def __enter__(self) -> _SalvageReaders:
        return self

    def __exit__(self, *exc: object) -> None:
        for reader in self._open.values():
            reader.close()


def extract_archive(archive: Path, dest: Path, force: bool = False, progress: Progress | None = None,
                    image_format: str = "keep", members: MemberSelection | None = None) -> ExtractSummary:
    """Extract every entry (or those `members` selects); damaged entries are skipped and reported
    in one error at the end."""
    return Extractor(dest, force, image_format, progress=progress).extract(archive, members)


def salvage_archive(archive: Path, dest: Path, force: bool = False, progress: Progress | None = None,
                    image_format: str = "keep") -> SalvageSummary:
    """Extract every intact entry of a damaged or truncated archive (see Extractor.salvage)."""
    return Extractor(dest, force, image_format, progress=progress).salvage(archive)


def _readable_paths(reader: ArchiveReader) -> set[str]:
    paths = set()
    for i in range(len(reader)):
        try:
            paths.add(reader.header(i).path)
        except ArchiveError:
            pass  # reported when the extract loop reaches it
    return paths


def iter_headers(reader: ArchiveReader) -> Iterator[tuple[int, EntryHeader | ArchiveError]]:
    """(index, header or the error reading it) for every entry of an open archive."""
    for i in range(len(reader)):
        try:
            yield i, reader.header(i)
        except ArchiveError as e:
            yield i, e
