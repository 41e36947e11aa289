"""Writing files so that an interrupted run never leaves a half-written file under its final name."""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
from pathlib import Path

from imgarc.errors import DestinationError, OutOfSpaceError

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
TEMP_SUFFIX = ".imgarc-part"
# O_EXCL|O_NOFOLLOW: a link planted under a temp name makes the open fail instead of redirecting bytes.
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)

# The temp files this process is writing, registered *before* each is created: Ctrl-C or SIGTERM
# raises wherever the main thread happens to be, even between an open() and the line that
# would remember its name; whatever the unwinding missed, remove_live_temp_files() removes.
_live_temps: set[Path] = set()


def remove_live_temp_files() -> None:
    """Remove every temp file this process registered and has not published (the interrupt path)."""
    for tmp in list(_live_temps):
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
    _live_temps.clear()


def open_temp_file(tmp: Path, mode: int = 0o600) -> int:
    """Create `tmp` (it must not exist) and register it as live; returns its descriptor."""
    _live_temps.add(tmp)
    try:
        return os.open(tmp, NEW_FILE_FLAGS, mode)
    except OSError:  # only then: an interrupt raised here may come just after the file was created
        _live_temps.discard(tmp)  # not created (or not by us): never ours to remove
        raise


def forget_temp_file(tmp: Path) -> None:
    """`tmp` was published (moved to its final name) or removed: no longer this process's to clean."""
    _live_temps.discard(tmp)


def new_temp_file(path: Path) -> tuple[int, Path]:
    """A new, registered temp file beside `path`: `.NAME.<random>.imgarc-part` (short prefix: the
    name stays within the 255-byte limit), created O_EXCL|O_NOFOLLOW. Returns (fd, its path)."""
    for _ in range(100):
        tmp = path.parent / f".{path.name[:64]}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
        try:
            return open_temp_file(tmp), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temp name", str(path))


def _default_mode() -> int:
    """0o666 less the umask: what open() would have given the file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def publish(tmp: Path, path: Path, replace: bool) -> None:
    """Move the finished file `tmp` to `path` atomically. `replace`: over whatever is there;
    else never over an existing file: raises FileExistsError and leaves both as they are (a hard
    link fails if `path` exists, so there is no window between a check and a rename)."""
    if replace:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except OSError as e:
        if isinstance(e, FileExistsError) or e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        # A file system without hard links: check, then rename (a small window remains).
        if path.exists():
            raise FileExistsError(errno.EEXIST, "File exists", str(path)) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def write_file_atomic(path: Path, data: bytes, mtime_ns: int | None = None, mode: int | None = None,
                      replace: bool = True) -> None:
    """Write to a temp name in the same folder, fsync, then publish it as `path` (see `publish`:
    without `replace`, a file that appeared at `path` meanwhile is a DestinationError).

    The temp file (`new_temp_file`) is removed on any failure or interruption (Ctrl-C included);
    only a kill -9 can leave it behind, never `path`.
    Raises OutOfSpaceError when the disk is full, DestinationError for anything else in the way.
    """
    tmp: Path | None = None
    try:
        fd, tmp = new_temp_file(path)
        with open(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _default_mode() if mode is None else mode)
        if mtime_ns is not None:
            os.utime(tmp, ns=(mtime_ns, mtime_ns))
        publish(tmp, path, replace)
        forget_temp_file(tmp)
        tmp = None
    except BaseException as e:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
            forget_temp_file(tmp)
        if isinstance(e, OSError):
            if e.errno in NO_SPACE:
                raise OutOfSpaceError(f"the disk is full while writing {path}; nothing was left half-written") from e
            if isinstance(e, FileExistsError):
                raise DestinationError(f"{path} appeared while extracting (another program?); it was left as it is") from e
            if isinstance(e, IsADirectoryError):  # os.replace onto a folder
                raise DestinationError(f"cannot write {path}: a folder of that name is in the way") from e
            raise DestinationError(f"cannot write {path}: {e.strerror or e}") from e
        raise


def file_sha256(path: Path) -> str:
    """The sha256 (hex) of a file, read a megabyte at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
