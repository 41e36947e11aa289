"""Fuzzing the archive reader: damaged and hostile archives give only ImgarcError-family errors.

Hypothesis, derandomized (a fixed seed), thousands of cases in well under a minute. Each case
starts from one of a few real archives (stored files; photos coded with the tiny model by the
`rans`, `lzma` and `ref` coders) and damages it: bit flips, byte writes, truncation, inserted
and deleted bytes, absurd u32/u64 values, copied chunks, random files. Three depths:

- raw: the damage as it is: the CRCs must catch it.
- resealed: every CRC recomputed after the damage, so the damage reaches the structural checks
  behind the CRCs (lengths, offsets, header fields) and the decoders behind those (the payload
  CRC is recomputed too, so `rans` and `lzma` decode garbage streams).
- header: one entry header rewritten field by field (absurd sizes and counts, other kinds,
  storage methods, coders, image sizes, unknown tags), with valid CRCs.

Each case runs ArchiveReader (every header and payload), list_archive, verify_archive (which
entropy-decodes every image's latents), and salvage (plan, payloads, and a salvage extraction
into a folder, which decodes the images to pixels).

The `ref` coder (CompressAI's C++ decoder) reads past its buffer on crafted streams and can
crash the process, which no Python code can catch. So no case hands it a CRC-valid stream it
was not made for: the `ref` archive is damaged raw or resealed without its payload CRC (the
payload CRC stops the damage before the decoder, which is how it is protected in use), header
edits skip it and never set CODER to `ref`.
"""

from __future__ import annotations

import gc
import lzma
import os
import re
import struct
import time
import tracemalloc
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imgarc import api
from imgarc.archive import ArchiveReader, ArchiveWriter, EntryHeader
from imgarc.archive.layout import (
    KIND_STORED,
    STORAGE_LZMA,
    STORAGE_RAW,
    TLV,
    Tag,
    pack_entry,
    pack_file_header,
    pack_footer,
    pack_index,
)
from imgarc.archive.salvage import SalvageReader
from imgarc.errors import ImgarcError
from tests.conftest import image_bytes, noise_rgb
from tests.metadata_samples import SRGB_ICC
from tests.test_phone_folder import phone_exif

CASES = int(os.environ.get("IMGARC_FUZZ_CASES", 2500))


def crc(b: bytes) -> int:
    return zlib.crc32(b) & 0xFFFFFFFF


@dataclass(frozen=True)
class Seed:
    name: str
    data: bytes
    entries: tuple[tuple[bytes, bytes], ...]  # (header bytes, payload) of each entry
    reseal_payloads: bool  # False for `ref`: its decoder must never see a CRC-valid garbage stream


def entries_of(path: Path) -> tuple[tuple[bytes, bytes], ...]:
    data = path.read_bytes()
    with ArchiveReader(path) as r:
        out = []
        for i, loc in enumerate(r.locations):
            (hlen,) = struct.unpack_from("<I", data, loc.offset + 4)
            out.append((data[loc.offset + 8 : loc.offset + 8 + hlen], r.payload(i)))
        return tuple(out)


def tlv_tags(header: bytes) -> set[int]:
    tags, pos = set(), 0
    while pos + TLV.size <= len(header):
        tag, length = TLV.unpack_from(header, pos)
        tags.add(tag)
        pos += TLV.size + length
    return tags


def assemble(entries) -> bytes:
    out, offsets = bytearray(pack_file_header()), []
    for header_bytes, payload in entries:
        offsets.append(len(out))
        out += pack_entry(header_bytes) + payload
    index = pack_index(offsets)
    return bytes(out + index + pack_footer(len(out), len(index)))


