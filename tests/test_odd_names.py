"""Folders from old USB sticks and other systems: names that are not UTF-8, backslashes, link loops."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from imgarc import api
from imgarc.archive import ArchiveReader

IMGARC = [sys.executable, "-m", "imgarc.cli"]
pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX file names")


def names_under(folder: Path) -> dict[bytes, bytes]:
    return {os.fsencode(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_names_that_are_not_utf8_and_backslashes_round_trip_byte_exact(tmp_path, tiny_model):
    src = tmp_path / "src"
    (src / os.fsdecode(b"dossier \xe9t\xe9")).mkdir(parents=True)
    files = {
        b"caf\xe9.txt": b"latin-1 name",
        b"dossier \xe9t\xe9/photo \xff.bin": b"inside a latin-1 folder",
        b"back\\slash.txt": b"a backslash is an ordinary character here",
    }
    for name, data in files.items():
        (src / os.fsdecode(name)).write_bytes(data)
    out = tmp_path / "a.iarc"
    summary = api.compress_folder(src, out, keep_originals=True)
    assert len(summary.entries) == len(files) and not summary.left_out
    with ArchiveReader(out) as r:
        headers = {r.header(i).path: r.header(i).path_bytes for i in range(len(r))}
    assert headers["caf\\xe9.txt"] == b"caf\xe9.txt" and headers["back\\slash.txt"] is None
    restored = tmp_path / "restored"
    r = subprocess.run(IMGARC + ["extract", str(out), str(restored), "--no-progress"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert names_under(restored) == files


def test_a_symlink_loop_is_skipped_with_a_warning(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "photo.bin").write_bytes(b"data")
    (src / "self").symlink_to(src / "self")
    (src / "ping").symlink_to(src / "pong")
    (src / "pong").symlink_to(src / "ping")
    r = subprocess.run(IMGARC + ["compress", str(src), str(tmp_path / "a.iarc"), "--keep-originals", "--no-progress"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "internal error" not in r.stderr, r.stderr
    for name in ("self", "ping", "pong"):
        assert f"warning: {name}: symbolic link, not archived" in r.stderr
