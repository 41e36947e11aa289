"""Sharded archives: a folder's sorted files cut into contiguous shards, each an ordinary .iarc,
listed by a small manifest (manifest.py); coded by one call on any backend (backends.py: this
process, a local process pool, Ray), read back as one archive (reader.py)."""
