"""Structured pruning of g_a and g_s: whole inner channels removed, a dense smaller network left.

g_a and g_s hold about 90 % of a mean-scale hyperprior's multiply-adds (each inner layer costs
C_in·C_out·25 per position), so their three inner widths are what is pruned; the latent width M,
h_a, h_s, the entropy models and the gains stay the parent's (the coding tables are rebuilt at
export from the fine-tuned model, as for any model).

A channel's importance is what the next layer receives from it: its mean |activation| after
the (inverse) GDN on sample crops, times the L2 norm of the next layer's weights that read it.
Channels are kept by importance; a GDN loses the pruned channels' β entries and their rows and
columns of γ (a kept channel is then normalized by the kept channels only, which fine-tuning
repairs). Torch only: this runs inside `imgarc optimize`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from imgarc.codec.architecture import Architecture, build_model
from imgarc.errors import UsageError

INNER = (0, 2, 4)  # in g_a and g_s: the layers whose outputs are inner channels (each followed by a GDN)


@dataclass(frozen=True)
class Kept:
    """The kept channel indexes of the six inner layers (g_a's three, then g_s's)."""

    channels: tuple[torch.Tensor, ...]

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(len(c) for c in self.channels)


def widths_for(arch: Architecture, keep: float) -> tuple[int, ...]:
    """Inner widths keeping the fraction `keep` of each parent width (rounded to a multiple of 8,
    which vector units like)."""
    if not 0 < keep <= 1:
        raise UsageError(f"--keep must be a fraction in (0, 1], not {keep}")
    return tuple(max(8, int(round(w * keep / 8)) * 8) for w in arch.inner_widths)


def channel_importance(model: nn.Module, crops: torch.Tensor, rate_position: float | None) -> list[torch.Tensor]:
    """Six importance vectors, one per inner layer (see the module docstring)."""
    activity: dict[int, torch.Tensor] = {}
    hooks = []
    for n, (net, i) in enumerate([(model.g_a, i) for i in INNER] + [(model.g_s, i) for i in INNER]):
        gdn = net[i + 1]
        hooks.append(gdn.register_forward_hook(
            lambda _m, _inp, out, n=n: activity.__setitem__(n, activity.get(n, 0) + out.detach().abs().mean(dim=(0, 2, 3)))))
    try:
        with torch.no_grad():
            model.eval()
            model(crops, rate_position=rate_position) if rate_position is not None else model(crops)
    finally:
        for h in hooks:
            h.remove()
    scores = []
    for n in range(6):
        consumer = (model.g_a if n < 3 else model.g_s)[INNER[n % 3] + 2].weight.detach()
        # Conv2d weights are [out, in, k, k]; ConvTranspose2d's [in, out, k, k].
        reads = consumer.pow(2).sum(dim=(0, 2, 3) if n < 3 else (1, 2, 3)).sqrt()
        scores.append(activity[n] * reads)
    return scores


def choose_channels(scores: list[torch.Tensor], widths: tuple[int, ...]) -> Kept:
    kept = []
    for score, width in zip(scores, widths):
        if width > len(score):
            raise UsageError(f"cannot keep {width} of {len(score)} channels")
        kept.append(torch.sort(torch.topk(score, width).indices).values)
    return Kept(tuple(kept))


def _slices(net: str, index: int, kept: Kept) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(kept inputs, kept outputs) of layer `index` of g_a or g_s; None: all of them."""
    own = kept.channels[:3] if net == "g_a" else kept.channels[3:]
    layer = index if index % 2 == 0 else index - 1  # a GDN keeps its convolution's outputs
    outputs = own[layer // 2] if layer < 6 else None
    inputs = own[layer // 2 - 1] if layer > 0 and index % 2 == 0 else None
    return inputs, outputs


def pruned_state(state: dict[str, torch.Tensor], kept: Kept) -> dict[str, torch.Tensor]:
    """The parent's state dict with the pruned channels cut out of g_a's and g_s's tensors."""
    out = {}
    for key, tensor in state.items():
        net, _, rest = key.partition(".")
        if net not in ("g_a", "g_s"):
            out[key] = tensor
            continue
        index, _, name = rest.partition(".")
        inputs, outputs = _slices(net, int(index), kept)
        t = tensor
        if name == "weight":  # Conv2d [out, in, ...]; ConvTranspose2d (g_s) [in, out, ...]
            out_dim, in_dim = (1, 0) if net == "g_s" else (0, 1)
            t = t if outputs is None else t.index_select(out_dim, outputs)
            t = t if inputs is None else t.index_select(in_dim, inputs)
        elif name in ("bias", "beta"):
            t = t if outputs is None else t.index_select(0, outputs)
        elif name == "gamma":
            t = t.index_select(0, outputs).index_select(1, outputs)
        out[key] = t.clone()
    return out


def prune_model(model: nn.Module, arch: Architecture, widths: tuple[int, ...], crops: torch.Tensor,
                rate_position: float | None = None) -> tuple[nn.Module, Architecture]:
    """A new model of `widths` holding the parent's most important inner channels."""
    kept = choose_channels(channel_importance(model, crops, rate_position), widths)
    child_arch = replace(arch, widths=kept.widths)
    child = build_model(child_arch)
    child.load_state_dict(pruned_state(model.state_dict(), kept), strict=False)  # CompressAI rebuilds its table buffers
    return child, child_arch
