"""Nothing lost when two runs race, when a run is interrupted, or when one file is unreadable.

The subprocess tests slow the child down (tests/test_interrupted.py's slow_child_env) so that
signals and races land mid-run on any machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgarc import api
from imgarc.archive import ArchiveReader, ArchiveWriter
from imgarc.archive.writer import stale_temp_files, temp_path_for
from imgarc.errors import UnreadableFileError, UsageError
from tests.conftest import image_bytes, noise_rgb
from tests.test_interrupted import slow_child_env, stored, wait_for

IMGARC = [sys.executable, "-m", "imgarc.cli"]


def default_sigint() -> None:
    """A suite started in the background inherits SIGINT ignored; the child gets the default back."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def folder_of_files(folder: Path, count: int, size: int = 3000) -> dict[str, bytes]:
    folder.mkdir(parents=True)
    files = {f"f{k:02d}.bin": os.urandom(size) for k in range(count)}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def archive_contents(archive: Path) -> dict[str, bytes]:
    with ArchiveReader(archive) as r:
        return {r.header(i).path: r.payload(i) for i in range(len(r))}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".imgarc-tmp-" in p.name or p.name.endswith(".imgarc-part"))


# ----------------------------------------------------------------------------- races


def test_a_writer_never_publishes_over_an_archive_that_appeared_meanwhile(tmp_path):
    out = tmp_path / "a.iarc"
    with pytest.raises(UsageError, match="appeared while this run was writing"):
        with ArchiveWriter(out, replace=False) as w:
            w.add(*stored("mine.txt", b"mine"))
            out.write_bytes(b"another run's archive")  # published by another run meanwhile
    assert out.read_bytes() == b"another run's archive"
    assert leftovers(tmp_path) == []
    with ArchiveWriter(out, replace=True) as w:  # --force: replacing stays atomic
        w.add(*stored("mine.txt", b"mine"))
    assert archive_contents(out) == {"mine.txt": b"mine"}


