"""An int8 g_a in torch (needs torch): the grid of imgarc.codec.int8, simulated in float.

`Int8Analysis` is g_a's own nn.Sequential (same layers, same state-dict names) whose forward
rounds each quantized tensor to its uint8 grid and each quantized convolution's weights to int8
per output channel, as ONNX Runtime's int8 kernels compute them (up to the order of the sums):
what quantization-aware training trains through (gradients pass the rounding straight through
and stop outside a grid's range) and what the torch runtime runs for such a model.
`calibrated_ranges` makes the grids in the first place: each point's range over some photos
(`calibrate`), then each narrowed to where g_a's output comes closest to the float g_a's
(`search_ranges`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from compressai.layers import GDN
from torch import nn

from imgarc.codec.int8 import (ACTIVATION_LEVELS, CONV_POINTS, GDN_POINTS, WEIGHT_LIMIT, ActivationRange, Int8Ranges,
                               layer_ranges, point_name)

NETWORK = "g_a"
# How far `search_ranges` may narrow a grid: a few values far out stretch a tensor's range,
# and clipping them costs y less than coarse steps for all the others (measured on g_a's
# second convolution's output: half of int8's error in y before the search).
NARROWING = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.25, 0.2, 0.15)
SEARCH_CROPS = 8  # of the calibration crops, those the search compares outputs on


def fake_quantized(x: torch.Tensor, grid: ActivationRange) -> torch.Tensor:
    return torch.fake_quantize_per_tensor_affine(x, grid.scale, grid.zero_point, 0, ACTIVATION_LEVELS)


def fake_int8_weights(w: torch.Tensor) -> torch.Tensor:
    """Weights rounded to int8 per output channel (imgarc.codec.int8.int8_weights); the scale
    follows the weights but takes no gradient."""
    peak = w.detach().abs().flatten(1).amax(1)
    scale = torch.where(peak > 0, peak / WEIGHT_LIMIT, torch.ones_like(peak)).float()
    zero = torch.zeros(len(scale), dtype=torch.int32, device=w.device)
    return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -WEIGHT_LIMIT, WEIGHT_LIMIT)


class Int8Analysis(nn.Sequential):
    """g_a's layers with the int8 grids of `ranges` (layers without ranges run in float)."""

    def __init__(self, layers: Iterable[nn.Module], ranges: Int8Ranges) -> None:
        super().__init__(*layers)
        self.ranges = dict(ranges)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for i, layer in enumerate(self):
            if isinstance(layer, nn.Conv2d) and self.quantizes(i, CONV_POINTS):
                x = self.on_grid(i, "in", x)
                x = F.conv2d(x, self.weights(layer.weight), layer.bias, layer.stride, layer.padding)
                x = self.on_grid(i, "out", x)
            elif isinstance(layer, GDN) and self.quantizes(i, GDN_POINTS):
                c = x.shape[1]
                gamma = layer.gamma_reparam(layer.gamma).reshape(c, c, 1, 1)
                norm = F.conv2d(self.on_grid(i, "square", x * x), self.weights(gamma), layer.beta_reparam(layer.beta))
                x = x * torch.rsqrt(self.on_grid(i, "norm", norm))
            else:
                x = layer(x)
        return x

    def quantizes(self, layer: int, points: tuple[str, ...]) -> bool:
        return layer_ranges(self.ranges, NETWORK, layer, points) is not None

    def on_grid(self, layer: int, point: str, x: torch.Tensor) -> torch.Tensor:
        return fake_quantized(x, self.ranges[point_name(NETWORK, layer, point)])

    def weights(self, w: torch.Tensor) -> torch.Tensor:
        return fake_int8_weights(w)


class RangeObserver(Int8Analysis):
    """The float g_a, recording each of `points`' smallest and largest value as it runs."""

    def __init__(self, layers: Iterable[nn.Module], points: list[str]) -> None:
        super().__init__(layers, {})
        self.points = points
        self.low: dict[str, float] = {}
        self.high: dict[str, float] = {}

    def quantizes(self, layer: int, points: tuple[str, ...]) -> bool:
        return any(point_name(NETWORK, layer, p) in self.points for p in points)

    def on_grid(self, layer: int, point: str, x: torch.Tensor) -> torch.Tensor:
        name = point_name(NETWORK, layer, point)
        self.low[name] = min(self.low.get(name, 0.0), float(x.min()))
        self.high[name] = max(self.high.get(name, 0.0), float(x.max()))
        return x

    def weights(self, w: torch.Tensor) -> torch.Tensor:
        return w


def quantizable_points(g_a: nn.Sequential) -> list[str]:
    """The points of every convolution and GDN of g_a but the last convolution, the one that
    writes y (measured: on a searched grid it made y's error 12× larger)."""
    convs = [i for i, layer in enumerate(g_a) if isinstance(layer, nn.Conv2d)]
    points = []
    for i, layer in enumerate(g_a):
        if isinstance(layer, nn.Conv2d) and i != convs[-1]:
            points += [point_name(NETWORK, i, p) for p in CONV_POINTS]
        elif isinstance(layer, GDN):
            points += [point_name(NETWORK, i, p) for p in GDN_POINTS]
    return points


@torch.no_grad()
def calibrate(g_a: nn.Sequential, batches: Iterable[torch.Tensor], points: list[str]) -> dict[str, ActivationRange]:
    """Each point's grid from its smallest and largest value over `batches` of photos [B, 3, H, W]
    in [0, 1], run through the float g_a (ONNX Runtime's MinMax calibration)."""
    observer = RangeObserver(g_a, points)
    for x in batches:
        observer(x)
    return {name: ActivationRange.from_bounds(observer.low[name], observer.high[name]) for name in points}


@torch.no_grad()
def search_ranges(g_a: nn.Sequential, x: torch.Tensor, ranges: Int8Ranges, y_weight: torch.Tensor,
                  sweeps: int = 2) -> dict[str, ActivationRange]:
    """The grids narrowed, one point at a time over `sweeps` passes, each to the `NARROWING` of
    its calibrated range that makes g_a's output on `x` closest to the float g_a's in mean squared
    error, y weighted by `y_weight` (the finest quantization step's gain: where y's rounding is
    finest, its errors cost most)."""
    reference = g_a(x) * y_weight

    def error(candidate: Int8Ranges) -> float:
        return float(((Int8Analysis(g_a, candidate)(x) * y_weight - reference) ** 2).mean())

    best = dict(ranges)
    for _ in range(sweeps):
        for name, calibrated in ranges.items():
            options = [best[name], *(calibrated.narrowed(f) for f in NARROWING)]
            best[name] = min(options, key=lambda grid: error({**best, name: grid}))
    return best


def calibrated_ranges(model: nn.Module, crops: torch.Tensor) -> dict[str, ActivationRange]:
    """The int8 grids for `model`'s g_a (every convolution but the last) from training crops
    [B, 3, H, W] in [0, 1]: `calibrate` on all of them in batches of 4, then `search_ranges` on
    the first SEARCH_CROPS, y weighted by the gain of the model's highest rate point."""
    points = quantizable_points(model.g_a)
    ranges = calibrate(model.g_a, crops.split(4), points)
    gains = getattr(model, "gains_at", None)
    weight = gains(model.rate_points - 1)[0][None, :, None, None] if gains else torch.ones(())
    return search_ranges(model.g_a, crops[:SEARCH_CROPS], ranges, weight.to(crops.device))
