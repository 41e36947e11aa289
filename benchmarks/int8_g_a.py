"""Post-training int8 for g_a (issue 22): how much faster, at what rate-distortion cost.

g_a runs only when compressing, and nothing the decoder computes depends on how y was made, so
an int8 g_a needs no new decoder and no cross-machine determinism: only its speed and the size
of its archives at equal quality matter. This measures ONNX Runtime's static quantization
(QDQ, per-channel int8 weights, uint8 activations calibrated on training crops, never Kodak) of
the default model's g_a, three ways:

- int8-all: every convolution, GDN's 1x1 ones included;
- int8-but-last: every convolution but the last (the one that writes y);
- int8-but-last-and-gdn: the 5x5 convolutions but the last, GDN in float.

For each: g_a's time on one Kodak photo (768x512, one thread, median of 5 after a warm-up) as
a ratio to float g_a, and Kodak's rate-distortion curve (24 photos, `--qualities`, the float
h_a, integer h_s, rANS and float g_s as shipped): mean bpp, PSNR and MS-SSIM, BD-rate vs float.

    python benchmarks/int8_g_a.py [--calibration 16] [--qualities 10,25,50,75,95]
        [--out benchmarks/results/int8_g_a]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from common import first_files, load_rgb, machine_line

from imgarc.bench.bdrate import BDRateError, bd_rate, ms_ssim_db
from imgarc.bench.metrics import ms_ssim, psnr
from imgarc.codec.registry import default_model_id, load_codec
from imgarc.coders import get_coder
from imgarc.fileio import write_file_atomic
from imgarc.runtime import onnx_graphs

KODAK = Path("../shared/datasets/kodak")
TRAIN = Path("../shared/datasets/train")
CROP = 256
TIMED_PHOTO = "kodim05.png"


class Crops(CalibrationDataReader):
    """The top-left CROP x CROP of each calibration photo, as g_a's input."""

    def __init__(self, photos: list[Path]) -> None:
        self._inputs = iter([{"x": _as_input(load_rgb(p)[:CROP, :CROP])} for p in photos])

    def get_next(self) -> dict | None:
        return next(self._inputs, None)


def _as_input(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], np.float32) / np.float32(255)


def float_graph(params) -> onnx.ModelProto:
    """The shipped g_a graph with its nodes named (quantize_static excludes nodes by name)."""
    model = onnx.load_from_string(onnx_graphs.build_graph("g_a", onnx_graphs.G_A, params, 3))
    for n, node in enumerate(model.graph.node):
        node.name = f"n{n}_{node.op_type}"
    return model


def quantized(model: onnx.ModelProto, exclude: list[str], calibration: list[Path], work: Path) -> bytes:
    source, target = work / "g_a_float.onnx", work / "g_a_int8.onnx"
    onnx.save(model, source)
    quantize_static(source, target, Crops(calibration), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"],
                    nodes_to_exclude=exclude)
    return target.read_bytes()


