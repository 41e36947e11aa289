"""EXIF, ICC profile and XMP packed with LZMA2 in the entry header (tags 0x0020-0x0022).

Both forms read back byte-identical; the packed one is written only when smaller; a damaged or
inflating packed block is a clean error naming the entry; a reader that does not know the packed
tags refuses the entry instead of dropping the metadata.
"""

from __future__ import annotations

import lzma
import struct
import time
from functools import lru_cache

import pytest
from PIL import Image

from imgarc import api
from imgarc.archive import ArchiveReader, ArchiveWriter, EntryHeader, Tag
from imgarc.archive import layout
from imgarc.archive.layout import MAX_HEADER_LEN, OPTIONAL_BIT, pack_entry, pack_file_header, pack_footer, pack_index
from imgarc.archive.packed import DICT_SIZE, PackedBlockError, pack_block, unpack_block
from imgarc.errors import EntryCorruptError, NewerFormatError
from tests.conftest import noise_rgb
from tests.metadata_samples import SRGB_ICC, camera_exif
from tests.test_archive_layout import image_header, parse_tlv, tlv
from tests.test_phone_folder import XMP

PACKED = {Tag.EXIF: Tag.EXIF_LZMA, Tag.ICC_PROFILE: Tag.ICC_PROFILE_LZMA, Tag.XMP: Tag.XMP_LZMA}

# One image entry whose EXIF, ICC profile and XMP are packed (tags 0x0020-0x0022), written by the
# first imgarc that packs them. Readers keep reading it; writers are not held to these bytes
# (another liblzma may pack the same block differently, and both read back the same).
FIXTURE_PACKED = bytes.fromhex("""
89494152430d0a1a01000000f4ded0f349454e545f0100000100110000004443494d2f494d475f303030312e4a504702
0001000000010300080000000900000000000000040004000000ed0072f1050008000000e70300000000000006000800
0000ffffffffffffffff070004000000800100001000010000006d110020000000111111111111111111111111111111
111111111111111111111111111111111112002000000022222222222222222222222222222222222222222222222222
2222222222222213000400000072616e7314000400000003000000150004000000020000001600040000004000000017
0004000000400000001800030000005247421900010000004b1a00040000004a50454720001c000000e0003d00145d00
229e092677ae6801fc8f20f502c56cc52cc400000021001b000000e0005f00135d002490ec4070391b61a936afb85c78
fdc55a00000022001b000000e0005f00135d001e1e0347af5f1aa8cf59a48b6b7847b77c800000257148aa0100000000
00000000494944580100000010000000000000002bbbcb9c840100000000000014000000f88de10649454e44
""".replace("\n", ""))
FIXTURE_METADATA = dict(exif=b"Exif\0\0MM\0*\0\0\0\x08" + bytes(48), icc_profile=b"ICC profile " * 8,
                        xmp=b"<x:xmpmeta/>" * 8)


def entry_header_bytes(data: bytes, offset: int = 16) -> bytes:
    (length,) = struct.unpack_from("<I", data, offset + 4)
    return data[offset + 8 : offset + 8 + length]


def one_entry_archive(header_bytes: bytes, payload: bytes) -> bytes:
    """An archive of one entry with these header bytes, every CRC valid."""
    head = pack_file_header()
    body = pack_entry(header_bytes) + payload
    index = pack_index([len(head)])
    return head + body + index + pack_footer(len(head) + len(body), len(index))


@lru_cache(maxsize=None)
def packed_zeros(n: int) -> bytes:
    """n zero bytes as a raw LZMA2 stream, packed fast (a 4 KiB dictionary, preset 0)."""
    return lzma.compress(bytes(n), format=lzma.FORMAT_RAW,
                         filters=[{"id": lzma.FILTER_LZMA2, "preset": 0, "dict_size": 4096}])


# ----------------------------------------------------------------------------- the two forms


def test_packed_tags_are_critical():
    # A reader that skipped them would extract the photo without EXIF/ICC/XMP and say nothing.
    for tag in PACKED.values():
        assert not tag & OPTIONAL_BIT
    assert [s.packed_tag for s in layout.FIELDS if s.packed_tag] == list(PACKED.values())


