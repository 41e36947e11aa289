"""An archive file opened for reading: what ArchiveReader and SalvageReader share."""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from imgarc.errors import UsageError


class ArchiveFile:
    """Opens `path` for reading (a missing file or a folder is a UsageError); a context manager
    that closes it. Subclasses parse in their __init__ and call close() if that fails."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._file: BinaryIO | None = None
        try:
            self._file = open(self.path, "rb")
        except FileNotFoundError as e:
            raise UsageError(f"{self.path} does not exist") from e
        except IsADirectoryError as e:
            raise UsageError(f"{self.path} is a folder, not an imgarc archive") from e
        except OSError as e:
            raise UsageError(f"cannot open {self.path}: {e.strerror or e}") from e
        self.file_size = os.fstat(self._file.fileno()).st_size

    def close(self) -> None:
        if self._file is not None:
            f, self._file = self._file, None
            f.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
