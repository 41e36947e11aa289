"""Joint fine-tuning of the encoder with a task (issue 25, item 4): what it buys and what it costs.

On AID (aid30: 30 aerial-scene classes, 150x150; `train/` for training, `val/` held out), one
`imgarc learn --joint` run through the library: the latent classifier trains on the default
model's latents (`--plain-minutes`), then it and the model's encoder (g_a, h_a) train together on
rate + λ·distortion + γ·cross-entropy (`--joint-minutes`) into a new model id. Reported against
the plain model and its classifier, per quality (q25, q50, q75, q95):

- top-1 / top-5 on the held-out photos (the plain classifier on the plain model's latents; the
  jointly trained one on the variant's), through the latents `classify` reads;
- bpp and PSNR of the held-out photos coded by each model (rANS, as archives code them); and
  bpp / PSNR / MS-SSIM on Kodak, with BD-rates of the variant against the plain model: what the
  variant costs on photos that are not the task's.

    python benchmarks/joint_task.py [--plain-minutes 5] [--joint-minutes 40] [--gamma 1] [--lr 1e-4]
        [--variant ID] [--work runs/joint] [--cache runs/latent_cache] [--out benchmarks/results/joint_task]

The variant goes to WORK/models (put it on IMGARC_MODEL_PATH to use it); an existing variant and
its task in WORK are reused (`--retrain` makes them again).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from common import first_files, machine_line
from int8_g_a import KODAK, bd_rates, codec_rate_distortion, curve_table, write_results

from imgarc.codec.registry import default_model_id, load_codec
from imgarc.tasks import read_task, write_task
from imgarc.tasks.dataset import scan_labeled
from imgarc.tasks.joint import JointConfig
from imgarc.tasks.learn import JointOptions, LearnOptions, learn

QUALITIES = (25, 50, 75, 95)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def train(args, parent: str) -> dict:
    """The learn run (or the record of an earlier one in --work)."""
    record_path, task_path = args.work / "learn.json", args.work / "joint.imgtask"
    if record_path.exists() and task_path.exists() and not args.retrain:
        return json.loads(record_path.read_text())
    models = args.work / "models"
    if args.retrain and models.exists():
        for f in models.iterdir():
            f.unlink()
    config = JointConfig(seconds=args.joint_minutes * 60, gamma=args.gamma, lr=args.lr, seed=args.seed)
    options = LearnOptions(model_id=parent, qualities=QUALITIES, seconds=args.plain_minutes * 60, heldout_dir=args.data / "val",
                           cache=args.cache, workers=2, seed=args.seed,
                           joint=JointOptions(args.variant, models, config))
    report = learn(args.data / "train", options, joint_log=lambda e: log(
        f"joint step {e.step} {e.seconds / 60:.1f} min {e.bpp:.3f} bpp {e.psnr:.2f} dB task {e.task_loss:.3f} acc {e.accuracy:.1%}"))
    assert report.plain is not None and report.joint is not None
    write_task(report.task, task_path, force=True)
    record = {
        "plain": {str(q): a.as_json() for q, a in report.plain.items()},
        "joint": {str(q): a.as_json() for q, a in report.heldout.items()},
        "plain_training": {"steps": report.training.steps, "seconds": round(report.training.wall_seconds)},
        "joint_training": {"steps": report.joint.steps, "seconds": round(report.joint.seconds), "gamma": config.gamma,
                           "batch": config.batch, "lr": config.lr, "classifier_lr": config.classifier_lr},
        "train_photos": report.train_images, "heldout_photos": report.heldout_images,
    }
    record_path.write_text(json.dumps(record, indent=2))
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/labeled/aid30"))
    parser.add_argument("--work", type=Path, default=Path("runs/joint"))
    parser.add_argument("--cache", type=Path, default=Path("runs/latent_cache"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/joint_task"))
    parser.add_argument("--plain-minutes", type=float, default=5.0)
    parser.add_argument("--joint-minutes", type=float, default=40.0)
    parser.add_argument("--gamma", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=JointConfig.lr, help="the encoder's learning rate")
    parser.add_argument("--variant", default="msh128-mixed-vr1-aid30", help="the jointly fine-tuned model's id")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--report", action="store_true", help="only write OUT.md again from OUT.json")
    args = parser.parse_args()
    if args.report:
        document = json.loads(args.out.with_suffix(".json").read_text())
        write_results(args.out, document, report(document))
        return
    (args.work / "models").mkdir(parents=True, exist_ok=True)
    # The variant's catalog must be readable before learn exports into it.
    os.environ["IMGARC_MODEL_PATH"] = os.pathsep.join(filter(None, [str(args.work / "models"), os.environ.get("IMGARC_MODEL_PATH")]))
    parent = default_model_id()
    record = train(args, parent)
    task = read_task(args.work / "joint.imgtask")
    log("coding the held-out photos and Kodak with both models")
    held = [im.path for im in scan_labeled(args.data / "val").images]
    kodak = first_files(KODAK, "*.png")
    models = {"plain": parent, "joint": task.model_id}
    aid = {k: codec_rate_distortion(load_codec(m), held, list(QUALITIES), with_ms_ssim=False) for k, m in models.items()}
    kodak_curves = {k: codec_rate_distortion(load_codec(m), kodak, list(QUALITIES)) for k, m in models.items()}
    document = {
        "machine": machine_line(), "command": " ".join(["python", "benchmarks/joint_task.py", *sys.argv[1:]]), "parent": parent, "variant": task.model_id, "variant_sha256": task.weights_sha256,
        **record,
        "aid30_val": {k: {str(q): v for q, v in c.items()} for k, c in aid.items()},
        "kodak": {k: {str(q): v for q, v in c.items()} for k, c in kodak_curves.items()},
        "kodak_bd_rate_vs_plain": bd_rates(kodak_curves["joint"], kodak_curves["plain"]),
        "aid30_bd_rate_vs_plain_psnr": bd_rates(aid["joint"], aid["plain"], ("psnr",))["psnr"],  # 150 px: no MS-SSIM
    }
    write_results(args.out, document, report(document))


def report(d: dict) -> str:
    qualities = [str(q) for q in QUALITIES]
    pt, jt = d["plain_training"], d["joint_training"]
    lines = [
        "# Joint fine-tuning of the encoder with a task (aid30)", "",
        f"Machine: {d['machine']}. Parent: `{d['parent']}`; variant `{d['variant']}` (its g_a and h_a fine-tuned; "
        f"decoder, coding tables and gains the parent's). Command: `{d['command']}`.", "",
        f"Plain classifier: {pt['steps']} steps in {pt['seconds']} s on the parent's cached latents of "
        f"{d['train_photos']} training photos × 8 flips/rotations. Joint: from it, {jt['steps']} steps "
        f"(batch {jt['batch']}) in {jt['seconds']} s, γ {jt['gamma']:g}, encoder lr {jt['lr']:g}, classifier lr "
        f"{jt['classifier_lr']:g}, cosine to zero. Held out: {d['heldout_photos']} photos.", "",
        "| quality | plain top-1 / top-5 | joint top-1 / top-5 | plain bpp / PSNR (aid30 val) | joint bpp / PSNR (aid30 val) |",
        "|---|---|---|---|---|",
    ]
    for q in qualities:
        p, j = d["plain"][q], d["joint"][q]
        pa, ja = d["aid30_val"]["plain"][q], d["aid30_val"]["joint"][q]
        lines.append(f"| q{q} | {p['top1']:.1%} / {p['top5']:.1%} | {j['top1']:.1%} / {j['top5']:.1%} | "
                     f"{pa['bpp']:.3f} / {pa['psnr']:.2f} | {ja['bpp']:.3f} / {ja['psnr']:.2f} |")
    bd = d["kodak_bd_rate_vs_plain"]
    fmt = lambda v: "n/a" if v is None else f"{v:+.2f} %"  # noqa: E731
    lines += ["", f"BD-rate of the variant vs the plain model: aid30 val {fmt(d['aid30_bd_rate_vs_plain_psnr'])} (PSNR); "
              f"Kodak {fmt(bd['psnr'])} (PSNR), {fmt(bd['ms_ssim'])} (MS-SSIM).", "",
              "Kodak (24 photos), mean bpp / PSNR / MS-SSIM:", "",
              curve_table("model", {k: {int(q): v for q, v in c.items()} for k, c in d["kodak"].items()}, list(QUALITIES), 3)]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
