"""Interrupted and obstructed runs: nothing half-written ever sits under a final name.

The subprocess tests slow the child down with a sitecustomize.py (a sleep in os.write or
os.fsync) so that the signal lands mid-run on any machine, without large inputs.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imgarc import api
from imgarc.archive import ArchiveWriter, EntryHeader
from imgarc.archive.layout import KIND_STORED, STORAGE_RAW
from imgarc.errors import ArchiveError, UsageError
from imgarc.fileio import remove_live_temp_files, write_file_atomic


def stored(path: str, data: bytes) -> tuple[EntryHeader, bytes]:
    return EntryHeader(path=path, kind=KIND_STORED, storage=STORAGE_RAW, original_size=len(data),
                       mtime_ns=1_600_000_000_000_000_000, mode=0o644), data


def slow_child_env(tmp_path: Path, patch: str, **extra: str) -> dict[str, str]:
    """Environment for a child Python whose `patch` (e.g. 'write') in os sleeps 200 ms per call.

    Slow enough that even a loaded machine cannot finish the run before the test's signal
    (at 50 ms a CI run once did, and exited 0).
    """
    site = tmp_path / "slow-site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(
        "import os, time\n"
        f"_real = os.{patch}\n"
        f"def _slow(*a, **k):\n    time.sleep(0.2)\n    return _real(*a, **k)\n"
        f"os.{patch} = _slow\n")
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=path, **extra)


def wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the child never got that far")
        time.sleep(0.01)


@pytest.mark.slow
def test_kill_9_during_compress_leaves_nothing_at_the_output_path(tmp_path, tiny_model_dir, tiny_model):
    src = tmp_path / "src"
    src.mkdir()
    for k in range(40):
        (src / f"file{k:02d}.bin").write_bytes(os.urandom(2000))
    out = tmp_path / "out.iarc"
    env = slow_child_env(tmp_path, "write", IMGARC_MODEL_PATH=str(tiny_model_dir))
    child = subprocess.Popen([sys.executable, "-m", "imgarc.cli", "compress", str(src), str(out), "--no-progress"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    temp = tmp_path / f".out.iarc.imgarc-tmp-{child.pid}"
    try:
        wait_for(lambda: (temp.exists() and temp.stat().st_size > 2000) or child.poll() is not None)
        assert child.poll() is None, child.stderr.read()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert not out.exists()
    assert temp.exists()  # only a hidden temp file (no process survived to remove it)
    # A later run is not disturbed by the leftover and writes the archive.
    api.compress_folder(src, out, model_id=tiny_model)
    assert len(api.list_archive(out)) == 40


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_extract_leaves_no_partial_file(tmp_path, sig):
    files = {f"d{k % 3}/f{k:03d}.bin": os.urandom(5000 + k) for k in range(120)}
    archive = tmp_path / "a.iarc"
    with ArchiveWriter(archive) as w:
        for name, data in files.items():
            w.add(*stored(name, data))
    dest = tmp_path / "out"
    # A suite started in the background (`cmd &`) inherits SIGINT ignored, and Python keeps it
    # ignored; the child gets the default back so Ctrl-C is what this test sends.
    child = subprocess.Popen([sys.executable, "-m", "imgarc.cli", "extract", str(archive), str(dest), "--no-progress"],
                             env=slow_child_env(tmp_path, "fsync"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_for(lambda: len(list(dest.rglob("*.bin"))) >= 5 or child.poll() is not None)
        assert child.poll() is None, child.stderr.read()
        child.send_signal(sig)
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    written = [p for p in dest.rglob("*") if p.is_file()]
    assert 5 <= len(written) < len(files)
    for p in written:  # every file under a final name is complete; no temp file is left
        assert p.read_bytes() == files[p.relative_to(dest).as_posix()], p.name


# ----------------------------------------------------------------------------- temp names


def test_writer_never_follows_a_link_at_its_temp_name(tmp_path, monkeypatch):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    out = tmp_path / "out.iarc"
    temp = tmp_path / f".out.iarc.imgarc-tmp-{os.getpid()}"
    temp.symlink_to(victim)  # planted before the run: removed (the link, not its target)
    with ArchiveWriter(out) as w:
        w.add(*stored("a", b"abc"))
    assert victim.read_bytes() == b"precious" and not temp.is_symlink() and out.exists()

    # Planted between the writer's unlink and its open: the open must fail, not follow it.
    real_unlink = Path.unlink

    def unlink_then_plant(self, missing_ok=False):
        real_unlink(self, missing_ok=missing_ok)
        if self == temp:
            temp.symlink_to(victim)

    monkeypatch.setattr(Path, "unlink", unlink_then_plant)
    with pytest.raises(UsageError, match="cannot write"):
        ArchiveWriter(tmp_path / "out.iarc")
    monkeypatch.undo()
    assert victim.read_bytes() == b"precious"
    assert temp.is_symlink()  # never written through


def test_an_interrupt_right_after_a_temp_file_is_created_leaves_nothing_behind(tmp_path, monkeypatch):
    """Ctrl-C/SIGTERM raise wherever the main thread is: also between the open() that creates a
    temp file and the line that would remember its name. The interrupt path still removes it."""
    target = tmp_path / "photo.png"
    real_open = os.open

    def open_then_interrupted(*args, **kwargs):
        real_open(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "open", open_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_file_atomic(target, b"data")
    monkeypatch.undo()
    remove_live_temp_files()  # what `imgarc`'s interrupt exit does
    assert list(tmp_path.iterdir()) == []
    write_file_atomic(target, b"data")
    remove_live_temp_files()  # a published file is not a temp file
    assert list(tmp_path.iterdir()) == [target] and target.read_bytes() == b"data"


def test_write_file_atomic_interrupted_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "photo.png"
    target.write_bytes(b"old")

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_file_atomic(target, b"new data", mode=0o644)
    monkeypatch.undo()
    assert target.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [target]
    write_file_atomic(target, b"new data", mode=0o640)
    assert target.read_bytes() == b"new data" and (target.stat().st_mode & 0o777) == 0o640
    assert sorted(tmp_path.iterdir()) == [target]


# ----------------------------------------------------------------------------- obstructed destinations


@pytest.fixture
def mixed_archive(tmp_path) -> Path:
    archive = tmp_path / "m.iarc"
    with ArchiveWriter(archive) as w:
        for name in ("a.txt", "clash.txt", "folder/inner.txt", "z.txt"):
            w.add(*stored(name, name.encode()))
    return archive


def test_name_clashes_are_per_entry_errors(tmp_path, mixed_archive):
    dest = tmp_path / "dest"
    (dest / "clash.txt").mkdir(parents=True)  # a folder where a file goes
    (dest / "folder").write_bytes(b"a file where a folder goes")
    with pytest.raises(ArchiveError) as e:
        api.extract_archive(mixed_archive, dest, force=True)
    message = str(e.value)
    assert message.startswith("2 of 4 entries could not be extracted")
    assert "clash.txt: cannot write" in message and "folder of that name is in the way" in message
    assert "folder/inner.txt: cannot create the folder" in message and "file of that name is in the way" in message
    assert (dest / "a.txt").read_bytes() == b"a.txt" and (dest / "z.txt").read_bytes() == b"z.txt"
    assert sorted(p.name for p in dest.iterdir()) == ["a.txt", "clash.txt", "folder", "z.txt"]  # no temp files

    summary = api.salvage_archive(mixed_archive, dest, force=True)
    assert sorted(n for n, _ in summary.damaged) == ["clash.txt", "folder/inner.txt"]


@pytest.mark.parametrize("err", [errno.EROFS, errno.EACCES])
def test_unwritable_destination_is_a_clean_error(tmp_path, mixed_archive, monkeypatch, err):
    # Simulated: the tests may run as root, for whom permission bits do not stop a write.
    def refuse(*args, **kwargs):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(os, "replace", refuse)
    monkeypatch.setattr(os, "link", refuse)  # an empty destination is written without replacing
    with pytest.raises(ArchiveError, match=os.strerror(err)) as e:
        api.extract_archive(mixed_archive, tmp_path / "dest")
    assert e.value.__class__ is ArchiveError and "4 of 4 entries" in str(e.value)
    monkeypatch.undo()
    assert [p for p in (tmp_path / "dest").rglob("*") if p.is_file()] == []


def test_cli_name_clash_is_one_line(tmp_path, mixed_archive):
    dest = tmp_path / "dest"
    (dest / "clash.txt").mkdir(parents=True)
    r = subprocess.run([sys.executable, "-m", "imgarc.cli", "extract", str(mixed_archive), str(dest), "--force",
                        "--no-progress"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imgarc: error: 1 of 4 entries") and "clash.txt" in lines[0]
