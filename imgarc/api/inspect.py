"""List and verify an archive: read every header, check every CRC, decode every entry's data."""

from __future__ import annotations

from pathlib import Path

from imgarc.api.decoder import EntryDecoder
from imgarc.api.extractor import ENTRY_ERRORS, iter_headers, open_archive
from imgarc.api.results import Damaged, EntryListing, Progress, Timings, VerifyReport
from imgarc.archive import KIND_IMAGE, safe_relative_path
from imgarc.errors import ArchiveError
from imgarc.photo import check_photo_fields


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
