"""The manifest of a sharded archive: a small JSON file listing its shards in order.

A sharded archive is a manifest (the name the user gives, e.g. `photos.iarc`) and ordinary
`.iarc` files beside it, one per shard, each holding a contiguous run of the folder's sorted
files. The manifest records each shard's file name (relative to the manifest's folder), entry
count, size and sha256, so a reader can tell a missing, truncated or replaced shard from an
intact one. `imgarc extract`, `list`, `verify` and `--salvage` read a manifest as one archive.

    {"format": "imgarc-shards", "version": 1,
     "shards": [{"name": "photos.00000-3f9c0a1b2d4e.iarc", "entries": 500, "size": 41234567,
                 "sha256": "…"}, …]}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from imgarc.errors import ArchiveError, NewerFormatError
from imgarc.fileio import write_file_atomic

MANIFEST_FORMAT = "imgarc-shards"
MANIFEST_VERSION = 1
MAX_MANIFEST_BYTES = 256 << 20  # ~1 M shards: anything larger is not a manifest this imgarc wrote


@dataclass(frozen=True)
class ShardRecord:
    name: str  # the shard's file name, in the manifest's folder
    entries: int
    size: int  # bytes
    sha256: str  # hex, of the whole shard file


@dataclass(frozen=True)
class Manifest:
    shards: tuple[ShardRecord, ...]

    @property
    def entries(self) -> int:
        return sum(s.entries for s in self.shards)

    def to_json(self) -> bytes:
        doc = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "shards": [asdict(s) for s in self.shards]}
        return (json.dumps(doc, indent=1) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, path: Path) -> Manifest:
        try:
            doc = json.loads(data)
            if doc.get("format") != MANIFEST_FORMAT:
                raise ValueError("no imgarc-shards format field")
            if not isinstance(doc.get("version"), int) or doc["version"] > MANIFEST_VERSION:
                raise NewerFormatError(f"{path} is a shard manifest of version {doc.get('version')}, newer than this "
                                       f"imgarc reads ({MANIFEST_VERSION}); upgrade imgarc")
            shards = tuple(ShardRecord(str(s["name"]), int(s["entries"]), int(s["size"]), str(s["sha256"]))
                           for s in doc["shards"])
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ArchiveError(f"{path} is neither an imgarc archive nor a readable shard manifest ({e})") from e
        for s in shards:
            if Path(s.name).name != s.name or s.name in ("", ".", ".."):
                raise ArchiveError(f"{path} names a shard outside its folder ({s.name!r}); refusing to read it")
        return cls(shards)


def read_manifest(path: Path) -> Manifest | None:
    """The manifest at `path`, or None when `path` is not one (an archive, or not there: the
    archive reader then says what it is)."""
    try:
        with path.open("rb") as f:
            if f.read(1) != b"{":  # an archive starts with its magic, a manifest with a JSON object
                return None
            data = b"{" + f.read(MAX_MANIFEST_BYTES)
    except OSError:
        return None
    return Manifest.from_json(data, path)


def write_manifest(path: Path, manifest: Manifest, replace: bool) -> None:
    """Publish the manifest atomically (temp name, fsync, rename): a reader sees the old one or the new one."""
    write_file_atomic(path, manifest.to_json(), replace=replace)


def remove_shards(path: Path, manifest: Manifest, keep: frozenset[str] = frozenset()) -> None:
    """Delete the shards a replaced manifest at `path` listed, except those named in `keep`."""
    for record in manifest.shards:
        if record.name not in keep:
            (path.parent / record.name).unlink(missing_ok=True)
