"""Structured pruning of a mean-scale hyperprior: whole channels removed, a dense smaller network left.

Every network is a chain, so a channel lives in a fixed set of tensor slices: the outputs of
the layer that makes it (weight, bias, the GDN that follows: β and both axes of γ), the inputs
of the layer that reads it, and, for the latent and hyper-latent channels, everything else
indexed by them (h_s's predicted scales and means, the gains, the entropy bottleneck's
densities). `channel_groups` lists those slices for each of the model's twelve channel
groups; pruning a group keeps the same indexes in all of its slices.

The groups: g_a's three inner widths, the latent channels M, g_s's three inner widths, h_a's
two, the hyper-latent channels N, h_s's two. g_a and g_s hold about 90 % of the multiply-adds
(each inner layer costs C_in·C_out·25 per position); h_a and h_s hold most of the parameters
(h_s alone 43 % of the default's), which is what a small weights file needs pruned.

A channel's importance is what the next layer receives from it: its mean |activation| after
the layer's nonlinearity on sample crops (for latents and hyper-latents: the transform's
output), times the L2 norm of the reading layer's weights on it. Channels are kept by
importance; a GDN loses the pruned channels' β entries and their rows and columns of γ (a kept
channel is then normalized by the kept channels only, which fine-tuning repairs). The coding
tables and the integer h_s are rebuilt at export from the fine-tuned model, as for any model.
Torch only: this runs inside `imgarc optimize`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from imgarc.codec.architecture import Architecture, build_model
from imgarc.errors import UsageError
from imgarc.optimize.widths import GROUP_NAMES, architecture_of


@dataclass(frozen=True)
class Slice:
    """The channels of a group along `axis` of one state-dict tensor; `copies`: the tensor stacks
    that many blocks of them along the axis (h_s's last layer: scales, then means)."""

    name: str
    axis: int
    copies: int = 1
    optional: bool = False  # only in variable-rate models (the gains)


@dataclass(frozen=True)
class ChannelGroup:
    name: str
    activity: str  # the module whose output holds the channels (importance: its mean |output|)
    reader: Slice  # the next layer's weights on them (importance: their L2 norm)
    slices: tuple[Slice, ...]  # every slice that holds the group, the reader's included


def _conv_out(layer: str) -> tuple[Slice, ...]:
    return Slice(f"{layer}.weight", 0), Slice(f"{layer}.bias", 0)


def _deconv_out(layer: str) -> tuple[Slice, ...]:  # ConvTranspose2d weights are [in, out, k, k]
    return Slice(f"{layer}.weight", 1), Slice(f"{layer}.bias", 0)


def _gdn(layer: str) -> tuple[Slice, ...]:
    return Slice(f"{layer}.beta", 0), Slice(f"{layer}.gamma", 0), Slice(f"{layer}.gamma", 1)


ENTROPY_BOTTLENECK_TENSORS = ("quantiles", *(f"{kind}.{k}" for kind in ("matrices", "biases") for k in range(5)),
                              *(f"factors.{k}" for k in range(4)))


def channel_groups() -> tuple[ChannelGroup, ...]:
    """The twelve channel groups of a (gained) mean-scale hyperprior, in `GROUP_NAMES` order."""
    groups = []
    for i in (0, 2, 4):
        reader = Slice(f"g_a.{i + 2}.weight", 1)
        groups.append(ChannelGroup(f"g_a.{i}", f"g_a.{i + 1}", reader, (*_conv_out(f"g_a.{i}"), *_gdn(f"g_a.{i + 1}"), reader)))
    latents_reader = Slice("g_s.0.weight", 0)
    groups.append(ChannelGroup("latents", "g_a.6", latents_reader, (
        *_conv_out("g_a.6"), latents_reader, Slice("h_a.0.weight", 1), Slice("h_s.4.weight", 0, copies=2),
        Slice("h_s.4.bias", 0, copies=2), Slice("gain", 1, optional=True),
        Slice("inv_gain", 1, optional=True))))
    for i in (0, 2, 4):
        reader = Slice(f"g_s.{i + 2}.weight", 0)
        groups.append(ChannelGroup(f"g_s.{i}", f"g_s.{i + 1}", reader, (*_deconv_out(f"g_s.{i}"), *_gdn(f"g_s.{i + 1}"), reader)))
    for i in (0, 2):
        reader = Slice(f"h_a.{i + 2}.weight", 1)
        groups.append(ChannelGroup(f"h_a.{i}", f"h_a.{i + 1}", reader, (*_conv_out(f"h_a.{i}"), reader)))
    hyper_reader = Slice("h_s.0.weight", 0)
    groups.append(ChannelGroup("hyper_latents", "h_a.4", hyper_reader, (
        *_conv_out("h_a.4"), hyper_reader, Slice("hyper_gain", 1, optional=True),
        Slice("hyper_inv_gain", 1, optional=True),
        *(Slice(f"entropy_bottleneck.{t}", 0) for t in ENTROPY_BOTTLENECK_TENSORS))))
    for i, reader in ((0, Slice("h_s.2.weight", 0)), (2, Slice("h_s.4.weight", 1))):
        groups.append(ChannelGroup(f"h_s.{i}", f"h_s.{i + 1}", reader, (*_deconv_out(f"h_s.{i}"), reader)))
    return tuple(groups)


GROUPS = channel_groups()
assert tuple(g.name for g in GROUPS) == GROUP_NAMES


@dataclass(frozen=True)
class Kept:
    """The kept channel indexes of each group, in `GROUP_NAMES` order."""

    channels: tuple[torch.Tensor, ...]

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(len(c) for c in self.channels)

    @property
    def latents(self) -> list[int]:
        """The parent's latent channels the child keeps: what distillation compares ŷ on."""
        return self.channels[GROUP_NAMES.index("latents")].tolist()


def channel_importance(model: nn.Module, crops: torch.Tensor, rate_position: float | None) -> list[torch.Tensor]:
    """One importance vector per group of `GROUPS` (see the module docstring)."""
    modules = dict(model.named_modules())
    activity: dict[str, torch.Tensor] = {}
    hooks = [modules[g.activity].register_forward_hook(
        lambda _m, _inp, out, name=g.name: activity.__setitem__(name, out.detach().abs().mean(dim=(0, 2, 3))))
        for g in GROUPS]
    try:
        with torch.no_grad():
            model.eval()
            model(crops, rate_position=rate_position) if rate_position is not None else model(crops)
    finally:
        for h in hooks:
            h.remove()
    state = model.state_dict()
    scores = []
    for g in GROUPS:
        weight = state[g.reader.name].detach()
        reads = weight.pow(2).sum(dim=tuple(d for d in range(weight.dim()) if d != g.reader.axis)).sqrt()
        scores.append(activity[g.name] * reads)
    return scores


def choose_channels(scores: list[torch.Tensor], widths: tuple[int, ...]) -> Kept:
    kept = []
    for group, score, width in zip(GROUPS, scores, widths):
        if width > len(score):
            raise UsageError(f"cannot keep {width} of the {len(score)} channels of {group.name}")
        kept.append(torch.sort(torch.topk(score, width).indices).values)
    return Kept(tuple(kept))


def _indexes(kept: torch.Tensor, length: int, copies: int) -> torch.Tensor:
    block = length // copies
    return torch.cat([kept + k * block for k in range(copies)])


def pruned_state(state: dict[str, torch.Tensor], kept: Kept) -> dict[str, torch.Tensor]:
    """The parent's state dict with the pruned channels cut out of every tensor that holds them."""
    out = dict(state)
    for group, channels in zip(GROUPS, kept.channels):
        for s in group.slices:
            if s.optional and s.name not in out:
                continue
            t = out[s.name]
            out[s.name] = t.index_select(s.axis, _indexes(channels, t.shape[s.axis], s.copies))
    return {k: v.clone() for k, v in out.items()}


def prune_model(model: nn.Module, arch: Architecture, widths: tuple[int, ...], crops: torch.Tensor,
                rate_position: float | None = None) -> tuple[nn.Module, Architecture, Kept]:
    """A new model whose groups have `widths` (`GROUP_NAMES` order), holding the parent's most
    important channels; its architecture and the kept channels."""
    kept = choose_channels(channel_importance(model, crops, rate_position), widths)
    child_arch = architecture_of(arch, kept.widths)
    child = build_model(child_arch)
    child.load_state_dict(pruned_state(model.state_dict(), kept), strict=False)  # CompressAI rebuilds its table buffers
    return child, child_arch, kept


def parameter_count(arch: Architecture) -> int:
    """The learned parameters of a model of `arch` (what its weights file mostly holds)."""
    return sum(p.numel() for p in build_model(arch).parameters())