def test_two_compresses_to_one_path_exactly_one_wins(tmp_path):
    first = folder_of_files(tmp_path / "first", 12)
    second = folder_of_files(tmp_path / "second", 12)
    out = tmp_path / "same.iarc"
    env = slow_child_env(tmp_path, "fsync")  # both are still writing when the other starts
    children = [subprocess.Popen(IMGARC + ["compress", str(tmp_path / name), str(out), "--keep-originals", "--no-progress"],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for name in ("first", "second")]
    results = [(c.wait(timeout=300), c.stderr.read()) for c in children]
    codes = sorted(code for code, _ in results)
    assert codes[0] == 0 and codes[1] != 0, results
    loser_err = next(err for code, err in results if code != 0)
    lines = [line for line in loser_err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("imgarc: error:") and "Traceback" not in loser_err
    assert archive_contents(out) in (first, second)  # the complete archive of the one that won
    assert leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- interruptions


@pytest.fixture
def photo_archive(tmp_path, tiny_model_dir) -> Path:
    """Eight 640x480 photos coded with the tiny model: decoding them keeps the pool's threads busy."""
    src = tmp_path / "photos"
    src.mkdir()
    for k in range(8):
        (src / f"p{k}.png").write_bytes(image_bytes(noise_rgb(480, 640, k), "PNG"))
    out = tmp_path / "photos.iarc"
    env = dict(os.environ, IMGARC_MODEL_PATH=str(tiny_model_dir))
    subprocess.run(IMGARC + ["compress", str(src), str(out), "--no-progress"], env=env, check=True, capture_output=True)
    return out


def interrupt(args: list[str], env: dict, ready, sig: int) -> str:
    """Run imgarc with `args`, send `sig` once `ready()`; assert exit 130 and no abort; return stderr."""
    child = subprocess.Popen(IMGARC + args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=default_sigint)
    try:
        wait_for(lambda: ready() or child.poll() is not None)
        assert child.poll() is None, child.stderr.read()
        child.send_signal(sig)
        _, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 130, err  # not -SIGABRT (134): no teardown under running decode threads
    assert "Traceback" not in err and "terminate called" not in err and "interrupted" in err
    return err


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_compress_leaves_no_archive_and_no_temp_file(tmp_path, tiny_model_dir, sig):
    src = tmp_path / "src"
    folder_of_files(src, 30)
    out = tmp_path / "out.iarc"
    env = slow_child_env(tmp_path, "write", IMGARC_MODEL_PATH=str(tiny_model_dir))
    interrupt(["compress", str(src), str(out), "--no-progress"], env,
              lambda: any(".imgarc-tmp-" in p.name for p in tmp_path.iterdir()), sig)
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("salvage", [False, True])
def test_interrupted_mid_decode_exits_130(tmp_path, photo_archive, tiny_model_dir, sig, salvage):
    dest = tmp_path / "out"
    env = slow_child_env(tmp_path, "fsync", IMGARC_MODEL_PATH=str(tiny_model_dir))
    args = ["extract", str(photo_archive), str(dest), "--no-progress"] + (["--salvage"] if salvage else [])
    interrupt(args, env, lambda: dest.is_dir() and any(p.suffix == ".png" for p in dest.iterdir()), sig)
    written = [p for p in dest.iterdir() if p.is_file()]
    assert 1 <= len(written) < 8 and leftovers(dest) == []
    for p in written:  # every file under a final name is complete
        with Image.open(p) as im:
            assert im.size == (640, 480)
            im.load()


@pytest.mark.slow
def test_interrupted_verify_exits_130(tmp_path, photo_archive, tiny_model_dir):
    site = tmp_path / "site"
    site.mkdir()
    started = tmp_path / "started"
    # verify writes nothing: every CRC check sleeps and marks that the run has begun.
    (site / "sitecustomize.py").write_text(
        "import pathlib, time, zlib\n_real = zlib.crc32\n"
        "def _crc32(*a):\n"
        f"    pathlib.Path({str(started)!r}).touch()\n    time.sleep(0.2)\n    return _real(*a)\n"
        "zlib.crc32 = _crc32\n")
    env = dict(os.environ, IMGARC_MODEL_PATH=str(tiny_model_dir),
               PYTHONPATH=os.pathsep.join(filter(None, (str(site), os.environ.get("PYTHONPATH")))))
    interrupt(["verify", str(photo_archive), "--no-progress"], env, started.exists, signal.SIGINT)


@pytest.mark.slow
def test_interrupted_train_exits_130_and_keeps_no_temp_file(tmp_path, tiny_model_dir):
    data = tmp_path / "data"
    data.mkdir()
    for k in range(3):
        (data / f"t{k}.png").write_bytes(image_bytes(noise_rgb(160, 160, k), "PNG"))
    run = tmp_path / "run"
    env = dict(os.environ, IMGARC_MODEL_PATH=str(tiny_model_dir))
    # Checkpoints every 0.6 s: the signal is likely to land during one as well as between them.
    interrupt(["train", "--data", str(data), "--run-dir", str(run), "--minutes", "5", "--checkpoint-minutes", "0.01",
               "--channels", "8,8", "--crop", "64", "--batch", "2"], env,
              lambda: (run / "checkpoint.pt").exists(), signal.SIGINT)
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt"]


@pytest.mark.slow
def test_interrupted_bench_exits_130(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    for k in range(6):
        (src / f"p{k}.png").write_bytes(image_bytes(noise_rgb(256, 320, k), "PNG"))
    out = tmp_path / "out"
    interrupt(["bench", str(src), "--out", str(out), "--baselines", "jpeg", "--coders", "rans", "--qualities", "20,50,80",
               "--no-zoo", "--no-download", "--no-progress"], dict(os.environ),
              lambda: out.is_dir() and any(out.iterdir()), signal.SIGINT)
    assert not (out / "results.json").exists() and not (out / "report.md").exists()


# ----------------------------------------------------------------------------- unreadable files


def refuse_reading(monkeypatch, name: str) -> None:
    real = Path.read_bytes

    def read_bytes(self):
        if self.name == name:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)


def test_an_unreadable_file_is_left_out_and_named(tmp_path, monkeypatch):
    src = tmp_path / "src"
    files = folder_of_files(src, 5)
    refuse_reading(monkeypatch, "f02.bin")
    out = tmp_path / "a.iarc"
    summary = api.compress_folder(src, out, keep_originals=True)
    assert [(left.path, left.reason) for left in summary.left_out] == [("f02.bin", "cannot be read (Permission denied)")]
    monkeypatch.undo()
    restored = tmp_path / "restored"
    api.extract_archive(out, restored)
    assert {p.name: p.read_bytes() for p in restored.iterdir()} == {k: v for k, v in files.items() if k != "f02.bin"}


def test_strict_makes_an_unreadable_file_a_hard_error(tmp_path, monkeypatch):
    src = tmp_path / "src"
    folder_of_files(src, 3)
    refuse_reading(monkeypatch, "f01.bin")
    out = tmp_path / "a.iarc"
    with pytest.raises(UnreadableFileError, match="f01.bin.*nothing was written"):
        api.Compressor(api.CompressOptions(keep_originals=True)).compress_folder(src, out, strict=True)
    assert not out.exists() and leftovers(tmp_path) == []


def test_cli_unreadable_file_warns_archives_the_rest_and_exits_1(tmp_path):
    src = tmp_path / "src"
    files = folder_of_files(src, 4)
    site = tmp_path / "site"
    site.mkdir()
    # The suite runs as root, for whom permission bits do not stop a read: refuse it in the child.
    (site / "sitecustomize.py").write_text(
        "import pathlib\n_real = pathlib.Path.read_bytes\n"
        "def _read(self):\n"
        "    if self.name == 'f03.bin':\n        raise PermissionError(13, 'Permission denied', str(self))\n"
        "    return _real(self)\n"
        "pathlib.Path.read_bytes = _read\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, (str(site), os.environ.get("PYTHONPATH")))))
    out = tmp_path / "a.iarc"
    r = subprocess.run(IMGARC + ["compress", str(src), str(out), "--keep-originals", "--no-progress"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "warning: f03.bin: cannot be read (Permission denied); not archived" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("imgarc: error: 1 file(s) or folder(s) could not be read")
    assert set(archive_contents(out)) == set(files) - {"f03.bin"}


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permission bits")
def test_unreadable_file_by_permission_bits(tmp_path):
    src = tmp_path / "src"
    folder_of_files(src, 3)
    (src / "f00.bin").chmod(0)
    summary = api.compress_folder(src, tmp_path / "a.iarc", keep_originals=True)
    assert [left.path for left in summary.left_out] == ["f00.bin"]


# ----------------------------------------------------------------------------- stale temp files


def test_stale_temp_files_are_named_and_removed_with_force(tmp_path):
    src = tmp_path / "src"
    folder_of_files(src, 2)
    out = tmp_path / "a.iarc"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    stale = temp_path_for(out, dead.pid)
    stale.write_bytes(b"half an archive")
    assert stale_temp_files(out) == [stale]
    summary = api.compress_folder(src, out, keep_originals=True)
    assert any(str(stale) in w and "--force" in w for w in summary.warnings) and stale.exists()
    summary = api.compress_folder(src, out, keep_originals=True, force=True)
    assert any(f"removed {stale}" in w for w in summary.warnings) and not stale.exists()
    assert stale_temp_files(out) == []


def test_a_running_writers_temp_file_is_not_stale(tmp_path):
    out = tmp_path / "a.iarc"
    with ArchiveWriter(out) as w:
        w.add(*stored("x", b"x"))
        assert stale_temp_files(out) == []  # ours
    live = temp_path_for(out, os.getppid())  # a process that runs
    live.write_bytes(b"")
    assert stale_temp_files(out) == []


# ----------------------------------------------------------------------------- the smaller ones


def test_list_exits_1_on_a_damaged_entry(tmp_path):
    archive = tmp_path / "a.iarc"
    with ArchiveWriter(archive) as w:
        w.add(*stored("a.txt", b"a" * 100))
        w.add(*stored("b.txt", b"b" * 100))
    data = bytearray(archive.read_bytes())
    at = data.index(b"b.txt")
    data[at] ^= 0xFF  # inside b.txt's header: its CRC fails
    archive.write_bytes(bytes(data))
    r = subprocess.run(IMGARC + ["list", str(archive)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "1 damaged" in r.stdout
    assert r.stderr.strip().startswith("imgarc: error: 1 of 2 entries") and "--salvage" in r.stderr


def test_links_to_folders_are_skipped_with_a_warning(tmp_path):
    src = tmp_path / "src"
    folder_of_files(src / "real", 1)
    (src / "link").symlink_to(src / "real", target_is_directory=True)
    summary = api.compress_folder(src, tmp_path / "a.iarc", keep_originals=True)
    assert "link: symbolic link to a folder, not archived" in summary.warnings
    assert [e.path for e in summary.entries] == ["real/f00.bin"]


def test_a_tiny_photo_is_stored_when_its_coded_entry_would_be_larger(tmp_path, tiny_model):
    src = tmp_path / "src"
    src.mkdir()
    (src / "dot.png").write_bytes(image_bytes(np.full((1, 1, 3), 200, np.uint8), "PNG"))
    summary = api.compress_folder(src, tmp_path / "a.iarc", model_id=tiny_model)
    assert summary.entries[0].kind == api.EntryKind.STORED and "smaller" in summary.entries[0].note


def test_an_unwritable_destination_is_one_line(tmp_path):
    archive = tmp_path / "a.iarc"
    with ArchiveWriter(archive) as w:
        w.add(*stored("a.txt", b"a"))
    blocked = tmp_path / "file"
    blocked.write_bytes(b"")
    # A folder that cannot be created (its parent is a file); /proc stands for a read-only file system.
    for dest in (blocked / "out", Path("/proc/imgarc-test-out")):
        r = subprocess.run(IMGARC + ["extract", str(archive), str(dest), "--no-progress"], capture_output=True, text=True,
                           timeout=120)
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert r.returncode in (1, 2) and len(lines) == 1 and lines[0].startswith("imgarc: error:"), r.stderr
        assert "internal error" not in r.stderr
