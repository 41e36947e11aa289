"""ArchiveWriter: writes an archive to a temp file and puts it in place only on commit."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType

from imgarc.archive.layout import (
    ENTRY_MAGIC,
    ENTRY_OVERHEAD,
    ENTRY_PREFIX,
    MAX_ENTRIES,
    EntryHeader,
    crc32,
    pack_entry,
    pack_file_header,
    pack_footer,
    pack_index,
)
from imgarc.archive.paths import safe_relative_path
from imgarc.errors import ArchiveError, OutOfSpaceError, UsageError
from imgarc.fileio import NO_SPACE, forget_temp_file, open_temp_file, publish

TEMP_MARK = ".imgarc-tmp-"


class ArchiveWriter:
    """Context manager. Writes to a temp file in the same folder as `path`
    (`.NAME.imgarc-tmp-<pid>`), and only on commit: index, footer, fsync, publish, fsync of the
    folder. Publishing is atomic: with `replace`, os.replace(temp, path); without, a no-replace
    link, so a file that appeared at `path` meanwhile (another run) is never overwritten and this
    commit fails instead. On any exception (KeyboardInterrupt included) or abort(): the temp file
    is removed and nothing at `path` has changed.
    """

    def __init__(self, path: Path, replace: bool = True) -> None:
        self.path = Path(path)
        self.replace = replace
        self.temp_path = temp_path_for(self.path)
        self._fd: int | None = None
        self._offsets: list[int] = []
        self._paths: set[str] = set()
        self._pos = 0
        self._state = "open"  # open -> committed | aborted
        if self.path.is_dir():
            self._state = "aborted"
            raise UsageError(f"{self.path} is a folder; give a file name for the archive")
        try:
            # A leftover of a crashed run that had our pid is ours to replace (unlinking a link
            # removes the link, never its target).
            self.temp_path.unlink(missing_ok=True)
            # O_EXCL|O_NOFOLLOW: a link planted under the temp name between the unlink and here
            # makes the open fail instead of redirecting the archive's bytes.
            self._fd = open_temp_file(self.temp_path, 0o666)
        except OSError as e:
            self._state = "aborted"
            if e.errno in NO_SPACE:
                raise OutOfSpaceError(f"the disk is full: cannot create {self.path}") from e
            if isinstance(e, FileNotFoundError):
                raise UsageError(f"cannot write {self.path}: the folder {self.path.parent} does not exist") from e
            raise UsageError(f"cannot write {self.path}: {e.strerror or e}") from e
        with self._aborting_on_error():
            self._write(pack_file_header())

    # ------------------------------------------------------------------ public

    def add(self, header: EntryHeader, payload: bytes) -> None:
        """Append one entry. Sets header.payload_size and header.payload_crc32."""
        self._check_new_entry(header.path)
        header.payload_size = len(payload)
        header.payload_crc32 = crc32(payload)
        head = pack_entry(header.to_bytes())  # validates before anything is written
        self._append(header.path, head, payload)

    def add_entry_bytes(self, header: EntryHeader, raw: bytes) -> None:
        """Append an entry copied byte for byte from another archive (ArchiveReader.entry_bytes),
        whose header is `header`: nothing is decoded or re-packed, so its bytes stay identical."""
        self._check_new_entry(header.path)
        magic, header_len = ENTRY_PREFIX.unpack_from(raw) if len(raw) >= ENTRY_PREFIX.size else (b"", 0)
        if magic != ENTRY_MAGIC or len(raw) != ENTRY_OVERHEAD + header_len + header.payload_size:
            raise UsageError(f"entry {header.path!r}: the bytes given are not one whole entry with this header")
        self._append(header.path, raw, b"")

    def _check_new_entry(self, path: str) -> None:
        self._check_open()
        safe_relative_path(path)  # never write an archive that extraction would refuse
        if path in self._paths:
            raise UsageError(f"entry {path!r} is already in the archive; entry paths must be unique")
        if len(self._offsets) >= MAX_ENTRIES:
            raise UsageError(f"an archive holds at most {MAX_ENTRIES} entries")

    def _append(self, path: str, head: bytes, payload: bytes) -> None:
        with self._aborting_on_error():
            offset = self._pos
            self._write(head)
            self._write(payload)
            self._offsets.append(offset)
            self._paths.add(path)

    def commit(self) -> None:
        """Write index and footer, fsync, and move the archive into place."""
        self._check_open()
        with self._aborting_on_error():
            index = pack_index(self._offsets)
            self._write(index + pack_footer(self._pos, len(index)))
            assert self._fd is not None
            os.fsync(self._fd)
            fd, self._fd = self._fd, None
            os.close(fd)
            self._publish()
            forget_temp_file(self.temp_path)
            self._state = "committed"
        self._fsync_folder()

    def abort(self) -> None:
        """Discard everything written so far; `path` is left as it was. Safe to call twice."""
        if self._state == "committed":
            return
        self._state = "aborted"
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with suppress(OSError):
                os.close(fd)
        with suppress(OSError):
            self.temp_path.unlink(missing_ok=True)
        forget_temp_file(self.temp_path)

    @property
    def entry_count(self) -> int:
        return len(self._offsets)

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            self.abort()
        elif self._state == "open":
            self.commit()

    def __del__(self) -> None:
        # A writer dropped without commit/abort must not leave its temp file behind.
        if getattr(self, "_state", None) == "open":
            self.abort()

    # ------------------------------------------------------------------ internals

    def _publish(self) -> None:
        try:
            publish(self.temp_path, self.path, self.replace)
        except FileExistsError:
            raise UsageError(f"{self.path} appeared while this run was writing it (another imgarc run?); it was left "
                             "as it is and this run's archive was discarded; use --force to replace it") from None

    def _check_open(self) -> None:
        if self._state != "open":
            raise UsageError(f"the archive writer for {self.path} is already {self._state}")

    def _write(self, data: bytes) -> None:
        # os.write, not a buffered file: every error (ENOSPC) surfaces at the call that caused it.
        view = memoryview(data)
        assert self._fd is not None
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
            self._pos += n

    @contextmanager
    def _aborting_on_error(self) -> Iterator[None]:
        try:
            yield
        except BaseException as e:
            self.abort()
            if isinstance(e, OSError):
                if e.errno in NO_SPACE:
                    raise OutOfSpaceError(
                        f"the disk filled up while writing {self.path}; nothing was written "
                        "(free some space and run again)"
                    ) from e
                raise ArchiveError(f"cannot write {self.path}: {e.strerror or e}; nothing was written") from e
            raise

    def _fsync_folder(self) -> None:
        # Makes the rename durable. Best effort: some systems cannot open or fsync a folder,
        # and the archive is already complete under its name.
        with suppress(OSError):
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def temp_path_for(path: Path, pid: int | None = None) -> Path:
    """Where a writer of `path` in process `pid` (default: this one) keeps its unfinished archive."""
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid() if pid is None else pid}")


def stale_temp_files(path: Path, names: Callable[[str], bool] | None = None) -> list[Path]:
    """Temp files of writers of `path` (with `names`: of any file in its folder whose name
    `names` accepts, e.g. every shard of a sharded archive, in one listing of the folder) whose
    process no longer runs on this host (killed with SIGKILL or by a power cut: nothing could
    remove them)."""
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return []
    stale = []
    for p in entries:
        target, mark, pid = p.name[1:].rpartition(TEMP_MARK)  # .NAME.imgarc-tmp-PID
        if not (p.name.startswith(".") and mark and pid.isdigit()):
            continue
        if (names(target) if names else target == path.name) and int(pid) != os.getpid() and not _process_alive(int(pid)):
            stale.append(p)
    return sorted(stale)  # only the few found are sorted, not the whole folder


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True

