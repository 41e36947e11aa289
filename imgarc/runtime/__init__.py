"""Where the codec's float networks run (g_a, h_a, g_s): behind the `Networks` interface.

- `onnx` (default where onnxruntime is installed): graphs built from the weights file
  (imgarc.runtime.onnx_graphs), run by ONNX Runtime; no torch.
- `torch`: CompressAI's modules in torch eager mode (training, the bench's CompressAI rows, and
  the fallback).
Chosen by IMGARC_RUNTIME=onnx|torch. The integer h_s and the coding tables never run here, so
either runtime reads the other's archives (pixels may differ by one level in rare values).
"""

from __future__ import annotations

import enum
import os

import numpy as np

from imgarc.codec.architecture import Architecture
from imgarc.codec.int8 import Int8Ranges
from imgarc.cores import usable_cores
from imgarc.errors import UsageError
from imgarc.extras import installed, require
from imgarc.runtime.base import Networks
from imgarc.runtime.device import CudaRuntime, Device, cuda_runtime


RUNTIME_ENV = "IMGARC_RUNTIME"


class Runtime(str, enum.Enum):
    ONNX = "onnx"
    TORCH = "torch"


def chosen_runtime() -> Runtime:
    """IMGARC_RUNTIME if set, else ONNX Runtime where it is installed, else torch."""
    value = os.environ.get(RUNTIME_ENV, "").strip().lower()
    if value:
        try:
            return Runtime(value)
        except ValueError:
            raise UsageError(f"{RUNTIME_ENV} must be one of {', '.join(r.value for r in Runtime)}, not {value!r}") from None
    return Runtime.ONNX if installed("onnxruntime") else Runtime.TORCH


def load_networks(architecture: Architecture, params: dict[str, np.ndarray], model_id: str,
                  weights_sha256: str, device: Device = Device.CPU, int8_ranges: Int8Ranges | None = None) -> Networks:
    """The networks of a model's weights, in the runtime this process uses, on `device` (CPU or
    CUDA, resolved: runtime.device); `int8_ranges`: the model's int8 g_a (imgarc.codec.int8).
    Each runtime's module is imported here, when a photo is first coded or decoded: listing an
    archive loads neither, and the lean install has no torch."""
    cuda = cuda_runtime() if device is Device.CUDA else None
    if device is Device.CUDA and cuda is None:
        raise UsageError("no CUDA GPU can be used here; use --device cpu")
    if cuda is CudaRuntime.ONNX or (cuda is None and chosen_runtime() is Runtime.ONNX):
        from imgarc.runtime.onnx_networks import OnnxNetworks

        return OnnxNetworks(architecture, params, weights_sha256, cuda=cuda is CudaRuntime.ONNX, int8_ranges=int8_ranges)
    require(f"{RUNTIME_ENV}=torch", "torch", "compressai")
    from imgarc.runtime.torch_networks import TorchNetworks

    return TorchNetworks(architecture, params, model_id, "cuda" if cuda is CudaRuntime.TORCH else "cpu", int8_ranges)


def torch_model_of(networks: Networks, architecture: Architecture, params: dict[str, np.ndarray], model_id: str):
    """The torch module behind `networks` when they run in torch, else a new one from `params`."""
    require("the torch model", "torch", "compressai")
    from imgarc.runtime.torch_networks import TorchNetworks  # torch: only for tools that ask for it

    if isinstance(networks, TorchNetworks):
        return networks.model
    return TorchNetworks(architecture, params, model_id).model


__all__ = ["Device", "Networks", "RUNTIME_ENV", "Runtime", "chosen_runtime", "load_networks", "torch_model_of", "usable_cores"]
