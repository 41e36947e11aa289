"""Compress several sources into one archive, and update an archive in place.

`compress SRC... ARCHIVE`: with one SRC, entry paths are relative to it (as compress_folder
writes them); with several, each source's files go under its folder's name (`A/x.jpg`, `B/x.jpg`),
so their paths stay apart.

`--update`: files new since the archive was written (or changed: size and mtime differ, or with
`checksum` their content) are coded; every other entry is copied byte for byte from the old
archive, never decoded or coded again. The new archive is written to a temp file and renamed
over the old one only when complete, like any compress: a killed update leaves the old archive.
"""

from __future__ import annotations

import enum
import hashlib
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from imgarc.api.compressor import Compressor, walk_folder
from imgarc.api.decoder import EntryDecoder
from imgarc.api.extractor import ENTRY_ERRORS, iter_headers, open_archive
from imgarc.api.results import CompressSummary, EntryResult, LeftOut, Progress
from imgarc.archive import KIND_STORED, ArchiveReader, ArchiveWriter, EntryHeader, entry_name
from imgarc.errors import ArchiveError, UnreadableFileError, UsageError
from imgarc.shards.manifest import read_manifest


class Change(str, enum.Enum):
    """What an update did with one entry."""

    ADDED = "added"  # a new file: coded
    CHANGED = "changed"  # its file changed: coded again
    UNCHANGED = "unchanged"  # copied byte for byte
    TOUCHED = "touched"  # same content, new mtime or permissions: payload copied, header rewritten
    KEPT = "kept"  # no file for it in the sources given: copied byte for byte
    DELETED = "deleted"  # its file is gone and --delete-missing: dropped
    LEFT_OUT = "left out"  # a new file that cannot be read: not archived (named in left_out)

    @property
    def codes(self) -> bool:
        return self in (Change.ADDED, Change.CHANGED)


@dataclass(frozen=True)
class SourceOptions:
    """How sources meet the archive. `update`: add to ARCHIVE (created if missing) instead of
    refusing it; `delete_missing`: with update, drop entries whose file is gone; `checksum`:
    compare contents (sha256) instead of mtimes, and record each coded file's sha256;
    `force`: replace ARCHIVE (without update); `strict`: as compress_folder."""

    update: bool = False
    delete_missing: bool = False
    checksum: bool = False
    force: bool = False
    strict: bool = False

    def __post_init__(self) -> None:
        if self.delete_missing and not self.update:
            raise UsageError("--delete-missing goes with --update")
        if self.update and self.force:
            raise UsageError("--update keeps the archive's entries and --force replaces the archive; give one of them")


@dataclass
class UpdateSummary:
    """`summary`: the archive as published, its `entries` those coded in this run. `changes`:
    every path in the old archive or the sources -> what happened to it. `written`: False when
    nothing changed and the archive was left as it was."""

    summary: CompressSummary
    changes: dict[str, Change] = field(default_factory=dict)
    written: bool = True

    def count(self, change: Change) -> int:
        return sum(c is change for c in self.changes.values())


@dataclass
class _Step:
    name: str
    change: Change
    index: int | None = None  # the entry in the old archive
    header: EntryHeader | None = None  # its header
    source: Path | None = None  # the file to code
    stat: os.stat_result | None = None  # the file's, when compared with the entry


def source_files(sources: list[Path], archive: Path, warnings: list[str],
                 left_out: list[LeftOut]) -> tuple[list[tuple[Path, str]], list[str]]:
    """Every regular file of the sources as (path, entry name), and the name prefixes the
    sources own ([""]: one source, names relative to it)."""
    if not sources:
        raise UsageError("give at least one folder to archive before the archive's name")
    for src in sources:
        if not src.exists():
            raise UsageError(f"{src} does not exist")
        if not src.is_dir():
            raise UsageError(f"{src} is not a folder (imgarc archives folders)")
    if len(sources) == 1:
        return walk_folder(sources[0], archive, warnings, left_out), [""]
    prefixes = [Path(os.path.abspath(src)).name for src in sources]
    for k, prefix in enumerate(prefixes):
        if not prefix:
            raise UsageError(f"{sources[k]} has no folder name to keep its files apart under; archive it on its own")
        if prefix in prefixes[:k]:
            raise UsageError(f"two sources are named {prefix!r} ({sources[prefixes.index(prefix)]} and {sources[k]}); "
                             "their files would get the same paths: archive them separately or rename one")
    files = []
    for src, prefix in zip(sources, prefixes):
        lost: list[LeftOut] = []
        files += [(path, f"{prefix}/{name}") for path, name in walk_folder(src, archive, warnings, lost)]
        left_out += [LeftOut(f"{prefix}/{item.path}", item.reason) for item in lost]
    return files, [f"{prefix}/" for prefix in prefixes]


