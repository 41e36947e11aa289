"""ArchiveWriter / ArchiveReader: round trip, exact byte layout, damage, atomic writing."""

from __future__ import annotations

import errno
import os
import random
import struct
import tracemalloc
import zlib
from pathlib import Path

import pytest

from imgarc.archive import ArchiveReader, ArchiveWriter, EntryHeader, EntryLocation, Tag
from imgarc.archive.layout import (
    KIND_IMAGE,
    KIND_STORED,
    MAGIC,
    pack_entry,
    pack_file_header,
    pack_footer,
    pack_index,
)
from imgarc.errors import (
    ArchiveError,
    EntryCorruptError,
    NewerFormatError,
    OutOfSpaceError,
    UnsafePathError,
    UsageError,
)


def crc(b: bytes) -> int:
    return zlib.crc32(b) & 0xFFFFFFFF


def stored(path: str, **kw) -> EntryHeader:
    base = dict(path=path, kind=KIND_STORED, original_size=0, mtime_ns=1_600_000_000_000_000_000,
                mode=0o644, storage=0)
    base.update(kw)
    return EntryHeader(**base)


def image(path: str, **kw) -> EntryHeader:
    base = dict(path=path, kind=KIND_IMAGE, original_size=999, mtime_ns=-1, mode=0o600, model_id="m",
                weights_sha256=b"\x11" * 32, tables_sha256=b"\x22" * 32, coder="rans", width=3, height=2,
                padded_width=64, padded_height=64, color_mode="RGB", quality=75, source_format="PNG")
    base.update(kw)
    return EntryHeader(**base)


# The two entries of the v1 fixture below.
FIXTURE_ENTRIES = [
    (stored("notes/ç.txt", original_size=5, note="not a photo"), b"hello"),
    (image("p.png", exif=b"E"), b"\x01" + bytes(8)),
]

# Written by format version 1 (imgarc 0.1.0). Readers keep reading every version ever on main,
# so this constant never changes; a new version gets a new fixture next to it.
FIXTURE_V1 = bytes.fromhex("""
89494152430d0a1a01000000f4ded0f349454e546f00000001000c0000006e6f7465732fc3a72e747874020001000000
00030008000000050000000000000004000400000086a6103605000800000005000000000000000600080000000000a0
d885573416070004000000a40100000800010000000001800b0000006e6f7420612070686f746fa3708c5468656c6c6f
49454e54f5000000010005000000702e706e67020001000000010300080000000900000000000000040004000000ed00
72f1050008000000e703000000000000060008000000ffffffffffffffff070004000000800100001000010000006d11
002000000011111111111111111111111111111111111111111111111111111111111111111200200000002222222222
22222222222222222222222222222222222222222222222222222213000400000072616e731400040000000300000015
00040000000200000016000400000040000000170004000000400000001800030000005247421900010000004b1a0003
000000504e47108001000000450114b0c901000000000000000049494458020000001000000000000000900000000000
00006e67bc0c9a010000000000001c000000f59b7c2649454e44
""".replace("\n", ""))


def write(path: Path, entries) -> Path:
    with ArchiveWriter(path) as w:
        for h, p in entries:
            w.add(h, p)
    return path


def read_all(path: Path) -> list[tuple[EntryHeader, bytes]]:
    with ArchiveReader(path) as r:
        return [(r.header(i), r.payload(i)) for i in range(len(r))]


def assemble(entries: list[tuple[bytes, bytes]]) -> bytes:
    """An archive from raw header bytes and payloads, for headers the writer would refuse."""
    out, offsets = bytearray(pack_file_header()), []
    for header_bytes, payload in entries:
        offsets.append(len(out))
        out += pack_entry(header_bytes) + payload
    index = pack_index(offsets)
    return bytes(out + index + pack_footer(len(out), len(index)))


def header_bytes_for(h: EntryHeader, payload: bytes) -> bytes:
    h.payload_size, h.payload_crc32 = len(payload), crc(payload)
    return h.to_bytes()


