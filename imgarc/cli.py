"""The `imgarc` command: parse arguments, call imgarc.api, print results.

Nothing heavy is imported at module level, so `imgarc --help` answers instantly; torch and
the codec load only inside the commands that need them.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help=(
        "Archive folders of photos with a learned image codec.\n\n"
        "Photos (JPEG, PNG, HEIC, WebP, AVIF, TIFF) are coded lossily at the chosen --quality (a few times "
        "smaller than the originals) and come back under their own names and formats with their EXIF, ICC "
        "and XMP; every other file, and any photo the codec must not touch, is stored byte-exact "
        "(--keep-originals: every file). Paths, modification times and permissions are kept."
    ),
)

CODER_HELP = (
    "Latent entropy coder: 'rans' (default: vectorized rANS, smallest), 'lzma' (LZMA packing of the "
    "integer latents), 'ref' (CompressAI's own C++ rANS coder, the reference). All three use the same "
    "shipped tables and deterministic table selection, so archives decode identically on any machine."
)


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)  # one logical line stays one line


@contextmanager
def _progress_bar(description: str, enabled: bool) -> Iterator:
    """Yields a progress(done, total, label) callback drawing a rich bar on stderr."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  TextColumn("[dim]{task.fields[label]}"), console=_console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=None, label="")

        def update(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, total=total, label=label[-40:])

        yield update


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


