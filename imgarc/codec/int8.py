"""int8 networks (g_a, g_s): the quantization grid shared by the ONNX graph, torch and training.

A model may carry an int8 g_a or g_s: the activation ranges of its quantized tensors, stored in
its weights file (`int8/<network>.<point>`, see `Int8Ranges`). Its float weights stay as they
are; each quantized convolution's weights are rounded to int8 per output channel
(`int8_weights`) when its graph is built, the same way in training's fake quantization, so
nothing else is stored.

g_a runs only when compressing and nothing a decoder computes depends on how y was made: an
int8 g_a changes no archive format, no coding table and no decoder (a variant with one decodes
with its parent's networks), only how fast compress runs and how many bits y then takes.
An int8 g_s changes the decoded pixels (as any other g_s would; never ŷ or a table), so its
weights keep 7 bits (`weight_limit`): ONNX Runtime's x86 int8 kernels without VNNI add uint8 ×
int8 products in pairs into 16 bits, which saturate past 32767 with full 8-bit weights
(255 · 127 · 2) and never with 7-bit ones (255 · 63 · 2); the integer sums are then the same on
every CPU, and a photo decodes to the same pixels on machines with and without VNNI.

The quantization points of a chain conv → GDN → conv ... (layer indices as in the torch
nn.Sequential), for each quantized layer i:
- a convolution (g_s: a transposed one): `i.in` (its input) and `i.out` (its output, which GDN
  then reads twice);
- a GDN (g_s: an inverse GDN): `i.square` (x², its 1×1 convolution's input) and `i.norm` (that
  convolution's output).
A layer is quantized exactly when its points have ranges: which ones is the model's choice
(imgarc.codec.fake_quant.quantizable_points says which imgarc quantizes, and why).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

import numpy as np

from imgarc.errors import ModelError

KEY_PREFIX = "int8/"  # weights-file keys: int8/<network>.<layer>.<point> = float64 [scale, zero point]
ACTIVATION_LEVELS = 255  # uint8 activations: 0 … 255
WEIGHT_LIMIT = 127  # int8 weights, symmetric: −127 … 127
SYNTHESIS_WEIGHT_LIMIT = 63  # g_s's: 7 bits, so no CPU's int8 kernel saturates (see above)
CONV_POINTS = ("in", "out")
GDN_POINTS = ("square", "norm")


class QuantizedNetwork(str, Enum):
    """A network that may run in int8 (its name is its weights' prefix)."""

    G_A = "g_a"
    G_S = "g_s"


@dataclass(frozen=True)
class ActivationRange:
    """uint8 affine quantization of one tensor: value ≈ scale · (q − zero_point), q in 0 … 255."""

    scale: float
    zero_point: int

    @classmethod
    def from_bounds(cls, low: float, high: float) -> ActivationRange:
        """The grid that covers [low, high] and holds 0 exactly (ONNX Runtime's MinMax calibration)."""
        low, high = min(float(low), 0.0), max(float(high), 0.0)
        scale = (high - low) / ACTIVATION_LEVELS if high > low else 1.0
        return cls(scale, int(np.clip(round(-low / scale), 0, ACTIVATION_LEVELS)))

    def bounds(self) -> tuple[float, float]:
        """The smallest and largest value the grid holds."""
        return -self.zero_point * self.scale, (ACTIVATION_LEVELS - self.zero_point) * self.scale

    def narrowed(self, factor: float) -> ActivationRange:
        """The grid over `factor` times these bounds: finer steps, values past them clipped."""
        low, high = self.bounds()
        return ActivationRange.from_bounds(low * factor, high * factor)

    def as_array(self) -> np.ndarray:
        return np.array([self.scale, self.zero_point], np.float64)

    @classmethod
    def from_array(cls, a: np.ndarray, name: str) -> ActivationRange:
        a = np.asarray(a, np.float64).ravel()
        if a.shape != (2,) or not np.isfinite(a).all() or a[0] <= 0 or not 0 <= a[1] <= ACTIVATION_LEVELS or a[1] != round(a[1]):
            raise ModelError(f"the weights file's int8 range {name} is not a scale and a zero point")
        return cls(float(a[0]), int(a[1]))


Int8Ranges = Mapping[str, ActivationRange]  # "<network>.<layer>.<point>" -> its grid


def weight_limit(network: str) -> int:
    """The largest int8 weight of `network`'s quantized convolutions (g_s: 7 bits, see above)."""
    return SYNTHESIS_WEIGHT_LIMIT if network == QuantizedNetwork.G_S else WEIGHT_LIMIT


def quantizes_network(ranges: Int8Ranges, network: str) -> bool:
    return any(name.startswith(network + ".") for name in ranges)


def point_name(network: str, layer: int, point: str) -> str:
    return f"{network}.{layer}.{point}"


def layer_ranges(ranges: Int8Ranges, network: str, layer: int, points: tuple[str, ...]) -> tuple[ActivationRange, ...] | None:
    """The ranges of one layer's points, or None for a layer that runs in float. A layer with
    some of its points but not all is a damaged file."""
    found = [ranges.get(point_name(network, layer, p)) for p in points]
    if all(r is None for r in found):
        return None
    if any(r is None for r in found):
        raise ModelError(f"the weights file's int8 ranges for {network}.{layer} are incomplete")
    return tuple(found)  # type: ignore[arg-type]


def norm_grid_holds(beta: np.ndarray, grid: ActivationRange) -> bool:
    """Whether a GDN's norm grid keeps every channel's norm above 0: the norm is at least β, and a
    β under half a step rounds to 0 where x is 0 there, which a GDN then divides by (y turns to
    NaN and the archive to garbage). An inverse GDN multiplies instead and needs no such check."""
    return bool(np.min(beta) >= grid.scale / 2)


def int8_weights(weight: np.ndarray, smallest_scale: np.ndarray | float = 0.0, limit: int = WEIGHT_LIMIT,
                 axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Convolution weights [out, in, kh, kw] (a transposed convolution's [in, out, kh, kw]: axis 1)
    as int8 per output channel, symmetric, within ±`limit`: (q int8, scale float32 [out]) with
    weight ≈ scale · q, each scale at least `smallest_scale` (a channel whose weights are all
    but zero would otherwise need a bias past int32)."""
    w = np.moveaxis(np.asarray(weight, np.float32), axis, 0)
    peak = np.abs(w).reshape(w.shape[0], -1).max(axis=1)
    scale = np.maximum(np.where(peak > 0, peak / limit, 1.0), smallest_scale).astype(np.float32)
    q = np.clip(np.round(w / scale[:, None, None, None]), -limit, limit).astype(np.int8)
    return np.moveaxis(q, 0, axis), scale


def save_arrays(ranges: Int8Ranges) -> dict[str, np.ndarray]:
    return {KEY_PREFIX + name: r.as_array() for name, r in sorted(ranges.items())}


def load_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, ActivationRange]:
    return {k[len(KEY_PREFIX):]: ActivationRange.from_array(v, k[len(KEY_PREFIX):]) for k, v in arrays.items()
            if k.startswith(KEY_PREFIX)}
