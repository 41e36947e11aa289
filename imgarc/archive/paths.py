"""Entry paths: what an archive may name, and where extraction may write.

An archive is untrusted input: an entry named `../../.bashrc` or `/etc/passwd` must never
write outside the extraction folder. Paths are checked twice: by name (safe_relative_path,
also when writing an archive) and against the file system (resolve_inside, at extraction).
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from imgarc.errors import UnsafePathError

_DRIVE = re.compile(r"^[A-Za-z]:")


def safe_relative_path(name: str) -> PurePosixPath:
    """Check an entry name and return it as a relative POSIX path.

    Accepted: non-empty, '/'-separated, relative names whose components are neither empty,
    '.' nor '..'. Rejected (not normalised, so one entry has exactly one spelling): absolute
    paths, '..' and '.' components, empty components ('a//b', trailing '/'), NUL, a first
    component that looks like a Windows drive ('C:'), and on Windows, backslashes.
    """
    def unsafe(why: str) -> UnsafePathError:
        return UnsafePathError(f"entry path {name!r} is unsafe ({why}); refusing to use it")

    if not isinstance(name, str) or not name:
        raise unsafe("empty name")
    if "\x00" in name:
        raise unsafe("contains a NUL character")
    if "\\" in name and os.sep == "\\":  # an ordinary character on POSIX, a separator on Windows
        raise unsafe("contains a backslash, a path separator on Windows")
    if name.startswith("/"):
        raise unsafe("absolute path")
    if _DRIVE.match(name):
        raise unsafe("starts with a Windows drive letter")
    for part in name.split("/"):
        if part == "":
            raise unsafe("empty path component")
        if part == "..":
            raise unsafe("'..' component")
        if part == ".":
            raise unsafe("'.' component")
    return PurePosixPath(name)


def resolve_inside(dest: Path, rel: PurePosixPath) -> Path:
    """The path to write `rel` to under `dest`, after checking it stays inside `dest`.

    Symlinks already in `dest` are followed: a link (as a folder or as the file itself) that
    leads outside `dest` makes this raise UnsafePathError. The returned path has its folders
    resolved but not its last component, so writing replaces a link there instead of
    following it.
    """
    safe_relative_path(str(rel))  # rel may come from anywhere: re-check the name itself
    root = Path(os.path.realpath(dest))
    parent = Path(os.path.realpath(root.joinpath(*rel.parts[:-1])))
    target = parent / rel.parts[-1]
    final = Path(os.path.realpath(target))
    for p in (parent, final):
        if p != root and not p.is_relative_to(root):
            raise UnsafePathError(
                f"entry path {str(rel)!r} would be written outside {dest} (through a symbolic link "
                f"in {dest}); refusing to extract it"
            )
    if final == root:
        raise UnsafePathError(f"entry path {str(rel)!r} points at the extraction folder {dest} itself")
    return target


def entry_name(relative: str) -> tuple[str, bytes | None]:
    """(PATH, PATH_BYTES) for a file name as os.walk gives it. A name that is not valid UTF-8
    (an old USB stick's Latin-1, say) keeps its exact bytes in PATH_BYTES, and PATH shows them
    escaped (`caf\\xe9.jpg`), which is unique and readable."""
    try:
        relative.encode("utf-8")
        return relative, None
    except UnicodeEncodeError:
        raw = os.fsencode(relative)
        return raw.decode("utf-8", "backslashreplace"), raw


def disk_name(path: str, path_bytes: bytes | None) -> str:
    """The name an entry is extracted under: its exact bytes where it has them (on POSIX)."""
    if path_bytes is None:
        return path
    if os.name == "nt":
        raise UnsafePathError(f"entry {path!r} has a file name that is not UTF-8, which Windows cannot hold; "
                              "extract it on Linux or macOS")
    return os.fsdecode(path_bytes)
