"""g_a + h_a + g_s time of the default against a variant (issue 22: "≥ 3× faster", ratio in one run).

Each model's three float networks are built as imgarc builds them (imgarc.runtime.onnx_graphs)
and run on ONNX Runtime with one thread on kodim05 (768x512): g_a on the photo, h_a on its y,
g_s on round(y). After one untimed round each, the two models run in turn `--pairs` times, and
the ratio is taken pair by pair (the machine's speed may drift during the run).

    python benchmarks/network_speed.py runs/small-snap/export/msh128-small-wip.npz [--pairs 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from common import load_rgb
from int8_g_a import KODAK, TIMED_PHOTO, _as_input, session

from imgarc.codec.registry import default_model_id, find_model
from imgarc.codec.weights import WeightsFile, load_weights
from imgarc.runtime import onnx_graphs


def networks(weights: WeightsFile) -> list[ort.InferenceSession]:
    p, arch = weights.params, weights.architecture
    return [session(onnx_graphs.build_graph("g_a", onnx_graphs.G_A, p, 3)),
            session(onnx_graphs.build_graph("h_a", onnx_graphs.h_a_layers(arch), p, arch.M)),
            session(onnx_graphs.build_graph("g_s", onnx_graphs.G_S, p, arch.M))]


def seconds(sessions: list[ort.InferenceSession], x: np.ndarray) -> float:
    start = time.perf_counter()
    y = sessions[0].run(None, {"x": x})[0]
    sessions[1].run(None, {"x": y})
    sessions[2].run(None, {"x": np.round(y)})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("variant", type=Path, help="the variant's weights file")
    parser.add_argument("--pairs", type=int, default=7)
    args = parser.parse_args()
    x = _as_input(load_rgb(KODAK / TIMED_PHOTO))
    default = networks(load_weights(find_model(default_model_id()).path)[0])
    variant = networks(load_weights(args.variant)[0])
    seconds(default, x), seconds(variant, x)
    pairs = [(seconds(default, x), seconds(variant, x)) for _ in range(args.pairs)]
    ratios = [a / b for a, b in pairs]
    print(f"g_a+h_a+g_s on {TIMED_PHOTO}, one thread: default {statistics.median(a for a, _ in pairs) * 1000:.1f} ms, "
          f"{args.variant.name} {statistics.median(b for _, b in pairs) * 1000:.1f} ms; the default / the variant, "
          f"pair by pair: median {statistics.median(ratios):.2f}x (range {min(ratios):.2f}-{max(ratios):.2f})")


if __name__ == "__main__":
    main()