@pytest.fixture(scope="module")
def seeds(tmp_path_factory, tiny_model_dir) -> list[Seed]:
    folder = tmp_path_factory.mktemp("fuzz-seeds")
    stored = folder / "stored.iarc"
    with ArchiveWriter(stored) as w:
        text = b"a line of text that LZMA shrinks\n" * 20
        for path, data, storage in (("notes/a.txt", text, STORAGE_LZMA), ("raw.bin", os.urandom(40), STORAGE_RAW),
                                    ("empty", b"", STORAGE_RAW)):
            payload = data if storage == STORAGE_RAW else lzma.compress(data, format=lzma.FORMAT_XZ)
            w.add(EntryHeader(path=path, kind=KIND_STORED, storage=storage, original_size=len(data),
                              mtime_ns=0, mode=0o644), payload)
    src = folder / "photos"
    src.mkdir()
    # EXIF and ICC profile go LZMA-packed into the header (~480 bytes): damage reaches the unpacking too
    (src / "a.png").write_bytes(image_bytes(noise_rgb(40, 56, 1), "PNG", icc_profile=SRGB_ICC, exif=phone_exif()))
    (src / "g.png").write_bytes(image_bytes(noise_rgb(24, 30, 2)[:, :, 0], "PNG"))
    (src / "t.txt").write_bytes(b"not a photo\n" * 3)
    old = os.environ.get("IMGARC_MODEL_PATH")
    os.environ["IMGARC_MODEL_PATH"] = str(tiny_model_dir)
    try:
        out = [Seed("stored", stored.read_bytes(), entries_of(stored), True)]
        for coder in ("rans", "lzma", "ref"):
            path = folder / f"{coder}.iarc"
            api.compress_folder(src, path, coder_name=coder, model_id="tiny-test")
            out.append(Seed(coder, path.read_bytes(), entries_of(path), coder != "ref"))
    finally:
        if old is None:
            del os.environ["IMGARC_MODEL_PATH"]
        else:
            os.environ["IMGARC_MODEL_PATH"] = old
    assert all(len(s.entries) == 3 for s in out)
    for s in out[1:]:  # a.png's header carries EXIF and ICC profile packed
        assert {Tag.EXIF_LZMA, Tag.ICC_PROFILE_LZMA} <= tlv_tags(s.entries[0][0])
    return out


# ----------------------------------------------------------------------------- damage

ABSURD = [0, 1, 7, 0x7F, 0xFF, 0xFFFF, 2**24, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53, 2**63, 2**64 - 1]

byte_ops = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 7)),
    st.tuples(st.just("set"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=24)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 64)),
    st.tuples(st.just("u32"), st.integers(0, 10**6), st.sampled_from(ABSURD)),
    st.tuples(st.just("u64"), st.integers(0, 10**6), st.sampled_from(ABSURD)),
    st.tuples(st.just("copy"), st.integers(0, 10**6), st.integers(0, 10**6), st.integers(1, 200)),
)


def damage(data: bytes, ops) -> bytearray:
    b = bytearray(data)
    for op in ops:
        kind, pos = op[0], op[1] % (len(b) + 1)
        if kind == "flip" and pos < len(b):
            b[pos] ^= 1 << op[2]
        elif kind == "set" and pos < len(b):
            b[pos] = op[2]
        elif kind == "truncate":
            del b[pos:]
        elif kind == "insert":
            b[pos:pos] = op[2]
        elif kind == "delete":
            del b[pos : pos + op[2]]
        elif kind in ("u32", "u64"):
            fmt = "<I" if kind == "u32" else "<Q"
            size = struct.calcsize(fmt)
            if pos + size <= len(b):
                struct.pack_into(fmt, b, pos, op[2] & (2 ** (8 * size) - 1))
        elif kind == "copy" and b:
            src = op[2] % len(b)
            b[pos : pos + op[3]] = b[src : src + op[3]]
    return b


