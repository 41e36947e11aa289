"""Salvage: find every readable entry of a damaged or truncated archive.

When the archive's frame (file header, footer, index) is intact, its index says where each
entry is, and salvage reads the entries as ArchiveReader does. When it is not (a copy cut
short, a damaged footer or index), the index is rebuilt by scanning the file for entry
markers (`IENT`) whose header length fits the file and whose header CRC-32 checks out; a
random match passes that check with probability 2^-32. An entry is handed back only when its
header and payload CRCs check out; everything else is reported as a DamagedItem.

An archive may hold another archive as a stored file. Its entries are visible to a scan, so
a scan never looks inside a payload whose CRC checks out, and reports (without extracting) an
entry that lies wholly inside the claimed extent of a damaged entry.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from imgarc.archive.archive_file import ArchiveFile
from imgarc.archive.layout import (
    CRC,
    ENTRY_MAGIC,
    ENTRY_OVERHEAD,
    ENTRY_PREFIX,
    FILE_HEADER,
    FOOTER,
    INDEX_MAGIC,
    INDEX_OVERHEAD,
    INDEX_PREFIX,
    MAGIC,
    MAX_HEADER_LEN,
    TLV,
    EntryHeader,
    Tag,
    crc32,
)
from imgarc.archive.reader import ArchiveReader
from imgarc.errors import (
    ArchiveError,
    EntryCorruptError,
    NewerFormatError,
    UsageError,
)

_CHUNK = 1 << 20  # bytes read at a time while scanning or checking a payload


@dataclass(frozen=True)
class FoundEntry:
    """An entry whose header checks out; its payload is checked when read."""

    offset: int  # of its `IENT`
    header: EntryHeader
    payload_offset: int

    @property
    def end(self) -> int:
        return self.payload_offset + self.header.payload_size


@dataclass(frozen=True)
class DamagedItem:
    """Something that cannot be extracted: a damaged entry, or bytes no readable entry explains."""

    name: str  # the entry's path when its header is readable, else where it is ("#3 at byte 1200", "bytes 16-900")
    detail: str


@dataclass
class SalvagePlan:
    """What a damaged archive holds, in file order."""

    entries: list[FoundEntry]
    damaged: list[DamagedItem]
    index_rebuilt: bool  # True: the index was unusable and the entries were found by scanning
    warnings: list[str] = field(default_factory=list)  # damage that loses no entry (a damaged footer)


class SalvageReader(ArchiveFile):
    """Context manager: plans the salvage of `path` on opening (`plan`), then reads payloads."""

    def __init__(self, path: Path, plan: SalvagePlan | None = None) -> None:
        """`plan`: one made earlier for this file (reopening it to read payloads: no new scan)."""
        super().__init__(path)
        try:
            self.plan = plan if plan is not None else self._make_plan()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ public

    def payload(self, entry: FoundEntry) -> bytes:
        """The entry's payload, size- and CRC-checked. Raises EntryCorruptError naming the entry."""
        size = entry.header.payload_size
        if entry.end > self.file_size:
            raise EntryCorruptError(entry.header.path, f"cut short: its data ends {entry.end - self.file_size} "
                                                       "bytes after the end of the file")
        data = self._read(entry.payload_offset, size)
        if len(data) != size:
            raise EntryCorruptError(entry.header.path, f"cut short ({len(data)} of {size} bytes)")
        if crc32(data) != entry.header.payload_crc32:
            raise EntryCorruptError(entry.header.path, "payload checksum mismatch")
        return data

    def __enter__(self) -> SalvageReader:
        return self

    # ------------------------------------------------------------------ planning

    def _make_plan(self) -> SalvagePlan:
        try:
            with ArchiveReader(self.path) as reader:
                return self._plan_from_index(reader)
        except NewerFormatError:
            raise  # a newer frame may not be laid out as this scan expects
        except ArchiveError as e:
            plan, headers_found = self._plan_by_scanning()
            if not headers_found and self._read(0, len(MAGIC)) != MAGIC:
                raise ArchiveError(f"{self.path} is not an imgarc archive (no entries found in it)") from e
            plan.warnings.insert(0, f"{e}; the entries were found by scanning the file")
            return plan

    def _plan_from_index(self, reader: ArchiveReader) -> SalvagePlan:
        entries, damaged = [], []
        for i, loc in enumerate(reader.locations):
            try:
                header = reader.header(i)
                entries.append(FoundEntry(loc.offset, header, reader.payload_offset(i)))
            except EntryCorruptError as e:
                damaged.append(DamagedItem(e.entry, e.detail))
            except NewerFormatError as e:
                damaged.append(DamagedItem(f"#{i + 1} at byte {loc.offset}", str(e)))
        return SalvagePlan(entries, damaged, index_rebuilt=False)

    def _plan_by_scanning(self) -> tuple[SalvagePlan, int]:
        """The plan, and how many CRC-valid entry headers the scan saw."""
        entries: list[FoundEntry] = []
        damaged: list[DamagedItem] = []
        headers_found = 0
        covered = FILE_HEADER.size  # bytes before this are accounted for (the file header first)
        # The claimed extent of the last entry whose payload is damaged: (start, end, name).
        hole: tuple[int, int, str] | None = None
        pos = 0
        while (off := self._find(ENTRY_MAGIC, pos)) >= 0:
            probe = self._probe(off)
            if probe is None:
                pos = off + 1
                continue
            headers_found += 1
            name, header, payload_offset, end, problem = probe
            if hole is not None and off < hole[1] and end <= hole[1]:
                # Wholly inside a damaged entry's bytes: part of a file stored there, or a real
                # entry shifted by deleted bytes; which one cannot be told, so it is not extracted.
                damaged.append(DamagedItem(name, f"found inside the damaged data of {hole[2]!r}; not extracted"))
                pos = end if problem is None else payload_offset
                continue
            if off > covered:
                damaged.append(_gap(covered, off))
            covered = max(covered, min(end, self.file_size))
            if problem is None and header is not None:
                entries.append(FoundEntry(off, header, payload_offset))
                pos = end
            else:
                damaged.append(DamagedItem(name, problem or "damaged"))
                hole = (off, end, name)
                pos = payload_offset
        plan = SalvagePlan(entries, damaged, index_rebuilt=True)
        index_at = self._find_index(covered)
        if index_at is None:
            plan.damaged.append(DamagedItem(
                "end of archive", f"no intact index after byte {covered} (the file is cut short or its end is "
                                  "damaged): entries after that point, if there were any, are lost"))
        elif index_at > covered:
            plan.damaged.append(_gap(covered, index_at))
        return plan, headers_found

    def _find_index(self, start: int) -> int | None:
        """Where an intact index lies at or after `start`, followed by at most a footer's bytes (a cut
        footer loses no entry)."""
        pos = start
        while (at := self._find(INDEX_MAGIC, pos)) >= 0:
            head = self._read(at, INDEX_PREFIX.size)
            if len(head) == INDEX_PREFIX.size:
                count = INDEX_PREFIX.unpack(head)[1]
                end = at + INDEX_OVERHEAD + 8 * count
                if self.file_size - FOOTER.size <= end <= self.file_size:
                    raw = self._read(at, end - at)
                    if CRC.unpack_from(raw, len(raw) - 4)[0] == crc32(raw[4:-4]):
                        return at
            pos = at + 1
        return None

    def _probe(self, off: int) -> tuple[str, EntryHeader | None, int, int, str | None] | None:
        """(name, header, payload offset, end, problem) of a CRC-valid entry header at `off`, else None.

        `problem` is None when the payload is complete and its CRC checks out.
        """
        prefix = self._read(off, ENTRY_PREFIX.size)
        if len(prefix) != ENTRY_PREFIX.size:
            return None
        _, header_len = ENTRY_PREFIX.unpack(prefix)
        if header_len > MAX_HEADER_LEN or off + ENTRY_OVERHEAD + header_len > self.file_size:
            return None
        raw = self._read(off + ENTRY_PREFIX.size, header_len + 4)
        header_bytes = raw[:header_len]
        if len(raw) != header_len + 4 or CRC.unpack_from(raw, header_len)[0] != crc32(header_bytes):
            return None
        payload_offset = off + ENTRY_OVERHEAD + header_len
        name = f"#? at byte {off}"
        try:
            header = EntryHeader.from_bytes(header_bytes, name)
        except (EntryCorruptError, NewerFormatError) as e:
            # Written by a writer (the CRC says so) but not readable by this imgarc.
            size = _raw_payload_size(header_bytes)
            return name, None, payload_offset, payload_offset + size, str(e)
        end = payload_offset + header.payload_size
        if end > self.file_size:
            return header.path, header, payload_offset, end, (
                f"cut short: {self.file_size - payload_offset} of its {header.payload_size} data bytes are in the file")
        if self._crc_of(payload_offset, header.payload_size) != header.payload_crc32:
            return header.path, header, payload_offset, end, "payload checksum mismatch"
        return header.path, header, payload_offset, end, None

    # ------------------------------------------------------------------ I/O

    def _read(self, offset: int, size: int) -> bytes:
        """Up to `size` bytes at `offset`; callers bound `size` by the file size first."""
        if self._file is None:
            raise UsageError(f"the salvage reader for {self.path} is closed")
        size = max(0, min(size, self.file_size - offset))
        try:
            self._file.seek(offset)
            return self._file.read(size)
        except OSError as e:
            raise ArchiveError(f"cannot read {self.path}: {e.strerror or e}") from e

    def _find(self, needle: bytes, start: int) -> int:
        """Offset of the first `needle` at or after `start`, or -1; reads the file in chunks."""
        pos = start
        while pos < self.file_size:
            chunk = self._read(pos, _CHUNK + len(needle) - 1)
            hit = chunk.find(needle)
            if hit >= 0:
                return pos + hit
            pos += _CHUNK
        return -1

    def _crc_of(self, offset: int, size: int) -> int:
        value, done = 0, 0
        while done < size:
            chunk = self._read(offset + done, min(_CHUNK, size - done))
            if not chunk:
                break
            value = zlib.crc32(chunk, value)
            done += len(chunk)
        return value & 0xFFFFFFFF


def _raw_payload_size(header_bytes: bytes) -> int:
    """PAYLOAD_SIZE from raw TLV fields, for a header this imgarc cannot fully read (0 if absent)."""
    pos = 0
    while pos + TLV.size <= len(header_bytes):
        tag, length = TLV.unpack_from(header_bytes, pos)
        pos += TLV.size
        if tag == Tag.PAYLOAD_SIZE and length == 8 and pos + 8 <= len(header_bytes):
            return struct.unpack_from("<Q", header_bytes, pos)[0]
        pos += length
    return 0


def _gap(start: int, end: int) -> DamagedItem:
    return DamagedItem(f"bytes {start}-{end}", "not part of any readable entry (an entry whose header is damaged, "
                                               "or bytes that do not belong there)")