@pytest.fixture
def small(tmp_path) -> Path:
    return write(tmp_path / "small.iarc", [(h, p) for h, p in FIXTURE_ENTRIES])


# ----------------------------------------------------------------------------- round trip


def test_round_trip_many_kinds_of_entries(tmp_path):
    meta = dict(note="warning: ✓", exif=b"Exif\x00\x00II*\x00" + bytes(50), icc_profile=bytes(range(256)) * 3,
                xmp=b"<x:xmpmeta/>", source_info=b'{"dpi": [72, 72]}')
    entries = [
        (stored("a.txt", original_size=12), b"plain bytes\n"),
        (stored("empty", original_size=0), b""),
        (stored("deep/er/still/deeper/file.bin", storage=1, original_size=4), os.urandom(3000)),
        (image("Fotos/Été 2023/日本語 ç.jpg", source_format="JPEG", **meta), os.urandom(777)),
        (image("gray.png", color_mode="L", quality=1), b"\x01\x02"),
    ]
    path = write(tmp_path / "x.iarc", entries)
    got = read_all(path)
    assert [p for _, p in got] == [p for _, p in entries]
    for (h, p), (g, _) in zip(entries, got):
        assert g == h  # add() filled payload_size/crc into h itself
        assert g.payload_size == len(p) and g.payload_crc32 == crc(p)
    with ArchiveReader(path) as r:
        assert r.format_version == 1 and len(r) == 5
        assert r.locations[0] == EntryLocation(0, 16)
        assert [loc.index for loc in r.locations] == list(range(5))


def test_empty_archive(tmp_path):
    path = write(tmp_path / "e.iarc", [])
    assert path.stat().st_size == 16 + 12 + 20
    with ArchiveReader(path) as r:
        assert len(r) == 0 and r.locations == []


def test_writer_output_is_the_v1_fixture_byte_for_byte(tmp_path):
    path = write(tmp_path / "f.iarc", [(h, p) for h, p in FIXTURE_ENTRIES])
    assert path.read_bytes() == FIXTURE_V1


def test_reads_v1_fixture(tmp_path):
    path = tmp_path / "v1.iarc"
    path.write_bytes(FIXTURE_V1)
    got = read_all(path)
    assert [(g.path, p) for g, p in got] == [("notes/ç.txt", b"hello"), ("p.png", b"\x01" + bytes(8))]
    assert got[0][0].note == "not a photo" and got[1][0].exif == b"E" and got[1][0].quality == 75


# ----------------------------------------------------------------------------- exact layout


def test_byte_layout_by_hand(small):
    b = small.read_bytes()
    # File header: magic, version 1, reserved 0, crc of the first 12 bytes.
    assert b[:8] == MAGIC == b"\x89IARC\r\n\x1a"
    assert struct.unpack_from("<HHI", b, 8) == (1, 0, crc(b[:12]))
    # Footer: the last 20 bytes.
    index_offset, index_len, footer_crc = struct.unpack_from("<QII", b, len(b) - 20)
    assert b[-4:] == b"IEND" and footer_crc == crc(b[-20:-8])
    assert index_offset + index_len == len(b) - 20
    # Index: magic, count, offsets, crc of count + offsets.
    idx = b[index_offset : index_offset + index_len]
    assert idx[:4] == b"IIDX"
    (count,) = struct.unpack_from("<I", idx, 4)
    assert count == 2 and index_len == 12 + 8 * count
    offsets = struct.unpack_from("<2Q", idx, 8)
    assert struct.unpack_from("<I", idx, index_len - 4)[0] == crc(idx[4:-4])
    assert offsets[0] == 16
    # Entries: IENT, header_len, header, crc(header), payload; back to back.
    for k, off in enumerate(offsets):
        assert b[off : off + 4] == b"IENT"
        (hlen,) = struct.unpack_from("<I", b, off + 4)
        hb = b[off + 8 : off + 8 + hlen]
        assert struct.unpack_from("<I", b, off + 8 + hlen)[0] == crc(hb)
        # TLV: ascending tags, lengths add up exactly.
        pos, tags, fields = 0, [], {}
        while pos < hlen:
            tag, n = struct.unpack_from("<HI", hb, pos)
            tags.append(tag)
            fields[tag] = hb[pos + 6 : pos + 6 + n]
            pos += 6 + n
        assert pos == hlen and tags == sorted(tags) and tags[:7] == [1, 2, 3, 4, 5, 6, 7]
        (psize,) = struct.unpack("<Q", fields[Tag.PAYLOAD_SIZE])
        payload = b[off + 12 + hlen : off + 12 + hlen + psize]
        assert payload == FIXTURE_ENTRIES[k][1]
        assert struct.unpack("<I", fields[Tag.PAYLOAD_CRC32])[0] == crc(payload)
        end = offsets[k + 1] if k + 1 < len(offsets) else index_offset
        assert off + 12 + hlen + psize == end


