"""The networks on ONNX Runtime: no torch, about half the memory, faster convolutions."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from imgarc.codec.architecture import Architecture
from imgarc.runtime.base import Networks
from imgarc.runtime.onnx_graphs import G_A, G_S, build_graph, h_a_layers


# Each run hands its arena memory back when it ends: photos are coded one after another, and a
# large one's latents, pixels and file need that memory afterwards (a 48-megapixel extract
# peaked 1.59 GB with the arena kept, measured with /usr/bin/time -v).
RELEASE_MEMORY = ort.RunOptions()
RELEASE_MEMORY.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")


def _session(model: bytes, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # A memory pattern pre-plans one buffer per shape it has seen and keeps them: photos of
    # many sizes (and tiles at the edges) piled up. Without it, Kodak's extract peaked at
    # 1.3 GB instead of 1.6-1.9 GB, at the same speed (two photos decoding side by side).
    options.enable_mem_pattern = False
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


class OnnxNetworks(Networks):
    """g_a and h_a use every core this process may use; g_s one thread per call, so its sums
    run in the same order on every machine (large photos run g_s tiles side by side instead)."""

    def __init__(self, architecture: Architecture, params: dict[str, np.ndarray], cores: int) -> None:
        a = architecture
        self._analysis = _session(build_graph("g_a", G_A, params, 3), cores)
        self._hyper = _session(build_graph("h_a", h_a_layers(a), params, a.M, absolute_input=a.scale_only), cores)
        self._synthesis = _session(build_graph("g_s", G_S, params, a.M), 1)

    @staticmethod
    def _run(session: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
        return session.run(None, {"x": np.ascontiguousarray(x, np.float32)}, RELEASE_MEMORY)[0]

    def analysis(self, x: np.ndarray) -> np.ndarray:
        return self._run(self._analysis, x)

    def hyper_analysis(self, y: np.ndarray) -> np.ndarray:
        return self._run(self._hyper, y)

    def synthesis(self, y_hat: np.ndarray) -> np.ndarray:
        return self._run(self._synthesis, y_hat)
