"""Salvage: every entry whose CRCs check out comes back from a damaged or truncated archive."""

from __future__ import annotations

import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from imgarc import api
from imgarc.archive import ArchiveReader, ArchiveWriter, EntryHeader
from imgarc.archive.layout import (
    KIND_STORED,
    STORAGE_RAW,
    pack_entry,
    pack_file_header,
    pack_footer,
    pack_index,
)
from imgarc.archive.salvage import SalvageReader
from imgarc.errors import ArchiveError, DamagedArchiveError


def stored(path: str, data: bytes) -> tuple[EntryHeader, bytes]:
    return EntryHeader(path=path, kind=KIND_STORED, storage=STORAGE_RAW, original_size=len(data),
                       mtime_ns=1_600_000_000_000_000_000, mode=0o644), data


FILES = {f"f{k}.bin": bytes((k * 37 + i) % 251 for i in range(300 + 50 * k)) for k in range(6)}


def write_archive(path: Path, files: dict[str, bytes] = FILES) -> Path:
    with ArchiveWriter(path) as w:
        for name, data in files.items():
            w.add(*stored(name, data))
    return path


def spans(path: Path) -> dict[str, tuple[int, int]]:
    """Each entry's byte range [start, end) in an intact archive."""
    with ArchiveReader(path) as r:
        out = {}
        for i, loc in enumerate(r.locations):
            end = r.locations[i + 1].offset if i + 1 < len(r) else r.index_offset
            out[r.header(i).path] = (loc.offset, end)
        return out


@pytest.fixture
def good(tmp_path) -> Path:
    return write_archive(tmp_path / "good.iarc")


def damaged_copy(tmp_path: Path, data: bytes, name: str = "bad.iarc") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def plan_of(path: Path):
    with SalvageReader(path) as r:
        payloads = {e.header.path: r.payload(e) for e in r.plan.entries}
        return r.plan, payloads


def test_intact_archive_uses_its_index(good):
    plan, payloads = plan_of(good)
    assert not plan.index_rebuilt and not plan.damaged and not plan.warnings
    assert payloads == FILES


def test_damaged_footer_rebuilds_the_index_and_loses_nothing(tmp_path, good):
    b = bytearray(good.read_bytes())
    b[-10] ^= 0x01  # inside the footer's CRC
    plan, payloads = plan_of(damaged_copy(tmp_path, bytes(b)))
    assert plan.index_rebuilt and payloads == FILES
    assert plan.damaged == []  # the index itself is intact: no entry can be missing
    assert "found by scanning" in plan.warnings[0]


def test_cut_footer_loses_nothing(tmp_path, good):
    plan, payloads = plan_of(damaged_copy(tmp_path, good.read_bytes()[:-7]))
    assert plan.index_rebuilt and payloads == FILES and plan.damaged == []


def test_damaged_file_header_and_index(tmp_path, good):
    b = bytearray(good.read_bytes())
    b[3] ^= 0xFF  # magic
    with ArchiveReader(good) as r:
        b[r.index_offset + 5] ^= 0xFF  # entry count: the index CRC fails
    plan, payloads = plan_of(damaged_copy(tmp_path, bytes(b)))
    assert plan.index_rebuilt and payloads == FILES
    assert [d.name for d in plan.damaged] == ["end of archive"]  # no intact index: cannot rule out lost entries


@pytest.mark.parametrize("cut_at, lost", [(0, []), (40, []), (120, ["f3.bin"])])
def test_truncated_archive_gives_back_every_whole_entry(tmp_path, good, cut_at, lost):
    """Cut at f3's start, inside its header, inside its payload."""
    cut = spans(good)["f3.bin"][0] + cut_at
    plan, payloads = plan_of(damaged_copy(tmp_path, good.read_bytes()[:cut]))
    assert payloads == {k: FILES[k] for k in ("f0.bin", "f1.bin", "f2.bin")}
    assert [d.name for d in plan.damaged] == lost + ["end of archive"]


def test_damaged_payload_without_index_names_the_entry(tmp_path, good):
    s = spans(good)
    b = bytearray(good.read_bytes()[: spans(good)["f5.bin"][1]])  # index and footer lost
    b[s["f2.bin"][1] - 1] ^= 0x10  # last payload byte of f2
    plan, payloads = plan_of(damaged_copy(tmp_path, bytes(b)))
    assert set(payloads) == set(FILES) - {"f2.bin"}
    assert all(payloads[k] == FILES[k] for k in payloads)
    assert ("f2.bin", "payload checksum mismatch") in [(d.name, d.detail) for d in plan.damaged]


