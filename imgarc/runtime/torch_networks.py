"""The networks in torch eager mode, from a weights file (the runtime training also uses)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import numpy as np
import torch

from imgarc.codec.architecture import COMPRESSAI_TABLE_BUFFERS, Architecture, build_model
from imgarc.codec.fake_quant import Int8Network
from imgarc.codec.int8 import Int8Ranges, quantizes_network
from imgarc.errors import ModelError
from imgarc.runtime.base import Networks


def torch_state(params: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """A weights file's parameters as a torch state dict (fp16 ones as fp32)."""
    return {k: torch.from_numpy(v.astype(np.float32) if v.dtype == np.float16 else v) for k, v in params.items()}


class TorchNetworks(Networks):
    def __init__(self, architecture: Architecture, params: Mapping[str, np.ndarray], model_id: str,
                 device: str = "cpu", int8_ranges: Int8Ranges | None = None) -> None:
        model = build_model(architecture)
        # nn.Module's loader, not CompressAI's: that one insists on its float-built table buffers.
        missing, unexpected = torch.nn.Module.load_state_dict(model, torch_state(params), strict=False)
        missing = [k for k in missing if k.rsplit(".", 1)[-1] not in COMPRESSAI_TABLE_BUFFERS]
        if missing or unexpected:
            raise ModelError(f"weights for model {model_id!r} do not fit its architecture "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        self.device = torch.device(device)
        # As ONNX Runtime runs them: an int8 g_a on CPUs only (on a GPU the float one only moves y),
        # an int8 g_s everywhere (it decides the pixels).
        if int8_ranges and quantizes_network(int8_ranges, "g_a") and self.device.type == "cpu":
            model.g_a = Int8Network(model.g_a, int8_ranges, "g_a")
        if int8_ranges and quantizes_network(int8_ranges, "g_s"):
            model.g_s = Int8Network(model.g_s, int8_ranges, "g_s")
        self.model = model.eval().to(self.device)
        self.scale_only = architecture.scale_only

    def _run(self, network: torch.nn.Module, x: np.ndarray) -> np.ndarray:
        with one_thread():
            return network(torch.from_numpy(x).to(self.device)).cpu().numpy()

    def analysis(self, x: np.ndarray) -> np.ndarray:
        return self._run(self.model.g_a, x)

    def hyper_analysis(self, y: np.ndarray) -> np.ndarray:
        return self._run(self.model.h_a, np.abs(y) if self.scale_only else y)

    def synthesis(self, y_hat: np.ndarray) -> np.ndarray:
        return self._run(self.model.g_s, y_hat)


@contextmanager
def one_thread(grad: bool = False) -> Iterator[None]:
    """One intra-op thread, and autograd only if `grad`, in the calling thread for this call:
    torch's OpenMP thread count is per thread, and the networks run on pool and tile threads side
    by side. Other counts split the convolution sums differently and move some values by one level."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.set_grad_enabled(grad):
            yield
    finally:
        torch.set_num_threads(threads)
