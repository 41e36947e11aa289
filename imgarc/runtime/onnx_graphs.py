"""The networks of a weights file as ONNX graphs, built from its arrays with no torch.

imgarc's networks are CompressAI chains of a few layer kinds, named in the weights file as in
the torch module (`g_a.0.weight`, `g_a.1.beta`, ...):
- conv(k, stride): Conv2d, padding k//2;
- deconv: ConvTranspose2d(5, stride 2, padding 2, output_padding 1);
- GDN / inverse GDN: x · rsqrt(conv1x1(x², γ, β)) / x · sqrt(...), with CompressAI's
  reparametrized β, γ = max(p, bound)² − pedestal, computed here once in float32;
- LeakyReLU(0.01) / ReLU between the hyper-analysis convolutions.
So the graph is read off the architecture; nothing is shipped beside the weights file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from imgarc.codec.architecture import Architecture
from imgarc.errors import ModelError

OPSET = 17
LEAKY_SLOPE = 0.01  # torch.nn.LeakyReLU's default, what CompressAI's h_a uses


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
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        self.n += 1
        out = f"t{self.n}"
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out


class _GraphBuilder(GraphNodes):
    def __init__(self, prefix: str, params: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.prefix = prefix
        self.params = params

    def param(self, name: str) -> np.ndarray:
        key = f"{self.prefix}.{name}"
        if key not in self.params:
            raise ModelError(f"the weights file has no {key}: not a network this imgarc can build")
        return self.params[key].astype(np.float32)

    def layer(self, x: str, layer: Layer) -> str:
        p = str(layer.index)
        if layer.kind in ("conv", "deconv"):
            w, b = self.const(self.param(f"{p}.weight")), self.const(self.param(f"{p}.bias"))
            k = layer.kernel
            if layer.kind == "conv":
                return self.node("Conv", [x, w, b], kernel_shape=[k, k], strides=[layer.stride] * 2, pads=[k // 2] * 4)
            return self.node("ConvTranspose", [x, w, b], kernel_shape=[k, k], strides=[2, 2], pads=[2] * 4,
                             output_padding=[1, 1])
        if layer.kind in ("gdn", "igdn"):
            beta = self.reparametrized(f"{p}.beta")
            gamma = self.reparametrized(f"{p}.gamma")
            c = beta.shape[0]
            norm = self.node("Conv", [self.node("Mul", [x, x]), self.const(gamma.reshape(c, c, 1, 1)), self.const(beta)],
                             kernel_shape=[1, 1])
            root = self.node("Sqrt", [norm])
            return self.node("Mul", [x, root]) if layer.kind == "igdn" else self.node("Div", [x, root])
        if layer.kind == "leaky":
            return self.node("LeakyRelu", [x], alpha=LEAKY_SLOPE)
        if layer.kind == "relu":
            return self.node("Relu", [x])
        raise ModelError(f"unknown layer kind {layer.kind!r}")

    def reparametrized(self, name: str) -> np.ndarray:
        """CompressAI's NonNegativeParametrizer: max(p, bound)² − pedestal, in float32 as torch does."""
        bound = self.param(f"{name}_reparam.lower_bound.bound")
        pedestal = self.param(f"{name}_reparam.pedestal")
        return np.maximum(self.param(name), bound) ** 2 - pedestal


def build_graph(prefix: str, layers: tuple[Layer, ...], params: dict[str, np.ndarray], channels_in: int,
                absolute_input: bool = False) -> bytes:
    """The serialized ONNX model of one network: input x [1, C, h, w] -> output y."""
    g = _GraphBuilder(prefix, params)
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
