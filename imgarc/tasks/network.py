"""The small classifiers of tasks: a description (NetSpec) and the arrays it needs (numpy only).

imgarc.tasks.onnx_classifier builds an ONNX graph from the arrays (as imgarc.runtime.onnx_graphs
builds the codec's) and runs it on ONNX Runtime, so `classify` needs neither torch nor anything
shipped beside the task file; training (torch, imgarc.tasks.train) folds batch norm into the
convolutions and hands back plain arrays.

A network: per-channel normalization; one or more stems, each reading a range of input
channels through its own convolutions (ŷ and σ̂ each through their own, as in Deng & Karam);
their outputs concatenated; a trunk of convolutions; global average pooling; one linear layer;
softmax. Every convolution is followed by ReLU; a `residual` one adds its input first.
Arrays: `norm.mean`, `norm.scale` [C]; `stem<i>.<j>.weight|bias`, `trunk.<j>.weight|bias`;
`fc.weight` [classes, C], `fc.bias`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from imgarc.tasks.errors import TaskFileError


@dataclass(frozen=True)
class Conv:
    out: int
    kernel: int = 3
    stride: int = 1
    residual: bool = False  # y = relu(conv(x) + x); needs out == in and stride 1


@dataclass(frozen=True)
class Stem:
    first: int  # input channels [first, end)
    end: int
    convs: tuple[Conv, ...]


@dataclass(frozen=True)
class NetSpec:
    in_channels: int
    stems: tuple[Stem, ...]
    trunk: tuple[Conv, ...]
    classes: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: Any) -> NetSpec:
        """The spec of a task file's `network` field; TaskFileError if it is malformed."""
        try:
            spec = NetSpec(
                int(data["in_channels"]),
                tuple(Stem(int(s["first"]), int(s["end"]), tuple(_conv(c) for c in s["convs"])) for s in data["stems"]),
                tuple(_conv(c) for c in data["trunk"]),
                int(data["classes"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise TaskFileError(f"the task file's network description is malformed ({e})") from e
        spec.check()
        return spec

    def check(self) -> None:
        if self.in_channels < 1 or self.classes < 2 or not self.stems or len(self.stems) > 8:
            raise TaskFileError("the task file's network description is malformed")
        for stem in self.stems:
            if not 0 <= stem.first < stem.end <= self.in_channels:
                raise TaskFileError("the task file's network reads channels its input does not have")
        for conv in self.convs():
            if not (0 < conv.out <= 4096 and conv.kernel in (1, 3, 5) and conv.stride in (1, 2)):
                raise TaskFileError("the task file's network has a malformed convolution")

    def convs(self) -> list[Conv]:
        return [c for s in self.stems for c in s.convs] + list(self.trunk)

    def array_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every array the network needs, with its shape (what a task file must hold)."""
        shapes: dict[str, tuple[int, ...]] = {"norm.mean": (self.in_channels,), "norm.scale": (self.in_channels,)}
        width = 0
        for i, stem in enumerate(self.stems):
            c = stem.end - stem.first
            for j, conv in enumerate(stem.convs):
                shapes |= {f"stem{i}.{j}.weight": (conv.out, c, conv.kernel, conv.kernel), f"stem{i}.{j}.bias": (conv.out,)}
                c = conv.out
            width += c
        for j, conv in enumerate(self.trunk):
            shapes |= {f"trunk.{j}.weight": (conv.out, width, conv.kernel, conv.kernel), f"trunk.{j}.bias": (conv.out,)}
            width = conv.out
        return shapes | {"fc.weight": (self.classes, width), "fc.bias": (self.classes,)}

    def parameters(self) -> int:
        """Learned numbers (normalization excluded)."""
        return sum(int(np.prod(s)) for n, s in self.array_shapes().items() if not n.startswith("norm."))

    def macs(self, height: int, width: int) -> int:
        """Multiply-accumulates of one input of height x width (convolutions and the linear layer)."""
        total = 0
        trunk_in = 0
        h = w = 0
        for stem in self.stems:
            c, h, w = stem.end - stem.first, height, width
            for conv in stem.convs:
                h, w = -(-h // conv.stride), -(-w // conv.stride)
                total += h * w * conv.out * c * conv.kernel ** 2
                c = conv.out
            trunk_in += c
        c = trunk_in
        for conv in self.trunk:
            h, w = -(-h // conv.stride), -(-w // conv.stride)
            total += h * w * conv.out * c * conv.kernel ** 2
            c = conv.out
        return total + c * self.classes


def _conv(c: Any) -> Conv:
    return Conv(int(c["out"]), int(c.get("kernel", 3)), int(c.get("stride", 1)), bool(c.get("residual", False)))


def latent_net(channels: int, classes: int) -> NetSpec:
    """The latent classifier: ŷ (first half of the channels) and log σ̂ (second half) through their
    own 1x1 stems, then two 3x3 convolutions at the latent grid's size (~320 k parameters for
    M=192 and 30 classes; ~32 M MACs on a 10x10 grid, a 150x150 photo)."""
    m = channels // 2
    return NetSpec(channels, (Stem(0, m, (Conv(96, 1),)), Stem(m, channels, (Conv(32, 1),))),
                   (Conv(128, 3), Conv(128, 3, residual=True)), classes)


def rgb_net(classes: int) -> NetSpec:
    """A pixel classifier of about the latent one's size (~335 k parameters): four stride-2 3x3
    convolutions down to 1/16 (the latent grid's scale), then one more (~77 M MACs at 150x150)."""
    return NetSpec(3, (Stem(0, 3, (Conv(32, 3, 2), Conv(64, 3, 2), Conv(96, 3, 2), Conv(128, 3, 2))),),
                   (Conv(128, 3, residual=True),), classes)


def check_arrays(spec: NetSpec, arrays: dict[str, np.ndarray]) -> None:
    """TaskFileError unless `arrays` holds exactly what `spec` needs, finite, float32."""
    shapes = spec.array_shapes()
    if set(arrays) != set(shapes):
        missing = sorted(set(shapes) - set(arrays)) or sorted(set(arrays) - set(shapes))
        raise TaskFileError(f"the task file's arrays do not match its network ({missing[0]})")
    for name, shape in shapes.items():
        a = arrays[name]
        if a.shape != shape or a.dtype != np.float32 or not np.isfinite(a).all():
            raise TaskFileError(f"the task file's array {name} is malformed")
