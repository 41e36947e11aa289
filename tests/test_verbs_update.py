"""`compress --update` and several sources: only new and changed files are coded, every other entry
is copied byte for byte, and the archive is replaced atomically."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from imgarc import api
from imgarc.archive import ArchiveReader, ArchiveWriter
from imgarc.errors import ArchiveError, UsageError
from tests.conftest import image_bytes, noise_rgb
from tests.test_interrupted import slow_child_env, stored, wait_for
from tests.test_verbs import cli, one_error_line

T0 = 1_600_000_000_000_000_000  # a fixed mtime, so "unchanged" never depends on the clock


def write(path: Path, data: bytes, mtime_ns: int = T0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def photo(seed: int) -> bytes:
    return image_bytes(noise_rgb(24, 32, seed), "PNG")


def raw_entries(archive: Path) -> dict[str, bytes]:
    """Each entry's bytes as they lie in the archive (marker, header, CRC, payload), by path."""
    with ArchiveReader(archive) as r:
        return {r.header(i).path: r.entry_bytes(i) for i in range(len(r))}


@pytest.fixture
def coded_calls(monkeypatch) -> list[str]:
    """The names Compressor.entry_of codes (every file that is coded, photo or not, goes through it)."""
    calls: list[str] = []
    real = api.Compressor.entry_of

    def entry_of(self, source):
        calls.append(source.name)
        return real(self, source)

    monkeypatch.setattr(api.Compressor, "entry_of", entry_of)
    return calls


def update(src: Path | list[Path], archive: Path, model: str | None = None, **how) -> api.UpdateSummary:
    options = api.CompressOptions(model_id=model, keep_originals=model is None)
    sources = src if isinstance(src, list) else [src]
    return api.compress_sources(api.Compressor(options), sources, archive, api.SourceOptions(update=True, **how))


def test_update_codes_exactly_the_new_and_changed_files(tmp_path, tiny_model, coded_calls):
    src = tmp_path / "src"
    for k in range(15):
        write(src / f"p{k:02d}.png", photo(k))
    for k in range(8):
        write(src / "docs" / f"f{k}.txt", f"file {k}\n".encode() * 40)
    archive = tmp_path / "a.iarc"
    api.compress_folder(src, archive, model_id=tiny_model)
    before = raw_entries(archive)
    assert len(before) == 23 and len(coded_calls) == 23

    write(src / "new" / "q.png", photo(100))
    write(src / "docs" / "new.txt", b"new\n" * 30)
    write(src / "p03.png", photo(103), T0 + 10**9)  # changed: other pixels, newer mtime
    coded_calls.clear()
    summary = update(src, archive, tiny_model)

    assert sorted(coded_calls) == ["docs/new.txt", "new/q.png", "p03.png"]
    assert (summary.count(api.Change.ADDED), summary.count(api.Change.CHANGED), summary.count(api.Change.UNCHANGED)) \
        == (2, 1, 22)
    after = raw_entries(archive)
    assert len(after) == 25
    unchanged = [name for name in before if name != "p03.png"]
    assert all(after[name] == before[name] for name in unchanged)  # byte-identical, header and payload
    assert after["p03.png"] != before["p03.png"]
    assert list(after)[:23] == list(before)  # the old order, new files after it
    assert api.verify_archive(archive).ok
    api.extract_archive(archive, tmp_path / "out")
    assert (tmp_path / "out" / "docs" / "new.txt").read_bytes() == b"new\n" * 30
    assert (tmp_path / "out" / "new" / "q.png").stat().st_mtime_ns == T0


def test_nothing_changed_leaves_the_archive_as_it_was(tmp_path, coded_calls):
    src = tmp_path / "src"
    write(src / "a.txt", b"a" * 100)
    archive = tmp_path / "a.iarc"
    update(src, archive)  # created when missing
    stat = archive.stat()
    coded_calls.clear()
    summary = update(src, archive)
    assert not summary.written and summary.changes == {"a.txt": api.Change.UNCHANGED} and coded_calls == []
    assert (archive.stat().st_ino, archive.stat().st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)


