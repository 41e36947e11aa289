"""Entry header TLV codec: field table, round trip, forward compatibility, damage."""

from __future__ import annotations

import dataclasses
import random
import struct

import pytest

from imgarc.archive.layout import (
    FIELD_BY_TAG,
    FIELDS,
    KIND_IMAGE,
    KIND_STORED,
    KINDS,
    MAX_HEADER_LEN,
    OPTIONAL_BIT,
    PACKED_FIELD_BY_TAG,
    EntryHeader,
    Tag,
)
from imgarc.errors import ArchiveError, EntryCorruptError, NewerFormatError, UsageError


def stored_header(**kw) -> EntryHeader:
    base = dict(path="docs/notes ç.txt", kind=KIND_STORED, payload_size=11, payload_crc32=0xDEADBEEF,
                original_size=1234, mtime_ns=-5, mode=0o644, storage=1)
    base.update(kw)
    return EntryHeader(**base)


def image_header(**kw) -> EntryHeader:
    base = dict(path="photos/2024/été.jpg", kind=KIND_IMAGE, payload_size=2**40, payload_crc32=1,
                original_size=2**33 + 7, mtime_ns=1_700_000_000_123_456_789, mode=0o7777,
                model_id="mbt-64-v0", weights_sha256=bytes(range(32)), tables_sha256=bytes(range(32, 64)),
                coder="rans", width=4000, height=3000, padded_width=4032, padded_height=3008,
                color_mode="RGB", quality=100, source_format="JPEG", note="hello ✓",
                exif=b"Exif\x00\x00MM", icc_profile=b"\x00" * 300, xmp=b"<x:xmpmeta/>",
                source_info=b'{"subsampling": 2}', alpha=b"\xfd7zXZ", original_sha256=bytes(32),
                path_bytes="photos/2024/été.jpg".encode("latin-1"))
    base.update(kw)
    return EntryHeader(**base)


def tlv(*fields: tuple[int, bytes]) -> bytes:
    return b"".join(struct.pack("<HI", t, len(v)) + v for t, v in fields)


def parse_tlv(data: bytes) -> list[tuple[int, bytes]]:
    out, pos = [], 0
    while pos < len(data):
        tag, n = struct.unpack_from("<HI", data, pos)
        out.append((tag, data[pos + 6 : pos + 6 + n]))
        pos += 6 + n
    assert pos == len(data)
    return out


# ----------------------------------------------------------------------------- field table


def test_field_table_matches_spec():
    assert [s.tag for s in FIELDS] == sorted(s.tag for s in FIELDS)
    assert len(FIELD_BY_TAG) == len(FIELDS) == len(Tag) - len(PACKED_FIELD_BY_TAG)
    # EXIF, ICC_PROFILE and XMP may go LZMA-packed under a critical tag (tests/test_packed_metadata.py)
    assert {t: s.tag for t, s in PACKED_FIELD_BY_TAG.items()} == {
        Tag.EXIF_LZMA: Tag.EXIF, Tag.ICC_PROFILE_LZMA: Tag.ICC_PROFILE, Tag.XMP_LZMA: Tag.XMP}
    attrs = {f.name for f in dataclasses.fields(EntryHeader)}
    assert {s.attr for s in FIELDS} | {"unknown_optional"} == attrs
    for s in FIELDS:
        # Optional tags are never required; critical tags are required for at least one kind,
        # except ALPHA: only some photos have it, but a reader that skipped it would lose data.
        assert bool(s.tag & OPTIONAL_BIT) == (s.required_for == ()) or s.tag == Tag.ALPHA
    assert Tag.PATH == 1 and Tag.SOURCE_FORMAT == 0x1A and Tag.SOURCE_INFO == 0x8013


# ----------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("make", [stored_header, image_header])
def test_round_trip(make):
    h = make()
    assert EntryHeader.from_bytes(h.to_bytes()) == h


def test_round_trip_minimal_stored_and_empty_values():
    h = stored_header(storage=0, path="x", note="", exif=b"")
    back = EntryHeader.from_bytes(h.to_bytes())
    assert back == h and back.note == "" and back.exif == b"" and back.model_id is None


