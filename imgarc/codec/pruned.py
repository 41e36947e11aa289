"""g_a and g_s of a pruned model: CompressAI's layer chains with their own inner widths.

The same layers, in the same order and under the same state-dict names as CompressAI's
(`g_a.0.weight`, `g_a.1.beta`, ...), so every tool that reads a weights file (the ONNX graph
builder, export, the trainer) handles a pruned model as it handles the parent.
"""

from __future__ import annotations

from compressai.layers import GDN
from compressai.models.utils import conv, deconv
from torch import nn


def analysis_transform(widths: tuple[int, ...], m: int) -> nn.Sequential:
    """conv(3, w0), GDN, conv(w0, w1), GDN, conv(w1, w2), GDN, conv(w2, M): all 5x5 stride 2."""
    a, b, c = widths
    return nn.Sequential(conv(3, a), GDN(a), conv(a, b), GDN(b), conv(b, c), GDN(c), conv(c, m))


def synthesis_transform(m: int, widths: tuple[int, ...]) -> nn.Sequential:
    """deconv(M, w0), IGDN, deconv(w0, w1), IGDN, deconv(w1, w2), IGDN, deconv(w2, 3)."""
    a, b, c = widths
    return nn.Sequential(deconv(m, a), GDN(a, inverse=True), deconv(a, b), GDN(b, inverse=True), deconv(b, c),
                         GDN(c, inverse=True), deconv(c, 3))
