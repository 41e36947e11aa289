"""Writing files so that an interrupted run never leaves a half-written file under its final name."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from imgarc.errors import DestinationError, OutOfSpaceError

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
TEMP_SUFFIX = ".imgarc-part"


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

    The temp file (`.NAME.<random>.imgarc-part`) is created with O_EXCL|O_NOFOLLOW (mkstemp), so
    a link planted under a predictable name is never followed. On any failure or interruption
    (Ctrl-C included) it is removed; only a kill -9 can leave it behind, never `path`.
    Raises OutOfSpaceError when the disk is full, DestinationError for anything else in the way.
    """
    tmp: Path | None = None
    try:
        # Short prefix: the temp name must stay within the 255-byte name limit.
        fd, name = tempfile.mkstemp(prefix=f".{path.name[:64]}.", suffix=TEMP_SUFFIX, dir=path.parent)
        tmp = Path(name)
        with open(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _default_mode() if mode is None else mode)
        if mtime_ns is not None:
            os.utime(tmp, ns=(mtime_ns, mtime_ns))
        publish(tmp, path, replace)
        tmp = None
    except BaseException as e:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            if e.errno in NO_SPACE:
                raise OutOfSpaceError(f"the disk is full while writing {path}; nothing was left half-written") from e
            if isinstance(e, FileExistsError):
                raise DestinationError(f"{path} appeared while extracting (another program?); it was left as it is") from e
            if isinstance(e, IsADirectoryError):  # os.replace onto a folder
                raise DestinationError(f"cannot write {path}: a folder of that name is in the way") from e
            raise DestinationError(f"cannot write {path}: {e.strerror or e}") from e
        raise
