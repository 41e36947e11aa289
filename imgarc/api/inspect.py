"""List, verify and show an archive: read every header, check every CRC, decode every entry's
data, or look at one entry (its header, its file's bytes)."""

from __future__ import annotations

from pathlib import Path

from imgarc.api.decoder import EntryDecoder
from imgarc.api.extractor import ENTRY_ERRORS, iter_headers, open_archive
from imgarc.api.members import MemberSelection
from imgarc.api.results import Damaged, EntryListing, Progress, Timings, VerifyReport
from imgarc.archive import KIND_IMAGE, ArchiveReader, safe_relative_path
from imgarc.errors import ArchiveError, UsageError
from imgarc.photo import check_extract_format, check_photo_fields
from imgarc.shards.reader import ShardedReader


def list_archive(archive: Path) -> list[EntryListing]:
    """Every entry's header; damaged headers are listed with their error."""
    with open_archive(archive) as reader:
        return [EntryListing(i, None, str(h)) if isinstance(h, ArchiveError) else EntryListing(i, h)
                for i, h in iter_headers(reader)]


def verify_archive(archive: Path, progress: Progress | None = None, decoder: EntryDecoder | None = None) -> VerifyReport:
    """Check every CRC and decode every entry's data (photo latents fully entropy-decoded; the
    synthesis network does not run)."""
    decoder = decoder or EntryDecoder()
    timings = Timings()
    with open_archive(archive) as reader:
        report = VerifyReport(checked=len(reader))
        if isinstance(reader, ShardedReader):  # each shard's file is the one the manifest records
            report.damaged += [Damaged(name, detail) for name, detail in reader.check_shards()]
        for i in range(len(reader)):
            name = f"#{i + 1}"
            try:
                header = reader.header(i)
                name = header.path
                safe_relative_path(header.path)
                payload = reader.payload(i)
                if header.kind == KIND_IMAGE:
                    decoder.latents(header, payload, timings)
                    check_photo_fields(header)  # alpha plane, SOURCE_INFO
                else:
                    decoder.file_bytes(header, payload, timings=timings)
            except ENTRY_ERRORS as e:
                report.damaged.append(Damaged(name, str(e)))
            if progress:
                progress(i + 1, len(reader), name)
    return report


def _one_member(reader: ArchiveReader, member: str) -> int:
    """The position of the one entry `member` (a path or a glob) names."""
    selection = MemberSelection((member,))
    chosen = selection.select(iter_headers(reader), str(reader.path), "nothing was shown")
    if len(chosen) > 1:
        names = [reader.header(i).path for i in chosen]
        listed = ", ".join(repr(n) for n in names[:5]) + (" …" if len(names) > 5 else "")
        raise UsageError(f"{member!r} matches {len(names)} entries of {reader.path} ({listed}); name one")
    return chosen[0]


def show_entry(archive: Path, member: str) -> EntryListing:
    """The header of the one entry `member` (its path, or a glob matching only it) names; no
    payload is read. Raises MemberNotFoundError, or UsageError when it names several."""
    with open_archive(archive) as reader:
        i = _one_member(reader, member)
        return EntryListing(i, reader.header(i))


def entry_file_bytes(archive: Path, member: str, image_format: str = "keep",
                     decoder: EntryDecoder | None = None) -> tuple[EntryListing, bytes]:
    """The one entry `member` names and the bytes of the file it extracts to (`image_format`: see
    extract --format); only its payload is read and decoded."""
    decoder = decoder or EntryDecoder()
    image_format = check_extract_format(image_format)
    with open_archive(archive) as reader:
        i = _one_member(reader, member)
        header = reader.header(i)
        safe_relative_path(header.path)
        return EntryListing(i, header), decoder.file_bytes(header, reader.payload(i), image_format)
