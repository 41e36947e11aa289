"""The networks of a weights file as ONNX graphs, built from its arrays with no torch.

imgarc's networks are CompressAI chains of a few layer kinds, named in the weights file as in
the torch module (`g_a.0.weight`, `g_a.1.beta`, ...):
- conv(k, stride): Conv2d, padding k//2;
- deconv: ConvTranspose2d(5, stride 2, padding 2, output_padding 1), built as one convolution
  per output phase (`phase_convolutions`), or, for the few output channels of g_s's last layer,
  as one convolution for all four phases (`merged_phase_convolution`);
- GDN / inverse GDN: x · rsqrt(conv1x1(x², γ, β)) / x · sqrt(...), with CompressAI's
  reparametrized β, γ = max(p, bound)² − pedestal, computed here once in float32;
- LeakyReLU(0.01) / ReLU between the hyper-analysis convolutions.
A model with an int8 g_a or g_s (imgarc.codec.int8) gets its quantized layers as ONNX Runtime's
QDQ pattern (`NetworkGraphBuilder.int8_conv`), which ONNX Runtime runs with int8 kernels.
So the graph is read off the architecture; nothing is shipped beside the weights file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from imgarc.codec.architecture import Architecture
from imgarc.codec.int8 import (CONV_POINTS, GDN_POINTS, ActivationRange, Int8Ranges, int8_weights, layer_ranges,
                               norm_grid_holds, weight_limit)
from imgarc.errors import ModelError

OPSET = 17
LEAKY_SLOPE = 0.01  # torch.nn.LeakyReLU's default, what CompressAI's h_a uses
# ONNX Runtime's blocked (NCHWc) convolutions compute output channels in blocks of 8 or 16: a
# convolution with fewer leaves most of its block idle (`merged_phase_convolution`).
NCHWC_BLOCK = 16
BIAS_LIMIT = 2**30  # an int8 convolution's int32 bias stays within this (headroom for rounding)


@dataclass(frozen=True)
class Layer:
    kind: str  # "conv", "deconv", "gdn", "igdn", "leaky", "relu"
    index: int  # position in the torch nn.Sequential: the weights' name prefix
    kernel: int = 5
    stride: int = 2


def _chain(*kinds: str) -> tuple[Layer, ...]:
    return tuple(Layer(k, i) for i, k in enumerate(kinds))


G_A = _chain("conv", "gdn", "conv", "gdn", "conv", "gdn", "conv")
G_S = _chain("deconv", "igdn", "deconv", "igdn", "deconv", "igdn", "deconv")


def h_a_layers(arch: Architecture) -> tuple[Layer, ...]:
    act = "relu" if arch.scale_only else "leaky"
    return (Layer("conv", 0, kernel=3, stride=1), Layer(act, 1), Layer("conv", 2), Layer(act, 3), Layer("conv", 4))


class GraphNodes:
    """Nodes and initializers of an ONNX graph being built; names are made up as they are added.
    Shared by the codec's networks (here) and the tasks' classifiers (imgarc.tasks.onnx_classifier)."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.n = 0

    def const(self, array: np.ndarray, dtype=np.float32) -> str:
        name = f"c{len(self.initializers)}"
        self.initializers.append(numpy_helper.from_array(np.array(array, dtype, order="C"), name))  # 0-d stays 0-d
        return name

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        self.n += 1
        out = f"t{self.n}"
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out


