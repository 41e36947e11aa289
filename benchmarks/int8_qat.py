"""imgarc's int8 g_a (issue 22): its grids calibrated, searched or trained, against the float parent.

Every row runs g_a as `imgarc compress` does, from a weights file's graph (imgarc.runtime.
onnx_graphs; int8 layers as QDQ, which ONNX Runtime fuses into int8 kernels):

- float: the parent as shipped;
- int8, MinMax: the parent's own weights on the int8 grid of every convolution but the last,
  its activation ranges measured on --calibration training crops (imgarc.codec.fake_quant.
  calibrate), no training: post-training quantization as ONNX Runtime's tools do it;
- int8, searched: the same, each range then narrowed to where y comes closest to the float
  g_a's (fake_quant.calibrated_ranges, what `imgarc optimize --int8` starts from);
- each --variant ID=WEIGHTS: a model made by `imgarc optimize --int8` (the same grid, g_a
  fine-tuned through it), run with the parent's h_a, h_s and g_s: its decoder and tables are
  the parent's.

For each: g_a's time on one Kodak photo (768x512, one thread, median of 5 after a warm-up) as
a ratio to float, and Kodak's rate-distortion curve (24 photos at --qualities; the parent's h_a,
integer h_s, rANS and g_s as shipped), BD-rate vs float in PSNR and MS-SSIM.

    python benchmarks/int8_qat.py --variant msh128-mixed-vr1-int8=runs/int8-qat/export/msh128-mixed-vr1-int8.npz
        [--calibration 16] [--qualities 10,25,50,75,95] [--out benchmarks/results/int8_qat]
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import torch

from common import first_files, load_rgb, machine_line
from int8_g_a import (KODAK, TIMED_PHOTO, _as_input, calibration_photos, compare_to_float, graph_ms, rate_distortion,
                      speed_and_curves, write_results)

from imgarc.codec.fake_quant import calibrate, calibrated_ranges, quantizable_points
from imgarc.codec.registry import default_model_id, load_codec
from imgarc.codec.weights import load_weights
from imgarc.runtime import onnx_graphs
from imgarc.runtime.torch_networks import TorchNetworks


def g_a_graph(params, ranges) -> bytes:
    return onnx_graphs.build_graph("g_a", onnx_graphs.G_A, params, 3, ranges=ranges)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", action="append", default=[], help="ID=WEIGHTS of a model made by imgarc optimize --int8")
    parser.add_argument("--calibration", type=int, default=16, help="training photos whose crops calibrate the untrained grid")
    parser.add_argument("--qualities", default="10,25,50,75,95")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/int8_qat"))
    args = parser.parse_args()
    qualities = [int(q) for q in args.qualities.split(",")]
    model_id = default_model_id()
    codec = load_codec(model_id)
    params = codec.weights.params
    photos = first_files(KODAK, "*.png")
    x = _as_input(load_rgb(KODAK / TIMED_PHOTO))

    model = TorchNetworks(codec.architecture, params, model_id).model
    crops = torch.cat([torch.from_numpy(_as_input(load_rgb(p)[:256, :256])) for p in calibration_photos(args.calibration)])
    minmax = calibrate(model.g_a, "g_a", crops.split(4), quantizable_points(model.g_a, "g_a"))
    rows: dict[str, dict] = {}
    for name, graph in (("float", g_a_graph(params, None)), ("int8, MinMax", g_a_graph(params, minmax)),
                        ("int8, searched", g_a_graph(params, calibrated_ranges(model, crops)))):
        rows[name] = {"g_a_ms": graph_ms(graph, x), "curve": rate_distortion(codec, graph, photos, qualities)}
        print(name, round(rows[name]["g_a_ms"], 1), "ms", flush=True)
    for spec in args.variant:
        variant_id, _, path = spec.partition("=")
        weights, _ = load_weights(Path(path))
        if not weights.int8_ranges or weights.tables_sha256 != codec.weights.tables_sha256:
            sys.exit(f"{path}: not an int8 variant of {model_id}")
        graph = g_a_graph(weights.params, weights.int8_ranges)
        name = f"int8, variant {variant_id} ({weights.meta.get('steps')} training steps)"
        rows[name] = {"g_a_ms": graph_ms(graph, x), "curve": rate_distortion(codec, graph, photos, qualities),
                      "weights": str(path), "steps": weights.meta.get("steps"), "train_seconds": weights.meta.get("train_seconds")}
        print(name, round(rows[name]["g_a_ms"], 1), "ms", flush=True)
    compare_to_float(rows, "g_a")
    document = {"model": model_id, "machine": machine_line(), "qualities": qualities, "calibration_photos": len(crops),
                "photos": len(photos), "command": " ".join(["python benchmarks/int8_qat.py", *sys.argv[1:]]), "results": rows}
    write_results(args.out, document, report(document))


def report(d: dict) -> str:
    out = io.StringIO()
    out.write(f"# int8 g_a: calibrated, searched, quantization-aware trained\n\nCommand: `{d['command']}`  \n"
              f"Machine: {d['machine']}  \nParent `{d['model']}`; Kodak ({d['photos']} photos) at --quality "
              f"{', '.join(map(str, d['qualities']))}; untrained grids calibrated on {d['calibration_photos']} training crops; "
              "every int8 row: all convolutions but the last.\n\n")
    out.write(speed_and_curves(d["results"], d["qualities"]))
    return out.getvalue()


if __name__ == "__main__":
    main()
