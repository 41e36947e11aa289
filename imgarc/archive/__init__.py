"""The .iarc container: byte layout, writer and reader. Bytes only: no torch, no numpy.

Byte layout: docs/FORMAT.md (normative) and imgarc/archive/layout.py.
"""

from imgarc.archive.layout import (
    FIELDS,
    FORMAT_VERSION,
    KIND_IMAGE,
    KIND_STORED,
    MAGIC,
    STORAGE_JXL,
    STORAGE_LZMA,
    STORAGE_RAW,
    EntryHeader,
    FieldSpec,
    Tag,
)
from imgarc.archive.paths import disk_name, entry_name, resolve_inside, safe_relative_path
from imgarc.archive.reader import ArchiveReader, EntryLocation
from imgarc.archive.writer import ArchiveWriter

__all__ = [
    "FIELDS", "FORMAT_VERSION", "KIND_IMAGE", "KIND_STORED", "MAGIC", "STORAGE_JXL", "STORAGE_LZMA", "STORAGE_RAW",
    "ArchiveReader", "ArchiveWriter", "EntryHeader", "EntryLocation", "FieldSpec", "Tag",
    "disk_name", "entry_name", "resolve_inside", "safe_relative_path",
]
