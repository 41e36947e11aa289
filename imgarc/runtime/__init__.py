"""Where the codec's float networks run (g_a, h_a, g_s): behind the `Networks` interface.

Today: torch (imgarc.runtime.torch_networks). The integer h_s and the coding tables never
run here.
"""

from __future__ import annotations

import numpy as np

from imgarc.codec.architecture import Architecture
from imgarc.runtime.base import Networks


def load_networks(architecture: Architecture, params: dict[str, np.ndarray], model_id: str) -> Networks:
    """The networks of a model's weights, in the runtime this process uses."""
    # torch loads here, when a photo is first coded or decoded, not when archives are listed.
    from imgarc.runtime.torch_networks import TorchNetworks

    return TorchNetworks(architecture, params, model_id)


def torch_model_of(networks: Networks, architecture: Architecture, params: dict[str, np.ndarray], model_id: str):
    """The torch module behind `networks` when they run in torch, else a new one from `params`."""
    from imgarc.runtime.torch_networks import TorchNetworks  # torch: only for tools that ask for it

    if isinstance(networks, TorchNetworks):
        return networks.model
    return TorchNetworks(architecture, params, model_id).model


__all__ = ["Networks", "load_networks", "torch_model_of"]