# ----------------------------------------------------------------------------- forward compatibility in a file


def test_reader_skips_unknown_optional_and_refuses_unknown_critical(tmp_path):
    ok = header_bytes_for(stored("ok.txt"), b"x")
    future_opt = ok + struct.pack("<HI", 0x8123, 3) + b"new"
    future_crit = header_bytes_for(stored("crit.txt"), b"y") + struct.pack("<HI", 0x0042, 1) + b"!"
    path = tmp_path / "f.iarc"
    path.write_bytes(assemble([(future_opt, b"x"), (future_crit, b"y"), (ok, b"x")]))
    with ArchiveReader(path) as r:
        assert r.header(0).unknown_optional == {0x8123: b"new"} and r.payload(0) == b"x"
        with pytest.raises(NewerFormatError, match="newer imgarc"):
            r.header(1)
        assert r.payload(2) == b"x"  # one entry's problem does not stop the others


def test_newer_format_version(tmp_path):
    b = bytearray(FIXTURE_V1)
    struct.pack_into("<H", b, 8, 2)
    struct.pack_into("<I", b, 12, crc(bytes(b[:12])))
    path = tmp_path / "new.iarc"
    path.write_bytes(bytes(b))
    with pytest.raises(NewerFormatError, match=r"newer imgarc \(format 2\); this one reads 1"):
        ArchiveReader(path)


