"""int8 networks in torch (needs torch): the grid of imgarc.codec.int8, simulated in float.

`Int8Network` is g_a's or g_s's own nn.Sequential (same layers, same state-dict names) whose
forward rounds each quantized tensor to its uint8 grid and each quantized convolution's weights
to int8 per output channel, as ONNX Runtime's int8 kernels compute them (up to the order of the
sums): what quantization-aware training trains through (gradients pass the rounding straight
through and stop outside a grid's range) and what the torch runtime runs for such a model.
`calibrated_ranges` and `synthesis_ranges` make the grids in the first place: each point's range
over some photos (`calibrate`), then each narrowed to where the network's output comes closest
to the float network's (`search_ranges`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from compressai.layers import GDN
from torch import nn

from imgarc.codec.int8 import (ACTIVATION_LEVELS, CONV_POINTS, GDN_POINTS, ActivationRange, Int8Ranges, QuantizedNetwork,
                               layer_ranges, norm_grid_holds, point_name, weight_limit)

# How far `search_ranges` may narrow a grid: a few values far out stretch a tensor's range,
# and clipping them costs the output less than coarse steps for all the others (measured on
# g_a's second convolution's output: half of int8's error in y before the search).
NARROWING = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.25, 0.2, 0.15)
SEARCH_CROPS = 8  # of the calibration crops, those the search compares outputs on
CONVOLUTIONS = (nn.Conv2d, nn.ConvTranspose2d)
# A GDN's norm on its grid may round to 0 (β trains down to ~1e-6), where sqrt's gradient is
# infinite and training turns to NaN; this floor keeps it finite and moves x̂ by ~1e-6.
NORM_FLOOR = 1e-12


def fake_quantized(x: torch.Tensor, grid: ActivationRange) -> torch.Tensor:
    return torch.fake_quantize_per_tensor_affine(x, grid.scale, grid.zero_point, 0, ACTIVATION_LEVELS)


def fake_int8_weights(w: torch.Tensor, limit: int, axis: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights rounded to int8 per output channel (`axis`), within ±`limit`
    (imgarc.codec.int8.int8_weights), and their scale, which follows the weights but takes no
    gradient."""
    peak = w.detach().abs().transpose(0, axis).flatten(1).amax(1)
    scale = torch.where(peak > 0, peak / limit, torch.ones_like(peak)).float()
    zero = torch.zeros(len(scale), dtype=torch.int32, device=w.device)
    return torch.fake_quantize_per_channel_affine(w, scale, zero, axis, -limit, limit), scale


