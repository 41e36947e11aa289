"""imgarc's int8 g_s (issue 22): how much faster extract's network gets, at what rate-distortion cost.

Every row decodes as `imgarc extract` does, g_s from a weights file's graph (imgarc.runtime.
onnx_graphs; int8 layers as QDQ, which ONNX Runtime fuses into int8 kernels, 7-bit weights):

- float: the parent as shipped;
- int8, MinMax: the parent's own weights on the int8 grid of g_s's middle layers
  (fake_quant.quantizable_points), ranges measured on the ŷ of --calibration training crops
  at every rate point, no search, no training;
- each --variant ID=WEIGHTS: a model made by `imgarc optimize --int8 --int8-network g_s` (its
  grids searched, with or without fine-tuning g_s through them), decoded with its own g_s.

g_a, h_a, the integer h_s and the coding are the parent's in every row: the bits are the same,
only the pixels differ. For each: g_s's time on one Kodak photo's ŷ (768x512 at q75, one
thread, median of 5 after a warm-up) as a ratio to float, and Kodak's rate-distortion curve
(24 photos at --qualities), BD-rate vs float in PSNR and MS-SSIM. For each variant, also how
far the torch runtime's decode (fake quantization) lands from ONNX Runtime's on that photo.

    python benchmarks/int8_g_s.py --variant msh128-mixed-vr1-int8s=runs/int8-gs-ptq/export/msh128-mixed-vr1-int8s.npz
        [--calibration 16] [--qualities 10,25,50,75,95] [--out benchmarks/results/int8_g_s]
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import torch

from common import first_files, load_rgb, machine_line
from int8_g_a import (KODAK, TIMED_PHOTO, _as_input, calibration_photos, codec_rate_distortion, compare_to_float,
                      graph_ms, session, speed_and_curves, write_results)

from imgarc.codec.fake_quant import calibrate, decoded_latents, quantizable_points
from imgarc.codec.image_codec import to_pixels
from imgarc.codec.registry import default_model_id, load_codec
from imgarc.codec.weights import load_weights
from imgarc.runtime import onnx_graphs
from imgarc.runtime.torch_networks import TorchNetworks

TIMED_QUALITY = 75


def g_s_graph(params, ranges, m: int) -> bytes:
    return onnx_graphs.build_graph("g_s", onnx_graphs.G_S, params, m, ranges=ranges)


def curve_with(codec, graph: bytes, photos: list[Path], qualities: list[int]) -> dict:
    s = session(graph)
    # The benchmark swaps g_s in this codec object only; the codec tiles as for any photo.
    codec.networks.synthesis = lambda y: s.run(None, {"x": np.ascontiguousarray(y, np.float32)})[0]
    return codec_rate_distortion(codec, photos, qualities)


def torch_agreement(weights, graph: bytes, y_hat: np.ndarray) -> dict[str, float]:
    """Pixels of one photo decoded by the torch runtime (fake quantization) against ONNX Runtime's
    int8 kernels: the share of values that differ, and by how many levels at most."""
    onnx_rgb = to_pixels(session(graph).run(None, {"x": y_hat})[0])
    torch_rgb = to_pixels(TorchNetworks(weights.architecture, weights.params, weights.model_id,
                                        int8_ranges=weights.int8_ranges).synthesis(y_hat))
    diff = np.abs(onnx_rgb.astype(int) - torch_rgb.astype(int))
    return {"differing_share": float((diff > 0).mean()), "max_levels": int(diff.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", action="append", default=[], help="ID=WEIGHTS of a model made by imgarc optimize "
                        "--int8 --int8-network g_s")
    parser.add_argument("--calibration", type=int, default=16, help="training photos whose crops calibrate the MinMax grid")
    parser.add_argument("--qualities", default="10,25,50,75,95")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/int8_g_s"))
    args = parser.parse_args()
    qualities = [int(q) for q in args.qualities.split(",")]
    model_id = default_model_id()
    codec = load_codec(model_id)
    params, m = codec.weights.params, codec.architecture.M
    photos = first_files(KODAK, "*.png")
    y_hat = codec.y_hat(codec.analyse(load_rgb(KODAK / TIMED_PHOTO), TIMED_QUALITY))[None]

    model = TorchNetworks(codec.architecture, params, model_id).model
    crops = torch.cat([torch.from_numpy(_as_input(load_rgb(p)[:256, :256])) for p in calibration_photos(args.calibration)])
    minmax = calibrate(model.g_s, "g_s", decoded_latents(model, crops).split(4), quantizable_points(model.g_s, "g_s"))
    rows: dict[str, dict] = {}
    for name, graph in (("float", g_s_graph(params, None, m)), ("int8, MinMax", g_s_graph(params, minmax, m))):
        rows[name] = {"g_s_ms": graph_ms(graph, y_hat), "curve": curve_with(codec, graph, photos, qualities)}
        print(name, round(rows[name]["g_s_ms"], 1), "ms", flush=True)
    for spec in args.variant:
        variant_id, _, path = spec.partition("=")
        weights, _ = load_weights(Path(path))
        if not any(k.startswith("g_s.") for k in weights.int8_ranges) or weights.tables_sha256 != codec.weights.tables_sha256:
            sys.exit(f"{path}: not an int8 g_s variant of {model_id}")
        graph = g_s_graph(weights.params, weights.int8_ranges, m)
        name = f"int8, variant {variant_id} ({weights.meta.get('steps')} training steps)"
        rows[name] = {"g_s_ms": graph_ms(graph, y_hat), "curve": curve_with(codec, graph, photos, qualities),
                      "weights": str(path), "steps": weights.meta.get("steps"), "train_seconds": weights.meta.get("train_seconds"),
                      "torch_vs_onnx": torch_agreement(weights, graph, y_hat)}
        print(name, round(rows[name]["g_s_ms"], 1), "ms", rows[name]["torch_vs_onnx"], flush=True)
    compare_to_float(rows, "g_s")
    document = {"model": model_id, "machine": machine_line(), "qualities": qualities, "calibration_photos": len(crops),
                "photos": len(photos), "command": " ".join(["python benchmarks/int8_g_s.py", *sys.argv[1:]]), "results": rows}
    write_results(args.out, document, report(document))


def report(d: dict) -> str:
    out = io.StringIO()
    out.write(f"# int8 g_s: calibrated, searched, quantization-aware trained\n\nCommand: `{d['command']}`  \n"
              f"Machine: {d['machine']}  \nParent `{d['model']}`; Kodak ({d['photos']} photos) at --quality "
              f"{', '.join(map(str, d['qualities']))}; the MinMax grid calibrated on {d['calibration_photos']} training crops; "
              "every int8 row: g_s's middle layers (second and third transposed convolutions and their IGDNs), 7-bit "
              "weights; the same bits as float in every row.\n\n")
    out.write(speed_and_curves(d["results"], d["qualities"], "g_s"))
    agreement = [(name, r["torch_vs_onnx"]) for name, r in d["results"].items() if "torch_vs_onnx" in r]
    if agreement:
        out.write(f"\ntorch runtime vs ONNX Runtime, {TIMED_PHOTO} at q{TIMED_QUALITY}:\n\n")
        for name, a in agreement:
            out.write(f"- {name}: {a['differing_share'] * 100:.3f} % of pixel values differ, by at most {a['max_levels']} levels\n")
    return out.getvalue()


if __name__ == "__main__":
    main()
