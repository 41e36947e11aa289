"""Fake CompressAI zoo files for tests: real CompressAI models, small, in the zoo's file layout.

A file is what CompressAI publishes: the model's full state dict after `update()` (so it carries
its CDF tables), saved with torch.save under `<name>-<sha256 prefix>.pth.tar` in the torch hub
cache. Channel counts are small (N, M are read from the file, as CompressAI's from_state_dict
does, so nothing about the zoo's real N/M needs patching); the URL table entry of the seeded
quality is pointed at the fake file's name, because a real name's hash prefix cannot be matched.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

CLASSES = {"mbt2018-mean": "MeanScaleHyperprior", "bmshj2018-hyperprior": "ScaleHyperprior"}


def lively_model(arch: str, N: int = 8, M: int = 12, seed: int = 0):
    """A random CompressAI model whose latents are not all zero: scaled analysis outputs and
    varied predicted scales/means, so every coder sees many tables, signs and escapes."""
    import torch
    import compressai.models as cm

    torch.manual_seed(seed)
    net = getattr(cm, CLASSES[arch])(N, M).eval()
    with torch.no_grad():
        net.g_a[-1].weight.mul_(60.0)
        net.h_a[-1].weight.mul_(8.0)
        last = net.h_s[-1] if arch == "mbt2018-mean" else net.h_s[-2]
        last.bias[:M].uniform_(0.3, 12.0)  # scales
        if arch == "mbt2018-mean":
            last.bias[M:].uniform_(-3.0, 3.0)  # means
        net.entropy_bottleneck.quantiles.data[:, 0, 0] = -14.0
        net.entropy_bottleneck.quantiles.data[:, 0, 2] = 14.0
    net.update(force=True)  # the publisher's tables (float math on *their* machine), stored in the file
    return net


def old_style_keys(state: dict) -> dict:
    """Key names of CompressAI's older zoo files (ParameterLists `_biases.i`, `_matrices.i`, `_factors.i`)."""
    out = {}
    for k, v in state.items():
        for new, old in (("matrices.", "_matrices."), ("biases.", "_biases."), ("factors.", "_factors.")):
            if k.startswith("entropy_bottleneck." + new):
                k = k.replace("entropy_bottleneck." + new, "entropy_bottleneck." + old)
        out[k] = v
    return out


def seed_zoo_file(hub_dir: Path, arch: str, metric: str, quality: int, net, old_keys: bool = False) -> tuple[Path, str]:
    """Write `net` as the zoo file of (arch, metric, quality) into `hub_dir`/checkpoints; returns
    (path, its URL). The caller points CompressAI's URL table at that URL."""
    import torch

    folder = hub_dir / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "seed.tmp"
    state = net.state_dict()
    torch.save(old_style_keys(state) if old_keys else state, tmp)
    sha = hashlib.sha256(tmp.read_bytes()).hexdigest()
    name = f"{arch}-{metric}-{quality}-{sha[:8]}.pth.tar"
    path = folder / name
    tmp.replace(path)
    return path, f"https://compressai.invalid/models/v1/{name}"
