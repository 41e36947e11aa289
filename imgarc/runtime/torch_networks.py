"""The networks in torch eager mode, from a weights file (the runtime training also uses)."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from imgarc.codec.architecture import COMPRESSAI_TABLE_BUFFERS, Architecture, build_model
from imgarc.errors import ModelError
from imgarc.runtime.base import Networks


class TorchNetworks(Networks):
    def __init__(self, architecture: Architecture, params: dict[str, np.ndarray], model_id: str) -> None:
        model = build_model(architecture)
        state = {k: torch.from_numpy(v.astype(np.float32) if v.dtype == np.float16 else v) for k, v in params.items()}
        # nn.Module's loader, not CompressAI's: that one insists on its float-built table buffers.
        missing, unexpected = torch.nn.Module.load_state_dict(model, state, strict=False)
        missing = [k for k in missing if k.rsplit(".", 1)[-1] not in COMPRESSAI_TABLE_BUFFERS]
        if missing or unexpected:
            raise ModelError(f"weights for model {model_id!r} do not fit its architecture "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        self.model = model.eval()
        self.scale_only = architecture.scale_only

    def analysis(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.model.g_a(torch.from_numpy(x)).numpy()

    def hyper_analysis(self, y: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            t = torch.from_numpy(y)
            return self.model.h_a(t.abs() if self.scale_only else t).numpy()

    def synthesis(self, y_hat: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.model.g_s(torch.from_numpy(y_hat)).numpy()

    @contextmanager
    def single_threaded(self) -> Iterator[None]:
        # torch's thread count is process-wide and photos decode side by side: the first caller
        # in sets it to 1, the last one out restores it, so no restore lands inside another g_s.
        with _pin.lock:
            if _pin.holders == 0:
                _pin.saved = torch.get_num_threads()
                torch.set_num_threads(1)
            _pin.holders += 1
        try:
            yield
        finally:
            with _pin.lock:
                _pin.holders -= 1
                if _pin.holders == 0:
                    torch.set_num_threads(_pin.saved)


@dataclass
class _ThreadPin:
    lock: threading.Lock = field(default_factory=threading.Lock)
    holders: int = 0
    saved: int = 1


_pin = _ThreadPin()
