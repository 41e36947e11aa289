"""`imgarc compress SRC ARCHIVE --shard-files N` (and `--workers`, `--ray`): a sharded archive.

The folder's sorted files are cut into contiguous shards of N files; each shard is coded into an
ordinary .iarc beside ARCHIVE (job.compress_shard, on the chosen backend), and ARCHIVE becomes
the manifest that lists them, written last and atomically. Until then an earlier archive of that
name is untouched, and a killed run leaves only finished shards (kept: the same command picks
up where it stopped) and temp files (named on the next run, removed with --force).
"""

from __future__ import annotations

import fnmatch
import glob
import time
from dataclasses import replace
from pathlib import Path

from imgarc.api.compressor import Compressor, files_to_archive
from imgarc.api.options import CompressOptions
from imgarc.api.results import CompressSummary, LeftOut, Progress
from imgarc.errors import UsageError
from imgarc.runtime.device import Device, resolve_device
from imgarc.shards.backends import Backend, BackendKind, run_shards
from imgarc.shards.job import ShardSpec, compressor_for, shard_files, shard_path
from imgarc.shards.manifest import Manifest, read_manifest, remove_shards, write_manifest


def compress_sharded(src: Path, archive: Path, options: CompressOptions, files_per_shard: int,
                     backend: Backend = Backend(), force: bool = False, strict: bool = False,
                     progress: Progress | None = None) -> CompressSummary:
    """Archive every regular file under `src` as shards of `files_per_shard` files and a manifest
    at `archive` (see the module). The summary's `archive_bytes` counts the shards and the manifest."""
    started = time.perf_counter()
    if files_per_shard < 1:
        raise UsageError(f"--shard-files must be at least 1, not {files_per_shard}")
    warnings: list[str] = []
    left_out: list[LeftOut] = []
    folder = archive.parent.resolve()  # shards of this archive, when it lies inside SRC, are not archived
    files = files_to_archive(src, archive, force, strict, warnings, left_out,
                             lambda path: is_shard_name(path.name, archive) and path.parent.resolve() == folder)
    # `auto` is resolved here, on the machine that runs the command, so every shard's spec (and
    # name) says where it was coded; `cuda` for a Ray cluster is left for its actors to find.
    if backend.kind is not BackendKind.RAY or options.device is Device.AUTO:
        options = replace(options, device=resolve_device(options.device))
    if not options.keep_originals:
        _ = compressor_for(options).codec  # a missing model is reported before any shard is written
    old = read_manifest(archive) if archive.exists() else None
    specs = [ShardSpec(k, tuple((str(p), n) for p, n in group), str(shard_path(archive, k, group, options)), options, strict)
             for k, group in enumerate(shard_files(files, files_per_shard))]
    # One listing of the folder for every shard's temp files (a million photos: ~4,000 shards).
    warnings += Compressor.stale_temp_warnings(archive, force, lambda name: is_shard_name(name, archive))
    entries, records, done = [], [], 0
    seconds_model = seconds_coder = 0.0
    for result in run_shards(specs, backend):
        s = result.summary
        entries += s.entries
        warnings += s.warnings
        left_out += s.left_out
        seconds_model += s.seconds_model
        seconds_coder += s.seconds_coder
        records.append(result.record)
        done += len(specs[len(records) - 1].files)
        if progress:
            progress(done, len(files), result.record.name)
    manifest = Manifest(tuple(records))
    write_manifest(archive, manifest, replace=force)
    if old is not None:  # the replaced archive's shards that the new one does not reuse
        remove_shards(archive, old, frozenset(r.name for r in records))
    size = archive.stat().st_size + sum(r.size for r in records)
    return CompressSummary(archive, size, entries, warnings, time.perf_counter() - started,
                           seconds_model, seconds_coder, left_out)


def is_shard_name(name: str, archive: Path) -> bool:
    """Whether a file named `name` beside `archive` is one of its shards (of any run): job.shard_path's names."""
    return fnmatch.fnmatchcase(name, f"{glob.escape(archive.name.removesuffix('.iarc'))}.[0-9]*-*.iarc")