def test_reads_the_packed_fixture(tmp_path):
    path = tmp_path / "packed.iarc"
    path.write_bytes(FIXTURE_PACKED)
    tags = [t for t, _ in parse_tlv(entry_header_bytes(FIXTURE_PACKED))]
    assert set(PACKED.values()) <= set(tags) and not set(PACKED) & set(tags)
    with ArchiveReader(path) as r:
        h = r.header(0)
        assert h.path == "DCIM/IMG_0001.JPG" and r.payload(0) == b"\x01" + bytes(8)
    assert dict(exif=h.exif, icc_profile=h.icc_profile, xmp=h.xmp) == FIXTURE_METADATA
    # Today's writer reads back the same, in the packed form.
    again = tmp_path / "again.iarc"
    with ArchiveWriter(again) as w:
        w.add(h, b"\x01" + bytes(8))
    assert {t for t, _ in parse_tlv(entry_header_bytes(again.read_bytes()))} == set(tags)
    with ArchiveReader(again) as r:
        assert r.header(0) == h


def test_a_reader_without_the_packed_tags_refuses_rather_than_dropping(monkeypatch):
    """What an imgarc from before packing does: `needs a newer imgarc`, never a photo without EXIF."""
    monkeypatch.setattr(layout, "PACKED_FIELD_BY_TAG", {})
    with pytest.raises(NewerFormatError, match="DCIM/IMG_0001.JPG.*0x0020.*newer imgarc"):
        EntryHeader.from_bytes(entry_header_bytes(FIXTURE_PACKED))


def test_small_metadata_stays_in_the_version_1_form():
    h = image_header(exif=b"E", icc_profile=b"", xmp=b"<x/>")
    fields = dict(parse_tlv(h.to_bytes()))
    assert fields[Tag.EXIF] == b"E" and fields[Tag.ICC_PROFILE] == b"" and fields[Tag.XMP] == b"<x/>"
    assert not set(PACKED.values()) & set(fields)
    assert EntryHeader.from_bytes(h.to_bytes()) == h


def test_camera_exif_and_icc_profile_get_smaller_and_come_back_byte_identical():
    exif, icc = camera_exif(), SRGB_ICC
    h = image_header(exif=exif, icc_profile=icc, xmp=XMP)
    data = h.to_bytes()
    fields = dict(parse_tlv(data))
    assert not set(PACKED) & set(fields)
    assert len(fields[Tag.EXIF_LZMA]) < 0.75 * len(exif)  # 9254 -> ~6100 bytes: the thumbnail is JPEG
    assert len(fields[Tag.ICC_PROFILE_LZMA]) < 0.65 * len(icc)  # 588 -> ~330 bytes
    assert len(fields[Tag.XMP_LZMA]) < len(XMP)
    v1_size = len(data) + sum(len(getattr(h, s.attr)) - len(fields[s.packed_tag])
                              for s in layout.FIELDS if s.packed_tag)
    assert len(data) < v1_size - 3000
    back = EntryHeader.from_bytes(data)
    assert back == h and back.exif == exif and back.icc_profile == icc and back.xmp == XMP


def test_both_forms_decode_to_the_same_header():
    h = image_header(exif=camera_exif(1), icc_profile=SRGB_ICC, xmp=XMP)
    packed = h.to_bytes()
    unpacked = [(t, v) for t, v in parse_tlv(packed) if t not in PACKED.values()]
    unpacked += [(tag, getattr(h, tag.name.lower())) for tag in PACKED]
    v1 = tlv(*sorted(unpacked))
    assert EntryHeader.from_bytes(v1) == EntryHeader.from_bytes(packed) == h


def test_a_field_given_both_packed_and_as_found_is_damage():
    h = image_header(exif=camera_exif())
    fields = parse_tlv(h.to_bytes()) + [(Tag.EXIF, b"Exif\0\0")]
    with pytest.raises(EntryCorruptError, match="EXIF.*twice") as e:
        EntryHeader.from_bytes(tlv(*sorted(fields)))
    assert e.value.entry == h.path


# ----------------------------------------------------------------------------- damage and bombs


def _bare_header() -> EntryHeader:
    return image_header(exif=None, icc_profile=None, xmp=None)


def _with_packed_exif(value: bytes) -> bytes:
    return tlv(*sorted(parse_tlv(_bare_header().to_bytes()) + [(Tag.EXIF_LZMA, value)]))


