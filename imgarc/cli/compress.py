"""`imgarc compress SRC... ARCHIVE` (and `--update`)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from imgarc import api
from imgarc.cli.console import console, progress_bar, sigterm_as_interrupt, warn
from imgarc.units import human_bytes as human
from imgarc.coders import DEFAULT_CODER
from imgarc.errors import IncompleteArchiveError, UsageError
from imgarc.process_memory import keep_freed_memory
from imgarc.runtime.device import Device
from imgarc import shards
from imgarc.shards import DEFAULT_SHARD_FILES

CODER_HELP = (
    "Latent entropy coder: 'rans' (default: vectorized rANS, smallest), 'lzma' (LZMA packing of the "
    "integer latents), 'ref' (CompressAI's own C++ rANS coder, the reference). All three use the same "
    "shipped tables and deterministic table selection, so archives decode identically on any machine."
)


def compress(
    paths: List[Path] = typer.Argument(..., metavar="PATHS", show_default=False,
                                       help="SRC [SRC...] ARCHIVE: the folder(s) of photos (and any other files) to "
                                            "archive, then the archive file to write, e.g. photos.iarc. One SRC: entry paths are relative to it; "
                                            "several: each folder's files go under its name (A/x.jpg, B/x.jpg)."),
    quality: int = typer.Option(api.DEFAULT_QUALITY, "--quality", "-q", min=1, max=100,
                                help="1-100, like JPEG's: higher keeps more detail and makes larger entries "
                                     "(continuous on the variable-rate default model); recorded per entry."),
    target_bpp: Optional[float] = typer.Option(None, "--target-bpp", help="Instead of --quality: code each photo at the quality whose "
                                               "size is nearest this many bits per pixel (e.g. 0.5)."),
    refine: int = typer.Option(0, "--refine", metavar="STEPS", help="Smaller files for much more time: refine each "
                               "photo's latents for STEPS steps against the decoder (e.g. 30; 0: off). Extraction is "
                               "unchanged. Each step runs the synthesis network forward and back, so 30 steps take "
                               "about 40 times a plain compress. Needs the training extra (pip install 'imgarc\\[train]'); see docs/MODELS.md."),
    coder: str = typer.Option(DEFAULT_CODER, "--coder", help=CODER_HELP),
    model: Optional[str] = typer.Option(None, "--model", help="Model id to use instead of the one --quality picks (see `imgarc models`); "
                                        "a CompressAI pretrained model as cai:ARCH:METRIC:Q, e.g. cai:mbt2018-mean:mse:3 "
                                        "(downloaded into the torch cache at first use; cai:ARCH alone takes the zoo quality "
                                        "nearest --quality)."),
    tune: Optional[str] = typer.Option(None, "--tune", help="Use the model made for this: psnr (MSE, or MSE mixed with "
                                       "MS-SSIM: exact colours and detail), msssim (MS-SSIM only: the smallest files at "
                                       "equal MS-SSIM, less exact colours) or fast (a pruned model for phone-class CPUs: "
                                       "about 3x faster networks, somewhat larger files; see docs/MODELS.md). "
                                       "Default: the default model (see `imgarc models`)."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace ARCHIVE if it exists (also if another run creates it "
                               "meanwhile), and remove temp files that killed runs left beside it."),
    strict: bool = typer.Option(False, "--strict", help="Stop, writing nothing, if any file or folder cannot be read. "
                                "Default: leave it out, name it, archive everything else and exit with status 1."),
    keep_originals: bool = typer.Option(False, "--keep-originals", help="Code no photo: keep every file byte-exact "
                                        "(JPEGs recompressed losslessly with JPEG XL, others LZMA), each extracted identical to the byte."),
    update: bool = typer.Option(False, "--update", "-u", help="Bring ARCHIVE up to date (created if missing): code the "
                                "files that are new or changed (size or modification time differ), copy every other "
                                "entry byte for byte without decoding it, write a new archive and rename it over the old "
                                "one (a killed update leaves the old one). Entries already there keep their quality and model."),
    delete_missing: bool = typer.Option(False, "--delete-missing", help="With --update: drop the entries of the SRC "
                                        "folders whose file is gone (entries of folders not given are kept)."),
    checksum: bool = typer.Option(False, "--checksum", help="Record each coded file's sha256; with --update, compare "
                                  "contents by sha256 instead of modification times (a coded photo archived without a "
                                  "sha256 cannot show it is unchanged, so it is coded once more)."),
    device: Device = typer.Option(Device.AUTO, "--device", help="Where the analysis networks run: 'auto' (default: a "
                                  "CUDA GPU where one can be used, else the CPU), 'cpu' or 'cuda'. Archives made on "
                                  "either extract on any machine."),
    shard_files: Optional[int] = typer.Option(None, "--shard-files", metavar="N", help="Write a sharded archive: the "
                                              "sorted files cut into shards of N files, each an ordinary .iarc beside "
                                              "ARCHIVE (ARCHIVE-stem.00000-<digest>.iarc, ...), and ARCHIVE a small manifest "
                                              "listing them; extract, list, verify and --salvage read it as one archive. "
                                              "A killed run keeps its finished shards: the same command resumes."),
    workers: Optional[int] = typer.Option(None, "--workers", metavar="N", help="Code the shards in N worker processes, "
                                          "this machine's cores shared among them (implies shards: --shard-files, "
                                          f"default {DEFAULT_SHARD_FILES}). The shards' bytes do not depend on N."),
    ray: Optional[str] = typer.Option(None, "--ray", metavar="ADDRESS", help="Code the shards on a Ray cluster "
                                      "(Ray Data, an actor pool of --workers actors, default 2): 'local' starts one on "
                                      "this machine, else a cluster address such as ray://head:10001 (the shards' "
                                      "folder must be shared by every node). Needs pip install 'imgarc\\[cluster]'."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Compress the folder(s) SRC into ARCHIVE (written to a temporary name, renamed when complete).

    Links and special files are skipped with a warning. A file that cannot be read is left out
    with a warning naming it, and the exit status is 1 (--strict: nothing is written).
    """
    if len(paths) < 2:
        raise UsageError("give the folder(s) to archive, then the archive: imgarc compress SRC... ARCHIVE")
    *sources, archive = paths
    options = api.CompressOptions(quality, target_bpp, coder, model, tune, keep_originals, device, refine_steps=refine)
    if refine:
        keep_freed_memory()
    how = api.SourceOptions(update, delete_missing, checksum, force, strict)
    compressor = api.Compressor(options)
    backend = _backend(workers, ray)
    if shard_files is not None or backend.kind is not shards.BackendKind.IN_PROCESS:
        if len(sources) > 1 or update or checksum:
            raise UsageError("a sharded archive (--shard-files, --workers, --ray) is made from one SRC folder, "
                             "without --update or --checksum")
        with sigterm_as_interrupt(), progress_bar("compressing", progress) as bar:
            per_shard = DEFAULT_SHARD_FILES if shard_files is None else shard_files
            s = shards.compress_sharded(sources[0], archive, options, per_shard, backend,
                                 force=force, strict=strict, progress=bar)
        _report_compress(s)
        _report_left_out(s, archive)
        return
    with sigterm_as_interrupt(), progress_bar("updating" if update else "compressing", progress) as bar:
        if len(sources) == 1 and not (update or checksum):
            u = None
            s = compressor.compress_folder(sources[0], archive, force=force, progress=bar, strict=strict)
        else:
            u = api.compress_sources(compressor, sources, archive, how, progress=bar)
            s = u.summary
    if u is not None and update:
        _report_update(u)
    else:
        _report_compress(s)
    _report_left_out(s, archive)


