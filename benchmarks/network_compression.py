"""The parent against its pruned variants, each with float and int8 g_a, in one run (issue 22).

Per model: weights file size, parameters, multiply-adds per pixel (g_a+h_a+g_s), g_a's and g_s's
time on one Kodak photo (768x512, one thread, median of 5 after a warm-up) as ratios to the
parent's, and Kodak's curve (24 photos, `--qualities`: mean bpp, PSNR, MS-SSIM) with BD-rates
against the parent and against WebP and AVIF (their curves from the committed `imgarc bench kodak`
results, the same photos). "int8 g_a" is benchmarks/int8_g_a.py's best post-training
quantization (every convolution but the last), calibrated the same way.

Variants are checkpoints of `imgarc optimize` runs, exported here (needs the [train] extra):

    python benchmarks/network_compression.py --variant msh128-k050-wip=runs/opt-k050/checkpoint.pt
        [--variant ID=CHECKPOINT ...] [--qualities 10,25,50,75,95] [--out benchmarks/results/network_compression]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from common import first_files, load_rgb, machine_line
from int8_g_a import (KODAK, TIMED_PHOTO, bd_rates, calibration_photos, curve_table, float_graph, graph_ms, quantized,
                      rate_distortion, write_results)

from imgarc.api.models import model_facts
from imgarc.codec.registry import default_model_id, find_model, load_codec
from imgarc.train.publish import publish_checkpoint

BENCH_RESULTS = Path("benchmarks/results/bench_kodak/results.json")
CLASSICAL = ("webp", "avif")


def classical_curves() -> dict[str, dict[int, dict[str, float]]]:
    """WebP's and AVIF's Kodak curves from the committed bench results, aggregated as
    rate_distortion aggregates (total bits over total pixels, mean PSNR and MS-SSIM)."""
    methods = json.loads(BENCH_RESULTS.read_text())["methods"]
    curves: dict[str, dict[int, dict[str, float]]] = {name: {} for name in CLASSICAL}
    for m in methods:
        if m["family"] in CLASSICAL and m["status"] == "ok":
            images = m["images"]
            pixels = sum(i["width"] * i["height"] for i in images)
            curves[m["family"]][m["params"]["quality"]] = {
                "bpp": sum(i["bytes"] for i in images) * 8 / pixels, "psnr": float(np.mean([i["psnr"] for i in images])),
                "ms_ssim": float(np.mean([i["ms_ssim"] for i in images]))}
    return curves


def g_s_ms(codec, runs: int = 5) -> float:
    rgb = load_rgb(KODAK / TIMED_PHOTO)
    y_hat = codec.y_hat(codec.analyse(rgb, 75 if codec.variable_rate else None))[None]
    codec.networks.synthesis(y_hat)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        codec.networks.synthesis(y_hat)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def export_variants(variants: list[str], folder: Path, parent: str) -> list[str]:
    ids = []
    for spec in variants:
        model_id, _, checkpoint = spec.partition("=")
        publish_checkpoint(Path(checkpoint), model_id, folder, find_model(parent).quality,
                           f"{parent} pruned (imgarc optimize), exported for benchmarks/network_compression.py",
                           make_default=False, parent=parent)
        ids.append(model_id)
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", action="append", default=[], help="ID=CHECKPOINT of an imgarc optimize run")
    parser.add_argument("--qualities", default="10,25,50,75,95")
    parser.add_argument("--calibration", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/network_compression"))
    parser.add_argument("--work", type=Path, default=Path("runs/network_compression"))
    args = parser.parse_args()
    qualities = [int(q) for q in args.qualities.split(",")]
    parent = default_model_id()
    models_dir = args.work / "models"
    variant_ids = export_variants(args.variant, models_dir, parent)
    os.environ["IMGARC_MODEL_PATH"] = str(models_dir)
    photos = first_files(KODAK, "*.png")
    calibration = calibration_photos(args.calibration)
    x = np.ascontiguousarray(load_rgb(KODAK / TIMED_PHOTO).transpose(2, 0, 1)[None], np.float32) / np.float32(255)
    rows: dict[str, dict] = {}
    for model_id in [parent, *variant_ids]:
        facts = model_facts(find_model(model_id))
        codec = load_codec(model_id)
        model = float_graph(codec.weights.params)
        last = [n.name for n in model.graph.node if n.op_type == "Conv"][-1]
        synthesis_ms = g_s_ms(codec)
        for g_a, graph in (("float", model.SerializeToString()), ("int8", quantized(model, [last], calibration, args.work))):
            name = f"{model_id} ({g_a} g_a)"
            macs = facts.macs_per_pixel
            rows[name] = {"model": model_id, "g_a": g_a, "weights_mb": facts.weights_bytes / 1e6, "parameters": facts.parameters,
                          "macs_per_pixel": macs["g_a"] + macs["h_a"] + macs["g_s"], "g_a_ms": graph_ms(graph, x),
                          "g_s_ms": synthesis_ms, "curve": rate_distortion(codec, graph, photos, qualities)}
            print(name, {k: v for k, v in rows[name].items() if k != "curve"}, flush=True)
    reference = rows[f"{parent} (float g_a)"]
    classical = classical_curves()
    for r in rows.values():
        r["g_a_ratio"] = r["g_a_ms"] / reference["g_a_ms"]
        r["g_s_ratio"] = r["g_s_ms"] / reference["g_s_ms"]
        r["bd_rate"] = {"parent": bd_rates(r["curve"], reference["curve"]), **{c: bd_rates(r["curve"], classical[c]) for c in CLASSICAL}}
    document = {"parent": parent, "machine": machine_line(), "qualities": qualities, "photos": len(photos),
                "calibration_photos": len(calibration), "rows": rows}
    write_results(args.out, document, report(document))


def report(d: dict) -> str:
    out = io.StringIO()
    out.write(f"# Network compression: parent vs pruned variants, float vs int8 g_a\n\n"
              f"Command: `python benchmarks/network_compression.py` (variants: see the JSON)  \n"
              f"Machine: {d['machine']}  \nParent `{d['parent']}`; Kodak ({d['photos']} photos) at --quality "
              f"{', '.join(map(str, d['qualities']))}; int8 ranges from {d['calibration_photos']} training crops.\n\n")
    out.write("| model | weights MB | parameters | MACs/px (g_a+h_a+g_s) | g_a ms (×parent) | g_s ms (×parent) | "
              "BD-rate vs parent PSNR / MS-SSIM | vs WebP | vs AVIF |\n|---|---|---|---|---|---|---|---|---|\n")

    def pair(bd: dict) -> str:
        return " / ".join("n/a" if bd[m] is None else f"{bd[m]:+.1f} %" for m in ("psnr", "ms_ssim"))

    for name, r in d["rows"].items():
        out.write(f"| {name} | {r['weights_mb']:.1f} | {r['parameters']:,} | {r['macs_per_pixel']:,.0f} | "
                  f"{r['g_a_ms']:.0f} ({r['g_a_ratio']:.2f}) | {r['g_s_ms']:.0f} ({r['g_s_ratio']:.2f}) | "
                  f"{pair(r['bd_rate']['parent'])} | {pair(r['bd_rate']['webp'])} | {pair(r['bd_rate']['avif'])} |\n")
    out.write("\n" + curve_table("model", {name: r["curve"] for name, r in d["rows"].items()}, d["qualities"], 3))
    return out.getvalue()


if __name__ == "__main__":
    main()