@pytest.mark.parametrize("damage, match", [
    (lambda p: p[: len(p) // 2], "ends inside"),
    (lambda p: p[:-1], "ends inside"),
    (lambda p: p + b"\0", r"1 byte\(s\) after the end"),
    (lambda p: b"\x7f" + p[1:], "does not decompress"),  # no LZMA2 chunk starts with 0x03-0x7F
    (lambda p: b"", "ends inside"),
    (lambda p: b"\xff" * 64, "does not decompress"),  # LZMA chunk with invalid properties
    (lambda p: bytes(range(256)), "255 byte"),  # 0x00: the end marker, then other bytes
])
def test_damaged_packed_block_is_a_clean_error_naming_the_entry(damage, match):
    good = dict(parse_tlv(image_header(exif=camera_exif()).to_bytes()))[Tag.EXIF_LZMA]
    with pytest.raises(EntryCorruptError, match=match) as e:
        EntryHeader.from_bytes(_with_packed_exif(damage(good)))
    assert e.value.entry == "photos/2024/été.jpg" and "EXIF_LZMA (0x0020)" in str(e.value)


def test_verify_names_the_entry_with_a_damaged_packed_block(tmp_path):
    good = dict(parse_tlv(image_header(exif=camera_exif()).to_bytes()))[Tag.EXIF_LZMA]
    path = tmp_path / "damaged.iarc"
    path.write_bytes(one_entry_archive(_with_packed_exif(good[:-40]), b""))
    report = api.verify_archive(path)
    assert len(report.damaged) == 1 and "'photos/2024/été.jpg' is damaged" in report.damaged[0][1]


def test_unpacking_stops_at_its_limit():
    block = packed_zeros(1 << 20)
    assert unpack_block(block, 1 << 20) == bytes(1 << 20)
    with pytest.raises(PackedBlockError, match="more than the 1048575 bytes"):
        unpack_block(block, (1 << 20) - 1)


def test_header_unpacked_to_the_cap_reads_and_one_byte_more_is_a_bomb():
    """The reader's limit is the writer's: the header, unpacked, fits MAX_HEADER_LEN (16 MiB)."""
    rest = len(_bare_header().to_bytes()) + struct.calcsize("<HI")
    fits = MAX_HEADER_LEN - rest
    assert EntryHeader.from_bytes(_with_packed_exif(packed_zeros(fits))).exif == bytes(fits)
    t0 = time.monotonic()
    with pytest.raises(EntryCorruptError, match="more than .* room for"):
        EntryHeader.from_bytes(_with_packed_exif(packed_zeros(fits + 1)))
    assert time.monotonic() - t0 < 5
    assert DICT_SIZE == MAX_HEADER_LEN


def test_writer_caps_the_unpacked_header_even_when_it_packs_small():
    with pytest.raises(Exception, match="MiB"):
        image_header(exif=bytes(MAX_HEADER_LEN)).to_bytes()
    assert pack_block(bytes(64)) is not None and pack_block(b"x") is None


# ----------------------------------------------------------------------------- end to end


def test_camera_jpeg_metadata_round_trip_through_the_archive(tmp_path, tiny_model):
    src = tmp_path / "src"
    src.mkdir()
    exif = camera_exif(2)
    Image.fromarray(noise_rgb(96, 128, 5)).save(src / "IMG_0002.JPG", "JPEG", quality=90, exif=exif,
                                                icc_profile=SRGB_ICC, xmp=XMP)
    archive = tmp_path / "a.iarc"
    summary = api.compress_folder(src, archive, model_id=tiny_model)
    assert [e.kind for e in summary.entries] == ["image"]
    tags = {t for t, _ in parse_tlv(entry_header_bytes(archive.read_bytes()))}
    assert {Tag.EXIF_LZMA, Tag.ICC_PROFILE_LZMA} <= tags and not {Tag.EXIF, Tag.ICC_PROFILE} & tags
    api.extract_archive(archive, tmp_path / "out")
    with Image.open(tmp_path / "out" / "IMG_0002.JPG") as im:
        xmp = im.info.get("xmp")
        assert im.info["exif"] == exif and im.info["icc_profile"] == SRGB_ICC and xmp == XMP
