"""A task's classifier as an ONNX graph built from its arrays, run by ONNX Runtime (no torch).

Imported when a classifier is first built (Task.classifier), as imgarc.runtime imports its
runtimes: reading a task file, `--help` and the other commands load neither onnx nor ONNX Runtime.
The graph: per-channel normalization (Sub, Mul); each stem a Slice of the input channels and its
convolutions (Conv, and Add for a residual one, then Relu); Concat; the trunk; GlobalAveragePool,
Flatten, Gemm, Softmax.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from imgarc.runtime.onnx_graphs import GraphNodes
from imgarc.tasks.network import Conv, NetSpec, check_arrays

OPSET = 17


class _Graph(GraphNodes):
    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.arrays = arrays

    def conv(self, x: str, prefix: str, conv: Conv) -> str:
        k = conv.kernel
        y = self.node("Conv", [x, self.const(self.arrays[f"{prefix}.weight"]), self.const(self.arrays[f"{prefix}.bias"])],
                      kernel_shape=[k, k], strides=[conv.stride] * 2, pads=[k // 2] * 4)
        if conv.residual:
            y = self.node("Add", [y, x])
        return self.node("Relu", [y])


def build_classifier_graph(spec: NetSpec, arrays: dict[str, np.ndarray]) -> bytes:
    """The serialized ONNX model: input x float32 [n, C, h, w] -> probs float32 [n, classes]."""
    check_arrays(spec, arrays)
    g = _Graph(arrays)
    c = spec.in_channels
    x = g.node("Mul", [g.node("Sub", ["x", g.const(arrays["norm.mean"].reshape(1, c, 1, 1))]),
                       g.const(arrays["norm.scale"].reshape(1, c, 1, 1))])
    branches = []
    for i, stem in enumerate(spec.stems):
        b = x
        if (stem.first, stem.end) != (0, c):
            b = g.node("Slice", [x, g.const(np.array([stem.first]), np.int64), g.const(np.array([stem.end]), np.int64),
                                 g.const(np.array([1]), np.int64)])
        for j, conv in enumerate(stem.convs):
            b = g.conv(b, f"stem{i}.{j}", conv)
        branches.append(b)
    y = branches[0] if len(branches) == 1 else g.node("Concat", branches, axis=1)
    for j, conv in enumerate(spec.trunk):
        y = g.conv(y, f"trunk.{j}", conv)
    pooled = g.node("Flatten", [g.node("GlobalAveragePool", [y])], axis=1)
    logits = g.node("Gemm", [pooled, g.const(arrays["fc.weight"]), g.const(arrays["fc.bias"])], transB=1)
    probs = g.node("Softmax", [logits], axis=1)
    graph = helper.make_graph(
        g.nodes, "classifier", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", c, "h", "w"])],
        [helper.make_tensor_value_info(probs, TensorProto.FLOAT, ["n", spec.classes])], g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="imgarc")
    return model.SerializeToString()


class Classifier:
    """A classifier network on ONNX Runtime: `probabilities(x)` for a batch [n, C, h, w]."""

    def __init__(self, spec: NetSpec, arrays: dict[str, np.ndarray], threads: int = 1) -> None:
        self.spec = spec
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.enable_mem_pattern = False  # inputs of many sizes (see runtime/onnx_networks.py)
        self._session = ort.InferenceSession(build_classifier_graph(spec, arrays), options,
                                             providers=["CPUExecutionProvider"])

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        return self._session.run(None, {"x": np.ascontiguousarray(x, np.float32)})[0]
