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


def write_file_atomic(path: Path, data: bytes, mtime_ns: int | None = None, mode: int | None = None) -> None:
    """Write to a temp name in the same folder, fsync, then rename over `path`.

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
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            if e.errno in NO_SPACE:
                raise OutOfSpaceError(f"the disk is full while writing {path}; nothing was left half-written") from e
            if isinstance(e, IsADirectoryError):  # os.replace onto a folder
                raise DestinationError(f"cannot write {path}: a folder of that name is in the way") from e
            raise DestinationError(f"cannot write {path}: {e.strerror or e}") from e
        raise