def compress_sources(compressor: Compressor, sources: list[Path], archive: Path, options: SourceOptions,
                     progress: Progress | None = None) -> UpdateSummary:
    """Archive the sources into `archive`, or with `options.update` bring it up to date with them
    (see the module's docstring). Raises before anything is written for what it can check first
    (sources, a damaged entry header, --strict), and leaves the old archive as it was on any error."""
    started = time.perf_counter()
    if archive.is_dir():
        raise UsageError(f"{archive} is a folder; give a file name for the archive")
    existing = archive.exists()
    if existing and not (options.update or options.force):
        raise UsageError(f"{archive} already exists; use --force to replace it, or --update to add to it")
    if existing and options.update and read_manifest(archive) is not None:
        raise UsageError(f"{archive} is a sharded archive: --update takes one-file archives only; "
                         "compress the new files into a shard set of their own")
    warnings: list[str] = []
    left_out: list[LeftOut] = []
    files, prefixes = source_files(sources, archive, warnings, left_out)
    if options.strict and left_out:
        raise UnreadableFileError(f"{left_out[0].path}: {left_out[0].reason}; nothing was written (--strict)")
    with ExitStack() as stack:
        reader = stack.enter_context(open_archive(archive)) if existing and options.update else None
        stamp = _stamp(archive) if reader else None
        steps = _plan(reader, files, prefixes, options)
        if not steps:
            raise UsageError(f"{', '.join(map(str, sources))}: no files to archive")
        if reader is not None and all(s.change in (Change.UNCHANGED, Change.KEPT) for s in steps):
            summary = CompressSummary(archive, archive.stat().st_size, [], warnings, time.perf_counter() - started,
                                      left_out=left_out)
            return UpdateSummary(summary, {s.name: s.change for s in steps}, written=False)
        warnings += compressor.stale_temp_warnings(archive, options.force)
        if any(s.change.codes for s in steps) and not compressor.options.keep_originals:
            _ = compressor.codec  # a missing model is reported before anything is written
        writer = stack.enter_context(ArchiveWriter(archive, replace=existing))
        results: list[EntryResult] = []
        for n, step in enumerate(steps):
            if step.change is not Change.DELETED:
                step.change = _write_step(step, compressor, reader, writer, options, results, warnings, left_out)
            if progress:
                progress(n + 1, len(steps), step.name)
        if stamp is not None and _stamp(archive) != stamp:
            raise ArchiveError(f"{archive} changed while it was being updated (another run?); it was left as it is "
                               "and this update was discarded")
    coded = CompressSummary(archive, archive.stat().st_size, results, warnings, time.perf_counter() - started,
                            compressor.timings.model, compressor.timings.coder, left_out)
    return UpdateSummary(coded, {s.name: s.change for s in steps})


