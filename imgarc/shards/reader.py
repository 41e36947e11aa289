"""A sharded archive read as one: entries numbered across the manifest's shards, in order.

Each shard opens when one of its entries is first read, and must have the size the manifest
records. A shard that is missing, cut short or not an archive fails only its own entries (as a
damaged entry does in one archive), so extract still writes every other shard's files;
`check_shards` (verify) also compares every shard's sha256 with the manifest's.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from itertools import accumulate
from pathlib import Path
from types import TracebackType

from imgarc.archive import ArchiveReader, EntryHeader
from imgarc.errors import DamagedArchiveError
from imgarc.fileio import file_sha256
from imgarc.shards.manifest import Manifest, ShardRecord

MAX_OPEN_SHARDS = 32


class ShardedReader:
    """What ArchiveReader offers the commands (len, header, payload, entry_bytes, path), over shards."""

    def __init__(self, path: Path, manifest: Manifest) -> None:
        self.path = path
        self.manifest = manifest
        self._starts = [0, *accumulate(s.entries for s in manifest.shards)]
        self._open: OrderedDict[int, ArchiveReader] = OrderedDict()  # the most recently used last

    def shard_path(self, record: ShardRecord) -> Path:
        return self.path.parent / record.name

    def __len__(self) -> int:
        return self._starts[-1]

    def _locate(self, i: int) -> tuple[ArchiveReader, int]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = bisect.bisect_right(self._starts, i) - 1
        return self._reader(k), i - self._starts[k]

    def _reader(self, k: int) -> ArchiveReader:
        if k in self._open:
            self._open.move_to_end(k)
        else:
            if len(self._open) >= MAX_OPEN_SHARDS:  # a million photos are ~4,000 shards: not 4,000 open files
                self._open.popitem(last=False)[1].close()
            record = self.manifest.shards[k]
            path = self.shard_path(record)
            try:
                size = path.stat().st_size
            except OSError as e:
                raise DamagedArchiveError(f"shard {record.name} of {self.path} cannot be read ({e.strerror})") from e
            if size != record.size:
                raise DamagedArchiveError(f"shard {record.name} of {self.path} has {size} bytes, the manifest says {record.size}")
            reader = ArchiveReader(path)
            if len(reader) != record.entries:
                reader.close()
                raise DamagedArchiveError(f"shard {record.name} of {self.path} has {len(reader)} entries, "
                                          f"the manifest says {record.entries}")
            self._open[k] = reader
        return self._open[k]

    def header(self, i: int) -> EntryHeader:
        reader, j = self._locate(i)
        return reader.header(j)

    def payload(self, i: int) -> bytes:
        reader, j = self._locate(i)
        return reader.payload(j)

    def entry_bytes(self, i: int) -> bytes:
        reader, j = self._locate(i)
        return reader.entry_bytes(j)

    def check_shards(self) -> list[tuple[str, str]]:
        """(shard name, what is wrong) for every shard whose file is not the one the manifest
        records. A shard that cannot be read is left to its entries to report."""
        problems = []
        for record in self.manifest.shards:
            try:
                if file_sha256(self.shard_path(record)) != record.sha256:
                    problems.append((record.name, "its sha256 differs from the manifest's (altered or damaged)"))
            except OSError:
                pass
        return problems

    def close(self) -> None:
        for reader in self._open.values():
            reader.close()
        self._open.clear()

    def __enter__(self) -> ShardedReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
