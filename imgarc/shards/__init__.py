"""Sharded archives: a folder's sorted files cut into contiguous shards, each an ordinary .iarc,
listed by a small manifest (manifest.py); coded by one call on any backend (backends.py: this
process, a local process pool, Ray), read back as one archive (reader.py).

Names load on first use (lazy_names): the CLI imports this package for every command.
"""

from __future__ import annotations

from imgarc.lazy_names import lazy_names

DEFAULT_SHARD_FILES = 256  # files per shard when a run asks for workers or Ray but no size

__getattr__, __dir__, __all__ = lazy_names(__name__, {
    **dict.fromkeys(("Backend", "BackendKind", "WorkerDiedError", "run_shards"), ".backends"),
    **dict.fromkeys(("compress_sharded",), ".compress"),
    **dict.fromkeys(("ShardSpec", "compress_shard"), ".job"),
    **dict.fromkeys(("Manifest", "ShardRecord", "read_manifest"), ".manifest"),
    **dict.fromkeys(("ShardedReader",), ".reader"),
})