def _stamp(archive: Path) -> tuple[int, int, int, int]:
    st = archive.stat()
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _plan(reader: ArchiveReader | None, files: list[tuple[Path, str]], prefixes: list[str],
          options: SourceOptions) -> list[_Step]:
    """The old archive's entries in their order, then the new files in walk order."""
    walk_names = {entry_name(name)[0]: name for _, name in files}  # PATH -> the name as found (maybe not UTF-8)
    by_name = {entry_name(name)[0]: path for path, name in files}
    steps: list[_Step] = []
    decoder = EntryDecoder()
    for i, header in iter_headers(reader) if reader is not None else ():
        if isinstance(header, ArchiveError):
            raise ArchiveError(f"cannot update {reader.path}: {header}; nothing was written (`imgarc extract --salvage` "
                               "recovers the intact entries, then compress them into a new archive)")
        source = by_name.pop(header.path, None)
        if source is not None:
            content = _stored_content(reader, i, header, decoder) if options.checksum else None
            steps.append(_compare(_Step(header.path, Change.UNCHANGED, i, header, source), options.checksum, content))
        elif options.delete_missing and any(header.path.startswith(p) for p in prefixes):
            steps.append(_Step(header.path, Change.DELETED, i, header))
        else:
            steps.append(_Step(header.path, Change.KEPT, i, header))
    steps += [_Step(walk_names[name], Change.ADDED, source=path) for name, path in by_name.items()]
    return steps


def _stored_content(reader: ArchiveReader, i: int, header: EntryHeader, decoder: EntryDecoder) -> Callable[[], bytes | None]:
    """The file's bytes as the archive keeps them, read only when needed (stored entries without
    a recorded sha256); None when it cannot tell (a coded photo, a damaged payload)."""
    def content() -> bytes | None:
        if header.kind != KIND_STORED:
            return None
        try:
            return decoder.file_bytes(header, reader.payload(i))
        except ENTRY_ERRORS:
            return None  # coded again from the file: an update never copies damage forward
    return content


def _compare(step: _Step, checksum: bool, content: Callable[[], bytes | None] | None) -> _Step:
    """Whether the entry still matches its file: size and mtime, or with `checksum` its content
    (against ORIGINAL_SHA256, or a stored entry's bytes; a coded photo archived without a sha256
    cannot show it is unchanged, so it is coded again)."""
    header, source = step.header, step.source
    assert header is not None and source is not None
    try:
        st = source.stat()
        if st.st_size != header.original_size:
            same = False
        elif checksum:
            known = header.original_sha256
            if known is None and content is not None and (kept := content()) is not None:
                known = hashlib.sha256(kept).digest()
            same = known is not None and _sha256(source) == known
        else:
            same = st.st_mtime_ns == header.mtime_ns
    except OSError:
        same = False  # coding it reports why it cannot be read
        st = None
    if not same:
        step.change = Change.CHANGED
    elif st is not None and (st.st_mtime_ns, st.st_mode & 0o7777) != (header.mtime_ns, header.mode):
        step.change, step.stat = Change.TOUCHED, st
    return step


def _sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.digest()


def _write_step(step: _Step, compressor: Compressor, reader: ArchiveReader | None, writer: ArchiveWriter,
                options: SourceOptions, results: list[EntryResult], warnings: list[str],
                left_out: list[LeftOut]) -> Change:
    """Write one step's entry; what was done (a changed file that cannot be read keeps its old entry)."""
    if step.change.codes:
        assert step.source is not None
        try:
            digest = _sha256(step.source) if options.checksum else None  # before coding: a later change shows
        except OSError:
            digest = None  # entry_or_left_out says why
        entry = compressor.entry_or_left_out(step.source, step.name, options.strict, left_out)
        if entry is not None:
            entry.header.original_sha256 = entry.header.original_sha256 or digest
            writer.add(entry.header, entry.payload)
            results.append(entry.result)
            if entry.warning:
                warnings.append(entry.warning)
            return step.change
        if step.change is Change.ADDED:
            return Change.LEFT_OUT
        left_out[-1] = LeftOut(step.name, f"{left_out[-1].reason} (the archive keeps its earlier version)")
    assert reader is not None and step.index is not None and step.header is not None
    try:
        if step.change is Change.TOUCHED and step.stat is not None:
            touched = replace(step.header, mtime_ns=step.stat.st_mtime_ns, mode=step.stat.st_mode & 0o7777)
            writer.add(touched, reader.payload(step.index))
        else:
            writer.add_entry_bytes(step.header, reader.entry_bytes(step.index))
    except ArchiveError as e:
        raise ArchiveError(f"cannot update {reader.path}: {e}; nothing was written (`imgarc verify` names the "
                           "damage; `imgarc compress --force` makes the archive anew)") from e
    return step.change if step.change is not Change.CHANGED else Change.KEPT
