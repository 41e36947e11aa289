"""The library's front door: the one place that glues photo + codec + coders + archive.

Objects, for callers that code or decode entries one at a time (a shard writer, a worker pool,
a classifier reading latents):
- `Compressor(CompressOptions)`: `entry(path, name)` codes one file; `compress_folder()`.
- `EntryDecoder`: `latents()` (no synthesis network), `pixels()`, `file_bytes()`.
- `Extractor(dest, ...)`: `extract(archive)` through the index, `salvage(archive)` by scanning.
- `list_archive`, `verify_archive`, `show_entry`, `entry_file_bytes`; `MemberSelection` (member
  names and globs); records for scripts (`entry_record`, `listing_document`, `verify_document`).
- `compress_sources`: several sources into one archive, and `--update` in place.
- `ArchiveLatents`: every coded photo's ŷ, σ̂, μ̂ without pixels; `write_latents_npz` (api/latents.py).
Functions, for whole jobs: `compress_folder`, `extract_archive`, `salvage_archive`.
The CLI calls only this package. Each name loads its module when first used (PEP 562), so a
command starts without importing what it does not run (compress, update, latents, ...).
"""

from __future__ import annotations

from imgarc.lazy_names import lazy_names

__getattr__, __dir__, __all__ = lazy_names(__name__, {
    **dict.fromkeys(("ArchivedEntry", "Compressor", "compress_folder", "walk_folder"), ".compressor"),
    **dict.fromkeys(("DecodedLatents", "EntryDecoder"), ".decoder"),
    **dict.fromkeys(("describe_entry",), ".describe"),
    **dict.fromkeys(("SALVAGE_HINT", "Extractor", "extract_archive", "open_archive", "salvage_archive"), ".extractor"),
    **dict.fromkeys(("entry_file_bytes", "list_archive", "show_entry", "verify_archive"), ".inspect"),
    **dict.fromkeys(("ArchiveLatents", "NotAPhotoError", "PhotoLatents", "SkippedEntry", "load_latents_npz",
                     "write_latents_npz"), ".latents"),
    **dict.fromkeys(("MemberNotFoundError", "MemberSelection"), ".members"),
    **dict.fromkeys(("ModelFacts", "ModelSpeed", "StorageBits", "WeightStorage", "download_zoo_model", "installed_models", "measure_speed",
                     "model_facts", "zoo_models"), ".models"),
    **dict.fromkeys(("DEFAULT_QUALITY", "CompressOptions"), ".options"),
    **dict.fromkeys(("RECORD_KEYS", "RECORD_SCHEMA", "entry_record", "listing_document", "verify_document"), ".records"),
    **dict.fromkeys(("CompressSummary", "Damaged", "EntryKind", "EntryListing", "EntryResult", "ExtractSummary", "LeftOut",
                     "Progress", "SalvageSummary", "Timings", "VerifyReport"), ".results"),
    **dict.fromkeys(("Change", "SourceOptions", "UpdateSummary", "compress_sources"), ".update"),
    "DEFAULT_CODER": "imgarc.coders",
    "ImgarcError": "imgarc.errors",
})