class NetworkGraphBuilder(GraphNodes):
    """The nodes of one network (`prefix`: g_a, h_a or g_s) from its weights, layer by layer;
    the layers `ranges` quantizes (imgarc.codec.int8) in int8."""

    def __init__(self, prefix: str, params: dict[str, np.ndarray], ranges: Int8Ranges | None = None) -> None:
        super().__init__()
        self.prefix = prefix
        self.params = params
        self.ranges = ranges or {}

    def param(self, name: str) -> np.ndarray:
        key = f"{self.prefix}.{name}"
        if key not in self.params:
            raise ModelError(f"the weights file has no {key}: not a network this imgarc can build")
        return self.params[key].astype(np.float32)

    def layer(self, x: str, layer: Layer) -> str:
        p = str(layer.index)
        if layer.kind == "conv":
            k = layer.kernel
            shape = {"kernel_shape": [k, k], "strides": [layer.stride] * 2, "pads": [k // 2] * 4}
            weight, bias = self.param(f"{p}.weight"), self.param(f"{p}.bias")
            quantized = layer_ranges(self.ranges, self.prefix, layer.index, CONV_POINTS)
            if quantized:
                return self.int8_conv(self.quantized(x, quantized[0]), *self.int8_weights(weight, bias, quantized[0]), bias,
                                      *quantized, **shape)
            return self.node("Conv", [x, self.const(weight), self.const(bias)], **shape)
        if layer.kind == "deconv":
            quantized = layer_ranges(self.ranges, self.prefix, layer.index, CONV_POINTS)
            return self.transposed_conv(x, self.param(f"{p}.weight"), self.param(f"{p}.bias"), quantized)
        if layer.kind in ("gdn", "igdn"):
            beta = self.reparametrized(f"{p}.beta")
            gamma = self.reparametrized(f"{p}.gamma")
            c = beta.shape[0]
            square = self.node("Mul", [x, x])
            quantized = layer_ranges(self.ranges, self.prefix, layer.index, GDN_POINTS)
            if quantized and layer.kind == "gdn" and not norm_grid_holds(beta, quantized[1]):
                raise ModelError(f"the weights file's int8 grid for {self.prefix}.{layer.index}.norm rounds β to 0: "
                                 "not a network this imgarc can run")
            if quantized:
                norm = self.int8_conv(self.quantized(square, quantized[0]),
                                      *self.int8_weights(gamma.reshape(c, c, 1, 1), beta, quantized[0]), beta, *quantized,
                                      kernel_shape=[1, 1])
            else:
                norm = self.node("Conv", [square, self.const(gamma.reshape(c, c, 1, 1)), self.const(beta)], kernel_shape=[1, 1])
            root = self.node("Sqrt", [norm])
            return self.node("Mul", [x, root]) if layer.kind == "igdn" else self.node("Div", [x, root])
        if layer.kind == "leaky":
            return self.node("LeakyRelu", [x], alpha=LEAKY_SLOPE)
        if layer.kind == "relu":
            return self.node("Relu", [x])
        raise ModelError(f"unknown layer kind {layer.kind!r}")

    def quantized(self, x: str, grid: ActivationRange) -> str:
        """x through its uint8 grid: QuantizeLinear, then DequantizeLinear."""
        return self.dequantized(self.uint8(x, grid), grid)

    def uint8(self, x: str, grid: ActivationRange) -> str:
        """x as uint8 on its grid (QuantizeLinear)."""
        return self.node("QuantizeLinear", [x, *self.grid_consts(grid)])

    def dequantized(self, x: str, grid: ActivationRange) -> str:
        """uint8 x on its grid as float (DequantizeLinear)."""
        return self.node("DequantizeLinear", [x, *self.grid_consts(grid)])

    def grid_consts(self, grid: ActivationRange) -> list[str]:
        return [self.const(np.float32(grid.scale)), self.const(np.uint8(grid.zero_point), np.uint8)]

    def int8_weights(self, weight: np.ndarray, bias: np.ndarray, grid_in: ActivationRange,
                     axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """A convolution's int8 weights and their scale per output channel (`axis`), each scale
        large enough that the int32 bias stays within BIAS_LIMIT."""
        return int8_weights(weight, np.abs(bias) / (grid_in.scale * BIAS_LIMIT), weight_limit(self.prefix), axis)

    def int8_conv(self, x: str, q: np.ndarray, weight_scale: np.ndarray, bias: np.ndarray, grid_in: ActivationRange,
                  grid_out: ActivationRange, dequantize: bool = True, **attrs) -> str:
        """A convolution as ONNX Runtime's QDQ pattern, which it fuses into one int8 convolution
        (QLinearConv): uint8 input and output on their grids, int8 weights `q` [out, in, kh, kw]
        scaled per output channel, the bias as int32 on the input's scale times each channel's
        weight scale. `x` is already through its grid (`quantized`: once, however many
        convolutions read it); the output dequantized, or (`dequantize` False) as uint8."""
        bias_scale = (np.float32(grid_in.scale) * weight_scale).astype(np.float32)
        q_bias = np.round(bias / bias_scale).astype(np.int32)
        w = self.node("DequantizeLinear", [self.const(q, np.int8), self.const(weight_scale),
                                           self.const(np.zeros(len(q), np.int8), np.int8)], axis=0)
        b = self.node("DequantizeLinear", [self.const(q_bias, np.int32), self.const(bias_scale),
                                           self.const(np.zeros(len(q), np.int32), np.int32)], axis=0)
        out = self.uint8(self.node("Conv", [x, w, b], **attrs), grid_out)
        return self.dequantized(out, grid_out) if dequantize else out

    def transposed_conv(self, x: str, weight: np.ndarray, bias: np.ndarray,
                        grids: tuple[ActivationRange, ...] | None = None) -> str:
        """A 5x5 stride-2 transposed convolution, as four phase convolutions (`phase_convolutions`)
        or, with fewer output channels than a block, as one (`merged_phase_convolution`); on int8
        `grids` (input, output), each an int8 convolution whose uint8 outputs are interleaved
        before they are dequantized (measured on g_s's middle layers, one thread: four phases
        interleaved in uint8 201 ms, in float 216 ms, one merged convolution 225 ms; the same
        pixels)."""
        if grids:
            q, scale = self.int8_weights(weight, bias, grids[0], axis=1)
            weight = q.astype(np.float32)  # integers, which the phases below only move
            x = self.quantized(x, grids[0])

        def conv(w: np.ndarray, b: np.ndarray, **attrs) -> str:
            if grids:
                return self.int8_conv(x, w.astype(np.int8), np.tile(scale, len(b) // len(scale)), b, *grids,
                                      dequantize=False, **attrs)
            return self.node("Conv", [x, self.const(w), self.const(b)], **attrs)

        if weight.shape[1] < NCHWC_BLOCK:
            phases = conv(merged_phase_convolution(weight), np.tile(bias, 4), kernel_shape=[3, 3], pads=[1] * 4)
        else:
            phases = self.node("Concat", [conv(w, bias, kernel_shape=list(w.shape[2:]), pads=pads)
                                          for w, pads in phase_convolutions(weight)], axis=1)
        out = self.node("DepthToSpace", [phases], blocksize=2, mode="DCR")
        return self.dequantized(out, grids[1]) if grids else out

    def reparametrized(self, name: str) -> np.ndarray:
        """CompressAI's NonNegativeParametrizer: max(p, bound)² − pedestal, in float32 as torch does."""
        bound = self.param(f"{name}_reparam.lower_bound.bound")
        pedestal = self.param(f"{name}_reparam.pedestal")
        return np.maximum(self.param(name), bound) ** 2 - pedestal


def phase_convolutions(transposed: np.ndarray) -> list[tuple[np.ndarray, list[int]]]:
    """ConvTranspose2d(k=5, stride 2, padding 2, output_padding 1) weights [in, out, 5, 5] as four
    plain convolutions, one per output phase (row parity r, column parity c), in DepthToSpace's
    DCR order: (weights [out, in, kh, kw], pads [top, left, bottom, right]) each.

    Output row 2m + r sums input rows m + j with kernel row 2 + r - 2j, for the j in -1..1 where
    that lies in 0..4 (three rows for r = 0, two for r = 1); columns likewise. These are exactly
    the transposed convolution's products without its multiplications by inserted zeros, and
    convolutions run in ONNX Runtime's blocked layout: g_s per Kodak photo on one thread took
    0.347 s this way, 0.378 s as ConvTranspose and 0.598 s in torch (kodim01, benchmarks/onnx_g_s.py).
    Sums run in another order, so pixels may differ from torch's by one level in rare values.
    """
    c_in, c_out, k, _ = transposed.shape
    if k != 5:
        raise ModelError(f"a transposed convolution of kernel {k}: not a network this imgarc can build")
    phases = []
    for r in range(2):
        rows = [(j, 2 + r - 2 * j) for j in (-1, 0, 1) if 0 <= 2 + r - 2 * j < k]
        for c in range(2):
            cols = [(i, 2 + c - 2 * i) for i in (-1, 0, 1) if 0 <= 2 + c - 2 * i < k]
            weights = np.empty((c_out, c_in, len(rows), len(cols)), np.float32)
            for a, (_, row) in enumerate(rows):
                for b, (_, col) in enumerate(cols):
                    weights[:, :, a, b] = transposed[:, :, row, col].T
            phases.append((weights, [-rows[0][0], -cols[0][0], rows[-1][0], cols[-1][0]]))
    return phases


def merged_phase_convolution(transposed: np.ndarray) -> np.ndarray:
    """The four phase convolutions of `phase_convolutions` as one 3x3 convolution with four times
    the output channels (phase-major, DepthToSpace's DCR order), each phase's kernel placed in
    the 3x3 window at its offset and zeros elsewhere: weights [4·out, in, 3, 3], padding 1.

    It multiplies 36 taps where the phases need 25, but for g_s's last layer (3 output channels)
    one 12-channel convolution fills a blocked-layout block where four 3-channel ones each leave
    most of theirs idle: g_s per Kodak photo on one thread took 0.311 s this way and 0.367 s as
    four phases, the same pixels bit for bit (the added products are exact zeros).
    """
    phases = phase_convolutions(transposed)
    c_out, c_in = phases[0][0].shape[:2]
    merged = np.zeros((4 * c_out, c_in, 3, 3), np.float32)
    for p, (weights, (top, left, _, _)) in enumerate(phases):
        rows, cols = weights.shape[2:]
        merged[p * c_out:(p + 1) * c_out, :, 1 - top:1 - top + rows, 1 - left:1 - left + cols] = weights
    return merged


def build_graph(prefix: str, layers: tuple[Layer, ...], params: dict[str, np.ndarray], channels_in: int,
                absolute_input: bool = False, builder: type[NetworkGraphBuilder] = NetworkGraphBuilder,
                ranges: Int8Ranges | None = None) -> bytes:
    """The serialized ONNX model of one network: input x [1, C, h, w] -> output y (`ranges`: its
    int8 layers' activation grids)."""
    g = builder(prefix, params, ranges)
    x = "x"
    if absolute_input:  # ScaleHyperprior's h_a reads |y|
        x = g.node("Abs", [x])
    for layer in layers:
        x = g.layer(x, layer)
    graph = helper.make_graph(
        g.nodes, prefix, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels_in, "h", "w"])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, None, None, None])], g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="imgarc")
    return model.SerializeToString()
