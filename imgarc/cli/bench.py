"""`imgarc bench`: imgarc against 7-Zip, TAR and the classical image codecs on one folder."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from imgarc.bench.baselines import BASELINE_NAMES, PILLOW_CODECS
from imgarc.bench.defaults import DEFAULT_CODER_QUALITIES, DEFAULT_QUALITIES, DEFAULT_STUDY_IMAGES
from imgarc.cli.console import console, progress_bar
from imgarc.coders import CODER_NAMES


def _grid(codec: str) -> str:
    return ",".join(map(str, PILLOW_CODECS[codec].default_qualities))


def bench(
    dataset: str = typer.Argument(..., metavar="DATASET", help="'kodak', 'clic', or a folder of images."),
    data: Optional[Path] = typer.Option(None, "--data", help="Folder holding kodak/ and clic/ (e.g. ../shared/datasets); "
                                        "else $IMGARC_DATA, else ~/.cache/imgarc/datasets (downloaded there if missing)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for results.json, results.csv, report.md and the PNG plots (default: runs/bench/DATASET)."),
    qualities: str = typer.Option(",".join(map(str, DEFAULT_QUALITIES)), "--qualities", help="imgarc --quality values; the first coder runs at each."),
    coders: str = typer.Option(",".join(CODER_NAMES), "--coders", help="imgarc latent coders to measure."),
    coder_qualities: str = typer.Option(",".join(map(str, DEFAULT_CODER_QUALITIES)), "--coder-qualities", help="Qualities the coders after the first run at (they change bytes and time, not pixels), or 'all'."),
    baselines: str = typer.Option(",".join(BASELINE_NAMES), "--baselines", help="Baselines: 7z (7zz a, default and -mx9), tar (plain and -J), jpeg (Pillow defaults), webp (method=6), avif (speed=6), heic (pillow-heif defaults), jxl (pillow-jxl-plugin defaults); '' for none."),
    jpeg_qualities: str = typer.Option(_grid("jpeg"), "--jpeg-qualities"),
    webp_qualities: str = typer.Option(_grid("webp"), "--webp-qualities"),
    avif_qualities: str = typer.Option(_grid("avif"), "--avif-qualities"),
    heic_qualities: str = typer.Option(_grid("heic"), "--heic-qualities"),
    jxl_qualities: str = typer.Option(_grid("jxl"), "--jxl-qualities"),
    model: Optional[str] = typer.Option(None, "--model", help="imgarc model id instead of the one --quality picks."),
    models: str = typer.Option("", "--models", help="More models in the same tables and plots, comma-separated, each with the "
                               "first coder: installed ids (at every --qualities value) or CompressAI zoo ids cai:ARCH:METRIC:Q "
                               "(one point each)."),
    zoo: bool = typer.Option(True, "--zoo/--no-zoo", help="Also every CompressAI zoo model already cached here (see `imgarc models`), "
                             "one point each, never downloading."),
    jobs: int = typer.Option(0, "--jobs", help="Processes for the quality metrics, computed after all timing (0: one per core)."),
    download: bool = typer.Option(True, "--download/--no-download", help="Download kodak/clic into the cache when not found (sha256-checked)."),
    keep_work: bool = typer.Option(False, "--keep-work", help="Keep the decoded images and work files under OUT."),
    study_images: int = typer.Option(DEFAULT_STUDY_IMAGES, "--study-images", help="Images (spread over the set) for the coder "
                                     "study (a per-symbol Python arithmetic coder against rans, lzma and ref on the same latents) "
                                     "and CompressAI's own pipeline; 0 for neither."),
    compressai: bool = typer.Option(True, "--compressai/--no-compressai", help="CompressAI's compress()/decompress() on the "
                                    "same weights and images, its decode checked in fresh processes (one with ATEN_CPU_CAPABILITY=default)."),
    phone: str = typer.Option("auto", "--phone", help="Time one 12 MP photo (4000x3000) made from this image file (centre-cropped "
                              "to 4:3, Lanczos-resized); 'auto': the largest CLIC photo found locally, else the set's largest if it has 1 MP or more; 'none': skip."),
    refine: int = typer.Option(0, "--refine", metavar="STEPS", help="Also imgarc with compress --refine STEPS (the first "
                               "coder, every --qualities value): its own curve in the tables and plots. Slow: about "
                               "STEPS/30 × 40 times imgarc's compress time."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Benchmark imgarc against 7-Zip, TAR, JPEG, WebP, AVIF, HEIC and JPEG XL on one folder: tables, CSV, JSON, plots.

    Every method compresses and restores the same folder, each step in its own timed process;
    quality (PSNR, MS-SSIM) is scored afterwards. Bytes and quality are the same on every re-run.
    """
    # Imported here, not at the top: every imgarc command loads this module, and the bench's
    # machinery (reports, plots, datasets) would add ~0.1 s to each one's start.
    from imgarc.bench.command import BenchOptions, bench as run_bench, summary_lines

    options = BenchOptions(dataset, data, out, qualities, coders, coder_qualities, baselines, jpeg_qualities,
                           webp_qualities, avif_qualities, heic_qualities, jxl_qualities, model, models, zoo, jobs,
                           download, keep_work, study_images, compressai, phone, refine)
    with progress_bar("benchmarking", progress) as bar:
        result, folder = run_bench(options, "imgarc " + shlex.join(sys.argv[1:]), progress=bar)
    for line in summary_lines(result, folder):
        console().print(line)