def test_permissions_alone_rewrite_the_header_not_the_payload(tmp_path, tiny_model, coded_calls):
    src = tmp_path / "src"
    write(src / "p.png", photo(1))
    archive = tmp_path / "a.iarc"
    api.compress_folder(src, archive, model_id=tiny_model)
    with ArchiveReader(archive) as r:
        payload = r.payload(0)
    (src / "p.png").chmod(0o600)
    coded_calls.clear()
    summary = update(src, archive, tiny_model)
    assert summary.changes == {"p.png": api.Change.TOUCHED} and coded_calls == []
    with ArchiveReader(archive) as r:
        assert r.header(0).mode == 0o600 and r.header(0).mtime_ns == T0 and r.payload(0) == payload
    api.extract_archive(archive, tmp_path / "out")
    assert (tmp_path / "out" / "p.png").stat().st_mode & 0o777 == 0o600


def test_checksum_compares_contents_and_records_sha256(tmp_path, tiny_model, coded_calls):
    src = tmp_path / "src"
    write(src / "p.png", photo(1))
    write(src / "t.txt", b"0123456789" * 20)
    archive = tmp_path / "a.iarc"
    api.compress_folder(src, archive, model_id=tiny_model)

    # A coded photo archived without a sha256 cannot show it is unchanged: coded once more, and
    # from then on it carries one; the stored file is compared with its own bytes.
    summary = update(src, archive, tiny_model, checksum=True)
    assert summary.changes == {"p.png": api.Change.CHANGED, "t.txt": api.Change.UNCHANGED}
    assert api.show_entry(archive, "p.png").header.original_sha256 is not None
    assert not update(src, archive, tiny_model, checksum=True).written

    write(src / "t.txt", b"9876543210" * 20)  # same size, same mtime: only contents tell
    assert not update(src, archive, tiny_model).written
    coded_calls.clear()
    summary = update(src, archive, tiny_model, checksum=True)
    assert summary.changes["t.txt"] is api.Change.CHANGED and coded_calls == ["t.txt"]

    os.utime(src / "p.png", ns=(T0 + 5, T0 + 5))  # a new mtime, same contents: kept, header refreshed
    coded_calls.clear()
    assert update(src, archive, tiny_model, checksum=True).changes["p.png"] is api.Change.TOUCHED and coded_calls == []
    assert update(src, archive, tiny_model).changes == {"p.png": api.Change.UNCHANGED, "t.txt": api.Change.UNCHANGED}


def test_several_sources_keep_their_paths_apart(tmp_path):
    a, b = tmp_path / "A", tmp_path / "B"
    write(a / "x.txt", b"from A")
    write(a / "sub" / "y.txt", b"y")
    write(b / "x.txt", b"from B")
    archive = tmp_path / "ab.iarc"
    api.compress_sources(api.Compressor(api.CompressOptions(keep_originals=True)), [a, b], archive, api.SourceOptions())
    assert list(raw_entries(archive)) == ["A/x.txt", "A/sub/y.txt", "B/x.txt"]

    # --delete-missing drops only entries of the sources given; B's stay.
    (a / "sub" / "y.txt").unlink()
    write(tmp_path / "C" / "z.txt", b"z")
    summary = update([a, tmp_path / "C"], archive, delete_missing=True)
    assert summary.changes == {"A/x.txt": api.Change.UNCHANGED, "A/sub/y.txt": api.Change.DELETED,
                               "B/x.txt": api.Change.KEPT, "C/z.txt": api.Change.ADDED}
    assert list(raw_entries(archive)) == ["A/x.txt", "B/x.txt", "C/z.txt"]

    (tmp_path / "other" / "A").mkdir(parents=True)
    with pytest.raises(UsageError, match="two sources are named 'A'"):
        update([a, tmp_path / "other" / "A"], archive)


def test_a_changed_file_that_cannot_be_read_keeps_its_entry(tmp_path, monkeypatch):
    src = tmp_path / "src"
    write(src / "a.txt", b"a" * 50)
    write(src / "b.txt", b"b" * 50)
    archive = tmp_path / "a.iarc"
    update(src, archive)
    before = raw_entries(archive)
    write(src / "a.txt", b"A" * 60, T0 + 1)
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda p: (_ for _ in ()).throw(PermissionError(13, "Permission denied"))
                        if p.name == "a.txt" else real(p))
    write(src / "c.txt", b"c")
    summary = update(src, archive)
    assert summary.changes == {"a.txt": api.Change.KEPT, "b.txt": api.Change.UNCHANGED, "c.txt": api.Change.ADDED}
    assert [left.path for left in summary.summary.left_out] == ["a.txt"]
    assert "keeps its earlier version" in summary.summary.left_out[0].reason
    assert raw_entries(archive)["a.txt"] == before["a.txt"]
    with pytest.raises(api.ImgarcError, match="nothing was written"):
        update(src, archive, strict=True)