def test_destroyed_header_is_a_reported_gap(tmp_path, good):
    s = spans(good)
    b = bytearray(good.read_bytes())
    b[s["f1.bin"][0] + 14] ^= 0xFF  # inside f1's header bytes
    b[-1] ^= 0xFF  # and the footer: the index cannot be used either
    plan, payloads = plan_of(damaged_copy(tmp_path, bytes(b)))
    assert set(payloads) == set(FILES) - {"f1.bin"}
    assert [d.name for d in plan.damaged] == [f"bytes {s['f1.bin'][0]}-{s['f1.bin'][1]}"]


def test_index_mode_reports_a_damaged_header_by_position(tmp_path, good):
    s = spans(good)
    b = bytearray(good.read_bytes())
    b[s["f4.bin"][0] + 20] ^= 0x01
    plan, payloads = plan_of(damaged_copy(tmp_path, bytes(b)))
    assert not plan.index_rebuilt and set(payloads) == set(FILES) - {"f4.bin"}
    assert [d.name for d in plan.damaged] == [f"#5 at byte {s['f4.bin'][0]}"]


@pytest.mark.parametrize("change", ["delete", "insert"])
def test_shifted_entries_are_found(tmp_path, good, change):
    s = spans(good)
    data = good.read_bytes()
    at = s["f2.bin"][1] - 30  # inside f2's payload
    b = data[:at] + data[at + 7:] if change == "delete" else data[:at] + b"\x00" * 7 + data[at:]
    plan, payloads = plan_of(damaged_copy(tmp_path, b))
    assert plan.index_rebuilt
    assert set(payloads) == set(FILES) - {"f2.bin"} and all(payloads[k] == FILES[k] for k in payloads)
    assert "f2.bin" in [d.name for d in plan.damaged]


def test_archive_stored_inside_an_archive_is_not_mistaken_for_entries(tmp_path, good):
    inner = good.read_bytes()
    outer = write_archive(tmp_path / "outer.iarc", {"a.txt": b"A" * 100, "inner.iarc": inner, "z.txt": b"Z" * 50})
    s = spans(outer)
    data = outer.read_bytes()[: s["z.txt"][1]]  # index lost: a scan must skip inside inner.iarc's payload
    plan, payloads = plan_of(damaged_copy(tmp_path, data, "o1.iarc"))
    assert set(payloads) == {"a.txt", "inner.iarc", "z.txt"} and payloads["inner.iarc"] == inner

    b = bytearray(data)
    b[s["inner.iarc"][1] - 5] ^= 0x01  # outer entry damaged (inside the inner archive's footer)
    plan, payloads = plan_of(damaged_copy(tmp_path, bytes(b), "o2.iarc"))
    assert set(payloads) == {"a.txt", "z.txt"}
    nested = [d for d in plan.damaged if "inside the damaged data of 'inner.iarc'" in d.detail]
    assert sorted(d.name for d in nested) == sorted(FILES)  # reported, never extracted as outer entries


def test_not_an_archive(tmp_path):
    junk = damaged_copy(tmp_path, os.urandom(5000), "junk.bin")
    with pytest.raises(ArchiveError, match="not an imgarc archive"):
        SalvageReader(junk)


# ----------------------------------------------------------------------------- through the API / CLI


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def photo_archive(tmp_path, photo_folder, tiny_model) -> tuple[Path, dict[str, bytes]]:
    """An archive of photos and files, and what a clean extraction gives."""
    out = tmp_path / "photos.iarc"
    api.compress_folder(photo_folder, out, model_id=tiny_model)
    api.extract_archive(out, tmp_path / "clean")
    return out, files_under(tmp_path / "clean")


def test_plain_extract_of_a_truncated_archive_points_to_salvage(tmp_path, photo_archive):
    archive, _ = photo_archive
    cut = damaged_copy(tmp_path, archive.read_bytes()[:-100])
    with pytest.raises(DamagedArchiveError, match="--salvage"):
        api.extract_archive(cut, tmp_path / "o")
    for call in (api.list_archive, api.verify_archive):
        with pytest.raises(DamagedArchiveError, match="--salvage"):
            call(cut)