def reseal(b: bytearray, payloads: bool) -> None:
    """Recompute every CRC the damaged bytes still let us find (entries via the footer's index)."""
    if len(b) >= 16:
        struct.pack_into("<I", b, 12, crc(bytes(b[:12])))
    if len(b) < 16 + 12 + 20:
        return
    fo = len(b) - 20
    index_offset, index_len = struct.unpack_from("<QI", b, fo)
    struct.pack_into("<I", b, fo + 12, crc(bytes(b[fo : fo + 12])))
    if not (16 <= index_offset and index_offset + 12 <= fo):
        return
    (count,) = struct.unpack_from("<I", b, index_offset + 4)
    body_end = index_offset + 8 + 8 * count
    if body_end + 4 > fo:
        return
    for (off,) in struct.iter_unpack("<Q", bytes(b[index_offset + 8 : body_end])):
        reseal_entry(b, off, payloads)
    struct.pack_into("<I", b, body_end, crc(bytes(b[index_offset + 4 : body_end])))


def reseal_entry(b: bytearray, off: int, payloads: bool) -> None:
    if off + 12 > len(b):
        return
    (hlen,) = struct.unpack_from("<I", b, off + 4)
    start, end = off + 8, off + 8 + hlen
    if end + 4 > len(b):
        return
    fields, pos = {}, start
    while pos + TLV.size <= end:
        tag, length = TLV.unpack_from(b, pos)
        fields[tag] = (pos + TLV.size, length)
        pos += TLV.size + length
    size_at, crc_at = fields.get(Tag.PAYLOAD_SIZE), fields.get(Tag.PAYLOAD_CRC32)
    if payloads and size_at and crc_at and size_at[1] == 8 and crc_at[1] == 4 and crc_at[0] + 4 <= end:
        (size,) = struct.unpack_from("<Q", b, size_at[0])
        payload_start = end + 4
        if payload_start + size <= len(b):
            struct.pack_into("<I", b, crc_at[0], crc(bytes(b[payload_start : payload_start + size])))
    struct.pack_into("<I", b, end, crc(bytes(b[start:end])))


