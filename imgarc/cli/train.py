"""`imgarc train`: train or fine-tune a codec model (needs torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from imgarc.cli.console import console
from imgarc.codec.architecture import MEAN_SCALE, Architecture
from imgarc.codec.registry import assets_dir, find_model
from imgarc.extras import require


def print_status(st) -> None:
    """One line per trainer report (a TrainStatus), with each rate point's running bpp and PSNR."""
    points = "  ".join(f"[{b:.3f} bpp {p:.2f} dB]" for b, p in st.per_point)
    console().print(f"step {st.step}  {st.seconds / 60:.1f} min  {st.steps_per_second:.2f} steps/s  loss {st.loss:.3f}  "
                    f"bpp {st.bpp:.3f}  PSNR {st.psnr:.2f} dB  aux {st.aux:.1f}  lr {st.lr:.1e}  {points}".rstrip())


# Options `train` and `optimize` share.
DATA = typer.Option(Path("../shared/datasets/train"), "--data", help="Folder of training photos (searched recursively).")
BATCH = typer.Option(8, "--batch", help="Crops per training step.")
CHECKPOINT_MINUTES = typer.Option(5.0, "--checkpoint-minutes", help="Minutes between checkpoints.")
DEVICE = typer.Option("cpu", "--device", help="'cpu' or 'cuda'.")
SCALE_JITTER = typer.Option(1.0, "--scale-jitter", help="Cut each crop from a square up to this many times its side "
                            "(log-uniform) and scale it down to --crop: more variety from few photos. 1: off.")
AMP = typer.Option(False, "--amp", help="Run g_a and g_s in bf16 autocast (CUDA GPUs, and CPUs with bf16 matrix units "
                   "such as Intel's AMX: 1.9x the steps/s of a small child on this project's 2-core machine); the rate "
                   "term stays float32.")
EXPORT_DIR = typer.Option(None, "--export-dir", help="Folder for the exported weights and its models.json (default: the installed assets).")


def train(
    data: Path = DATA,
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
    channels: str = typer.Option("64,96", "--channels", help=f"N,M channel widths of a new {MEAN_SCALE} model."),
    batch: int = BATCH,
    crop: int = typer.Option(128, "--crop", help="Square crop size (a multiple of 64)."),
    lr: float = typer.Option(3e-4, "--lr", help="Adam learning rate; the last 20% of the budget runs at lr/4."),
    checkpoint_minutes: float = CHECKPOINT_MINUTES,
    device: str = DEVICE,
    scale_jitter: float = SCALE_JITTER,
    amp: bool = AMP,
    export: Optional[str] = typer.Option(None, "--export", help="After training, export the inference weights under this model id."),
    export_dir: Optional[Path] = EXPORT_DIR,
    quality: int = typer.Option(75, "--quality", min=1, max=100, help="Nominal --quality the exported model serves."),
) -> None:
    """Train or fine-tune a codec model; SIGTERM or the time budget ends it with a checkpoint written."""
    # torch loads only when this command runs, so the other commands and `--help` never pay for it.
    require("imgarc train", "torch", "compressai", "pytorch_msssim")
    from imgarc.train.publish import publish_checkpoint
    from imgarc.train.trainer import TrainConfig, parse_channels, parse_lambdas, train as run_training

    n, m = parse_channels(channels)
    rate_lambdas = parse_lambdas(lambdas)
    init_weights = find_model(init).path if init else None
    arch = Architecture(MEAN_SCALE, n, m, rate_points=max(1, len(rate_lambdas)))
    config = TrainConfig(data=data, run_dir=run_dir, architecture=arch, lmbda=lmbda, lambdas=rate_lambdas,
                         distortion=distortion, msssim_share=msssim_share, lr=lr, lr_final=lr / 4, batch=batch,
                         crop=crop, minutes=minutes, checkpoint_minutes=checkpoint_minutes, device=device,
                         scale_jitter=scale_jitter, amp=amp, init_weights=init_weights)
    out = console()
    checkpoint = run_training(config, resume=resume, log=print_status)
    out.print(f"checkpoint: {checkpoint}")
    if export:
        folder = export_dir or assets_dir()
        what = f"λ={','.join(map(str, rate_lambdas))} (variable rate)" if rate_lambdas else f"λ={lmbda}"
        sha = publish_checkpoint(checkpoint, export, folder, quality, f"{MEAN_SCALE} {n}/{m}, {what}", make_default=False)
        out.print(f"exported {export} to {folder} (sha256 {sha})")
