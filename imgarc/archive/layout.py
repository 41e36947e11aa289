"""Byte layout of the .iarc container, format version 1 (normative text: docs/FORMAT.md).

    file    = file header, entries back to back, index, footer
    header  = magic(8) u16 version u16 reserved u32 crc32(preceding 12 bytes)
    entry   = "IENT" u32 header_len, header bytes, u32 crc32(header bytes), payload
    index   = "IIDX" u32 count, count x u64 entry offset, u32 crc32(count + offsets)
    footer  = u64 index_offset u32 index_len u32 crc32(preceding 12 bytes) "IEND"

All integers little-endian, fixed width. An entry header is a list of TLV fields
(u16 tag, u32 length, value) in ascending tag order; the payload's size and CRC are
fields of the header, so the header CRC protects both.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

from imgarc.archive.packed import PackedBlockError, pack_block, unpack_block
from imgarc.errors import EntryCorruptError, NewerFormatError, UsageError

# --------------------------------------------------------------------------- fixed structures

MAGIC = b"\x89IARC\r\n\x1a"  # PNG-style: a high byte, CR LF and ^Z reveal text-mode mangling
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)

FILE_HEADER = struct.Struct("<8sHHI")  # magic, version, reserved, crc32
ENTRY_MAGIC = b"IENT"
ENTRY_PREFIX = struct.Struct("<4sI")  # magic, header_len
ENTRY_OVERHEAD = ENTRY_PREFIX.size + 4  # prefix + header crc32, around the header bytes
INDEX_MAGIC = b"IIDX"
INDEX_PREFIX = struct.Struct("<4sI")  # magic, entry_count
INDEX_OVERHEAD = INDEX_PREFIX.size + 4  # prefix + crc32, around the offsets
OFFSET = struct.Struct("<Q")
FOOTER = struct.Struct("<QII4s")  # index_offset, index_len, crc32, magic
FOOTER_MAGIC = b"IEND"
CRC = struct.Struct("<I")
TLV = struct.Struct("<HI")  # tag, value length

OPTIONAL_BIT = 0x8000  # tags with this bit may be skipped by readers that don't know them
MAX_HEADER_LEN = 16 * 1024 * 1024  # a sane cap: checked before allocating, on read and on write
MAX_ENTRIES = 0xFFFFFFFF  # u32 entry_count

KIND_STORED = 0
KIND_IMAGE = 1
KINDS = (KIND_STORED, KIND_IMAGE)
STORAGE_RAW = 0
STORAGE_LZMA = 1  # xz container
STORAGE_JXL = 2  # JPEG XL lossless recompression of a JPEG (needs ORIGINAL_SHA256)


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def pack_file_header(version: int = FORMAT_VERSION) -> bytes:
    head = FILE_HEADER.pack(MAGIC, version, 0, 0)[:12]
    return head + CRC.pack(crc32(head))


def pack_entry(header_bytes: bytes) -> bytes:
    """Everything of an entry except its payload."""
    return ENTRY_PREFIX.pack(ENTRY_MAGIC, len(header_bytes)) + header_bytes + CRC.pack(crc32(header_bytes))


def pack_index(offsets: list[int]) -> bytes:
    body = struct.pack(f"<I{len(offsets)}Q", len(offsets), *offsets)
    return INDEX_MAGIC + body + CRC.pack(crc32(body))


def pack_footer(index_offset: int, index_len: int) -> bytes:
    head = struct.pack("<QI", index_offset, index_len)
    return head + CRC.pack(crc32(head)) + FOOTER_MAGIC


# --------------------------------------------------------------------------- field value types


class _BadValue(Exception):
    """A field value that cannot be encoded or decoded; turned into a user-facing error by the caller."""


class _Int:
    def __init__(self, fmt: str, lo: int, hi: int) -> None:
        self.struct = struct.Struct("<" + fmt)
        self.lo, self.hi = lo, hi
        self.label = {"B": "u8", "I": "u32", "Q": "u64", "q": "i64"}[fmt]

    def encode(self, value: Any) -> bytes:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _BadValue(f"must be an integer ({self.label}), not {type(value).__name__}")
        if not self.lo <= value <= self.hi:
            raise _BadValue(f"{value} does not fit in {self.label}")
        return self.struct.pack(value)

    def decode(self, data: bytes) -> int:
        if len(data) != self.struct.size:
            raise _BadValue(f"has {len(data)} bytes, a {self.label} has {self.struct.size}")
        return self.struct.unpack(data)[0]


class _Utf8:
    label = "utf-8 text"

    def encode(self, value: Any) -> bytes:
        if not isinstance(value, str):
            raise _BadValue(f"must be text, not {type(value).__name__}")
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError:
            # Typically a file name that is not valid UTF-8 (os.fsdecode surrogates).
            raise _BadValue(f"{value!r} is not valid UTF-8 text; rename the file") from None

    def decode(self, data: bytes) -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise _BadValue("is not valid UTF-8") from None


class _Bytes:
    def __init__(self, size: int | None = None) -> None:
        self.size = size
        self.label = f"{size} bytes" if size is not None else "bytes"

    def encode(self, value: Any) -> bytes:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise _BadValue(f"must be bytes, not {type(value).__name__}")
        value = bytes(value)
        if self.size is not None and len(value) != self.size:
            raise _BadValue(f"has {len(value)} bytes, expected {self.size}")
        return value

    def decode(self, data: bytes) -> bytes:
        if self.size is not None and len(data) != self.size:
            raise _BadValue(f"has {len(data)} bytes, expected {self.size}")
        return bytes(data)


U8 = _Int("B", 0, 0xFF)
U32 = _Int("I", 0, 0xFFFFFFFF)
U64 = _Int("Q", 0, 0xFFFFFFFFFFFFFFFF)
I64 = _Int("q", -(2**63), 2**63 - 1)
UTF8 = _Utf8()
BYTES = _Bytes()
SHA256 = _Bytes(32)

# --------------------------------------------------------------------------- fields


class Tag(enum.IntEnum):
    PATH = 0x0001
    KIND = 0x0002
    PAYLOAD_SIZE = 0x0003
    PAYLOAD_CRC32 = 0x0004
    ORIGINAL_SIZE = 0x0005
    MTIME_NS = 0x0006
    MODE = 0x0007
    STORAGE = 0x0008
    MODEL_ID = 0x0010
    WEIGHTS_SHA256 = 0x0011
    TABLES_SHA256 = 0x0012
    CODER = 0x0013
    WIDTH = 0x0014
    HEIGHT = 0x0015
    PADDED_WIDTH = 0x0016
    PADDED_HEIGHT = 0x0017
    COLOR_MODE = 0x0018
    QUALITY = 0x0019
    SOURCE_FORMAT = 0x001A
    ALPHA = 0x001B  # critical: a reader that skipped it would lose the transparency
    # EXIF, ICC_PROFILE and XMP packed with LZMA2 (imgarc.archive.packed). Critical: a reader that
    # skipped them would write the photo back without its metadata and say nothing.
    EXIF_LZMA = 0x0020
    ICC_PROFILE_LZMA = 0x0021
    XMP_LZMA = 0x0022
    NOTE = 0x8001
    EXIF = 0x8010
    ICC_PROFILE = 0x8011
    XMP = 0x8012
    SOURCE_INFO = 0x8013
    ORIGINAL_SHA256 = 0x8014
    PATH_BYTES = 0x8015  # the file name's exact bytes where they are not UTF-8 (PATH then shows them escaped)


@dataclass(frozen=True)
class FieldSpec:
    tag: Tag
    type: Any  # one of the value types above
    required_for: tuple[int, ...]  # the KINDs that must have this field; () = never required
    packed_tag: Tag | None = None  # the tag that carries the value LZMA-packed, when that is smaller

    @cached_property
    def attr(self) -> str:
        return self.tag.name.lower()


_ALL, _STORED, _IMAGE = KINDS, (KIND_STORED,), (KIND_IMAGE,)

# Each field's type is declared here and only here; ascending tag order = write order.
FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec(Tag.PATH, UTF8, _ALL),
    FieldSpec(Tag.KIND, U8, _ALL),
    FieldSpec(Tag.PAYLOAD_SIZE, U64, _ALL),
    FieldSpec(Tag.PAYLOAD_CRC32, U32, _ALL),
    FieldSpec(Tag.ORIGINAL_SIZE, U64, _ALL),
    FieldSpec(Tag.MTIME_NS, I64, _ALL),
    FieldSpec(Tag.MODE, U32, _ALL),
    FieldSpec(Tag.STORAGE, U8, _STORED),
    FieldSpec(Tag.MODEL_ID, UTF8, _IMAGE),
    FieldSpec(Tag.WEIGHTS_SHA256, SHA256, _IMAGE),
    FieldSpec(Tag.TABLES_SHA256, SHA256, _IMAGE),
    FieldSpec(Tag.CODER, UTF8, _IMAGE),
    FieldSpec(Tag.WIDTH, U32, _IMAGE),
    FieldSpec(Tag.HEIGHT, U32, _IMAGE),
    FieldSpec(Tag.PADDED_WIDTH, U32, _IMAGE),
    FieldSpec(Tag.PADDED_HEIGHT, U32, _IMAGE),
    FieldSpec(Tag.COLOR_MODE, UTF8, _IMAGE),
    FieldSpec(Tag.QUALITY, U8, _IMAGE),
    FieldSpec(Tag.SOURCE_FORMAT, UTF8, _IMAGE),
    FieldSpec(Tag.ALPHA, BYTES, ()),
    FieldSpec(Tag.NOTE, UTF8, ()),
    FieldSpec(Tag.EXIF, BYTES, (), Tag.EXIF_LZMA),
    FieldSpec(Tag.ICC_PROFILE, BYTES, (), Tag.ICC_PROFILE_LZMA),
    FieldSpec(Tag.XMP, BYTES, (), Tag.XMP_LZMA),
    FieldSpec(Tag.SOURCE_INFO, BYTES, ()),
    FieldSpec(Tag.ORIGINAL_SHA256, SHA256, ()),
    FieldSpec(Tag.PATH_BYTES, BYTES, ()),
)
FIELD_BY_TAG: dict[int, FieldSpec] = {f.tag: f for f in FIELDS}
# packed tag -> the field whose value it carries packed
PACKED_FIELD_BY_TAG: dict[int, FieldSpec] = {f.packed_tag: f for f in FIELDS if f.packed_tag is not None}


def _label(spec: FieldSpec) -> str:
    return f"{spec.tag.name} (0x{spec.tag:04x})"


@dataclass(kw_only=True)
class EntryHeader:
    """One entry's header: one attribute per field; absent conditional/optional fields are None.

    `payload_size` and `payload_crc32` are filled in by ArchiveWriter.add.
    """

    path: str
    kind: int
    payload_size: int = 0
    payload_crc32: int = 0
    original_size: int
    mtime_ns: int
    mode: int
    storage: int | None = None
    model_id: str | None = None
    weights_sha256: bytes | None = None
    tables_sha256: bytes | None = None
    coder: str | None = None
    width: int | None = None
    height: int | None = None
    padded_width: int | None = None
    padded_height: int | None = None
    color_mode: str | None = None
    quality: int | None = None
    source_format: str | None = None
    alpha: bytes | None = None  # xz-packed alpha plane of a coded RGBA/LA photo
    note: str | None = None
    exif: bytes | None = None
    icc_profile: bytes | None = None
    xmp: bytes | None = None
    source_info: bytes | None = None
    original_sha256: bytes | None = None
    path_bytes: bytes | None = None
    # Optional fields this imgarc does not know, kept so a re-writer can preserve them
    # (to_bytes writes them back).
    unknown_optional: dict[int, bytes] = field(default_factory=dict)

    def _problems(self) -> list[str]:
        """What makes this header invalid beyond per-field types: missing fields, out-of-range values."""
        kind = self.kind
        missing = [
            _label(s) for s in FIELDS
            if getattr(self, s.attr) is None and (set(s.required_for) == set(KINDS) or kind in s.required_for)
        ]
        if missing:
            return [f"required field(s) missing: {', '.join(missing)}"]
        problems = []
        if isinstance(self.mode, int) and self.mode & ~0o7777:
            problems.append(f"MODE {self.mode:#o} has bits beyond the permission bits (0o7777)")
        if kind == KIND_IMAGE and isinstance(self.quality, int) and not 1 <= self.quality <= 100:
            problems.append(f"QUALITY {self.quality} is outside 1-100")
        return problems

    def to_bytes(self) -> bytes:
        """The TLV-encoded header (ascending tags). Raises UsageError for an invalid header."""
        name = self.path if isinstance(self.path, str) else "(no path)"

        def fail(detail: str) -> UsageError:
            return UsageError(f"cannot write entry {name!r} to the archive: {detail}")

        if self.kind not in KINDS:
            raise fail(f"unknown entry kind {self.kind!r} (known: {', '.join(map(str, KINDS))})")
        problems = self._problems()
        if problems:
            raise fail("; ".join(problems))
        items: list[tuple[int, bytes]] = []
        packable: list[int] = []  # positions in items of values that may go packed
        for spec in FIELDS:
            value = getattr(self, spec.attr)
            if value is None:
                continue
            try:
                items.append((spec.tag, spec.type.encode(value)))
            except _BadValue as e:
                raise fail(f"field {_label(spec)} {e}") from None
            if spec.packed_tag is not None:
                packable.append(len(items) - 1)
        for tag, value in self.unknown_optional.items():
            if not (isinstance(tag, int) and OPTIONAL_BIT <= tag <= 0xFFFF) or tag in FIELD_BY_TAG:
                raise fail(f"unknown_optional has tag {tag!r}, which is not an unknown optional tag")
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise fail(f"unknown_optional value for tag 0x{tag:04x} must be bytes")
            items.append((tag, bytes(value)))
        # The cap applies to the header as it would be unpacked: that is what a reader holds in
        # memory, and the limit it enforces while unpacking (from_bytes).
        if sum(TLV.size + len(v) for _, v in items) > MAX_HEADER_LEN:
            raise fail(f"the header (metadata included) would exceed {MAX_HEADER_LEN // 2**20} MiB")
        for k in packable:
            tag, value = items[k]
            packed = pack_block(value)
            if packed is not None:
                items[k] = (FIELD_BY_TAG[tag].packed_tag, packed)
        items.sort(key=lambda item: item[0])
        return b"".join(TLV.pack(tag, len(v)) + v for tag, v in items)

    @classmethod
    def from_bytes(cls, data: bytes, entry: str = "entry") -> EntryHeader:
        """Decode header bytes (already CRC-checked by the caller).

        `entry` names the entry in errors until its PATH field has been read.
        Damage -> EntryCorruptError; a field or kind from a newer imgarc -> NewerFormatError.
        """
        name = entry
        values: dict[str, Any] = {}
        unknown: dict[int, bytes] = {}
        pos, end, previous = 0, len(data), -1
        room = MAX_HEADER_LEN - len(data)  # what unpacked fields may add: the writer's cap, unpacked
        while pos < end:
            if end - pos < TLV.size:
                raise EntryCorruptError(name, f"header ends inside a field (byte {pos} of {end})")
            tag, length = TLV.unpack_from(data, pos)
            pos += TLV.size
            if length > end - pos:
                raise EntryCorruptError(
                    name, f"header field 0x{tag:04x} claims {length} bytes, only {end - pos} remain")
            value = bytes(data[pos : pos + length])
            pos += length
            if tag == previous:
                raise EntryCorruptError(name, f"header field 0x{tag:04x} appears twice")
            if tag < previous:
                raise EntryCorruptError(name, f"header field 0x{tag:04x} is out of order (after 0x{previous:04x})")
            previous = tag
            spec = FIELD_BY_TAG.get(tag) or PACKED_FIELD_BY_TAG.get(tag)
            if spec is None:
                if tag & OPTIONAL_BIT:
                    unknown[tag] = value  # optional: safe to skip
                    continue
                raise NewerFormatError(
                    f"entry {name!r} uses header field 0x{tag:04x}, which this imgarc does not know; "
                    "it needs a newer imgarc to be read"
                )
            if spec.attr in values:  # only a field given both packed and as it is gets here
                raise EntryCorruptError(name, f"header field {_label(spec)} appears twice (also packed)")
            if tag == spec.packed_tag:
                try:
                    value = unpack_block(value, room + length)  # bounded: no decompression bomb
                except PackedBlockError as e:
                    raise EntryCorruptError(name, f"header field {Tag(tag).name} (0x{tag:04x}) {e}") from None
                room -= len(value) - length
            try:
                values[spec.attr] = spec.type.decode(value)
            except _BadValue as e:
                raise EntryCorruptError(name, f"header field {_label(spec)} {e}") from None
            if spec.tag == Tag.PATH:
                name = values["path"]
        kind = values.get("kind")
        if kind is not None and kind not in KINDS:
            raise NewerFormatError(
                f"entry {name!r} has kind {kind}, which this imgarc does not know; it needs a newer imgarc to be read"
            )
        for spec in FIELDS:
            values.setdefault(spec.attr, None)
        header = cls(**values, unknown_optional=unknown)
        problems = header._problems()
        if problems:
            raise EntryCorruptError(name, "; ".join(problems))
        return header


# Guard against a field table that drifts from the dataclass or from ascending order.
assert [s.tag for s in FIELDS] == sorted(FIELD_BY_TAG) and len(FIELD_BY_TAG) == len(FIELDS)
assert {s.attr for s in FIELDS} | {"unknown_optional"} == {f.name for f in fields(EntryHeader)}
assert all(not t & OPTIONAL_BIT and t not in FIELD_BY_TAG for t in PACKED_FIELD_BY_TAG)  # packed: critical