def test_not_an_archive(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("hello, I am a text file that is long enough to have a footer\n")
    with pytest.raises(ArchiveError, match="is not an imgarc archive"):
        ArchiveReader(text)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(ArchiveError, match="not an imgarc archive"):
        ArchiveReader(empty)
    with pytest.raises(UsageError, match="does not exist"):
        ArchiveReader(tmp_path / "missing.iarc")
    with pytest.raises(UsageError, match="folder"):
        ArchiveReader(tmp_path)


def test_text_mode_mangling_is_detected(tmp_path):
    path = tmp_path / "m.iarc"
    path.write_bytes(FIXTURE_V1.replace(b"\r\n", b"\n"))
    with pytest.raises(ArchiveError, match="not an imgarc archive"):
        ArchiveReader(path)


# ----------------------------------------------------------------------------- damage


def test_truncation_at_every_length_is_a_clean_error(tmp_path, small):
    data = small.read_bytes()
    path = tmp_path / "cut.iarc"
    with open(path, "wb") as f:  # one handle: reopening for each case is slow on some file systems
        for n in range(len(data)):
            f.seek(0)
            f.write(data[:n])
            f.truncate(n)
            f.flush()
            with pytest.raises(ArchiveError):
                read_all(path)


def test_every_single_byte_flip_is_detected(tmp_path, small):
    data = small.read_bytes()
    with ArchiveReader(small) as r:
        payload_spans = []
        for i in range(len(r)):
            h = r.header(i)
            end = r.locations[i + 1].offset if i + 1 < len(r) else r.index_offset
            payload_spans.append((end - h.payload_size, end, h.path))
    path = tmp_path / "flip.iarc"
    path.write_bytes(data)
    flipped_payload_bytes = 0
    with open(path, "r+b") as f:
        for pos in range(len(data)):
            for mask in (0xFF, 0x01):
                f.seek(pos)
                f.write(bytes([data[pos] ^ mask]))
                f.flush()
                with pytest.raises(ArchiveError) as e:
                    read_all(path)
                f.seek(pos)
                f.write(data[pos : pos + 1])
                for start, end, name in payload_spans:
                    if start <= pos < end:
                        assert isinstance(e.value, EntryCorruptError) and e.value.entry == name
                        assert "checksum" in str(e.value)
                        flipped_payload_bytes += 1
    assert flipped_payload_bytes == 2 * sum(end - start for start, end, _ in payload_spans) == 2 * 14


def test_random_damage_is_refused_or_read_exactly(tmp_path, small):
    """Multi-byte garbage (fixed seed): the reader refuses the file, or refuses the damaged entry,
    or returns exactly what was written. A refusal is never a false alarm: the file is refused only
    when its frame (header, index, footer) or length changed, an entry only when its bytes did."""
    rng = random.Random(20240601)
    data = small.read_bytes()
    written = read_all(small)
    with ArchiveReader(small) as r:
        starts = [loc.offset for loc in r.locations] + [r.index_offset]
    frame = [(0, starts[0]), (starts[-1], len(data))]
    outcomes = {"file refused": 0, "entry refused": 0, "entry read": 0}
    path = tmp_path / "fuzz.iarc"
    with open(path, "wb") as f:
        for _ in range(3000):
            b = bytearray(data)
            for _ in range(rng.randrange(1, 6)):
                b[rng.randrange(len(b))] = rng.getrandbits(8)
            if rng.random() < 0.3:
                del b[rng.randrange(len(b)):]
            f.seek(0)
            f.write(b)
            f.truncate(len(b))
            f.flush()
            try:
                r = ArchiveReader(path)
            except ArchiveError:
                outcomes["file refused"] += 1
                assert len(b) != len(data) or any(b[s:e] != data[s:e] for s, e in frame)
                continue
            with r:
                assert len(b) == len(data) and all(b[s:e] == data[s:e] for s, e in frame)
                assert len(r) == len(written)
                for i, (header, payload) in enumerate(written):
                    try:
                        got = (r.header(i), r.payload(i))
                    except EntryCorruptError as e:
                        outcomes["entry refused"] += 1
                        assert b[starts[i] : starts[i + 1]] != data[starts[i] : starts[i + 1]], e
                        continue
                    outcomes["entry read"] += 1
                    assert got == (header, payload)
    # every outcome is exercised, and damage to one entry leaves the other readable
    assert min(outcomes.values()) >= 100, outcomes


def test_damaged_entry_leaves_neighbours_readable(tmp_path, small):
    b = bytearray(small.read_bytes())
    b[b.index(b"hello")] ^= 0x20  # payload of entry 1
    path = tmp_path / "d.iarc"
    path.write_bytes(bytes(b))
    with ArchiveReader(path) as r:
        assert r.header(0).path == "notes/ç.txt"
        with pytest.raises(EntryCorruptError) as e:
            r.payload(0)
        assert e.value.entry == "notes/ç.txt"
        assert r.payload(1) == FIXTURE_ENTRIES[1][1]
    # extract (entries decode side by side) names the damaged entry by its path, not its position
    from imgarc import api

    with pytest.raises(ArchiveError) as failed:
        api.extract_archive(path, tmp_path / "out")
    assert "could not be extracted (the other 0 were): notes/ç.txt: entry 'notes/ç.txt' is damaged" in str(failed.value)


def test_damaged_header_is_named_by_position(tmp_path, small):
    b = bytearray(small.read_bytes())
    b[16 + 8 + 10] ^= 0xFF  # inside entry 1's header bytes
    path = tmp_path / "h.iarc"
    path.write_bytes(bytes(b))
    with ArchiveReader(path) as r:
        with pytest.raises(EntryCorruptError) as e:
            r.header(0)
        assert e.value.entry == "#1 at byte 16" and "checksum" in str(e.value)
        assert r.header(1).path == "p.png"


def reseal_index(b: bytearray, index_offset: int, index_len: int) -> None:
    """Recompute the index CRC after editing it: damage only the checks after the CRC can see."""
    body = bytes(b[index_offset + 4 : index_offset + index_len - 4])
    struct.pack_into("<I", b, index_offset + index_len - 4, crc(body))


def _with_footer(body: bytes, index_offset: int, index_len: int) -> bytes:
    return body + pack_footer(index_offset, index_len)


@pytest.fixture
def traced_memory():
    tracemalloc.start()
    yield
    tracemalloc.stop()


def test_absurd_lengths_are_refused_before_allocating(tmp_path, traced_memory):
    path = tmp_path / "a.iarc"
    good = FIXTURE_V1
    body, footer = good[:-20], good[-20:]
    index_offset, index_len = struct.unpack_from("<QI", footer)

    # header_len = 2^32 - 1 in the first entry (the prefix has no CRC of its own).
    b = bytearray(good)
    struct.pack_into("<I", b, 20, 0xFFFFFFFF)
    path.write_bytes(bytes(b))
    with ArchiveReader(path) as r:
        with pytest.raises(EntryCorruptError, match="header length"):
            r.header(0)

    # entry_count = 2^32 - 1, index CRC recomputed.
    b = bytearray(good)
    struct.pack_into("<I", b, index_offset + 4, 0xFFFFFFFF)
    reseal_index(b, index_offset, index_len)
    path.write_bytes(bytes(b))
    with pytest.raises(ArchiveError, match="truncated or its index is damaged"):
        ArchiveReader(path)

    # index_offset beyond EOF / index_len huge, footer CRC recomputed.
    for off, length in [(2**63, index_len), (2**64 - 1, 12), (index_offset, 2**32 - 1), (0, len(body)),
                        (16, len(body) - 16)]:
        path.write_bytes(_with_footer(body, off, length))
        with pytest.raises(ArchiveError, match="truncated or its index is damaged"):
            ArchiveReader(path)

    # An entry offset beyond the index, index CRC recomputed.
    b = bytearray(good)
    struct.pack_into("<Q", b, index_offset + 8, 2**64 - 1)
    reseal_index(b, index_offset, index_len)
    path.write_bytes(bytes(b))
    with pytest.raises(ArchiveError, match="impossible offset"):
        ArchiveReader(path)

    # payload_size = 2^64 - 1 in a header whose CRC is valid.
    h = stored("big.bin")
    h.payload_size, h.payload_crc32 = 2**64 - 1, 0
    path.write_bytes(assemble([(h.to_bytes(), b"tiny")]))
    with ArchiveReader(path) as r:
        with pytest.raises(EntryCorruptError, match="does not match") as e:
            r.header(0)
        assert e.value.entry == "big.bin"
    _, peak = tracemalloc.get_traced_memory()
    assert peak < 1 << 20, f"{peak} bytes allocated: a length from the file was trusted"


def test_payload_size_smaller_than_its_space_is_corrupt(tmp_path):
    hb = header_bytes_for(stored("a"), b"abc")
    path = tmp_path / "p.iarc"
    path.write_bytes(assemble([(hb, b"abc" + b"junk")]))
    with ArchiveReader(path) as r:
        with pytest.raises(EntryCorruptError, match="does not match"):
            r.payload(0)


def test_reader_misuse(small):
    r = ArchiveReader(small)
    with pytest.raises(IndexError):
        r.header(2)
    with pytest.raises(IndexError):
        r.payload(-1)
    r.close()
    r.close()
    with pytest.raises(UsageError, match="closed"):
        r.payload(0)


# ----------------------------------------------------------------------------- atomic writing


def test_exception_inside_with_leaves_nothing(tmp_path):
    path = tmp_path / "out.iarc"
    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            with ArchiveWriter(path) as w:
                w.add(stored("a"), b"abc")
                assert w.temp_path.exists() and w.temp_path.name == f".out.iarc.imgarc-tmp-{os.getpid()}"
                assert not path.exists()
                raise exc
        assert list(tmp_path.iterdir()) == []


def test_existing_file_untouched_on_failure_and_replaced_on_success(tmp_path):
    path = tmp_path / "out.iarc"
    path.write_bytes(b"precious")
    with pytest.raises(ValueError):
        with ArchiveWriter(path) as w:
            w.add(stored("a"), b"abc")
            raise ValueError
    assert path.read_bytes() == b"precious" and sorted(tmp_path.iterdir()) == [path]

    w = ArchiveWriter(path)
    w.add(stored("a"), b"abc")
    w.abort()
    w.abort()
    assert path.read_bytes() == b"precious" and sorted(tmp_path.iterdir()) == [path]
    with pytest.raises(UsageError, match="aborted"):
        w.add(stored("b"), b"")

    write(path, [(stored("a"), b"abc")])
    assert read_all(path)[0][1] == b"abc" and sorted(tmp_path.iterdir()) == [path]


def test_writer_refuses_duplicates_and_unsafe_paths_but_stays_usable(tmp_path):
    path = tmp_path / "out.iarc"
    w = ArchiveWriter(path)
    w.add(stored("a/b"), b"1")
    with pytest.raises(UsageError, match="already in the archive"):
        w.add(stored("a/b"), b"2")
    with pytest.raises(UnsafePathError):
        w.add(stored("../evil"), b"3")
    with pytest.raises(UsageError, match="QUALITY"):
        w.add(image("q.png", quality=0), b"")
    w.add(stored("c"), b"4")
    w.commit()
    assert [(h.path, p) for h, p in read_all(path)] == [("a/b", b"1"), ("c", b"4")]
    with pytest.raises(UsageError, match="committed"):
        w.add(stored("d"), b"")
    w.abort()  # after commit: a no-op, the archive stays
    assert path.exists()


def test_writer_bad_destination(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        ArchiveWriter(tmp_path / "no" / "such" / "x.iarc")
    with pytest.raises(UsageError, match="folder"):
        ArchiveWriter(tmp_path)
    assert list(tmp_path.iterdir()) == []


def _fail_writes_to(monkeypatch, w: ArchiveWriter, err: int, after: int = 0):
    """Writes to the writer's temp file (told apart from other files by its inode) fail with `err`."""
    real_write = os.write
    temp_file = os.stat(w.temp_path)
    calls = {"n": 0}

    def fake_write(fd, data):
        if os.path.samestat(os.fstat(fd), temp_file):
            calls["n"] += 1
            if calls["n"] > after:
                raise OSError(err, os.strerror(err))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", fake_write)


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EDQUOT])
def test_out_of_space_while_adding(tmp_path, monkeypatch, err):
    path = tmp_path / "out.iarc"
    path.write_bytes(b"old")
    w = ArchiveWriter(path)
    w.add(stored("a"), b"abc")
    _fail_writes_to(monkeypatch, w, err, after=1)  # the entry prefix goes through, the payload does not
    with pytest.raises(OutOfSpaceError, match="disk filled up"):
        w.add(stored("b"), os.urandom(1000))
    monkeypatch.undo()
    assert sorted(tmp_path.iterdir()) == [path] and path.read_bytes() == b"old"
    with pytest.raises(UsageError):
        w.commit()


def test_out_of_space_on_commit_and_fsync(tmp_path, monkeypatch):
    path = tmp_path / "out.iarc"
    with pytest.raises(OutOfSpaceError):
        with ArchiveWriter(path) as w:
            w.add(stored("a"), b"abc")
            _fail_writes_to(monkeypatch, w, errno.ENOSPC)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []

    def fake_fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fake_fsync)
    with pytest.raises(OutOfSpaceError):
        write(path, [(stored("a"), b"abc")])
    assert list(tmp_path.iterdir()) == []
