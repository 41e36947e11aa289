"""One shard's job: a contiguous run of the folder's sorted files, coded into an ordinary .iarc.

`compress_shard(spec)` is what every backend runs (in this process, in a worker process, in a
Ray actor): it depends on nothing but the spec, writes the shard under a temp name and renames
it when complete, and returns the shard's record. The shard's file name carries a digest of
what decides its bytes (entry names, sizes, modification times, options, imgarc version), so a
retried or re-run task that finds its shard already written keeps it instead of coding again:
a killed run resumes where it stopped, and two runs of the same job write the same bytes.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from imgarc import __version__
from imgarc.api.compressor import Compressor
from imgarc.api.options import CompressOptions
from imgarc.api.results import CompressSummary, EntryKind, EntryResult
from imgarc.archive import KIND_IMAGE, ArchiveReader
from imgarc.blas_threads import one_blas_thread
from imgarc.fileio import file_sha256
from imgarc.shards.manifest import ShardRecord


@dataclass(frozen=True)
class ShardSpec:
    """Everything a worker on any machine needs for one shard (plain, picklable values)."""

    index: int
    files: tuple[tuple[str, str], ...]  # (the file's path, its entry name), in archive order
    path: str  # the shard file to write
    options: CompressOptions = field(default_factory=CompressOptions)
    strict: bool = False  # a file that cannot be read fails the shard instead of being left out


@dataclass
class ShardResult:
    record: ShardRecord
    summary: CompressSummary  # the shard's entries, warnings and left-out files
    reused: bool = False  # found already written by an earlier run of the same job


def shard_files(files: list[tuple[Path, str]], per_shard: int) -> list[list[tuple[Path, str]]]:
    """The sorted file list cut into contiguous runs of `per_shard` files (the last one shorter)."""
    return [files[start:start + per_shard] for start in range(0, len(files), per_shard)]


def shard_path(manifest: Path, index: int, files: list[tuple[Path, str]], options: CompressOptions) -> Path:
    """`<manifest stem>.<index>-<digest>.iarc` beside the manifest; the digest covers what decides
    the shard's bytes, so a different job never takes an earlier job's shard for its own."""
    digest = hashlib.sha256(repr((__version__, options)).encode())
    for path, name in files:
        st = path.stat()
        digest.update(repr((name, st.st_size, st.st_mtime_ns)).encode())
    stem = manifest.name.removesuffix(".iarc")
    return manifest.with_name(f"{stem}.{index:05d}-{digest.hexdigest()[:12]}.iarc")


@lru_cache(maxsize=2)
def compressor_for(options: CompressOptions) -> Compressor:
    """One Compressor (and so one loaded model) per process and options: a worker process or a
    Ray actor loads the model once, for all the shards it codes."""
    return Compressor(options)


def compress_shard(spec: ShardSpec) -> ShardResult:
    """Write the spec's shard (temp name, then rename) unless an earlier run already did."""
    path = Path(spec.path)
    reused = path.is_file()
    if reused:
        summary = CompressSummary(path, path.stat().st_size, _results_of(path), [], 0.0)
    else:
        files = [(Path(p), name) for p, name in spec.files]
        summary = compressor_for(spec.options).compress_files(files, path, force=True, strict=spec.strict)
    record = ShardRecord(path.name, len(summary.entries), path.stat().st_size, file_sha256(path))
    return ShardResult(record, summary, reused)


def _results_of(path: Path) -> list[EntryResult]:
    """What a shard written earlier holds, as compress reports it."""
    with ArchiveReader(path) as reader:
        headers = [reader.header(i) for i in range(len(reader))]
    return [EntryResult(h.path, EntryKind.PHOTO if h.kind == KIND_IMAGE else EntryKind.STORED, h.original_size,
                        h.payload_size, h.width * h.height if h.kind == KIND_IMAGE else 0) for h in headers]


def pin_worker(counter, cores: list[int], workers: int) -> None:
    """A worker process's initializer: take the next share of the parent's cores, so that the
    workers' threads together match the cores (each sizes its pools from its affinity mask)."""
    with counter.get_lock():
        n = counter.value
        counter.value += 1
    share = [cores[n % len(cores)]] if workers >= len(cores) else cores[n % workers::workers]
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, share)
    one_blas_thread()