def test_encoding_is_ascending_tlv_with_declared_widths():
    h = image_header()
    fields = parse_tlv(h.to_bytes())
    tags = [t for t, _ in fields]
    assert tags == sorted(tags) and len(set(tags)) == len(tags)
    # every field set is written; the 300 zero bytes of ICC profile go LZMA-packed (smaller)
    assert tags == sorted(Tag.ICC_PROFILE_LZMA if s.tag == Tag.ICC_PROFILE else s.tag
                          for s in FIELDS if s.tag != Tag.STORAGE)
    values = dict(fields)
    assert values[Tag.PATH] == "photos/2024/été.jpg".encode()
    assert values[Tag.KIND] == b"\x01"
    assert values[Tag.PAYLOAD_SIZE] == struct.pack("<Q", 2**40)
    assert values[Tag.MTIME_NS] == struct.pack("<q", 1_700_000_000_123_456_789)
    assert values[Tag.MODE] == struct.pack("<I", 0o7777)
    assert values[Tag.WIDTH] == struct.pack("<I", 4000)
    assert values[Tag.QUALITY] == bytes([100])
    assert values[Tag.WEIGHTS_SHA256] == bytes(range(32))


def test_absent_optional_fields_are_not_written():
    tags = [t for t, _ in parse_tlv(stored_header().to_bytes())]
    assert tags == [1, 2, 3, 4, 5, 6, 7, 8]


# ----------------------------------------------------------------------------- forward compatibility


def test_unknown_optional_tag_is_skipped_and_kept():
    base = parse_tlv(stored_header().to_bytes())
    raw = tlv(*base, (0x8002, b"future note"), (0xFFFF, b"\x01\x02"))
    h = EntryHeader.from_bytes(raw)
    assert h.path == "docs/notes ç.txt" and h.storage == 1
    assert h.unknown_optional == {0x8002: b"future note", 0xFFFF: b"\x01\x02"}
    # A re-writer preserves them, in tag order.
    assert h.to_bytes() == raw


def test_unknown_critical_tag_needs_newer_imgarc():
    base = parse_tlv(stored_header().to_bytes())
    raw = tlv(*base[:8], (0x0009, b"x"))
    with pytest.raises(NewerFormatError, match="newer imgarc") as e:
        EntryHeader.from_bytes(raw)
    assert isinstance(e.value, ArchiveError) and not isinstance(e.value, EntryCorruptError)
    assert "docs/notes ç.txt" in str(e.value) and "0x0009" in str(e.value)


def test_unknown_kind_needs_newer_imgarc():
    fields = dict(parse_tlv(stored_header().to_bytes()))
    fields[Tag.KIND] = b"\x07"
    with pytest.raises(NewerFormatError, match="newer imgarc"):
        EntryHeader.from_bytes(tlv(*sorted(fields.items())))


# ----------------------------------------------------------------------------- damage


def test_duplicate_tag_is_corrupt():
    base = parse_tlv(stored_header().to_bytes())
    raw = tlv(*base[:2], base[1], *base[2:])
    with pytest.raises(EntryCorruptError, match="twice"):
        EntryHeader.from_bytes(raw)


def test_out_of_order_tags_are_corrupt():
    base = parse_tlv(stored_header().to_bytes())
    base[2], base[3] = base[3], base[2]
    with pytest.raises(EntryCorruptError, match="out of order"):
        EntryHeader.from_bytes(tlv(*base))


@pytest.mark.parametrize("tag, value, match", [
    (Tag.MODE, b"\xa4\x01", "MODE"),                      # u32 with 2 bytes
    (Tag.PAYLOAD_SIZE, b"\x00" * 9, "PAYLOAD_SIZE"),      # u64 with 9 bytes
    (Tag.KIND, b"", "KIND"),
    (Tag.PATH, b"bad \xff utf8", "UTF-8"),
    (Tag.MODE, struct.pack("<I", 0o100644), "permission bits"),
])
def test_invalid_field_values_are_corrupt(tag, value, match):
    fields = dict(parse_tlv(stored_header().to_bytes()))
    fields[tag] = value
    with pytest.raises(EntryCorruptError, match=match):
        EntryHeader.from_bytes(tlv(*sorted(fields.items())))