def test_damaged_magic_points_to_salvage(tmp_path, good):
    b = bytearray(good.read_bytes())
    b[1] ^= 0x20  # "IARC" -> "iARC"
    bad = damaged_copy(tmp_path, bytes(b))
    with pytest.raises(DamagedArchiveError, match="marker is altered.*--salvage"):
        api.list_archive(bad)
    plan, payloads = plan_of(bad)
    assert payloads == FILES and plan.damaged == [] and "marker is altered" in plan.warnings[0]


def test_salvage_extracts_intact_photos_identically(tmp_path, photo_archive):
    archive, clean = photo_archive
    s = spans(archive)
    last = max(s, key=lambda k: s[k][0])
    cut_at = s[last][0] + 30  # inside the last entry's header
    summary = api.salvage_archive(damaged_copy(tmp_path, archive.read_bytes()[:cut_at]), tmp_path / "out")
    got = files_under(tmp_path / "out")
    assert set(got) == set(clean) - {last}
    assert all(got[k] == clean[k] for k in got)  # decoded photos byte-identical to a clean extraction
    assert summary.index_rebuilt and [n for n, _ in summary.damaged][-1] == "end of archive"
    assert [e.path for e in summary.entries] == [k for k in sorted(s, key=lambda k: s[k][0]) if k != last]


def test_salvage_never_overwrites_with_a_duplicate(tmp_path):
    # Assembled by hand: ArchiveWriter refuses a second entry of the same name, a hostile tool need not.
    out, offsets = bytearray(pack_file_header()), []
    for data in (b"first", b"second"):
        header, payload = stored("a.txt", data)
        header.payload_size, header.payload_crc32 = len(payload), zlib.crc32(payload)
        offsets.append(len(out))
        out += pack_entry(header.to_bytes()) + payload
    index = pack_index(offsets)
    path = tmp_path / "dup.iarc"
    path.write_bytes(bytes(out + index + pack_footer(len(out), len(index))))
    with ArchiveReader(path) as r:  # a well-formed archive, duplicate aside
        assert [(r.header(i).path, r.payload(i)) for i in range(len(r))] == [("a.txt", b"first"), ("a.txt", b"second")]
    summary = api.salvage_archive(path, tmp_path / "out")
    assert (tmp_path / "out" / "a.txt").read_bytes() == b"first"
    assert [n for n, _ in summary.damaged] == ["a.txt"] and "second entry" in summary.damaged[0][1]


def run_cli(args, env):
    return subprocess.run([sys.executable, "-m", "imgarc.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.mark.slow
def test_cli_salvage(tmp_path, photo_archive, tiny_model_dir):
    archive, clean = photo_archive
    env = dict(os.environ, IMGARC_MODEL_PATH=str(tiny_model_dir))
    s = spans(archive)
    b = bytearray(archive.read_bytes())
    b[s["notes.txt"][1] - 3] ^= 0x04  # damage one entry
    b[-3] ^= 0x04  # and the footer
    bad = damaged_copy(tmp_path, bytes(b))

    r = run_cli(["extract", str(bad), str(tmp_path / "plain"), "--no-progress"], env)
    assert r.returncode == 1 and "Traceback" not in r.stderr and "--salvage" in r.stderr

    r = run_cli(["extract", "--salvage", str(bad), str(tmp_path / "out"), "--no-progress"], env)
    assert r.returncode == 1 and "Traceback" not in r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith("warning:") and "found by scanning" in lines[0]
    damaged = [line for line in lines if line.startswith("damaged:")]
    assert damaged == ["damaged: notes.txt: payload checksum mismatch"]
    assert lines[-1].startswith("imgarc: error:") and len(lines) == 3
    assert f"{len(clean) - 1} files salvaged" in r.stdout
    got = files_under(tmp_path / "out")
    assert set(got) == set(clean) - {"notes.txt"} and all(got[k] == clean[k] for k in got)

    r = run_cli(["extract", "--salvage", str(archive), str(tmp_path / "all"), "--no-progress"], env)
    assert r.returncode == 0 and r.stderr == "" and files_under(tmp_path / "all") == clean