INTERESTING_VALUES = st.one_of(
    st.sampled_from(ABSURD).map(lambda v: (v & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little")),
    st.sampled_from(ABSURD).map(lambda v: (v & 0xFFFFFFFF).to_bytes(4, "little")),
    st.integers(0, 255).map(lambda v: bytes([v])),
    st.sampled_from([b"rans", b"lzma", b"RGB", b"L", b"RGBA", b"PNG", b"JPEG", b"tiny-test", b"", b"\xff\xfe",
                     b"../x", b"a/b", b"x" * 300]),
    st.binary(max_size=40),
)


@st.composite
def header_edit(draw, header: bytes) -> bytes:
    """The header's TLV fields with one or two fields replaced, dropped, added or reordered."""
    fields, pos = [], 0
    while pos + TLV.size <= len(header):
        tag, length = TLV.unpack_from(header, pos)
        fields.append([tag, header[pos + TLV.size : pos + TLV.size + length]])
        pos += TLV.size + length
    for _ in range(draw(st.integers(1, 2))):
        action = draw(st.sampled_from(["value", "value", "value", "drop", "add", "swap"]))
        k = draw(st.integers(0, max(len(fields) - 1, 0)))
        if action == "value" and fields:
            fields[k][1] = draw(INTERESTING_VALUES)
        elif action == "drop" and fields:
            del fields[k]
        elif action == "add":
            # unknown critical and optional tags, and known ones (duplicates, out of order)
            tag = draw(st.sampled_from([0x0009, 0x00FF, 0x7FFF, 0x8000, 0x80FF, 0xFFFF]) | st.sampled_from(list(Tag)))
            fields.insert(k, [tag, draw(INTERESTING_VALUES)])
        elif action == "swap" and len(fields) > 1:
            fields[k], fields[k - 1] = fields[k - 1], fields[k]
    return b"".join(TLV.pack(tag, len(value)) + value for tag, value in fields)


@st.composite
def cases(draw, seeds: list[Seed]):
    mode = draw(st.sampled_from(["raw", "raw", "resealed", "resealed", "header", "random"]))
    if mode == "random":
        body = draw(st.binary(max_size=600))
        if draw(st.booleans()):
            head = pack_file_header()
            body = head + body + (pack_footer(16, len(body)) if draw(st.booleans()) else b"")
        return "random", body
    if mode == "header":  # never the `ref` seed: its decoder would get CRC-valid but mismatched input
        seed = draw(st.sampled_from([s for s in seeds if s.reseal_payloads]))
        entries = list(seed.entries)
        k = draw(st.integers(0, len(entries) - 1))
        header, payload = entries[k]
        new_header = draw(header_edit(header))
        if draw(st.booleans()):
            payload = bytes(damage(payload, draw(st.lists(byte_ops, min_size=1, max_size=2))))
        entries[k] = (new_header, payload)
        b = bytearray(assemble(entries))
        reseal(b, True)  # fixes PAYLOAD_CRC32 (if still a u32) and the header CRC
        return f"header/{seed.name}", bytes(b)
    seed = draw(st.sampled_from(seeds))
    b = damage(seed.data, draw(st.lists(byte_ops, min_size=1, max_size=4)))
    if mode == "resealed":
        reseal(b, seed.reseal_payloads)
    return f"{mode}/{seed.name}", bytes(b)


def exercise(path: Path, out: Path, extracted: set) -> bool:
    """Everything a user can run on an archive; only ImgarcError may come out of each.

    A salvage extraction decodes images to pixels (the slow part), so it runs only when the
    salvage plan holds an entry (header + payload) that no earlier case extracted: decoding is
    deterministic, the same bytes give the same result. Returns whether it ran.
    """
    try:
        with ArchiveReader(path) as r:
            for i in range(len(r)):
                try:
                    r.header(i)
                    r.payload(i)
                except ImgarcError:
                    pass
    except ImgarcError:
        pass
    for call in (api.list_archive, api.verify_archive):
        try:
            call(path)
        except ImgarcError:
            pass
    try:
        novel = False
        with SalvageReader(path) as s:
            for e in s.plan.entries:
                try:
                    key = (repr(e.header), s.payload(e))
                except ImgarcError:
                    continue
                novel |= key not in extracted
                extracted.add(key)
        if novel:
            api.salvage_archive(path, out)
        return novel
    except ImgarcError:
        return False


class CaseMemory:
    """Bounds and measures the memory one call takes beyond what was in use before it.

    On Linux (cheap enough for every fuzz case):
    - the resident-set high-water mark, reset before the call through /proc/self/clear_refs,
      is the measure: it sees every allocation that is used, whoever makes it (Python, numpy,
      torch, liblzma, Pillow);
    - RLIMIT_DATA set to what is mapped now plus `headroom` is the hard bound: a larger
      allocation fails inside the call with MemoryError (or torch's RuntimeError), neither an
      ImgarcError, even one never touched (a `bytes(n)` sized from the file, which the
      resident set would not show).
    Elsewhere tracemalloc measures instead (Python and numpy allocations only; slower).

    The process-wide high-water mark alone (ru_maxrss) cannot do this: once anything earlier
    in the session raised it, a case would have to exceed that to show.
    """

    def __init__(self, headroom: int = 256 << 20) -> None:
        self.headroom = headroom
        self.linux = Path("/proc/self/clear_refs").exists() and Path("/proc/self/status").exists()

    @staticmethod
    def _status_bytes(field: str) -> int:
        return 1024 * int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))

    def measure(self, call) -> tuple[object, int]:
        """Runs `call()`; returns its result and its peak in bytes above what was in use before."""
        if not self.linux:
            tracemalloc.start()
            try:
                before, _ = tracemalloc.get_traced_memory()
                result = call()
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            return result, peak - before
        import resource

        limits = resource.getrlimit(resource.RLIMIT_DATA)
        bound = self._status_bytes("VmData") + self.headroom
        if limits[1] != resource.RLIM_INFINITY:
            bound = min(bound, limits[1])
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset the high-water mark to the current RSS
        before = self._status_bytes("VmRSS")
        resource.setrlimit(resource.RLIMIT_DATA, (bound, limits[1]))
        try:
            result = call()
        finally:
            resource.setrlimit(resource.RLIMIT_DATA, limits)
        return result, self._status_bytes("VmHWM") - before


