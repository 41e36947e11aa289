"""g_s on one thread, per photo: ONNX Runtime as shipped (one convolution per output phase),
ONNX Runtime with ConvTranspose nodes (how imgarc 0.2.0 first built it), and torch eager.
Medians of --runs runs each, interleaved; decoded pixels compared with the ConvTranspose graph's.

    python benchmarks/onnx_g_s.py ../shared/datasets/kodak/kodim01.png [more photos]

Why the shipped graph builds transposed convolutions as phase convolutions: see
imgarc.runtime.onnx_graphs.phase_convolutions.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from imgarc.codec.image_codec import to_pixels
from imgarc.codec.registry import default_model_id, load_codec
from common import load_rgb
from imgarc.runtime import onnx_graphs
from imgarc.runtime.onnx_networks import make_session
from imgarc.runtime.torch_networks import TorchNetworks


class TransposedGraphBuilder(onnx_graphs.NetworkGraphBuilder):
    def transposed_conv(self, x: str, weight: np.ndarray, bias: np.ndarray) -> str:
        return self.node("ConvTranspose", [x, self.const(weight), self.const(bias)], kernel_shape=[5, 5], strides=[2, 2],
                         pads=[2] * 4, output_padding=[1, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("photos", nargs="+", type=Path)
    parser.add_argument("--model", default=None)
    parser.add_argument("--quality", type=int, default=75)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    codec = load_codec(args.model or default_model_id())
    params, m = codec.weights.params, codec.architecture.M
    graphs = {"onnx phases (shipped)": onnx_graphs.build_graph("g_s", onnx_graphs.G_S, params, m),
              "onnx ConvTranspose": onnx_graphs.build_graph("g_s", onnx_graphs.G_S, params, m, builder=TransposedGraphBuilder)}
    runners = {name: (lambda s: lambda y: s.run(None, {"x": y})[0])(make_session(g)) for name, g in graphs.items()}
    runners["torch eager"] = TorchNetworks(codec.architecture, params, codec.model_id).synthesis  # pins one thread
    print(f"model {codec.model_id}, q{args.quality}, one thread, {args.runs} runs each; load average {os.getloadavg()[0]:.2f}")
    for photo in args.photos:
        y = codec.y_hat(codec.analyse(load_rgb(photo), args.quality))[None]
        times: dict[str, list[float]] = {name: [] for name in runners}
        pixels = {}
        for _ in range(args.runs):
            for name, run in runners.items():
                start = time.perf_counter()
                pixels[name] = to_pixels(run(y))
                times[name].append(time.perf_counter() - start)
        reference = pixels["onnx ConvTranspose"].astype(np.int16)
        base = float(np.median(times["torch eager"]))
        print(f"{photo.name} ({y.shape[3] * 16}x{y.shape[2] * 16}):")
        for name, ts in times.items():
            diff = np.abs(pixels[name].astype(np.int16) - reference)
            print(f"  {name:24s} median {np.median(ts):.3f} s ({base / np.median(ts):.2f}x torch); pixels differing from "
                  f"ConvTranspose's: {int((diff > 0).sum())} of {diff.size}, at most {int(diff.max())} level(s)")


if __name__ == "__main__":
    main()
