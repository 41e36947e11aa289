"""The networks of a pruned model: CompressAI's layer chains with their own inner widths.

The same layers, in the same order and under the same state-dict names as CompressAI's
(`g_a.0.weight`, `g_a.1.beta`, ...), so every tool that reads a weights file (the ONNX graph
builder, export, the trainer) handles a pruned model as it handles the parent.
"""

from __future__ import annotations

from compressai.layers import GDN
from compressai.models.utils import conv, deconv
from torch import nn


def _leaky() -> nn.LeakyReLU:
    """h_a's and h_s's activation, as CompressAI's mean-scale hyperprior has it."""
    return nn.LeakyReLU(inplace=True)


def analysis_transform(widths: tuple[int, ...], m: int) -> nn.Sequential:
    """conv(3, w0), GDN, conv(w0, w1), GDN, conv(w1, w2), GDN, conv(w2, M): all 5x5 stride 2."""
    a, b, c = widths
    return nn.Sequential(conv(3, a), GDN(a), conv(a, b), GDN(b), conv(b, c), GDN(c), conv(c, m))


def synthesis_transform(m: int, widths: tuple[int, ...]) -> nn.Sequential:
    """deconv(M, w0), IGDN, deconv(w0, w1), IGDN, deconv(w1, w2), IGDN, deconv(w2, 3)."""
    a, b, c = widths
    return nn.Sequential(deconv(m, a), GDN(a, inverse=True), deconv(a, b), GDN(b, inverse=True), deconv(b, c),
                         GDN(c, inverse=True), deconv(c, 3))


def hyper_analysis(m: int, widths: tuple[int, ...], n: int) -> nn.Sequential:
    """conv(M, w0, 3x3 stride 1), LeakyReLU, conv(w0, w1), LeakyReLU, conv(w1, N): 5x5 stride 2."""
    a, b = widths
    return nn.Sequential(conv(m, a, stride=1, kernel_size=3), _leaky(), conv(a, b), _leaky(), conv(b, n))


def hyper_synthesis(n: int, widths: tuple[int, ...], m: int) -> nn.Sequential:
    """deconv(N, w0), LeakyReLU, deconv(w0, w1), LeakyReLU, conv(w1, 2M, 3x3 stride 1): scales, then means."""
    a, b = widths
    return nn.Sequential(deconv(n, a), _leaky(), deconv(a, b), _leaky(), conv(b, 2 * m, stride=1, kernel_size=3))