@pytest.mark.slow
def test_fuzz_reader_list_verify_salvage(seeds, tmp_path, tiny_model, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # durability is not under test; speed is
    path = tmp_path / "case.iarc"
    stats = {"cases": 0, "extractions": 0, "slowest": 0.0, "peak": (0, ""), "modes": {}}
    extracted: set = set()
    memory = CaseMemory()
    started = time.monotonic()

    @settings(max_examples=CASES, derandomize=True, database=None, deadline=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data):
        mode, body = data.draw(cases(seeds))
        path.write_bytes(body)
        out = tmp_path / f"out{stats['cases']}"  # left in place: deleting costs more than writing
        t0 = time.monotonic()
        novel, peak = memory.measure(lambda: exercise(path, out, extracted))
        stats["extractions"] += novel
        stats["slowest"] = max(stats["slowest"], time.monotonic() - t0)
        stats["peak"] = max(stats["peak"], (peak, mode))
        stats["cases"] += 1
        stats["modes"][mode.split("/")[0]] = stats["modes"].get(mode.split("/")[0], 0) + 1

    run()
    elapsed = time.monotonic() - started
    peak_mb, peak_mode = stats["peak"][0] / 2**20, stats["peak"][1]
    print(f"fuzz: {stats['cases']} cases ({stats['extractions']} salvage extractions) in {elapsed:.1f} s, "
          f"slowest {stats['slowest']:.2f} s, largest peak {peak_mb:.1f} MB ({peak_mode}), by mode {stats['modes']}")
    assert stats["cases"] >= 2000
    assert peak_mb < 64, f"a {peak_mode} case took {peak_mb:.0f} MB: a header field caused a large allocation"
    assert stats["slowest"] < 10, "a case took seconds: a size or count from the file is not bounded"


def test_case_memory_sees_a_large_allocation():
    """The bound above can fail: 64 MiB used shows in the measure; an allocation over the
    headroom is refused, even one never touched."""
    memory = CaseMemory(headroom=256 << 20)
    _, small = memory.measure(lambda: len(bytes(1000)))
    _, used = memory.measure(lambda: len(b"x" * (64 << 20)))
    assert small < 1 << 20 and used > 60 << 20  # (memory freed earlier can take a few pages of it)
    if memory.linux:
        for size in (1 << 30, 640 << 20):
            # Memory that earlier tests left to be freed (garbage, pool threads finishing) lowers
            # the data size the bound was set from if it goes during the call: collect first, and
            # ask well over the headroom (300 MiB, 44 over it, passed unrefused once in a full run).
            gc.collect()
            with pytest.raises(MemoryError):
                memory.measure(lambda size=size: len(bytes(size)))  # calloc: its pages are never touched
        assert len(bytes(640 << 20)) == 640 << 20  # the bound is lifted after the call


def test_decompression_bomb_is_bounded(tmp_path):
    """A stored entry whose xz payload inflates to 64 MiB but whose header says 100 bytes."""
    comp = lzma.LZMACompressor(format=lzma.FORMAT_XZ, preset=0)
    zeros = bytes(1 << 20)
    bomb = b"".join(comp.compress(zeros) for _ in range(64)) + comp.flush()
    assert len(bomb) < 1 << 16
    path = tmp_path / "bomb.iarc"
    with ArchiveWriter(path) as w:
        w.add(EntryHeader(path="bomb.bin", kind=KIND_STORED, storage=STORAGE_LZMA, original_size=100, mtime_ns=0,
                          mode=0o644), bomb)
    tracemalloc.start()
    t0 = time.monotonic()
    report = api.verify_archive(path)
    summary = api.salvage_archive(path, tmp_path / "out")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [n for n, _ in report.damaged] == ["bomb.bin"] and "header says 100" in report.damaged[0][1]
    assert [n for n, _ in summary.damaged] == ["bomb.bin"] and not (tmp_path / "out" / "bomb.bin").exists()
    assert peak < 8 << 20 and time.monotonic() - t0 < 5