@app.command()
def compress(
    src: Path = typer.Argument(..., help="Folder of photos (and any other files) to archive."),
    archive: Path = typer.Argument(..., help="Archive file to write, e.g. photos.iarc."),
    quality: int = typer.Option(75, "--quality", "-q", min=1, max=100,
                                help="1-100, like JPEG's: higher keeps more detail and makes larger entries "
                                     "(continuous on the variable-rate default model); recorded per entry."),
    target_bpp: Optional[float] = typer.Option(None, "--target-bpp", help="Instead of --quality: code each photo at the quality whose "
                                               "size is nearest this many bits per pixel (e.g. 0.5)."),
    coder: str = typer.Option("rans", "--coder", help=CODER_HELP),
    model: Optional[str] = typer.Option(None, "--model", help="Model id to use instead of the one --quality picks (see `imgarc models`); "
                                        "a CompressAI pretrained model as cai:ARCH:METRIC:Q, e.g. cai:mbt2018-mean:mse:3 "
                                        "(downloaded into the torch cache at first use; cai:ARCH alone takes the zoo quality "
                                        "nearest --quality)."),
    tune: Optional[str] = typer.Option(None, "--tune", help="Use the model trained for this metric: psnr (MSE, or MSE mixed with "
                                       "MS-SSIM: exact colours and detail) or msssim (MS-SSIM only: the smallest files at "
                                       "equal MS-SSIM, less exact colours). Default: the default model (see `imgarc models`)."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace ARCHIVE if it exists."),
    keep_originals: bool = typer.Option(False, "--keep-originals", help="Code no photo: keep every file byte-exact "
                                        "(JPEGs recompressed losslessly with JPEG XL, others LZMA), each extracted identical to the byte."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Compress the folder SRC into ARCHIVE (written to a temporary name, renamed when complete)."""
    from imgarc import api

    if model and not keep_originals:
        from imgarc.codec.registry import resolve_model_id

        model = resolve_model_id(model, quality)  # completes zoo shorthands such as cai:mbt2018-mean
    with _sigterm_as_interrupt(), _progress_bar("compressing", progress) as bar:
        s = api.compress_folder(src, archive, quality=quality, coder_name=coder, model_id=model, force=force,
                                progress=bar, target_bpp=target_bpp, keep_originals=keep_originals, tune=tune)
    out = _console()
    for w in s.warnings:
        _console(stderr=True).print(f"[yellow]warning:[/] {w}")
    images = [e for e in s.entries if e.kind == "image"]
    original = sum(e.original_bytes for e in s.entries)
    pixels = sum(e.pixels for e in images)
    line = f"{s.archive}: {len(s.entries)} files ({len(images)} coded photos), {_human(original)} -> {_human(s.archive_bytes)}"
    if s.archive_bytes:
        line += f" ({original / s.archive_bytes:.1f}x)"
    if pixels:
        line += f", photos at {sum(e.archived_bytes for e in images) * 8 / pixels:.3f} bpp"
    out.print(line + f" in {s.seconds:.1f} s")


@app.command()
def extract(
    archive: Path = typer.Argument(..., help="Archive to read."),
    dest: Path = typer.Argument(..., help="Folder to extract into (created if missing; must be empty unless --force)."),
    force: bool = typer.Option(False, "--force", "-f", help="Extract into a non-empty folder, replacing files of the same name."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    image_format: str = typer.Option("keep", "--format", help="Format of the coded photos: 'keep' (each in its source's format and "
                                     "name), 'png', 'jpeg' or 'webp' (extension replaced; alpha photos never become JPEG). "
                                     "Byte-exact files never change."),
    salvage: bool = typer.Option(False, "--salvage", help="For a damaged or truncated archive: extract every entry whose "
                                 "checksums check out, finding entries by scanning when the index is lost; one line per "
                                 "damaged item, non-zero exit if anything was lost."),
) -> None:
    """Extract ARCHIVE into DEST: photos decoded to their original names and formats, other files byte-exact.

    Damaged entries are skipped and named; everything intact is still extracted.
    """
    from imgarc import api
    from imgarc.errors import ArchiveError

    with _sigterm_as_interrupt(), _progress_bar("extracting", progress) as bar:
        if salvage:
            r = api.salvage_archive(archive, dest, force=force, progress=bar, image_format=image_format)
        else:
            s = api.extract_archive(archive, dest, force=force, progress=bar, image_format=image_format)
    if not salvage:
        _console().print(f"{dest}: {len(s.entries)} files extracted in {s.seconds:.1f} s")
        return
    err = _console(stderr=True)
    for w in r.warnings:
        err.print(f"[yellow]warning:[/] {w}")
    for name, detail in r.damaged:
        err.print(f"[red]damaged:[/] {name}: {detail}")
    _console().print(f"{dest}: {len(r.entries)} files salvaged in {r.seconds:.1f} s")
    if r.damaged:
        raise ArchiveError(f"{len(r.damaged)} damaged item(s) in {archive} could not be extracted "
                           f"(the {len(r.entries)} intact entries were)")


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a `kill`, a closing terminal) unwinds like Ctrl-C, so temp files are removed."""
    import signal

    def interrupt(signum, frame) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@app.command("list")
def list_(archive: Path = typer.Argument(..., help="Archive to list.")) -> None:
    """List the entries of ARCHIVE: how each is stored, its size and bits per pixel."""
    from rich.markup import escape
    from rich.table import Table

    from imgarc import api
    from imgarc.describe import describe_entry

    entries = api.list_archive(archive)
    table = Table(box=None, header_style="bold")
    for col, justify in (("entry", "left"), ("kind", "left"), ("original", "right"), ("archived", "right"),
                         ("bpp", "right"), ("details", "left")):
        table.add_column(col, justify=justify)
    original = archived = pixels = image_bytes = 0
    for e in entries:
        h = e.header
        if h is None:
            table.add_row(f"#{e.index + 1}", "[red]damaged", "", "", "", e.error or "")
            continue
        original += h.original_size
        archived += h.payload_size
        if h.kind == api.KIND_IMAGE:
            px = max(h.width * h.height, 1)  # a damaged header may say 0; never divide by it
            pixels += px
            image_bytes += h.payload_size
            table.add_row(h.path, "photo", _human(h.original_size), _human(h.payload_size),
                          f"{h.payload_size * 8 / px:.3f}", escape(describe_entry(h)))
        else:
            table.add_row(h.path, "stored", _human(h.original_size), _human(h.payload_size), "", escape(describe_entry(h)))
    out = _console()
    out.print(table)
    total = f"{len(entries)} entries, {_human(original)} -> {_human(archived)} of entry data"
    if pixels:
        total += f"; photos {image_bytes * 8 / pixels:.3f} bpp"
    out.print(total)


@app.command()
def verify(
    archive: Path = typer.Argument(..., help="Archive to check."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Check every entry of ARCHIVE: CRCs, and that all data (photo latents included) decodes."""
    from imgarc import api
    from imgarc.errors import ArchiveError

    with _progress_bar("verifying", progress) as bar:
        report = api.verify_archive(archive, progress=bar)
    if report.ok:
        _console().print(f"{archive}: all {report.checked} entries OK")
        return
    for name, detail in report.damaged:
        _console(stderr=True).print(f"[red]damaged:[/] {name}: {detail}")
    raise ArchiveError(f"{len(report.damaged)} of {report.checked} entries in {archive} are damaged")


@app.command()
def train(
    data: Path = typer.Option(Path("../shared/datasets/train"), "--data", help="Folder of training photos (searched recursively)."),
    run_dir: Path = typer.Option(Path("runs/train"), "--run-dir", help="Where checkpoints and the log go (checkpoint.pt)."),
    minutes: float = typer.Option(60.0, "--minutes", help="Wall-time budget for this run, on top of what a resumed checkpoint spent."),
    lmbda: float = typer.Option(0.035, "--lambda", help="Rate-distortion trade-off: loss = bpp + λ·255²·MSE (or λ·(1−MS-SSIM)). "
                                "Higher: better quality, more bits."),
    distortion: str = typer.Option("mse", "--distortion", help="What the model is tuned for: mse (PSNR), msssim (MS-SSIM; "
                                   "needs --crop ≥ 192; CompressAI's MS-SSIM λs are 2.40-220) or mixed (both, with the MSE λs; "
                                   "see --msssim-share)."),
    msssim_share: float = typer.Option(0.5, "--msssim-share", min=0.0, max=1.0, help="With --distortion mixed: MS-SSIM's share of "
                                       "the distortion, (1−s)·255²·MSE + s·1300·(1−MS-SSIM)."),
    lambdas: Optional[str] = typer.Option(None, "--lambdas", help="Comma-separated ascending λs: train one variable-rate model with a "
                                          "learned gain vector per λ (then --lambda is the λ of the --init model)."),
    resume: bool = typer.Option(True, "--resume/--fresh", help="Continue from RUN_DIR/checkpoint.pt if it exists."),
    init: Optional[str] = typer.Option(None, "--init", help="Installed model id to start from when there is no checkpoint (fresh optimizer)."),
    channels: str = typer.Option("64,96", "--channels", help="N,M channel widths of a new mbt2018-mean model."),
    batch: int = typer.Option(8, "--batch"),
    crop: int = typer.Option(128, "--crop", help="Square crop size (a multiple of 64)."),
    lr: float = typer.Option(3e-4, "--lr", help="Adam learning rate; the last 20% of the budget runs at lr/4."),
    checkpoint_minutes: float = typer.Option(5.0, "--checkpoint-minutes", help="Minutes between checkpoints."),
    device: str = typer.Option("cpu", "--device", help="'cpu' or 'cuda'."),
    export: Optional[str] = typer.Option(None, "--export", help="After training, export the inference weights under this model id."),
    export_dir: Optional[Path] = typer.Option(None, "--export-dir", help="Folder for the exported weights and its models.json (default: the installed assets)."),
    quality: int = typer.Option(75, "--quality", min=1, max=100, help="Nominal --quality the exported model serves."),
) -> None:
    """Train or fine-tune a codec model; SIGTERM or the time budget ends it with a checkpoint written."""
    from imgarc.codec.architecture import Architecture
    from imgarc.codec.registry import assets_dir, find_model
    from imgarc.errors import UsageError
    from imgarc.train.publish import publish_checkpoint
    from imgarc.train.trainer import DISTORTIONS, MSSSIM_MIN_CROP, TrainConfig, train as run_training

    try:
        n, m = (int(v) for v in channels.split(","))
    except ValueError as e:
        raise UsageError(f"--channels must be two integers like 64,96, not {channels!r}") from e
    if crop % 64:
        raise UsageError(f"--crop must be a multiple of 64, not {crop}")
    if distortion not in DISTORTIONS:
        raise UsageError(f"--distortion must be one of {', '.join(DISTORTIONS)}, not {distortion!r}")
    if distortion != "mse" and crop < MSSSIM_MIN_CROP:
        raise UsageError(f"--distortion {distortion} needs --crop 192 or more (MS-SSIM's 5 scales), not {crop}")
    init_weights = None
    if init:
        record = find_model(init)
        init_weights = record.path
    try:
        rate_lambdas = tuple(float(v) for v in lambdas.split(",")) if lambdas else ()
    except ValueError as e:
        raise UsageError(f"--lambdas must be numbers separated by commas, not {lambdas!r}") from e
    if rate_lambdas and (len(rate_lambdas) < 2 or list(rate_lambdas) != sorted(set(rate_lambdas)) or rate_lambdas[0] <= 0):
        raise UsageError("--lambdas needs at least two distinct positive values in ascending order")
    arch = Architecture("mbt2018-mean", n, m, rate_points=max(1, len(rate_lambdas)))
    config = TrainConfig(data=data, run_dir=run_dir, architecture=arch, lmbda=lmbda, lambdas=rate_lambdas, distortion=distortion,
                         msssim_share=msssim_share,
                         lr=lr, lr_final=lr / 4, batch=batch, crop=crop, minutes=minutes,
                         checkpoint_minutes=checkpoint_minutes, device=device, init_weights=init_weights)
    out = _console()

    def log(st) -> None:
        points = "  ".join(f"[{b:.3f} bpp {p:.2f} dB]" for b, p in st.per_point)
        out.print(f"step {st.step}  {st.seconds / 60:.1f} min  loss {st.loss:.3f}  bpp {st.bpp:.3f}  "
                  f"PSNR {st.psnr:.2f} dB  aux {st.aux:.1f}  lr {st.lr:.1e}  {points}".rstrip())

    checkpoint = run_training(config, resume=resume, log=log)
    out.print(f"checkpoint: {checkpoint}")
    if export:
        folder = export_dir or assets_dir()
        what = f"λ={','.join(map(str, rate_lambdas))} (variable rate)" if rate_lambdas else f"λ={lmbda}"
        sha = publish_checkpoint(checkpoint, export, folder, quality, f"mbt2018-mean {n}/{m}, {what}", make_default=False)
        out.print(f"exported {export} to {folder} (sha256 {sha})")


@app.command()
def models(
    download: Optional[str] = typer.Option(None, "--download", help="Download and convert a CompressAI zoo model "
                                           "(cai:ARCH:METRIC:Q) now, so it works offline later."),
    zoo: bool = typer.Option(True, "--zoo/--no-zoo", help="Also list CompressAI's pretrained models."),
) -> None:
    """List the models: embedded (shipped or under IMGARC_MODEL_PATH) and CompressAI's pretrained ones
    (cached: ready offline; downloaded: converted at first use; downloadable: needs internet once)."""
    from imgarc.codec.registry import default_model_id, list_models

    out = _console()
    if download:
        from imgarc.codec.zoo import parse_zoo_id
        from imgarc.codec.zoo_convert import load_zoo_codec

        model_id = parse_zoo_id(download).model_id
        codec = load_zoo_codec(model_id)
        out.print(f"{model_id}: cached (CompressAI file sha256 {codec.weights_sha256})")
        return
    default = default_model_id()
    for r in list_models():
        mark = " (default)" if r.model_id == default else f" (--tune {r.tune})" if r.model_id == default_model_id(r.tune) else ""
        rates = "quality 1-100" if r.variable_rate else f"quality {r.quality}"
        out.print(f"{r.model_id}{mark}  embedded  {rates}  tuned for {r.tune}  {r.description}  [dim]{r.path}[/]")
    if not zoo:
        return
    from imgarc.codec.zoo import REFUSED, conversion_dir, list_zoo, torch_hub_dir

    for e in list_zoo():
        n, m = e.model.channels
        out.print(f"{e.model.model_id}  {e.state}  CompressAI {e.model.architecture} {e.model.metric} "
                  f"quality {e.model.quality} (N={n}, M={m})")
    for arch, why in REFUSED.items():
        out.print(f"[dim]cai:{arch}  not supported: {why}[/]")
    out.print(f"[dim]CompressAI files: {torch_hub_dir() / 'checkpoints'}; imgarc's conversions: {conversion_dir()}[/]")


@app.command()
def bench(
    dataset: str = typer.Argument(..., help="'kodak', 'clic', or a folder of images."),
    data: Optional[Path] = typer.Option(None, "--data", help="Folder holding kodak/ and clic/ (e.g. ../shared/datasets); "
                                        "else $IMGARC_DATA, else ~/.cache/imgarc/datasets (downloaded there if missing)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for results.json, results.csv, report.md and the PNG plots (default: runs/bench/DATASET)."),
    qualities: str = typer.Option("10,25,50,75,95", "--qualities", help="imgarc --quality values; the first coder runs at each."),
    coders: str = typer.Option("rans,lzma,ref", "--coders", help="imgarc latent coders to measure."),
    coder_qualities: str = typer.Option("75", "--coder-qualities", help="Qualities the coders after the first run at (they change bytes and time, not pixels), or 'all'."),
    baselines: str = typer.Option("7z,tar,jpeg,webp,avif", "--baselines", help="Baselines: 7z (7zz a, default and -mx9), tar (plain and -J), jpeg (Pillow defaults), webp (method=6), avif (speed=6); '' for none."),
    jpeg_qualities: str = typer.Option("5,15,30,50,75", "--jpeg-qualities"),
    webp_qualities: str = typer.Option("2,15,35,55,75", "--webp-qualities"),
    avif_qualities: str = typer.Option("15,30,45,60,75", "--avif-qualities"),
    model: Optional[str] = typer.Option(None, "--model", help="imgarc model id instead of the one --quality picks."),
    models: str = typer.Option("", "--models", help="More models in the same tables and plots, comma-separated, each with the "
                               "first coder: installed ids (at every --qualities value) or CompressAI zoo ids cai:ARCH:METRIC:Q "
                               "(one point each)."),
    zoo: bool = typer.Option(True, "--zoo/--no-zoo", help="Also every CompressAI zoo model already cached here (see `imgarc models`), "
                             "one point each, never downloading."),
    jobs: int = typer.Option(0, "--jobs", help="Processes for the quality metrics, computed after all timing (0: one per core)."),
    download: bool = typer.Option(True, "--download/--no-download", help="Download kodak/clic into the cache when not found (sha256-checked)."),
    keep_work: bool = typer.Option(False, "--keep-work", help="Keep the decoded images and work files under OUT."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Benchmark imgarc against 7-Zip, TAR, JPEG, WebP and AVIF on one folder: tables, CSV, JSON, plots.

    Every method compresses and restores the same folder, each step in its own timed process;
    quality (PSNR, MS-SSIM) is scored afterwards. Bytes and quality are the same on every re-run.
    """
    import shlex

    from imgarc.bench.command import BenchOptions, bench as run_bench, summary_lines

    options = BenchOptions(dataset, data, out, qualities, coders, coder_qualities, baselines, jpeg_qualities,
                           webp_qualities, avif_qualities, model, models, zoo, jobs, download, keep_work)
    with _progress_bar("benchmarking", progress) as bar:
        result, folder = run_bench(options, "imgarc " + shlex.join(sys.argv[1:]), progress=bar)
    for line in summary_lines(result, folder):
        _console().print(line)


def main() -> None:
    """Console-script entry: one clean line and a non-zero exit for every error."""
    import warnings

    from imgarc.errors import ImgarcError

    # CompressAI still uses torch.jit.script, which torch now flags on every import: not the user's concern.
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
    try:
        code = app(standalone_mode=False)
    except ImgarcError as e:
        _console(stderr=True).print(f"[red]imgarc: error:[/] {e}")
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        _console(stderr=True).print("[red]imgarc: interrupted[/] (no partial file was left under a final name)")
        sys.exit(130)
    except typer.Abort:
        sys.exit(130)
    except typer.TyperException as e:  # usage mistakes: typer prints its own short usage message
        e.show()
        sys.exit(e.exit_code)
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - the one place a bug is turned into a line, not a traceback
        _console(stderr=True).print(f"[red]imgarc: internal error:[/] {type(e).__name__}: {e} (please report this)")
        sys.exit(70)
    # Outside standalone mode typer turns Ctrl-C into Exit(130) and returns that code instead of raising.
    if code == 130:
        _console(stderr=True).print("[red]imgarc: interrupted[/] (no partial file was left under a final name)")
    if isinstance(code, int) and code:
        sys.exit(code)

if __name__ == "__main__":
    main()