def test_image_field_widths_and_ranges_are_checked():
    fields = dict(parse_tlv(image_header().to_bytes()))
    for tag, value, match in [(Tag.WEIGHTS_SHA256, b"\x00" * 31, "WEIGHTS_SHA256"),
                              (Tag.QUALITY, b"\x00", "QUALITY"), (Tag.QUALITY, b"\x65", "QUALITY")]:
        bad = dict(fields)
        bad[tag] = value
        with pytest.raises(EntryCorruptError, match=match):
            EntryHeader.from_bytes(tlv(*sorted(bad.items())))


@pytest.mark.parametrize("drop, make", [(Tag.STORAGE, stored_header), (Tag.PATH, stored_header),
                                        (Tag.PAYLOAD_CRC32, image_header), (Tag.WIDTH, image_header),
                                        (Tag.SOURCE_FORMAT, image_header)])
def test_missing_required_field_is_corrupt(drop, make):
    fields = [(t, v) for t, v in parse_tlv(make().to_bytes()) if t != drop]
    with pytest.raises(EntryCorruptError, match=drop.name):
        EntryHeader.from_bytes(tlv(*fields), "#3 at byte 99")


def test_error_names_entry_before_path_is_known():
    with pytest.raises(EntryCorruptError) as e:
        EntryHeader.from_bytes(b"\x01\x00\x05", "#3 at byte 99")
    assert e.value.entry == "#3 at byte 99"


def test_truncated_tlv_is_corrupt():
    raw = stored_header().to_bytes()
    for n in range(1, len(raw)):
        with pytest.raises(ArchiveError):
            EntryHeader.from_bytes(raw[:n])


def test_random_garbage_raises_only_archive_errors():
    rng = random.Random(1234)
    good = image_header().to_bytes()
    for _ in range(3000):
        if rng.random() < 0.5:
            data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 64)))
        else:  # mutate a few bytes of a valid header: deeper into the decoder
            b = bytearray(good)
            for _ in range(rng.randrange(1, 4)):
                b[rng.randrange(len(b))] = rng.getrandbits(8)
            data = bytes(b)
        try:
            EntryHeader.from_bytes(data)
        except ArchiveError:
            pass


# ----------------------------------------------------------------------------- writing invalid headers


@pytest.mark.parametrize("change, match", [
    (dict(storage=None), "STORAGE"),
    (dict(mode=0o100644), "permission bits"),
    (dict(original_size=-1), "ORIGINAL_SIZE"),
    (dict(mtime_ns=2**63), "MTIME_NS"),
    (dict(payload_crc32=2**32), "PAYLOAD_CRC32"),
    (dict(path="bad \udcff name"), "not valid UTF-8"),
    (dict(kind=5), "unknown entry kind"),
    (dict(unknown_optional={0x0042: b"x"}), "unknown optional"),
    (dict(unknown_optional={int(Tag.NOTE): b"x"}), "unknown optional"),
    (dict(exif=b"x" * (MAX_HEADER_LEN + 1)), "MiB"),
])
def test_to_bytes_refuses_invalid_headers(change, match):
    with pytest.raises(UsageError, match=match):
        stored_header(**change).to_bytes()


@pytest.mark.parametrize("change, match", [
    (dict(weights_sha256=b"\x00" * 31), "WEIGHTS_SHA256"),
    (dict(quality=0), "QUALITY"),
    (dict(quality=101), "QUALITY"),
    (dict(width=-1), "WIDTH"),
    (dict(coder=None), "CODER"),
    (dict(width="12"), "WIDTH"),
])
def test_to_bytes_refuses_invalid_image_headers(change, match):
    with pytest.raises(UsageError, match=match):
        image_header(**change).to_bytes()


def test_kinds_are_the_documented_ones():
    assert KINDS == (0, 1)
