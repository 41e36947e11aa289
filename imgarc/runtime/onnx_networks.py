"""The networks on ONNX Runtime: no torch, about half the memory, faster convolutions.

Each network's session (imgarc.runtime.onnx_sessions, which imports ONNX Runtime) is made when
it is first run or prepared.
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType
from typing import TYPE_CHECKING, Callable

import numpy as np

from imgarc.background import ahead_of_need
from imgarc.codec.architecture import Architecture
from imgarc.runtime.base import Networks

if TYPE_CHECKING:
    import onnxruntime as ort

SESSIONS_MODULE = "imgarc.runtime.onnx_sessions"
CPU = ["CPUExecutionProvider"]
CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]  # onnxruntime-gpu (runtime.device)


def _sessions() -> ModuleType:
    return importlib.import_module(SESSIONS_MODULE)


class OnnxNetworks(Networks):
    """Every network on one intra-op thread per call, so its sums run in the same order on every
    machine and in every pool (cores are used by tiles and photos side by side instead). Each
    network's session is made when it is first run: extract never runs g_a or h_a, and compress
    never runs g_s (a session takes tens of milliseconds to make)."""

    def __init__(self, architecture: Architecture, params: dict[str, np.ndarray], weights_sha256: str,
                 cuda: bool = False) -> None:
        providers = CUDA if cuda else CPU
        m = architecture.M
        self._analysis = _LazySession("g_a", weights_sha256, lambda graphs: graphs.build_graph("g_a", graphs.G_A, params, 3),
                                      (1, 3, 16, 16), providers)
        self._hyper = _LazySession(
            "h_a", weights_sha256, lambda graphs: graphs.build_graph("h_a", graphs.h_a_layers(architecture), params, m,
                                                          absolute_input=architecture.scale_only), (1, m, 4, 4),
            providers)
        self._synthesis = _LazySession("g_s", weights_sha256, lambda graphs: graphs.build_graph("g_s", graphs.G_S, params, m),
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


class _LazySession:
    """One network's session, made on first use (once, whichever decode thread gets there first)."""

    def __init__(self, name: str, weights_sha256: str, build: Callable, smallest_input: tuple[int, ...],
                 providers: list[str] = CPU) -> None:
        self._args = (name, weights_sha256, build, providers)
        self._smallest_input = smallest_input
        self._session: ort.InferenceSession | None = None
        self._lock = threading.Lock()

    def run(self, x: np.ndarray, options: ort.RunOptions | None = None) -> np.ndarray:
        return self._made().run(None, {"x": np.ascontiguousarray(x, np.float32)}, options)[0]

    def prepare(self) -> None:
        """Make the session on a thread of its own, unless it is made or being made. Importing
        ONNX Runtime, reading the graph and optimizing it (~0.1 s for g_s) then overlap the work
        before its first run (a lone photo's entropy decoding and h_s); that run waits for it."""
        if self._session is None and not self._lock.locked():
            ahead_of_need(self._made)

    def _made(self) -> ort.InferenceSession:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = _sessions().cached_session(*self._args)
        return self._session

    def release_memory(self) -> None:
        """Shrink the session's arena (chunks that runs on other threads hold stay), if it has one."""
        if self._session is not None:
            self.run(np.zeros(self._smallest_input, np.float32), _sessions().RELEASE_MEMORY)
