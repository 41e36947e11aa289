"""The library's front door: the one place that glues photo + codec + coders + archive.

Objects, for callers that code or decode entries one at a time (a shard writer, a worker pool,
a classifier reading latents):
- `Compressor(CompressOptions)`: `entry(path, name)` codes one file; `compress_folder()`.
- `EntryDecoder`: `latents()` (no synthesis network), `pixels()`, `file_bytes()`.
- `Extractor(dest, ...)`: `extract(archive)` through the index, `salvage(archive)` by scanning.
- `list_archive`, `verify_archive`, `show_entry`, `entry_file_bytes`; `MemberSelection` (member
  names and globs); records for scripts (`entry_record`, `listing_document`, `verify_document`).
- `compress_sources`: several sources into one archive, and `--update` in place.
- `ArchiveLatents`: every coded photo's ŷ, σ̂, μ̂ without pixels; `write_latents_npz` (api/latents.py).
Functions, for whole jobs: `compress_folder`, `extract_archive`, `salvage_archive`.
The CLI calls only this package.
"""

from __future__ import annotations

from pathlib import Path

from imgarc.api.compressor import ArchivedEntry, Compressor, walk_folder
from imgarc.api.decoder import DecodedLatents, EntryDecoder
from imgarc.api.describe import describe_entry
from imgarc.api.extractor import SALVAGE_HINT, Extractor, open_archive
from imgarc.api.inspect import entry_file_bytes, list_archive, show_entry, verify_archive
from imgarc.api.latents import (ArchiveLatents, NotAPhotoError, PhotoLatents, SkippedEntry, load_latents_npz,
                                write_latents_npz)
from imgarc.api.members import MemberNotFoundError, MemberSelection
from imgarc.api.options import DEFAULT_QUALITY, CompressOptions
from imgarc.api.records import RECORD_KEYS, RECORD_SCHEMA, entry_record, listing_document, verify_document
from imgarc.api.results import (CompressSummary, Damaged, EntryKind, EntryListing, EntryResult, ExtractSummary,
                                LeftOut, Progress, SalvageSummary, Timings, VerifyReport)
from imgarc.api.update import Change, SourceOptions, UpdateSummary, compress_sources
from imgarc.coders import DEFAULT_CODER
from imgarc.errors import ImgarcError


def compress_folder(src: Path, archive: Path, quality: int = DEFAULT_QUALITY, coder_name: str = DEFAULT_CODER,
                    model_id: str | None = None, force: bool = False, progress: Progress | None = None,
                    target_bpp: float | None = None, keep_originals: bool = False,
                    tune: str | None = None) -> CompressSummary:
    """Archive every regular file under `src` into `archive` (see CompressOptions)."""
    options = CompressOptions(quality, target_bpp, coder_name, model_id, tune, keep_originals)
    return Compressor(options).compress_folder(src, archive, force=force, progress=progress)


def extract_archive(archive: Path, dest: Path, force: bool = False, progress: Progress | None = None,
                    image_format: str = "keep", members: MemberSelection | None = None) -> ExtractSummary:
    """Extract every entry (or those `members` selects); damaged entries are skipped and reported
    in one error at the end."""
    return Extractor(dest, force, image_format, progress=progress).extract(archive, members)


def salvage_archive(archive: Path, dest: Path, force: bool = False, progress: Progress | None = None,
                    image_format: str = "keep") -> SalvageSummary:
    """Extract every intact entry of a damaged or truncated archive (see Extractor.salvage)."""
    return Extractor(dest, force, image_format, progress=progress).salvage(archive)


__all__ = [
    "ArchivedEntry", "CompressOptions", "CompressSummary", "Compressor", "DEFAULT_CODER", "DEFAULT_QUALITY", "Damaged",
    "DecodedLatents", "EntryDecoder", "EntryKind", "EntryListing", "EntryResult", "ExtractSummary", "Extractor",
    "ImgarcError", "LeftOut", "Progress", "SALVAGE_HINT", "SalvageSummary", "Timings", "VerifyReport", "compress_folder", "describe_entry",
    "extract_archive", "list_archive", "open_archive", "salvage_archive", "verify_archive", "walk_folder",
    "Change", "MemberNotFoundError", "MemberSelection", "RECORD_KEYS", "RECORD_SCHEMA", "SourceOptions", "UpdateSummary",
    "compress_sources", "entry_file_bytes", "entry_record", "listing_document", "show_entry", "verify_document",
    "ArchiveLatents", "NotAPhotoError", "PhotoLatents", "SkippedEntry", "load_latents_npz", "write_latents_npz",
]