def session(graph: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def graph_ms(graph: bytes, x: np.ndarray, runs: int = 5) -> float:
    """One network graph's time on input `x`, one thread: the median of `runs` after a warm-up."""
    s = session(graph)
    s.run(None, {"x": x})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        s.run(None, {"x": x})
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def rate_distortion(codec, graph: bytes, photos: list[Path], qualities: list[int]) -> dict[int, dict[str, float]]:
    """Mean bpp, PSNR and MS-SSIM per quality with this g_a (everything else as shipped)."""
    s = session(graph)
    # The benchmark swaps g_a in this codec object only; the codec tiles and pads as for any photo.
    codec.networks.analysis = lambda x: s.run(None, {"x": np.ascontiguousarray(x, np.float32)})[0]
    return codec_rate_distortion(codec, photos, qualities)


def codec_rate_distortion(codec, photos: list[Path], qualities: list[int], with_ms_ssim: bool = True) -> dict[int, dict[str, float]]:
    """Mean bpp, PSNR and MS-SSIM (with `with_ms_ssim`: photos ≥ 161 px a side) per quality: each
    photo's latents entropy-coded as an archive codes them (rANS) and decoded."""
    coder = get_coder("rans")
    sums = {q: {"bits": 0.0, "pixels": 0, "psnr": [], "ms_ssim": []} for q in qualities}
    for path in photos:
        rgb = load_rgb(path)
        analysed = codec.transform(rgb)
        for q in qualities:
            code = codec.quantize(analysed, q)
            size = len(coder.encode(code.y_symbols.ravel(), code.y_indexes.ravel(), codec.tables.y))
            size += len(coder.encode(code.z_symbols.ravel(), codec.z_indexes(code.z_symbols.shape), codec.tables.z))
            decoded = codec.synthesize(code, *rgb.shape[:2])
            row = sums[q]
            row["bits"] += 8 * size
            row["pixels"] += rgb.shape[0] * rgb.shape[1]
            row["psnr"].append(psnr(rgb, decoded))
            row["ms_ssim"].append(ms_ssim(rgb, decoded) if with_ms_ssim else float("nan"))
    return {q: {"bpp": r["bits"] / r["pixels"], "psnr": float(np.mean(r["psnr"])), "ms_ssim": float(np.mean(r["ms_ssim"]))}
            for q, r in sums.items()}


METRICS_IN_DB = {"psnr": float, "ms_ssim": ms_ssim_db}


def bd_rates(curve: dict, reference: dict, metrics: tuple[str, ...] = ("psnr", "ms_ssim")) -> dict[str, float | None]:
    """BD-rate (%) of `curve` against `reference` in each of `metrics` (PSNR, MS-SSIM in dB), each
    curve over its own quality points; None where the two do not overlap."""
    a, b = [curve[q] for q in sorted(curve)], [reference[q] for q in sorted(reference)]
    out: dict[str, float | None] = {}
    for metric in metrics:
        to_db = METRICS_IN_DB[metric]
        try:
            out[metric] = bd_rate([p["bpp"] for p in a], [to_db(p[metric]) for p in a],
                                  [p["bpp"] for p in b], [to_db(p[metric]) for p in b])
        except BDRateError:
            out[metric] = None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calibration", type=int, default=16, help="training photos whose crops calibrate the ranges")
    parser.add_argument("--qualities", default="10,25,50,75,95")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/int8_g_a"))
    parser.add_argument("--work", type=Path, default=Path("runs/int8_g_a"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    qualities = [int(q) for q in args.qualities.split(",")]
    model_id = default_model_id()
    codec = load_codec(model_id)
    photos = first_files(KODAK, "*.png")
    calibration = calibration_photos(args.calibration)
    model = float_graph(codec.weights.params)
    weights = {node.input[1] for node in model.graph.node if node.op_type == "Conv"}
    shapes = {i.name: list(i.dims) for i in model.graph.initializer if i.name in weights}
    convs = [(node.name, shapes[node.input[1]]) for node in model.graph.node if node.op_type == "Conv"]
    last = [name for name, shape in convs if shape[2] == 5][-1]
    gdn = [name for name, shape in convs if shape[2] == 1]
    variants = {"float": None, "int8-all": [], "int8-but-last": [last], "int8-but-last-and-gdn": [last, *gdn]}
    x = _as_input(load_rgb(KODAK / TIMED_PHOTO))
    results: dict = {}
    for name, exclude in variants.items():
        graph = model.SerializeToString() if exclude is None else quantized(model, exclude, calibration, args.work)
        results[name] = {"g_a_ms": graph_ms(graph, x), "curve": rate_distortion(codec, graph, photos, qualities)}
        print(name, round(results[name]["g_a_ms"], 1), "ms", flush=True)
    compare_to_float(results, "g_a")
    document = {"model": model_id, "machine": machine_line(), "qualities": qualities, "calibration_photos": len(calibration),
                "photos": len(photos), "results": results}
    write_results(args.out, document, report(document))


def report(d: dict) -> str:
    out = io.StringIO()
    out.write(f"# int8 g_a, post-training (ONNX Runtime static QDQ)\n\nCommand: `python benchmarks/int8_g_a.py`  \n"
              f"Machine: {d['machine']}  \nModel `{d['model']}`; Kodak ({d['photos']} photos) at --quality "
              f"{', '.join(map(str, d['qualities']))}; ranges calibrated on {d['calibration_photos']} training crops.\n\n")
    out.write(speed_and_curves(d["results"], d["qualities"]))
    return out.getvalue()


def compare_to_float(rows: dict[str, dict], network: str) -> None:
    """Add each row's speed-up (its `<network>_ms` against the "float" row's) and its BD-rates
    against the float row's curve."""
    reference = rows["float"]
    for r in rows.values():
        r["speedup"] = reference[network + "_ms"] / r[network + "_ms"]
        r["bd_rate_vs_float"] = bd_rates(r["curve"], reference["curve"])


def speed_and_curves(results: dict[str, dict], qualities: list[int], network: str = "g_a") -> str:
    """Two markdown tables of a network's variants (each row's time under `<network>_ms`): time,
    speed-up and BD-rate vs float, then the curves."""
    lines = [f"| {network} | ms (kodim05, 1 thread) | speed-up | BD-rate vs float, PSNR | MS-SSIM |", "|---|---|---|---|---|"]
    for name, r in results.items():
        bd = r["bd_rate_vs_float"]
        lines.append(f"| {name} | {r[network + '_ms']:.1f} | {r['speedup']:.2f}x | {bd['psnr']:+.2f} % | {bd['ms_ssim']:+.2f} % |")
    return "\n".join(lines) + "\n\n" + curve_table(network, {name: r["curve"] for name, r in results.items()}, qualities, 4)


def calibration_photos(count: int) -> list[Path]:
    """The first `count` training photos by path: whose crops calibrate int8 ranges (never Kodak)."""
    return sorted(p for p in TRAIN.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:count]


def curve_table(label: str, curves: dict[str, dict], qualities: list[int], bpp_digits: int) -> str:
    """A markdown table: one row per curve, bpp / PSNR / MS-SSIM at each quality."""
    lines = [f"| {label} | " + " | ".join(f"q{q} bpp / PSNR / MS-SSIM" for q in qualities) + " |",
             "|---|" + "---|" * len(qualities)]
    for name, curve in curves.items():
        cells = [f"{c['bpp']:.{bpp_digits}f} / {c['psnr']:.2f} / {c['ms_ssim']:.4f}" for c in (curve[q] for q in qualities)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(out: Path, document: dict, markdown: str) -> None:
    """OUT.json (every number) and OUT.md (the report), and the report on stdout."""
    out.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomic(out.with_suffix(".json"), json.dumps(document, indent=2).encode())
    write_file_atomic(out.with_suffix(".md"), markdown.encode())
    print(markdown)


if __name__ == "__main__":
    main()
