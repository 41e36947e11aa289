"""Classifying archived photos from their latents, against pixels (issue 25), on AID (aid30).

Three classifiers of one task (30 aerial-scene classes, 150x150 photos; `train/`, 120 per class,
for training; `val/`, 30 per class, held out and never looked at until the end):

- latent: imgarc.tasks' latent classifier (ŷ and log σ̂ through their own stems, ~320 k
  parameters), trained on the latents of the training photos under their 8 flips/rotations,
  each at one of the qualities (what `imgarc learn` does), scored on archives of the held-out
  photos at each quality: the whole `imgarc classify` path (entropy decoding, integer h_s,
  classifier; no g_s).
- rgb: a pixel classifier of about the same size (~335 k parameters, four stride-2 3x3
  convolutions then one more), the same training budget, random flips/rotations, trained on the
  original training photos; scored on the original held-out photos.
- decode-then-classify: that pixel classifier on the pixels imgarc decodes from the same
  archives (EntryDecoder.pixels: the latent path plus g_s).

Same budget: both train for the same CPU time (`--budget` CPU seconds, one thread, measured with
time.process_time so that other jobs on a shared machine do not shorten either run), the same
optimizer and schedule (imgarc.tasks.train). Encoding the training photos' latents (g_a, once,
cached) is not part of the budget, as decoding the training JPEGs is not part of the pixel one's;
its time is reported.

Time per image is the whole path from the archive entry (read and CRC-check the payload, entropy
decode, and then classify, or synthesize and classify), both paths measured on the same entry one
after the other in one process, every network and BLAS on one thread (OPENBLAS_NUM_THREADS=1
is set before numpy loads; g_s runs on one thread by design): milliseconds on one core. Medians
over every held-out photo at every quality. MACs: multiply-accumulates per 150x150 photo
(classifiers, g_s, and the integer h_s, which runs in float64 matrix products).

    python benchmarks/latent_classify.py [--data ../shared/datasets/labeled/aid30] [--budget 300]
        [--out benchmarks/results/latent_classify] [--work runs/latent_classify] [--cache runs/latent_cache]

Writes OUT.json (every number) and OUT.md (the report); task files and archives go to --work.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: the timed paths run on one core
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from common import load_rgb, machine_line

from imgarc import api
from imgarc.api.latents import photo_latents
from imgarc.api.results import Timings
from imgarc.archive import ArchiveReader
from imgarc.codec.registry import default_model_id, load_codec
from imgarc.fileio import write_file_atomic
from imgarc.tasks.dataset import LabeledSet, scan_labeled
from imgarc.tasks.evaluate import accuracy, predict
from imgarc.tasks.features import FEATURES, photo_features
from imgarc.tasks.latent_data import encode_photos, heldout_pairs, training_pairs
from imgarc.tasks.network import latent_net, rgb_net
from imgarc.tasks.taskfile import LATENT_CLASSIFIER, RGB_CLASSIFIER, Task, read_task, write_task
from imgarc.tasks.train import TrainConfig, train_classifier


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def g_s_macs(codec, padded_h: int, padded_w: int) -> int:
    """Multiply-accumulates of g_s: four 5x5 stride-2 transposed convolutions and three inverse GDNs."""
    p = codec.weights.params
    h, w = padded_h // 16, padded_w // 16
    total = 0
    for i in (0, 2, 4, 6):
        c_in, c_out, k, _ = p[f"g_s.{i}.weight"].shape
        total += h * w * c_in * c_out * k * k
        h, w = 2 * h, 2 * w
        if i < 6:
            total += h * w * c_out * c_out  # inverse GDN: a 1x1 convolution of x²
    return total


def h_s_macs(codec, padded_h: int, padded_w: int) -> int:
    """Multiply-accumulates of the integer h_s (transposed layers count only the taps that meet inputs)."""
    h, w = padded_h // 64, padded_w // 64
    total = 0
    for layer in codec.tables.hyper.layers:
        c_out, c_in, k, _ = layer.weight.shape
        h, w = h * layer.upsample // layer.stride, w * layer.upsample // layer.stride
        total += h * w * c_out * c_in * k * k // (layer.upsample ** 2)
    return total


def class_of(path: str) -> str:
    return path.split("/", 1)[0]


def stack_features(encoded, images, pairs: list[tuple[int, int]] | None = None):
    samples, labels = [], []
    for features, n in zip(encoded.features, encoded.kept):
        for pair, f in features.items():
            if pairs is None or pair in pairs:
                samples.append(f)
                labels.append(images[n].label)
    return samples, np.array(labels)


def train_both(args, train: LabeledSet, model_id: str, qualities: tuple[int, ...]) -> dict:
    log(f"encoding {len(train.images)} training photos x {args.augment} flips/rotations (cached in {args.cache})")
    encoded = encode_photos([im.path for im in train.images], lambda p, sha: training_pairs(sha, args.augment, qualities),
                            model_id, args.cache, args.workers)
    samples, labels = stack_features(encoded, train.images)
    stacked = np.stack(samples)
    del samples
    codec = load_codec(model_id)
    config = TrainConfig(seconds=args.budget, clock="cpu", threads=1, seed=args.seed)
    log(f"training the latent classifier on {len(stacked)} samples for {args.budget} CPU s")
    spec = latent_net(stacked.shape[1], len(train.classes))
    latent = train_classifier(spec, stacked, labels, config, lambda e: log(f"  latent step {e.step} epoch {e.epoch:.1f} "
                                                                          f"loss {e.loss:.3f} acc {e.accuracy:.3f}"))
    del stacked
    write_task(Task(LATENT_CLASSIFIER, FEATURES, train.classes, spec, latent.arrays, codec.model_id, codec.weights_sha256,
                    {"budget_cpu_seconds": args.budget, "steps": latent.steps, "epochs": latent.epochs}),
               args.work / "latent.imgtask", force=True)

    log(f"loading {len(train.images)} training photos' pixels")
    pixels = np.stack([load_rgb(im.path).transpose(2, 0, 1) for im in train.images])
    rgb_spec = rgb_net(len(train.classes))
    log(f"training the pixel classifier for {args.budget} CPU s")
    rgb = train_classifier(rgb_spec, pixels, train.labels, TrainConfig(**{**config.__dict__, "random_dihedral": True}),
                           lambda e: log(f"  rgb step {e.step} epoch {e.epoch:.1f} loss {e.loss:.3f} acc {e.accuracy:.3f}"))
    write_task(Task(RGB_CLASSIFIER, "rgb-uint8/v1", train.classes, rgb_spec, rgb.arrays, None, None,
                    {"budget_cpu_seconds": args.budget, "steps": rgb.steps, "epochs": rgb.epochs}),
               args.work / "rgb.imgtask", force=True)
    return {
        "encode_seconds": round(encoded.seconds, 1), "training_samples": len(labels),
        "latent": {"steps": latent.steps, "epochs": round(latent.epochs, 2), "cpu_seconds": round(latent.seconds, 1),
                   "wall_seconds": round(latent.wall_seconds, 1), "samples_seen": latent.steps * config.batch},
        "rgb": {"steps": rgb.steps, "epochs": round(rgb.epochs, 2), "cpu_seconds": round(rgb.seconds, 1),
                "wall_seconds": round(rgb.wall_seconds, 1), "samples_seen": rgb.steps * config.batch},
    }


def archive_at(args, val_dir: Path, model_id: str, quality: int) -> Path:
    out = args.work / f"val_{model_id}_q{quality}.iarc"
    if not out.exists():
        log(f"compressing {val_dir} at quality {quality}")
        api.compress_folder(val_dir, out, quality=quality, model_id=model_id)
    return out


def run_archive(archive: Path, latent_task: Task, rgb_task: Task) -> dict:
    """Both paths on every entry, one after the other: probabilities and times."""
    decoder = api.EntryDecoder()
    latent_clf, rgb_clf = latent_task.classifier(1), rgb_task.classifier(1)
    classes = latent_task.classes
    rows = {k: [] for k in ("label", "latent_probs", "rgb_probs", "latent_ms", "decode_ms", "latent_entropy_ms",
                            "latent_h_s_ms", "decode_g_s_ms", "bpp")}
    with ArchiveReader(archive) as reader:
        headers = [reader.header(i) for i in range(len(reader))]
        for i, header in enumerate(headers[:3]):  # warm-up: model load, graph set-up
            decoder.pixels(header, reader.payload(i))
            photo_latents(decoder, i, header, reader.payload(i))
        for i, header in enumerate(headers):
            lt, dt = Timings(), Timings()
            t0 = time.perf_counter()
            photo = photo_latents(decoder, i, header, reader.payload(i), lt)
            p_lat = latent_clf.probabilities(photo_features(photo)[None])[0]
            t1 = time.perf_counter()
            rgb = decoder.pixels(header, reader.payload(i), dt)
            p_rgb = rgb_clf.probabilities(np.ascontiguousarray(rgb.transpose(2, 0, 1))[None].astype(np.float32))[0]
            t2 = time.perf_counter()
            rows["label"].append(classes.index(class_of(header.path)))
            rows["latent_probs"].append(p_lat)
            rows["rgb_probs"].append(p_rgb)
            rows["latent_ms"].append((t1 - t0) * 1000)
            rows["decode_ms"].append((t2 - t1) * 1000)
            rows["latent_entropy_ms"].append(lt.coder * 1000)
            rows["latent_h_s_ms"].append(lt.model * 1000)
            rows["decode_g_s_ms"].append((dt.model - lt.model) * 1000)  # g_s: the decode path's network time less h_s's
            rows["bpp"].append(header.payload_size * 8 / (header.width * header.height))
    return {k: np.array(v) for k, v in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/labeled/aid30"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/latent_classify"))
    parser.add_argument("--work", type=Path, default=Path("runs/latent_classify"))
    parser.add_argument("--cache", type=Path, default=Path("runs/latent_cache"))
    parser.add_argument("--model", default=None, help="codec model (default: the default model)")
    parser.add_argument("--budget", type=float, default=300.0, help="training budget of each classifier, CPU seconds")
    parser.add_argument("--qualities", default="25,50,75,95")
    parser.add_argument("--augment", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="processes encoding the training photos")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retrain", action="store_true", help="train again even if --work holds both task files")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    qualities = tuple(int(q) for q in args.qualities.split(","))
    model_id = args.model or default_model_id()
    codec = load_codec(model_id)
    load_before = os.getloadavg()
    train = scan_labeled(args.data / "train", what="training folder")
    val = scan_labeled(args.data / "val", train.classes, "held-out folder")
    log(f"{len(train.images)} training and {len(val.images)} held-out photos, {len(train.classes)} classes; model {model_id}")

    training, reused = None, True
    if args.retrain or not all((args.work / f).exists() for f in ("latent.imgtask", "rgb.imgtask", "training.json")):
        training, reused = train_both(args, train, model_id, qualities), False
        write_file_atomic(args.work / "training.json", json.dumps(training, indent=2).encode())
    training = json.loads((args.work / "training.json").read_text())
    latent_task, rgb_task = read_task(args.work / "latent.imgtask"), read_task(args.work / "rgb.imgtask")

    # What encoding a training sample costs when nothing is cached: 20 photos, one flip/rotation each.
    sample = [im.path for im in train.images[::len(train.images) // 20]][:20]
    fresh = encode_photos(sample, lambda p, sha: training_pairs(sha, 1, qualities), model_id, None, 1)
    encode_ms = round(fresh.seconds / len(sample) * 1000, 1)

    # The pixel classifier on the original held-out photos, timed from the file.
    rgb_clf = rgb_task.classifier(1)
    original_ms, original_probs = [], []
    for im in val.images:
        t0 = time.perf_counter()
        pixels = load_rgb(im.path.read_bytes()).transpose(2, 0, 1)[None].astype(np.float32)
        original_probs.append(rgb_clf.probabilities(pixels)[0])
        original_ms.append((time.perf_counter() - t0) * 1000)
    original = accuracy(np.array(original_probs), val.labels)

    # The same held-out photos' latents as learn computes them (cache): must equal the archive's.
    cached = encode_photos([im.path for im in val.images], lambda p, sha: heldout_pairs(qualities), model_id, args.cache,
                           args.workers)

    per_quality = {}
    all_runs = []
    for q in qualities:
        archive = archive_at(args, args.data / "val", model_id, q)
        log(f"classifying {archive} both ways")
        r = run_archive(archive, latent_task, rgb_task)
        all_runs.append(r)
        lat, dec = accuracy(r["latent_probs"], r["label"]), accuracy(r["rgb_probs"], r["label"])
        samples, _ = stack_features(cached, val.images, [(0, q)])
        offline = predict(latent_task.classifier(1), samples)
        same = int((offline.argmax(1) == r["latent_probs"].argmax(1)).sum()) if len(offline) == len(r["label"]) else None
        per_quality[q] = {
            "bpp": round(float(r["bpp"].mean()), 4),
            "latent": {"top1": round(lat.top1, 4), "top5": round(lat.top5, 4)},
            "decode_then_classify": {"top1": round(dec.top1, 4), "top5": round(dec.top5, 4)},
            "latent_ms_median": round(float(np.median(r["latent_ms"])), 2),
            "decode_ms_median": round(float(np.median(r["decode_ms"])), 2),
            "speedup_median": round(float(np.median(r["decode_ms"]) / np.median(r["latent_ms"])), 2),
            "latent_entropy_decode_ms_median": round(float(np.median(r["latent_entropy_ms"])), 2),
            "latent_h_s_ms_median": round(float(np.median(r["latent_h_s_ms"])), 2),
            "g_s_ms_median": round(float(np.median(r["decode_g_s_ms"])), 2),
            "cache_predictions_equal_archive": same,
        }
        log(f"  q{q}: {per_quality[q]}")

    latent_ms = np.concatenate([r["latent_ms"] for r in all_runs])
    decode_ms = np.concatenate([r["decode_ms"] for r in all_runs])
    ph, pw = 192, 192  # 150x150 padded to the models' stride of 64
    macs = {
        "latent_classifier": latent_task.network.macs(10, 10), "rgb_classifier": rgb_task.network.macs(150, 150),
        "h_s_integer": h_s_macs(codec, ph, pw), "g_s": g_s_macs(codec, ph, pw),
    }
    macs["latent_path"] = macs["h_s_integer"] + macs["latent_classifier"]
    macs["decode_then_classify_path"] = macs["h_s_integer"] + macs["g_s"] + macs["rgb_classifier"]
    result = {
        "command": "python " + " ".join(sys.argv), "machine": machine_line(), "load_average_before": load_before,
        "load_average_after": os.getloadavg(), "model": model_id, "data": str(args.data),
        "train_photos": len(train.images), "heldout_photos": len(val.images), "classes": len(train.classes),
        "qualities": list(qualities), "augment": args.augment, "budget_cpu_seconds": args.budget, "training": training,
        "training_reused": reused,
        "encode_ms_per_sample_uncached": encode_ms,
        "parameters": {"latent": latent_task.network.parameters(), "rgb": rgb_task.network.parameters()},
        "macs": macs,
        "rgb_on_original_pixels": {"top1": round(original.top1, 4), "top5": round(original.top5, 4),
                                   "ms_median_from_jpeg_file": round(float(np.median(original_ms)), 2)},
        "per_quality": {str(q): v for q, v in per_quality.items()},
        "all_qualities": {"latent_ms_median": round(float(np.median(latent_ms)), 2),
                          "decode_ms_median": round(float(np.median(decode_ms)), 2),
                          "latent_ms_mean": round(float(latent_ms.mean()), 2),
                          "decode_ms_mean": round(float(decode_ms.mean()), 2),
                          "speedup_median": round(float(np.median(decode_ms) / np.median(latent_ms)), 2)},
    }
    write_file_atomic(args.out.with_suffix(".json"), (json.dumps(result, indent=2) + "\n").encode())
    write_file_atomic(args.out.with_suffix(".md"), report(result).encode())
    log(f"wrote {args.out.with_suffix('.md')}")


def report(r: dict) -> str:
    t, m = r["training"], r["macs"]
    o = r["rgb_on_original_pixels"]
    a = r["all_qualities"]
    qs = r["per_quality"]
    mean_latent = np.mean([v["latent"]["top1"] for v in qs.values()])
    lines = [
        "# Classifying archived photos from their latents (AID, aid30)", "",
        f"Command: `{r['command']}`  ",
        f"Machine: {r['machine']}; load average {r['load_average_before'][0]:.1f} before, "
        f"{r['load_average_after'][0]:.1f} after  ",
        f"Data: {r['train_photos']} training photos (`train/`), {r['heldout_photos']} held out (`val/`), "
        f"{r['classes']} classes, 150x150; codec model `{r['model']}`", "",
        "## Accuracy on the held-out photos", "",
        "| quality | bpp | latent top-1 | latent top-5 | decode-then-classify top-1 | top-5 |",
        "|---|---|---|---|---|---|",
    ]
    for q, v in qs.items():
        lines.append(f"| {q} | {v['bpp']:.3f} | **{v['latent']['top1']:.1%}** | {v['latent']['top5']:.1%} | "
                     f"{v['decode_then_classify']['top1']:.1%} | {v['decode_then_classify']['top5']:.1%} |")
    lines += [
        f"| original pixels (no archive) | – | – | – | rgb {o['top1']:.1%} | {o['top5']:.1%} |", "",
        f"Latent top-1, mean over the qualities: **{mean_latent:.1%}**, against **{o['top1']:.1%}** for the pixel "
        f"classifier of the same size and budget on the original photos.", "",
        "## Time per photo, whole path from the archive entry (one core, medians)", "",
        "| quality | latent path ms | (entropy decode, h_s) | decode-then-classify ms | (g_s) | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for q, v in qs.items():
        lines.append(f"| {q} | {v['latent_ms_median']:.1f} | ({v['latent_entropy_decode_ms_median']:.1f}, "
                     f"{v['latent_h_s_ms_median']:.1f}) | {v['decode_ms_median']:.1f} | ({v['g_s_ms_median']:.1f}) | "
                     f"{v['speedup_median']:.2f}x |")
    lines += [
        f"| all | {a['latent_ms_median']:.1f} | | {a['decode_ms_median']:.1f} | | **{a['speedup_median']:.2f}x** |", "",
        f"Pixel classifier from the original JPEG file (decode + classify): {o['ms_median_from_jpeg_file']:.1f} ms.", "",
    ]
    lines += [
        "## Size and compute", "",
        "| | parameters | MACs per 150x150 photo |", "|---|---|---|",
        f"| latent classifier | {r['parameters']['latent']:,} | {m['latent_classifier'] / 1e6:.1f} M |",
        f"| pixel classifier | {r['parameters']['rgb']:,} | {m['rgb_classifier'] / 1e6:.1f} M |",
        f"| integer h_s (both paths; float64 matrix products) | | {m['h_s_integer'] / 1e6:.1f} M |",
        f"| g_s (decode-then-classify only) | | {m['g_s'] / 1e6:.1f} M |",
        f"| latent path | | {m['latent_path'] / 1e6:.1f} M |",
        f"| decode-then-classify path | | {m['decode_then_classify_path'] / 1e6:.1f} M |", "",
        "## Training (same budget: CPU seconds, one thread)", "",
        "| | steps | epochs | CPU s | wall s | samples seen |", "|---|---|---|---|---|---|",
        f"| latent | {t['latent']['steps']} | {t['latent']['epochs']} | {t['latent']['cpu_seconds']} | "
        f"{t['latent']['wall_seconds']} | {t['latent']['samples_seen']:,} |",
        f"| pixel | {t['rgb']['steps']} | {t['rgb']['epochs']} | {t['rgb']['cpu_seconds']} | "
        f"{t['rgb']['wall_seconds']} | {t['rgb']['samples_seen']:,} |", "",
        f"Latent training samples: {t['training_samples']:,} ({r['train_photos']} photos x {r['augment']} flips/rotations, "
        f"qualities {', '.join(map(str, r['qualities']))} in turn), encoded once and cached (the training run read "
        f"them in {t['encode_seconds']:.0f} s; encoding costs {r['encode_ms_per_sample_uncached']:.0f} ms per "
        f"photo and flip/rotation: g_a and h_a on ONNX Runtime, the integer h_s; not part of the budget). An epoch of the latent classifier is one pass over all "
        f"{r['augment']} flips/rotations; the pixel classifier flips/rotates at random.", "",
        *(["The classifiers were trained by an earlier run of this command (the task files and training.json in "
           "--work) and reused here; everything else above was measured in this run.", ""] if r.get("training_reused") else []),
        "Cached latents (what `learn` trains and scores on) against the archives' (what `classify` reads): "
        + ", ".join(f"q{q} {v['cache_predictions_equal_archive']}/{r['heldout_photos']}" for q, v in qs.items())
        + " identical predictions.", "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
