"""Entries and reports as plain records for scripts: `list --json/--csv`, `show --json`, `verify --json`.

The schema is documented in docs/CLI.md; RECORD_SCHEMA goes up when a key changes meaning or
goes away (new keys may be added without it).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from imgarc.api.results import EntryKind, EntryListing, VerifyReport
from imgarc.archive import (
    KIND_IMAGE,
    KIND_STORED,
    STORAGE_JXL,
    STORAGE_LZMA,
    STORAGE_RAW,
    EntryHeader,
)
from imgarc.errors import ImgarcError
from imgarc.photo.source_info import decode_source_info

RECORD_SCHEMA = 1

STORAGE_KEYS = {STORAGE_RAW: "raw", STORAGE_LZMA: "lzma", STORAGE_JXL: "jpegxl"}
KIND_KEYS = {KIND_IMAGE: EntryKind.PHOTO.value, KIND_STORED: EntryKind.STORED.value}

# Every key of an entry record, in the order of `list --csv`'s columns.
RECORD_KEYS = (
    "entry", "path", "kind", "error", "original_size", "payload_size", "payload_crc32", "mtime", "mtime_ns", "mode",
    "storage", "original_sha256", "note", "model_id", "weights_sha256", "tables_sha256", "coder", "quality",
    "width", "height", "padded_width", "padded_height", "bpp", "color_mode", "source_format", "alpha_size",
    "exif_size", "icc_profile_size", "xmp_size", "source_info",
)


def _hex(value: bytes | None) -> str | None:
    return value.hex() if value is not None else None


def _size(value: bytes | None) -> int | None:
    return len(value) if value is not None else None


def iso_time(mtime_ns: int) -> str:
    """UTC, ISO 8601, to the microsecond (mtime_ns keeps the nanoseconds)."""
    seconds, ns = divmod(mtime_ns, 1_000_000_000)
    stamp = dt.datetime.fromtimestamp(seconds, dt.timezone.utc) + dt.timedelta(microseconds=ns // 1000)
    return stamp.isoformat().replace("+00:00", "Z")


def entry_record(listing: EntryListing) -> dict[str, Any]:
    """One entry as a JSON-ready dict with every key of RECORD_KEYS (null where it does not apply)."""
    record: dict[str, Any] = dict.fromkeys(RECORD_KEYS)
    record["entry"] = listing.index + 1
    h = listing.header
    if h is None:
        record["error"] = listing.error
        return record
    image = h.kind == KIND_IMAGE
    record.update(
        path=h.path, kind=KIND_KEYS.get(h.kind, str(h.kind)), original_size=h.original_size,
        payload_size=h.payload_size, payload_crc32=f"{h.payload_crc32:08x}", mtime=iso_time(h.mtime_ns),
        mtime_ns=h.mtime_ns, mode=f"{h.mode:04o}", storage=STORAGE_KEYS.get(h.storage) if h.storage is not None else None,
        original_sha256=_hex(h.original_sha256), note=h.note, alpha_size=_size(h.alpha), exif_size=_size(h.exif),
        icc_profile_size=_size(h.icc_profile), xmp_size=_size(h.xmp),
    )
    if image:
        record.update(
            model_id=h.model_id, weights_sha256=_hex(h.weights_sha256), tables_sha256=_hex(h.tables_sha256),
            coder=h.coder, quality=h.quality, width=h.width, height=h.height, padded_width=h.padded_width,
            padded_height=h.padded_height, color_mode=h.color_mode, source_format=h.source_format,
            bpp=round(h.payload_size * 8 / (h.width * h.height), 6) if h.width and h.height else None,
        )
    record["source_info"] = _source_info(h, record)
    return record


def _source_info(h: EntryHeader, record: dict[str, Any]) -> dict | None:
    """SOURCE_INFO as an object; a malformed one is null, and the record's error says why."""
    if h.source_info is None:
        return None
    try:
        return decode_source_info(h.source_info, h.path)
    except ImgarcError as e:
        record["error"] = str(e)
        return None


def listing_document(archive: Path, listings: list[EntryListing]) -> dict[str, Any]:
    """What `list --json` prints."""
    entries = [entry_record(e) for e in listings]
    return {"schema": RECORD_SCHEMA, "archive": str(archive), "entry_count": len(entries),
            "damaged": sum(e.header is None for e in listings), "entries": entries}


def verify_document(archive: Path, report: VerifyReport) -> dict[str, Any]:
    """What `verify --json` prints."""
    return {"schema": RECORD_SCHEMA, "archive": str(archive), "checked": report.checked, "ok": report.ok,
            "damaged": [{"entry": d.name, "detail": d.detail} for d in report.damaged]}
