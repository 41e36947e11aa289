"""Sharded archives: the same shards from every backend and worker count, read back as one
archive, a missing or altered shard reported without losing the others, and a worker killed
mid-shard leaving nothing wrong behind (the same command then finishes the archive)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from imgarc import api
from imgarc.api import extractor
from imgarc.api.options import CompressOptions
from imgarc.errors import ArchiveError, UsageError
from imgarc.shards.backends import Backend, BackendKind
from imgarc.shards.compress import compress_sharded
from imgarc.shards import reader as shard_reader
from imgarc.shards.manifest import read_manifest
from tests.conftest import TINY_MODEL_ID, image_bytes, noise_rgb
from tests.test_interrupted import slow_child_env, wait_for

OPTIONS = CompressOptions(model_id=TINY_MODEL_ID)


@pytest.fixture
def folder(tmp_path) -> Path:
    """Seven files: six small photos and a text file, in two sub-folders."""
    src = tmp_path / "src"
    for k in range(6):
        path = src / ("a" if k < 3 else "b") / f"p{k}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image_bytes(noise_rgb(48 + 8 * k, 64, k), "PNG"))
    (src / "b" / "notes.txt").write_bytes(b"not a photo\n" * 40)
    return src


def sharded(src: Path, out: Path, backend: Backend = Backend(), per_shard: int = 3) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    archive = out / "photos.iarc"
    compress_sharded(src, archive, OPTIONS, per_shard, backend)
    return archive


def extracted(archive: Path, dest: Path) -> dict[str, bytes]:
    api.extract_archive(archive, dest)
    return {p.relative_to(dest).as_posix(): p.read_bytes() for p in sorted(dest.rglob("*")) if p.is_file()}


def test_shards_read_as_one_archive(folder, tmp_path, tiny_model):
    archive = sharded(folder, tmp_path / "sharded")
    manifest = read_manifest(archive)
    assert [s.entries for s in manifest.shards] == [3, 3, 1]
    single = tmp_path / "single.iarc"
    api.Compressor(OPTIONS).compress_folder(folder, single)
    assert [e.header.path for e in api.list_archive(archive)] == [e.header.path for e in api.list_archive(single)]
    assert extracted(archive, tmp_path / "x1") == extracted(single, tmp_path / "x2")
    assert not api.verify_archive(archive).damaged
    one = tmp_path / "x3"
    api.extract_archive(archive, one, members=api.MemberSelection(("b/p4.png",)))
    assert [p.name for p in one.rglob("*") if p.is_file()] == ["p4.png"]


def test_same_shards_with_processes_and_in_process(folder, tmp_path, tiny_model):
    one = sharded(folder, tmp_path / "one")
    two = sharded(folder, tmp_path / "two", Backend(BackendKind.PROCESSES, 2))
    three = sharded(folder, tmp_path / "three", Backend(BackendKind.PROCESSES, 3))
    assert one.read_bytes() == two.read_bytes() == three.read_bytes()  # names, sizes and sha256 of every shard


def test_same_shards_on_ray(folder, tmp_path, tiny_model):
    ray = pytest.importorskip("ray")
    one = sharded(folder, tmp_path / "one")
    ray.init(num_cpus=2, include_dashboard=False)  # workers inherit IMGARC_MODEL_PATH from here
    try:
        on_ray = sharded(folder, tmp_path / "ray", Backend(BackendKind.RAY, 2))
    finally:
        ray.shutdown()
    assert on_ray.read_bytes() == one.read_bytes()


def test_missing_and_altered_shards_fail_only_their_entries(folder, tmp_path, tiny_model):
    archive = sharded(folder, tmp_path / "s")
    shards = [archive.parent / s.name for s in read_manifest(archive).shards]
    data = bytearray(shards[2].read_bytes())
    data[-40] ^= 0xFF  # inside the last shard's index/footer
    shards[2].write_bytes(bytes(data))
    damaged = api.verify_archive(archive).damaged
    assert any(d.name == shards[2].name and "sha256" in d.detail for d in damaged)
    shards[1].unlink()
    dest = tmp_path / "x"
    with pytest.raises(ArchiveError, match="could not be extracted"):
        api.extract_archive(archive, dest)
    assert sorted(p.name for p in (dest / "a").iterdir()) == ["p0.png", "p1.png", "p2.png"]  # shard 0 intact
    salvaged = api.salvage_archive(archive, tmp_path / "y")
    assert {e.path for e in salvaged.entries} >= {"a/p0.png", "a/p1.png", "a/p2.png"}
    assert any(shards[1].name in d.name for d in salvaged.damaged)


def test_not_a_manifest_and_update_are_one_line(folder, tmp_path, tiny_model):
    bad = tmp_path / "bad.iarc"
    bad.write_text('{"format": "something else"}')
    with pytest.raises(ArchiveError, match="neither an imgarc archive nor a readable shard manifest"):
        api.list_archive(bad)
    archive = sharded(folder, tmp_path / "s")
    with pytest.raises(UsageError, match="sharded archive"):
        api.compress_sources(api.Compressor(OPTIONS), [folder], archive, api.SourceOptions(update=True))
    with pytest.raises(UsageError, match="already exists"):
        compress_sharded(folder, archive, OPTIONS, 3)
    api.Compressor(OPTIONS).compress_folder(folder, archive, force=True)  # one archive over the shard set
    assert sorted(p.name for p in archive.parent.iterdir()) == ["photos.iarc"]
    assert read_manifest(archive) is None and len(api.list_archive(archive)) == 7


def worker_pids(parent: int) -> list[int]:
    """The pool's worker processes (spawned children of `parent`, not its resource tracker)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"spawn_main" in cmdline:
            pids.append(int(entry.name))
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker processes through /proc")
def test_killed_worker_then_the_same_command_finishes_the_archive(folder, tmp_path, tiny_model_dir, tiny_model):
    reference = sharded(folder, tmp_path / "reference", per_shard=1)
    out = tmp_path / "out"
    out.mkdir()
    archive = out / "photos.iarc"
    command = [sys.executable, "-m", "imgarc.cli", "compress", str(folder), str(archive), "--shard-files", "1",
               "--workers", "2", "--model", TINY_MODEL_ID, "--no-progress"]
    # Every fsync sleeps 200 ms in the child and its workers: the kill lands while shards are written.
    child = subprocess.Popen(command, env=slow_child_env(tmp_path, "fsync"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    wait_for(lambda: any(".imgarc-tmp-" in p.name for p in out.iterdir()) and worker_pids(child.pid))
    os.kill(worker_pids(child.pid)[0], signal.SIGKILL)
    _, err = child.communicate(timeout=300)
    assert child.returncode == 1
    assert "worker process died" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not archive.exists()  # no manifest: no half archive under the name
    finished = subprocess.run(command, env=dict(os.environ), capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert "left by an earlier run that was killed" in finished.stderr  # the dead worker's temp file, named
    assert archive.read_bytes() == reference.read_bytes()
    assert extracted(archive, tmp_path / "x1") == extracted(reference, tmp_path / "x2")


@pytest.mark.parametrize("option", [["--shard-files", "0"], ["--workers", "0"], ["--ray", "local", "--workers", "0"]])
def test_bad_shard_options_are_one_line(folder, tmp_path, option):
    r = subprocess.run([sys.executable, "-m", "imgarc.cli", "compress", str(folder), str(tmp_path / "a.iarc"), *option],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "must be at least 1" in r.stderr and "Traceback" not in r.stderr
    assert not any(tmp_path.glob("a*.iarc"))


def test_few_shards_open_at_once(folder, tmp_path, tiny_model, monkeypatch):
    """A reader keeps only MAX_OPEN_SHARDS shard files open (thousands of shards must not mean
    thousands of open files), reopening one when it is read again."""
    archive = sharded(folder, tmp_path / "s", per_shard=1)
    monkeypatch.setattr(shard_reader, "MAX_OPEN_SHARDS", 2)
    with api.open_archive(archive) as r:
        paths = [r.header(i).path for i in range(len(r))] + [r.header(0).path]
        assert len(r._open) == 2
    assert paths[-1] == paths[0] and len(paths) == 8
    assert len(extracted(archive, tmp_path / "x")) == 7
    monkeypatch.setattr(extractor, "MAX_OPEN_SHARDS", 1)  # --salvage plans each shard, then reads payloads
    salvaged = api.salvage_archive(archive, tmp_path / "y")
    assert len(salvaged.entries) == 7 and not salvaged.damaged