def _backend(workers: int | None, ray: str | None) -> shards.Backend:
    if ray is not None:
        return shards.Backend(shards.BackendKind.RAY, 2 if workers is None else workers, ray)
    if workers is not None:
        return shards.Backend(shards.BackendKind.PROCESSES, workers)
    return shards.Backend()


def _report_compress(s: api.CompressSummary) -> None:
    for w in s.warnings:
        warn(w)
    photos = [e for e in s.entries if e.kind == api.EntryKind.PHOTO]
    original = sum(e.original_bytes for e in s.entries)
    pixels = sum(e.pixels for e in photos)
    line = f"{s.archive}: {len(s.entries)} files ({len(photos)} coded photos), {human(original)} -> {human(s.archive_bytes)}"
    if s.archive_bytes:
        line += f" ({original / s.archive_bytes:.1f}x)"
    if pixels:
        line += f", photos at {sum(e.archived_bytes for e in photos) * 8 / pixels:.3f} bpp"
    console().print(line + f" in {s.seconds:.1f} s")


def _report_update(u: api.UpdateSummary) -> None:
    s = u.summary
    for w in s.warnings:
        warn(w)
    if not u.written:
        console().print(f"{s.archive}: up to date, left as it was ({len(u.changes)} entries, {human(s.archive_bytes)})")
        return
    counts = ", ".join(f"{u.count(c)} {c.value}" for c in api.Change if u.count(c) or c.codes)
    entries = len(u.changes) - u.count(api.Change.DELETED) - u.count(api.Change.LEFT_OUT)
    console().print(f"{s.archive}: {counts}; {entries} entries, {human(s.archive_bytes)} in {s.seconds:.1f} s "
                    "(only added and changed files were coded)")


def _report_left_out(s: api.CompressSummary, archive: Path) -> None:
    for left in s.left_out:
        warn(f"{left.path}: {left.reason}; not archived")
    if s.left_out:
        raise IncompleteArchiveError(f"{len(s.left_out)} file(s) or folder(s) could not be read and are not in {archive} "
                                     "(named above); everything else was archived")
