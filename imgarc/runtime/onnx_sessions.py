"""ONNX Runtime sessions for the networks (imgarc.runtime.onnx_networks), made from graphs kept
in imgarc's cache folder or built there (imgarc.runtime.onnx_graphs, which needs the `onnx`
package: about half a second to import) once per model and graph builder.

Its own module so that importing ONNX Runtime (0.03-0.05 s) happens when the first session is
made, which a decode starts on a thread of its own (Networks.prepare_synthesis), not in every
command's start.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from pathlib import Path
from typing import Callable

import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidGraph, InvalidProtobuf

from imgarc.errors import ImgarcError
from imgarc.fileio import write_file_atomic
from imgarc.runtime.onnx_networks import CPU

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


def cached_session(name: str, weights_sha256: str, build: Callable, providers: list[str]) -> ort.InferenceSession:
    """A session for graph `name` of the model with these weights: from the cache, else built
    (and cached). `build(graphs module)` gives the graph's bytes."""
    path = graph_cache_dir() / f"{weights_sha256[:32]}-{_builder_digest()}-{name}.onnx"
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