def test_update_refuses_a_damaged_archive_and_writes_nothing(tmp_path):
    src = tmp_path / "src"
    write(src / "a.txt", b"a" * 50)
    write(src / "b.txt", b"b" * 50)
    archive = tmp_path / "a.iarc"
    update(src, archive)
    data = bytearray(archive.read_bytes())
    data[-60] ^= 0xFF  # in the last entry's payload
    archive.write_bytes(bytes(data))
    write(src / "c.txt", b"c")
    with pytest.raises(ArchiveError, match="cannot update .*payload checksum mismatch.*nothing was written"):
        update(src, archive)
    assert archive.read_bytes() == bytes(data)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_source_options_that_do_not_go_together():
    with pytest.raises(UsageError, match="--delete-missing goes with --update"):
        api.SourceOptions(delete_missing=True)
    with pytest.raises(UsageError, match="give one of them"):
        api.SourceOptions(update=True, force=True)


def test_writer_refuses_bytes_that_are_not_the_entry(tmp_path):
    header, data = stored("a.txt", b"abc")
    with ArchiveWriter(tmp_path / "x.iarc") as w:
        w.add(header, data)
    with ArchiveReader(tmp_path / "x.iarc") as r:
        raw, header = r.entry_bytes(0), r.header(0)
    with ArchiveWriter(tmp_path / "y.iarc") as w:
        with pytest.raises(UsageError, match="not one whole entry"):
            w.add_entry_bytes(header, raw[:-1])
        w.add_entry_bytes(header, raw)
    assert raw_entries(tmp_path / "y.iarc") == {"a.txt": raw}


def test_update_through_the_cli(tmp_path, monkeypatch, capsysbinary):
    a, b = tmp_path / "A", tmp_path / "B"
    write(a / "x.txt", b"x" * 10)
    write(b / "y.txt", b"y" * 10)
    archive = tmp_path / "ab.iarc"
    code, out, err = cli(monkeypatch, capsysbinary, "compress", str(a), str(b), str(archive), "--keep-originals",
                         "--no-progress")
    assert code == 0 and "2 files" in out, err
    code, _, err = cli(monkeypatch, capsysbinary, "compress", str(a), str(b), str(archive), "--keep-originals",
                       "--no-progress")
    assert code == 2 and "--update to add to it" in one_error_line(err)
    write(a / "new.txt", b"n")
    code, out, err = cli(monkeypatch, capsysbinary, "compress", str(a), str(b), str(archive), "-u", "--keep-originals",
                         "--no-progress")
    assert code == 0 and "1 added, 0 changed, 2 unchanged; 3 entries" in out, err
    code, out, _ = cli(monkeypatch, capsysbinary, "compress", str(a), str(b), str(archive), "--update", "--no-progress")
    assert code == 0 and "up to date, left as it was" in out
    for args, words in ((["--delete-missing"], "goes with --update"), (["--update", "--force"], "give one of them"),
                        ([], "")):
        code, _, err = cli(monkeypatch, capsysbinary, "compress", *([str(a), str(archive)] if args else [str(a)]),
                           *args, "--no-progress")
        assert code == 2 and words in one_error_line(err)


def test_kill_9_during_update_leaves_the_old_archive(tmp_path):
    src = tmp_path / "src"
    for k in range(30):
        write(src / f"f{k:02d}.bin", os.urandom(2000))
    archive = tmp_path / "a.iarc"
    update(src, archive)
    old = archive.read_bytes()
    write(src / "new.bin", b"new")
    command = [sys.executable, "-m", "imgarc.cli", "compress", str(src), str(archive), "--update", "--keep-originals",
               "--no-progress"]
    with subprocess.Popen(command, env=slow_child_env(tmp_path, "write"), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL) as child:
        temp = tmp_path / f".a.iarc.imgarc-tmp-{child.pid}"
        try:  # killed once a few entries of the new archive are written (slowly: 0.2 s per write)
            wait_for(lambda: (temp.exists() and temp.stat().st_size > 6000) or child.poll() is not None)
        finally:
            child.kill()  # SIGKILL: nothing in the child can clean up
    assert child.returncode == -signal.SIGKILL  # not finished before the kill
    assert temp.exists()
    assert archive.read_bytes() == old  # the old archive, whole and readable
    assert len(api.list_archive(archive)) == 30
    # The next update is not disturbed by the leftover temp file, and says so.
    summary = update(src, archive)
    assert summary.count(api.Change.ADDED) == 1 and any("killed" in w for w in summary.summary.warnings)
