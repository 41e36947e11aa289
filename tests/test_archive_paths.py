"""Entry paths: names an archive may hold, and where extraction may write."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest

from imgarc.archive import resolve_inside, safe_relative_path
from imgarc.errors import ArchiveError, UnsafePathError


@pytest.mark.parametrize("name", ["a", "a/b/ç.jpg", "Fotos/Été 2023/日本語.png", ".hidden", "a/.b/..c",
                                  "...", "a b/c d", "at 12:30.jpg", "ab:c"])
def test_accepts_plain_relative_names(name):
    p = safe_relative_path(name)
    assert p == PurePosixPath(name) and str(p) == name and not p.is_absolute()


def test_backslashes_are_ordinary_characters_on_posix_only():
    if os.sep == "/":
        assert str(safe_relative_path("a\\b/..\\x")) == "a\\b/..\\x"  # two components, neither is '..'
    else:
        with pytest.raises(UnsafePathError, match="backslash"):
            safe_relative_path("a\\b")


@pytest.mark.parametrize("name, why", [
    ("/etc/x", "absolute"),
    ("//server/share", "absolute"),
    ("../x", "'..'"),
    ("a/../../x", "'..'"),
    ("a/..", "'..'"),
    ("..", "'..'"),
    ("C:\\x", "drive"),
    ("C:x", "drive"),
    ("c:/x", "drive"),
    ("", "empty"),
    ("a/./b", "'.'"),
    (".", "'.'"),
    ("./a", "'.'"),
    ("a//b", "empty path component"),
    ("a/", "empty path component"),
    ("a\x00b", "NUL"),
])
def test_rejects_unsafe_names(name, why):
    with pytest.raises(UnsafePathError, match=why) as e:
        safe_relative_path(name)
    assert isinstance(e.value, ArchiveError) and "unsafe" in str(e.value)


def test_resolve_inside_plain(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    target = resolve_inside(dest, PurePosixPath("a/b/c.jpg"))
    assert target == dest.resolve() / "a" / "b" / "c.jpg"
    # dest need not exist yet.
    assert resolve_inside(tmp_path / "new", PurePosixPath("x")) == tmp_path.resolve() / "new" / "x"


def test_resolve_inside_refuses_names_that_escape(tmp_path):
    for rel in (PurePosixPath("../x"), PurePosixPath("/etc/passwd"), PurePosixPath("a/../../x")):
        with pytest.raises(UnsafePathError):
            resolve_inside(tmp_path, rel)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_resolve_inside_refuses_symlinks_leading_outside(tmp_path):
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (dest / "link").symlink_to(outside, target_is_directory=True)
    (dest / "file.jpg").symlink_to(outside / "victim.jpg")
    (dest / "self").symlink_to(dest, target_is_directory=True)
    for rel in ("link/x.jpg", "link/deeper/x.jpg", "file.jpg", "self"):
        with pytest.raises(UnsafePathError, match="outside|itself"):
            resolve_inside(dest, PurePosixPath(rel))
    assert list(outside.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_resolve_inside_allows_links_that_stay_inside(tmp_path):
    dest = tmp_path / "dest"
    (dest / "real").mkdir(parents=True)
    (dest / "alias").symlink_to(dest / "real", target_is_directory=True)
    (dest / "real" / "b.jpg").write_bytes(b"b")
    (dest / "real" / "a.jpg").symlink_to(dest / "real" / "b.jpg")
    # The folder link is followed; the last component is not (writing replaces the link).
    assert resolve_inside(dest, PurePosixPath("alias/a.jpg")) == (dest / "real" / "a.jpg").resolve().parent / "a.jpg"
    assert resolve_inside(dest, PurePosixPath("alias/new.jpg")) == dest.resolve() / "real" / "new.jpg"


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_resolve_inside_when_dest_itself_is_a_link(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    assert resolve_inside(link, PurePosixPath("a/b")) == real.resolve() / "a" / "b"


@pytest.mark.parametrize("name", ["x", "a/b/ç.jpg", "Fotos/Été 2023/日本語.png", "a b/.c d", "..."])
def test_resolve_inside_gives_the_entry_under_dest(tmp_path, name):
    dest = tmp_path / "dest"
    target = resolve_inside(dest, safe_relative_path(name))
    assert isinstance(target, Path) and target.is_absolute()
    assert target == dest.resolve().joinpath(*name.split("/"))
    assert target.relative_to(dest.resolve()).as_posix() == name
    # writing there puts the file where the entry's name says, and nowhere else
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(name.encode())
    assert (dest / name).read_bytes() == name.encode()
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()] == [f"dest/{name}"]
