"""CompressAI's own pipeline on imgarc's weights: what a researcher would run instead of imgarc.

`compress` / `decompress` are CompressAI's `MeanScaleHyperprior.compress()` / `decompress()`
(mbt2018-mean) step for step, on CompressAI's entropy models with the float tables its
`update()` rebuilds in the running process. For imgarc's variable-rate models the only
addition is the gained units, placed exactly as in `GainedMeanScaleHyperprior.forward()`,
with the fixed-point gains of the image's `--quality` (the same gains imgarc codes with);
for a single-rate model they are ones and the strings equal `model.compress()`'s.

What differs from imgarc: the table of every ŷ symbol is picked from a float h_s and float
tables, so another process (another kind of CPU, or torch's kernels for another instruction
set) can pick another table and decode garbage. The bench's `cai-decompress` step checks
this by decoding in a fresh process, once as the machine runs and once with
`ATEN_CPU_CAPABILITY=default`, against the symbols the encoder quantized.

torch is imported inside the functions: the bench's worker module is also what runs the
Pillow baselines, whose timed start-up must not pay for it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from imgarc.codec.padding import pad_to_multiple


@dataclass
class CaiStreams:
    """One image as CompressAI's compress() returns it, plus what the decode is checked against."""

    y_strings: list[bytes]
    z_strings: list[bytes]
    shape: tuple[int, int]  # ẑ's spatial size
    y_symbols: np.ndarray  # int32: the symbols the encoder coded (round(y·g − μ·g))
    z_hat: np.ndarray  # float32: ẑ as the encoder decoded it for h_s

    @property
    def bytes(self) -> int:
        return sum(len(s) for s in self.y_strings) + sum(len(s) for s in self.z_strings)


def _gains(model, gains) -> tuple:
    """(gain, inv_gain, hyper_gain, hyper_inv_gain) as [1, C, 1, 1] tensors; ones for a single-rate model."""
    import torch

    if gains is None:
        return tuple(torch.ones(1, c, 1, 1) for c in (model.M, model.M, model.N, model.N))
    return tuple(torch.from_numpy(gains.as_float(n))[None, :, None, None]
                 for n in ("gain", "inv_gain", "hyper_gain", "hyper_inv_gain"))


def to_tensor(rgb: np.ndarray, stride: int):
    """RGB uint8 [H, W, 3] -> padded float [1, 3, Hp, Wp] in [0, 1], as imgarc feeds g_a."""
    import torch

    padded = pad_to_multiple(rgb, stride)
    return torch.from_numpy(padded.transpose(2, 0, 1).copy()).float()[None] / 255


def update_tables(model) -> str:
    """CompressAI's update(): rebuild every CDF table with float math in this process; returns
    the tables' sha256, so processes can tell whether they built the same ones."""
    model.update(force=True)
    h = hashlib.sha256()
    for module in (model.entropy_bottleneck, model.gaussian_conditional):
        for name in ("_quantized_cdf", "_offset", "_cdf_length"):
            h.update(getattr(module, name).numpy().astype("<i4").tobytes())
    return h.hexdigest()


def compress(model, x, gains=None) -> CaiStreams:
    """MeanScaleHyperprior.compress(), gained units inserted as in forward()."""
    import torch

    gain, _, hyper_gain, hyper_inv_gain = _gains(model, gains)
    eb, gc = model.entropy_bottleneck, model.gaussian_conditional
    with torch.no_grad():
        y = model.g_a(x)
        z = model.h_a(y) * hyper_gain
        z_strings = eb.compress(z)
        z_hat = eb.decompress(z_strings, z.size()[-2:])
        scales, means = model.h_s(z_hat * hyper_inv_gain).chunk(2, 1)
        indexes = gc.build_indexes(scales * gain)
        y_strings = gc.compress(y * gain, indexes, means=means * gain)
        y_symbols = gc.quantize(y * gain, "symbols", means * gain)
    return CaiStreams(y_strings, z_strings, tuple(z.size()[-2:]), y_symbols.int().numpy(), z_hat.numpy())


def decompress(model, streams: CaiStreams, gains=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MeanScaleHyperprior.decompress(), gained: (x̂ float [1, 3, Hp, Wp] in [0, 1], ŷ symbols, ẑ).

    The symbols are CompressAI's own decode before it adds the means back (its dequantize),
    so they can be compared with what the encoder coded.
    """
    import torch

    gain, inv_gain, _, hyper_inv_gain = _gains(model, gains)
    eb, gc = model.entropy_bottleneck, model.gaussian_conditional
    with torch.no_grad():
        z_hat = eb.decompress(streams.z_strings, streams.shape)
        scales, means = model.h_s(z_hat * hyper_inv_gain).chunk(2, 1)
        indexes = gc.build_indexes(scales * gain)
        symbols = gc.decompress(streams.y_strings, indexes)  # no means: the integers as decoded
        y_hat = symbols + means * gain
        x_hat = model.g_s(y_hat * inv_gain).clamp_(0, 1)
    return x_hat.numpy(), symbols.int().numpy(), z_hat.numpy()


def to_rgb(x_hat: np.ndarray, height: int, width: int) -> np.ndarray:
    """x̂ in [0, 1] -> RGB uint8 [height, width, 3], cropped from the padded size."""
    return np.ascontiguousarray((np.round(x_hat[0] * 255)).astype(np.uint8)[:, :height, :width].transpose(1, 2, 0))
