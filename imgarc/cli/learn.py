"""`imgarc learn LABELED_DIR --out TASK`: train a classifier on photos' latents (needs torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from imgarc.cli.console import console, progress_bar, sigterm_as_interrupt, warn
from imgarc.errors import UsageError
from imgarc.extras import require
from imgarc.runtime import usable_cores


def parse_qualities(text: str) -> tuple[int, ...]:
    try:
        qualities = tuple(int(q) for q in text.split(",") if q.strip())
    except ValueError:
        raise UsageError(f"--qualities takes comma-separated numbers 1-100, not {text!r}") from None
    if not qualities or any(not 1 <= q <= 100 for q in qualities):
        raise UsageError(f"--qualities takes comma-separated numbers 1-100, not {text!r}")
    return tuple(dict.fromkeys(qualities))


def learn(
    labeled: Path = typer.Argument(..., metavar="LABELED_DIR", help="Folder with one subfolder per class, the photos "
                                   "of that class inside (searched recursively)."),
    out: Path = typer.Option(..., "--out", "-o", help="The task file to write (e.g. scenes.imgtask)."),
    val: Optional[Path] = typer.Option(None, "--val", help="Held-out folder (same layout) to score on; default: "
                                       "hold out --holdout of LABELED_DIR's photos."),
    holdout: float = typer.Option(0.2, "--holdout", help="Share of each class held out for scoring when --val is not given."),
    minutes: float = typer.Option(3.0, "--minutes", help="Training time budget (wall clock), after the photos are encoded."),
    model: Optional[str] = typer.Option(None, "--model", help="Codec model whose latents to learn (default: the default "
                                        "model); classify then needs archives made with it."),
    qualities: str = typer.Option("25,50,75,95", "--qualities", help="Qualities to train on (cycled over the flips and "
                                  "rotations) and to score at."),
    augment: int = typer.Option(8, "--augment", min=1, max=8, help="Flips and rotations encoded per training photo "
                                "(1: none; 4: those that keep width and height; 8: all)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Folder for cached latents (default: $IMGARC_CACHE or "
                                         "~/.cache/imgarc, in latents/)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Encode every photo again and keep nothing."),
    workers: int = typer.Option(1, "--workers", min=1, help="Processes that encode photos (each on one core)."),
    threads: int = typer.Option(0, "--threads", min=0, help="Training threads (0: every core this process may use)."),
    seed: int = typer.Option(0, "--seed"),
    joint: Optional[str] = typer.Option(None, "--joint", metavar="MODEL_ID", help="Then fine-tune the model's encoder "
                                        "together with the classifier (rate + distortion + γ·task loss) into a new "
                                        "model MODEL_ID; the task file is made for it. Archives to classify must be "
                                        "made with `--model MODEL_ID`."),
    joint_minutes: float = typer.Option(30.0, "--joint-minutes", help="Wall-time budget of the joint fine-tuning."),
    gamma: float = typer.Option(1.0, "--gamma", help="Weight of the task loss (nats per photo) against the rate "
                                "(bits per pixel) in joint fine-tuning."),
    export_dir: Optional[Path] = typer.Option(None, "--export-dir", help="Model folder for the --joint model and its "
                                              "models.json; must be on IMGARC_MODEL_PATH (default: the installed assets)."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace --out if it exists."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar while encoding."),
) -> None:
    """Train a small classifier on the latents of LABELED_DIR's photos and write it as a task file.

    Every photo is encoded once per flip/rotation (cached), the classifier (~320 k parameters) trains
    for --minutes on the CPU, and its top-1/top-5 accuracy on held-out photos is printed per quality.
    `imgarc classify ARCHIVE --task FILE` then labels archived photos without decoding their pixels.

    With --joint MODEL_ID, the encoder (g_a, h_a) and the classifier then train together for
    --joint-minutes into a new model that decodes with the original's decoder; both accuracies
    are printed.
    """
    require("imgarc learn", "torch")
    if joint is not None:
        require("imgarc learn --joint", "compressai")
    # torch loads only when this command runs (imgarc.tasks.learn imports it).
    from imgarc.codec.registry import assets_dir
    from imgarc.tasks.joint import JointConfig
    from imgarc.tasks.latent_data import default_cache_dir
    from imgarc.tasks.learn import JointOptions, LearnOptions, Stage, learn as run_learn
    from imgarc.tasks.taskfile import write_task

    if out.exists() and not force:
        raise UsageError(f"{out} already exists; use --force to replace it")
    if not out.parent.is_dir():
        raise UsageError(f"{out.parent} is not a folder: cannot write {out} there")
    options = LearnOptions(model_id=model, qualities=parse_qualities(qualities), augment=augment, seconds=minutes * 60,
                           holdout=holdout, heldout_dir=val, cache=None if no_cache else (cache or default_cache_dir()),
                           workers=workers, threads=threads or usable_cores(), seed=seed)
    folder = export_dir or assets_dir()
    if joint is not None:
        options.joint = JointOptions(joint, folder,
                                     JointConfig(seconds=joint_minutes * 60, gamma=gamma, threads=options.threads, seed=seed))
    screen = console()

    def log(entry) -> None:
        screen.print(f"step {entry.step}  epoch {entry.epoch:.1f}  {entry.seconds / 60:.1f} min  loss {entry.loss:.3f}  "
                     f"train acc {entry.accuracy:.1%}  lr {entry.lr:.1e}")

    def joint_log(entry) -> None:
        screen.print(f"joint step {entry.step}  {entry.seconds / 60:.1f} min  {entry.bpp:.3f} bpp  {entry.psnr:.2f} dB  "
                     f"task loss {entry.task_loss:.3f}  train acc {entry.accuracy:.1%}")

    with sigterm_as_interrupt(), progress_bar("encoding photos", progress) as bar:
        def stage(s: Stage) -> None:
            if bar is not None and s.total:
                bar(s.done, s.total, f"{s.name}: {s.label}")
            elif s.name == "training":
                screen.print(f"training for {minutes:g} min")
            elif s.name == "joint fine-tuning":
                screen.print(f"joint fine-tuning for {joint_minutes:g} min")

        report = run_learn(labeled, options, stage, log, joint_log)
    write_task(report.task, out, force)
    if report.left_out:
        names = ", ".join(str(p) for p, _ in report.left_out[:3]) + (f" and {len(report.left_out) - 3} more" if len(report.left_out) > 3 else "")
        warn(f"{len(report.left_out)} files are not photos imgarc codes and were left out: {names}")
    t = report.training
    screen.print(f"encoded {report.train_images} training and {report.heldout_images} held-out photos in "
                 f"{report.encode_seconds:.0f} s; trained {t.steps} steps ({t.epochs:.1f} epochs) in {t.wall_seconds:.0f} s")
    for q, a in report.heldout.items():
        plain = report.plain[q] if report.plain else None
        before = f"  (before joint fine-tuning: top-1 {plain.top1:.1%}  top-5 {plain.top5:.1%})" if plain else ""
        screen.print(f"held out, quality {q}: top-1 {a.top1:.1%}  top-5 {a.top5:.1%}  ({a.count} photos){before}")
    if report.joint is not None:
        screen.print(escape(f"model {report.task.model_id}: {report.joint.steps} joint steps in {report.joint.seconds / 60:.1f} "
                            f"min, exported to {folder}"))
    screen.print(escape(f"{out}: {len(report.task.classes)} classes, model {report.task.model_id}, "
                        f"top-1 {report.overall.top1:.1%} on held-out photos"))