def fake_int32_bias(b: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """The bias rounded to its int32 grid (per channel `step`: input scale × weight scale), as the
    int8 graph stores it; the gradient passes straight through. Without it, torch's outputs sat a
    few thousandths of a grid step off ONNX Runtime's and rounded to the other side in 0.3 % of
    g_s's values (then up to 4 levels in the pixels)."""
    return b + (torch.round(b / step) * step - b).detach()


class Int8Network(nn.Sequential):
    """The layers of `network` (g_a or g_s) with the int8 grids of `ranges` (layers without
    ranges run in float)."""

    def __init__(self, layers: Iterable[nn.Module], ranges: Int8Ranges, network: str) -> None:
        super().__init__(*layers)
        self.ranges = dict(ranges)
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for i, layer in enumerate(self):
            if isinstance(layer, nn.ConvTranspose2d) and self.quantizes(i, CONV_POINTS):
                w, b = self.parameters_on_grid(i, "in", layer.weight, layer.bias, axis=1)
                x = F.conv_transpose2d(self.on_grid(i, "in", x), w, b, layer.stride, layer.padding, layer.output_padding)
                x = self.on_grid(i, "out", x)
            elif isinstance(layer, nn.Conv2d) and self.quantizes(i, CONV_POINTS):
                w, b = self.parameters_on_grid(i, "in", layer.weight, layer.bias)
                x = self.on_grid(i, "out", F.conv2d(self.on_grid(i, "in", x), w, b, layer.stride, layer.padding))
            elif isinstance(layer, GDN) and self.quantizes(i, GDN_POINTS):
                c = x.shape[1]
                w, b = self.parameters_on_grid(i, "square", layer.gamma_reparam(layer.gamma).reshape(c, c, 1, 1),
                                               layer.beta_reparam(layer.beta))
                norm = self.on_grid(i, "norm", F.conv2d(self.on_grid(i, "square", x * x), w, b))
                norm = norm.clamp_min(NORM_FLOOR)
                x = x * torch.sqrt(norm) if layer.inverse else x * torch.rsqrt(norm)
            else:
                x = layer(x)
        return x

    def quantizes(self, layer: int, points: tuple[str, ...]) -> bool:
        return layer_ranges(self.ranges, self.network, layer, points) is not None

    def on_grid(self, layer: int, point: str, x: torch.Tensor) -> torch.Tensor:
        return fake_quantized(x, self.ranges[point_name(self.network, layer, point)])

    def parameters_on_grid(self, layer: int, input_point: str, w: torch.Tensor, b: torch.Tensor,
                           axis: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """A quantized convolution's weights (output channels on `axis`) and bias as its int8
        graph holds them: int8 weights, the bias on the input's scale × each weight scale."""
        w, scale = fake_int8_weights(w, weight_limit(self.network), axis)
        return w, fake_int32_bias(b, self.ranges[point_name(self.network, layer, input_point)].scale * scale)


class RangeObserver(Int8Network):
    """The float network, recording each of `points`' smallest and largest value as it runs."""

    def __init__(self, layers: Iterable[nn.Module], network: str, points: list[str]) -> None:
        super().__init__(layers, {}, network)
        self.points = points
        self.low: dict[str, float] = {}
        self.high: dict[str, float] = {}

    def quantizes(self, layer: int, points: tuple[str, ...]) -> bool:
        return any(point_name(self.network, layer, p) in self.points for p in points)

    def on_grid(self, layer: int, point: str, x: torch.Tensor) -> torch.Tensor:
        name = point_name(self.network, layer, point)
        self.low[name] = min(self.low.get(name, 0.0), float(x.min()))
        self.high[name] = max(self.high.get(name, 0.0), float(x.max()))
        return x

    def parameters_on_grid(self, layer: int, input_point: str, w: torch.Tensor, b: torch.Tensor,
                           axis: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        return w, b


def quantizable_points(net: nn.Sequential, network: str) -> list[str]:
    """The points imgarc quantizes. Of g_a: every convolution and GDN but the last convolution,
    the one that writes y (measured: on a searched grid it made y's error 12× larger). Of g_s:
    the layers from its second transposed convolution to the last IGDN, 90 % of its
    multiply-adds (measured on Kodak at q75, searched grids, one thread: these 1.42× faster at
    −0.34 dB; every layer 1.22× at −0.61 dB, the first reading ŷ, which a uint8 grid over its
    range rounds coarsely, the last writing pixels from few channels, where int8 pays little)."""
    convs = [i for i, layer in enumerate(net) if isinstance(layer, CONVOLUTIONS)]
    first, last = (convs[1], convs[-1]) if network == QuantizedNetwork.G_S else (0, convs[-1])
    points = []
    for i, layer in enumerate(net):
        if first <= i < last and isinstance(layer, CONVOLUTIONS):
            points += [point_name(network, i, p) for p in CONV_POINTS]
        elif first <= i < last and isinstance(layer, GDN):
            points += [point_name(network, i, p) for p in GDN_POINTS]
    return points


@torch.no_grad()
def calibrate(net: nn.Sequential, network: str, batches: Iterable[torch.Tensor], points: list[str]) -> dict[str, ActivationRange]:
    """Each point's grid from its smallest and largest value over `batches` of inputs (g_a:
    photos [B, 3, H, W] in [0, 1]; g_s: ŷ), run through the float network (ONNX Runtime's MinMax
    calibration)."""
    observer = RangeObserver(net, network, points)
    for x in batches:
        observer(x)
    return {name: ActivationRange.from_bounds(observer.low[name], observer.high[name]) for name in points}


@torch.no_grad()
def search_ranges(net: nn.Sequential, network: str, x: torch.Tensor, ranges: Int8Ranges, out_weight: torch.Tensor,
                  sweeps: int = 2) -> dict[str, ActivationRange]:
    """The grids narrowed, one point at a time over `sweeps` passes, each to the `NARROWING` of
    its calibrated range that makes the network's output on `x` closest to the float network's
    in mean squared error, weighted by `out_weight` (g_a: the finest quantization step's gain:
    where y's rounding is finest, its errors cost most; g_s: 1, pixels)."""
    reference = net(x) * out_weight

    def error(candidate: Int8Ranges) -> float:
        return float(((Int8Network(net, candidate, network)(x) * out_weight - reference) ** 2).mean())

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
    points = quantizable_points(model.g_a, "g_a")
    ranges = calibrate(model.g_a, "g_a", crops.split(4), points)
    gains = getattr(model, "gains_at", None)
    weight = gains(model.rate_points - 1)[0][None, :, None, None] if gains else torch.ones(())
    return without_zero_norms(model.g_a, search_ranges(model.g_a, "g_a", crops[:SEARCH_CROPS], ranges,
                                                       weight.to(crops.device)))


def without_zero_norms(g_a: nn.Sequential, ranges: Int8Ranges) -> dict[str, ActivationRange]:
    """`ranges` less those of any GDN whose norm grid would round β to 0 (int8.norm_grid_holds):
    that GDN then runs in float."""
    kept = dict(ranges)
    for i, layer in enumerate(g_a):
        grid = kept.get(point_name("g_a", i, "norm"))
        if isinstance(layer, GDN) and grid and not norm_grid_holds(layer.beta_reparam(layer.beta).detach().cpu().numpy(), grid):
            for p in GDN_POINTS:
                kept.pop(point_name("g_a", i, p))
    return kept


@torch.no_grad()
def decoded_latents(model: nn.Module, crops: torch.Tensor) -> torch.Tensor:
    """ŷ, what g_s reads, of each crop [B, 3, H, W] in [0, 1] at every rate point of `model`
    (evaluation mode: latents rounded around their predicted means): [B·points, M, H/16, W/16]."""
    captured: list[torch.Tensor] = []
    hook = model.g_s.register_forward_pre_hook(lambda _, inputs: captured.append(inputs[0]))
    try:
        model.eval()
        for position in range(getattr(model, "rate_points", 1)):
            for batch in crops.split(4):
                model(batch, rate_position=position) if hasattr(model, "rate_points") else model(batch)
    finally:
        hook.remove()
    return torch.cat(captured)


def synthesis_ranges(model: nn.Module, crops: torch.Tensor) -> dict[str, ActivationRange]:
    """The int8 grids for `model`'s g_s (`quantizable_points`) from training crops [B, 3, H, W] in [0, 1]:
    `calibrate` on their ŷ at every rate point, then `search_ranges` on SEARCH_CROPS of those
    spread over the rate points, pixels unweighted."""
    y_hat = decoded_latents(model, crops)
    points = quantizable_points(model.g_s, "g_s")
    ranges = calibrate(model.g_s, "g_s", y_hat.split(4), points)
    spread = y_hat[torch.linspace(0, len(y_hat) - 1, SEARCH_CROPS).long()]
    return search_ranges(model.g_s, "g_s", spread, ranges, torch.ones((), device=crops.device))
