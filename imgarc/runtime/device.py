"""Where the float networks run: this machine's CPU, or a CUDA GPU where one is present.

A GPU runs g_a, h_a and g_s about 100x faster than two CPU threads (measured on an H200: 4.3 ms
and 1.5 ms per Kodak photo). The integer h_s and the entropy coders stay on the CPU, exact, so an
archive written on a GPU extracts on any CPU and the other way round; a GPU's latents differ
from a CPU's in a few symbols (the encoder writes what it computed, the decoder reads symbols),
and its decoded pixels by at most one level in rare values, the same limit as between CPU kinds.

CUDA is found through ONNX Runtime's CUDA provider (the onnxruntime-gpu package) or torch built
with CUDA; `auto` looks for NVIDIA's driver first, so a machine without one imports nothing.
"""

from __future__ import annotations

import enum
from pathlib import Path

from imgarc.errors import UsageError
from imgarc.extras import installed

NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")


class Device(str, enum.Enum):
    AUTO = "auto"  # CUDA where it can run, else the CPU
    CPU = "cpu"
    CUDA = "cuda"


class CudaRuntime(str, enum.Enum):
    ONNX = "onnx"  # onnxruntime-gpu's CUDAExecutionProvider
    TORCH = "torch"  # torch built with CUDA


def cuda_runtime() -> CudaRuntime | None:
    """How this process can run the networks on a CUDA GPU, or None."""
    if not NVIDIA_DRIVER.exists():
        return None
    if installed("onnxruntime"):
        import onnxruntime  # the lean install's runtime: already loaded by then in a coding run

        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            return CudaRuntime.ONNX
    if installed("torch"):
        import torch  # the training extra: imported only on a machine with NVIDIA's driver

        if torch.cuda.is_available():
            return CudaRuntime.TORCH
    return None


def resolve_device(device: Device) -> Device:
    """CPU or CUDA: `auto` picks CUDA where it can run; `cuda` where it cannot is one clear line."""
    if device is Device.CPU:
        return Device.CPU
    if cuda_runtime() is not None:
        return Device.CUDA
    if device is Device.CUDA:
        raise UsageError("--device cuda: no CUDA GPU can be used here (it needs NVIDIA's driver and onnxruntime-gpu, "
                         "or torch built with CUDA); use --device cpu or auto")
    return Device.CPU
