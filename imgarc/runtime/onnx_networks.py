"""The networks on ONNX Runtime: no torch, about half the memory, faster convolutions.

The graphs are built from the weights file (imgarc.runtime.onnx_graphs, which needs the `onnx`
package: about half a second to import) once per model and graph builder, and kept in
imgarc's cache folder; later runs load them from there.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidGraph, InvalidProtobuf

from imgarc.background import ahead_of_need
from imgarc.codec.architecture import Architecture
from imgarc.codec.int8 import Int8Ranges, quantizes_network
from imgarc.errors import ImgarcError
from imgarc.fileio import write_file_atomic
from imgarc.runtime.base import Networks

GRAPHS_MODULE = "imgarc.runtime.onnx_graphs"
BAD_GRAPH = (Fail, InvalidGraph, InvalidProtobuf)  # what ONNX Runtime says of a damaged cached graph


def graph_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imgarc" / "onnx"


def _builder_digest() -> str:
    """The graph builder's own source: a cached graph is used only with the code that made it."""
    spec = importlib.util.find_spec(GRAPHS_MODULE)
    return hashlib.sha256(Path(spec.origin).read_bytes()).hexdigest()[:16] if spec and spec.origin else "unknown"


# Runs keep their arena memory for the next tile or photo: handing it back after every run cost
# Kodak's compress and extract 1.5-2 s of page faults (7-9 % of their wall time, measured). A
# large photo's latents, pixels and file need that memory afterwards, so release_memory() hands
# it back once the photo's networks are done (a 48-megapixel extract peaked 1.59 GB with the
# arena kept, measured with /usr/bin/time -v): a tiny run with the arena's shrinkage turned on.
RELEASE_MEMORY = ort.RunOptions()
RELEASE_MEMORY.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")


CPU = ["CPUExecutionProvider"]
CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]  # onnxruntime-gpu (runtime.device)


def make_session(model: bytes, providers: list[str] = CPU) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # A memory pattern pre-plans one buffer per shape it has seen and keeps them: photos of
    # many sizes (and tiles at the edges) piled up. Without it, Kodak's extract peaked at
    # 1.3 GB instead of 1.6-1.9 GB, at the same speed (two photos decoding side by side).
    options.enable_mem_pattern = False
    return ort.InferenceSession(model, options, providers=providers)


class OnnxNetworks(Networks):
    """Every network on one intra-op thread per call, so its sums run in the same order on every
    machine and in every pool (cores are used by tiles and photos side by side instead). Each
    network's session is made when it is first run: extract never runs g_a or h_a, and compress
    never runs g_s (a session takes tens of milliseconds to make)."""

    def __init__(self, architecture: Architecture, params: dict[str, np.ndarray], weights_sha256: str,
                 cuda: bool = False, int8_ranges: Int8Ranges | None = None) -> None:
        key = f"{weights_sha256[:32]}-{_builder_digest()}"
        providers = CUDA if cuda else CPU
        m = architecture.M
        # An int8 g_a pays on CPUs (int8 kernels); a GPU runs the float one, which only moves y.
        # An int8 g_s decides the pixels, so a GPU runs its grid too (QDQ in float arithmetic,
        # as the torch runtime does). An int8 graph has its own name in the cache.
        analysis_ranges = None if cuda else int8_ranges
        self._analysis = _LazySession(_graph_name("g_a", analysis_ranges), key,
                                      lambda graphs: graphs.build_graph("g_a", graphs.G_A, params, 3, ranges=analysis_ranges),
                                      (1, 3, 16, 16), providers)
        self._hyper = _LazySession(
            "h_a", key, lambda graphs: graphs.build_graph("h_a", graphs.h_a_layers(architecture), params, m,
                                                          absolute_input=architecture.scale_only), (1, m, 4, 4),
            providers)
        self._synthesis = _LazySession(_graph_name("g_s", int8_ranges), key,
                                       lambda graphs: graphs.build_graph("g_s", graphs.G_S, params, m, ranges=int8_ranges),
                                       (1, m, 1, 1), providers)

    def analysis(self, x: np.ndarray) -> np.ndarray:
        return self._analysis.run(x)

    def hyper_analysis(self, y: np.ndarray) -> np.ndarray:
        return self._hyper.run(y)

    def synthesis(self, y_hat: np.ndarray) -> np.ndarray:
        return self._synthesis.run(y_hat)

    def prepare_synthesis(self) -> None:
        self._synthesis.prepare()

    def release_memory(self) -> None:
        for session in (self._analysis, self._hyper, self._synthesis):
            session.release_memory()


def _graph_name(network: str, ranges: Int8Ranges | None) -> str:
    return f"{network}-int8" if ranges and quantizes_network(ranges, network) else network


class _LazySession:
    """One network's session, made on first use (once, whichever decode thread gets there first)."""

    def __init__(self, name: str, key: str, build: Callable, smallest_input: tuple[int, ...],
                 providers: list[str] = CPU) -> None:
        self._args = (name, key, build, providers)
        self._smallest_input = smallest_input
        self._session: ort.InferenceSession | None = None
        self._lock = threading.Lock()

    def run(self, x: np.ndarray, options: ort.RunOptions | None = None) -> np.ndarray:
        return self._made().run(None, {"x": np.ascontiguousarray(x, np.float32)}, options)[0]

    def prepare(self) -> None:
        """Make the session on a thread of its own, unless it is made or being made. Reading the
        graph and optimizing it (~0.1 s for g_s) then overlaps the work before its first run
        (a lone photo's entropy decoding and h_s); that run waits for it."""
        if self._session is None and not self._lock.locked():
            ahead_of_need(self._made)

    def _made(self) -> ort.InferenceSession:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = _cached_session(*self._args)
        return self._session

    def release_memory(self) -> None:
        """Shrink the session's arena (chunks that runs on other threads hold stay), if it has one."""
        if self._session is not None:
            self.run(np.zeros(self._smallest_input, np.float32), RELEASE_MEMORY)


def _cached_session(name: str, key: str, build: Callable, providers: list[str]) -> ort.InferenceSession:
    """A session for graph `name` of the model `key`: from the cache, else built (and cached)."""
    path = graph_cache_dir() / f"{key}-{name}.onnx"
    if path.is_file():
        try:
            return make_session(path.read_bytes(), providers)
        except (OSError, *BAD_GRAPH):
            pass  # unreadable or damaged: build it again
    # The builder imports `onnx`, which only a first run (per model and builder) needs.
    graphs = importlib.import_module(GRAPHS_MODULE)
    model = build(graphs)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file_atomic(path, model)
    except (OSError, ImgarcError):
        pass  # a read-only home: build it each time
    return make_session(model, providers)
