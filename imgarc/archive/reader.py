"""ArchiveReader: validates an archive's frame and index, reads entry headers and payloads.

The file is untrusted: every length and count read from it is checked against the file size
(and against caps) before anything is allocated or read, so a truncated or garbage file only
ever raises ArchiveError and its subclasses.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from imgarc.archive.archive_file import ArchiveFile
from imgarc.archive.layout import (
    CRC,
    ENTRY_MAGIC,
    ENTRY_OVERHEAD,
    ENTRY_PREFIX,
    FILE_HEADER,
    FOOTER,
    FOOTER_MAGIC,
    INDEX_MAGIC,
    INDEX_OVERHEAD,
    INDEX_PREFIX,
    MAGIC,
    MAX_HEADER_LEN,
    SUPPORTED_VERSIONS,
    EntryHeader,
    crc32,
)
from imgarc.errors import ArchiveError, DamagedArchiveError, EntryCorruptError, NewerFormatError, UsageError

_SMALLEST = FILE_HEADER.size + INDEX_OVERHEAD + FOOTER.size  # an archive with no entries


@dataclass(frozen=True)
class EntryLocation:
    """Where the index says an entry is."""

    index: int
    offset: int  # absolute offset of the entry's "IENT"


@dataclass(frozen=True)
class EntryExtent:
    """Where an entry's parts lie in the file (absolute offsets; each part ends where the next starts).

    For tools that look at the bytes themselves (a fault-injection benchmark, a hex viewer).
    """

    start: int  # its "IENT" and u32 header length
    header_start: int  # its header bytes
    header_end: int  # its header's CRC-32
    payload_start: int
    end: int  # the next entry's "IENT", or the index


class ArchiveReader(ArchiveFile):
    """Context manager over one archive file.

    Opening validates the file header, footer and index; entries are read on demand, so one
    damaged entry does not stop the others from being read.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._cache: dict[int, tuple[EntryHeader, int]] = {}  # i -> (header, payload offset)
        try:
            self.format_version = self._read_file_header()
            self.index_offset = self._read_footer()
            self.locations: list[EntryLocation] = self._read_index()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ opening

    def _truncated(self, detail: str) -> DamagedArchiveError:
        return DamagedArchiveError(
            f"{self.path} is truncated or its index is damaged ({detail}); "
            "it was not completely written or copied"
        )

    def _read_file_header(self) -> int:
        head = self._read_at(0, min(FILE_HEADER.size, self.file_size), "the file header")
        if len(head) < FILE_HEADER.size:
            if head and MAGIC.startswith(head[: len(MAGIC)]):
                raise self._truncated(f"only {len(head)} bytes")
            raise ArchiveError(f"{self.path} is not an imgarc archive" + (" (it is empty)" if not head else ""))
        magic, version, reserved, crc = FILE_HEADER.unpack(head)
        if magic != MAGIC:
            if self._looks_like_damaged_magic(magic):
                raise DamagedArchiveError(f"{self.path}: the file header is damaged (its imgarc marker is altered)")
            raise ArchiveError(f"{self.path} is not an imgarc archive")
        if crc != crc32(head[:12]):
            raise DamagedArchiveError(f"{self.path}: the file header is damaged (checksum mismatch)")
        if version not in SUPPORTED_VERSIONS:
            if version > max(SUPPORTED_VERSIONS):
                raise NewerFormatError(
                    f"{self.path} was made by a newer imgarc (format {version}); this one reads "
                    f"{', '.join(map(str, SUPPORTED_VERSIONS))}. Upgrade imgarc to read it"
                )
            raise ArchiveError(f"{self.path} has an invalid format version {version}")
        if reserved != 0:
            raise DamagedArchiveError(f"{self.path}: the file header's reserved field is {reserved}, not 0 (damaged)")
        return version

    def _looks_like_damaged_magic(self, magic: bytes) -> bool:
        """An archive whose marker took a hit: at most 2 of its 8 bytes differ, or an entry or the
        index starts right after the file header. (Text-mode mangling shifts bytes: not this.)"""
        if sum(a != b for a, b in zip(magic, MAGIC)) <= 2:
            return True
        return self.file_size >= FILE_HEADER.size + 4 and self._read_at(FILE_HEADER.size, 4, "the first entry") in (
            ENTRY_MAGIC, INDEX_MAGIC)

    def _read_footer(self) -> int:
        if self.file_size < _SMALLEST:
            raise self._truncated(f"{self.file_size} bytes, an archive has at least {_SMALLEST}")
        raw = self._read_at(self.file_size - FOOTER.size, FOOTER.size, "the footer")
        index_offset, index_len, crc, magic = FOOTER.unpack(raw)
        if magic != FOOTER_MAGIC:
            raise self._truncated("no end marker")
        if crc != crc32(raw[:12]):
            raise self._truncated("the footer's checksum does not match")
        index_end = self.file_size - FOOTER.size
        # The index sits right before the footer and after the file header.
        if (index_len < INDEX_OVERHEAD or (index_len - INDEX_OVERHEAD) % 8
                or index_offset < FILE_HEADER.size or index_offset + index_len != index_end):
            raise self._truncated(f"the footer places the index at byte {index_offset} with {index_len} bytes, "
                                  f"which does not fit a file of {self.file_size} bytes")
        self._index_len = index_len
        return index_offset

    def _read_index(self) -> list[EntryLocation]:
        raw = self._read_at(self.index_offset, self._index_len, "the index")
        magic, count = INDEX_PREFIX.unpack_from(raw)
        if magic != INDEX_MAGIC:
            raise self._truncated("no index marker where the footer says")
        (crc,) = CRC.unpack_from(raw, len(raw) - 4)
        body = raw[4:-4]
        if crc != crc32(body):
            raise self._truncated("the index checksum does not match")
        if count != (self._index_len - INDEX_OVERHEAD) // 8:
            raise self._truncated(f"the index counts {count} entries in {self._index_len} bytes")
        offsets = struct.unpack_from(f"<{count}Q", body, 4)
        lowest = FILE_HEADER.size
        for k, off in enumerate(offsets):
            # Entries lie back to back in index order, each at least ENTRY_OVERHEAD long.
            if off < lowest or off + ENTRY_OVERHEAD > self.index_offset:
                raise self._truncated(f"entry #{k + 1} is at impossible offset {off}")
            lowest = off + ENTRY_OVERHEAD
        return [EntryLocation(k, off) for k, off in enumerate(offsets)]

    # ------------------------------------------------------------------ entries

    def __len__(self) -> int:
        return len(self.locations)

    def _extent_end(self, i: int) -> int:
        """Where entry i must end: the next entry's start, or the index."""
        return self.locations[i + 1].offset if i + 1 < len(self.locations) else self.index_offset

    def _location(self, i: int) -> EntryLocation:
        if not 0 <= i < len(self.locations):
            raise IndexError(f"entry {i} out of range (the archive has {len(self.locations)})")
        return self.locations[i]

    def _header_and_payload_offset(self, i: int) -> tuple[EntryHeader, int]:
        if i in self._cache:
            return self._cache[i]
        offset = self._location(i).offset
        name = f"#{i + 1} at byte {offset}"
        end = self._extent_end(i)
        prefix = self._read_at(offset, ENTRY_PREFIX.size, f"entry {name}", name)
        magic, header_len = ENTRY_PREFIX.unpack(prefix)
        if magic != ENTRY_MAGIC:
            raise EntryCorruptError(name, "no entry marker at the offset the index gives")
        if header_len > MAX_HEADER_LEN or offset + ENTRY_OVERHEAD + header_len > end:
            raise EntryCorruptError(name, f"header length {header_len} does not fit the entry's "
                                          f"{end - offset} bytes")
        raw = self._read_at(offset + ENTRY_PREFIX.size, header_len + 4, f"entry {name}", name)
        header_bytes = raw[:header_len]
        if CRC.unpack_from(raw, header_len)[0] != crc32(header_bytes):
            raise EntryCorruptError(name, "header checksum mismatch")
        header = EntryHeader.from_bytes(header_bytes, name)
        payload_offset = offset + ENTRY_OVERHEAD + header_len
        if payload_offset + header.payload_size != end:
            raise EntryCorruptError(header.path, f"payload of {header.payload_size} bytes does not match the "
                                                 f"{end - payload_offset} bytes the index leaves for it")
        self._cache[i] = (header, payload_offset)
        return header, payload_offset

    def header(self, i: int) -> EntryHeader:
        """Entry i's header, CRC-checked. Raises EntryCorruptError / NewerFormatError."""
        return self._header_and_payload_offset(i)[0]

    def payload_offset(self, i: int) -> int:
        """Where entry i's payload starts (its header is read and checked first)."""
        return self._header_and_payload_offset(i)[1]

    def extent(self, i: int) -> EntryExtent:
        """Where entry i's parts lie (its header is read and checked first)."""
        payload_start = self._header_and_payload_offset(i)[1]
        start = self.locations[i].offset
        return EntryExtent(start, start + ENTRY_PREFIX.size, payload_start - CRC.size, payload_start, self._extent_end(i))

    @property
    def footer_offset(self) -> int:
        """Where the footer starts (the index ends there)."""
        return self.file_size - FOOTER.size

    def payload(self, i: int) -> bytes:
        """Entry i's payload, size- and CRC-checked. Raises EntryCorruptError naming the entry's path."""
        header, payload_offset = self._header_and_payload_offset(i)
        data = self._read_at(payload_offset, header.payload_size, "the payload", header.path)
        if crc32(data) != header.payload_crc32:
            raise EntryCorruptError(header.path, "payload checksum mismatch")
        return data

    def entry_bytes(self, i: int) -> bytes:
        """Entry i exactly as it lies in the file (marker, header, header CRC, payload), its header
        and payload CRC-checked: for copying it into another archive without decoding it."""
        header, payload_offset = self._header_and_payload_offset(i)
        start = self.locations[i].offset
        raw = self._read_at(start, payload_offset + header.payload_size - start, "the entry", header.path)
        if crc32(memoryview(raw)[payload_offset - start:]) != header.payload_crc32:
            raise EntryCorruptError(header.path, "payload checksum mismatch")
        return raw

    # ------------------------------------------------------------------ I/O

    def _read_at(self, offset: int, size: int, what: str, entry: str | None = None) -> bytes:
        """Exactly `size` bytes at `offset`; callers have checked both against the file size."""
        if self._file is None:
            raise UsageError(f"the archive reader for {self.path} is closed")
        try:
            self._file.seek(offset)
            data = self._file.read(size)
        except OSError as e:
            raise ArchiveError(f"cannot read {self.path}: {e.strerror or e}") from e
        if len(data) != size and entry is not None:
            # Only possible if the file shrank after it was opened.
            raise EntryCorruptError(entry, f"{what} is truncated ({len(data)} of {size} bytes)")
        if len(data) != size:
            raise self._truncated(f"{what} is cut short")
        return data

    def __enter__(self) -> ArchiveReader:
        return self
