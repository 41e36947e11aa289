"""Writing files so that an interrupted run never leaves a half-written file under its final name."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from imgarc.errors import OutOfSpaceError, UsageError

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def write_file_atomic(path: Path, data: bytes, mtime_ns: int | None = None, mode: int | None = None) -> None:
    """Write to a temp name in the same folder, fsync, then rename over `path`.

    On any failure or interruption (Ctrl-C included) the temp file is removed.
    """
    tmp = path.with_name(f".{path.name}.imgarc-part")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        if mtime_ns is not None:
            os.utime(tmp, ns=(mtime_ns, mtime_ns))
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in NO_SPACE:
            raise OutOfSpaceError(f"the disk is full while writing {path}; nothing was left half-written") from e
        if isinstance(e, IsADirectoryError):
            raise UsageError(f"cannot write {path}: a folder of that name is in the way") from e
        raise
