"""From analysed latents to an image payload at a given quality, or at a target bit rate.

The analysis transform (the slow half) does not depend on the quality, so a search over
qualities re-runs only quantization, the integer h_s and the coder, and measures the real
payload size each time: `--target-bpp` lands on what the archive will really hold.
"""

from __future__ import annotations

from dataclasses import dataclass

from imgarc.codec.image_codec import AnalysedImage, ImageCodec, LatentCode
from imgarc.codec.payload import pack_image_payload
from imgarc.codec.quality import QUALITIES


def pack_latents(codec: ImageCodec, coder, code: LatentCode) -> bytes:
    z_stream = coder.encode(code.z_symbols.ravel(), codec.z_indexes(code.z_symbols.shape), codec.tables.z)
    y_stream = coder.encode(code.y_symbols.ravel(), code.y_indexes.ravel(), codec.tables.y)
    return pack_image_payload(z_stream, y_stream)


@dataclass(frozen=True)
class CodedImage:
    quality: int
    payload: bytes

    def bpp(self, pixels: int) -> float:
        return len(self.payload) * 8 / pixels


def code_at_quality(codec: ImageCodec, coder, analysed: AnalysedImage, quality: int, consume: bool = False) -> CodedImage:
    """`consume`: `analysed` is not used again (its y becomes the symbols in place)."""
    return CodedImage(quality, pack_latents(codec, coder, codec.quantize(analysed, quality, consume=consume)))


def code_at_target_bpp(codec: ImageCodec, coder, analysed: AnalysedImage, pixels: int, target_bpp: float) -> CodedImage:
    """The quality whose payload's bits per pixel are nearest `target_bpp` (bisection, ~8 codings).

    Rate is monotone in quality for the shipped models (checked on Kodak by the benchmark);
    bisection then brackets the target and the nearer of the two neighbours wins. A
    single-rate model has one rate: its one coding is returned.
    """
    if not codec.variable_rate:
        return code_at_quality(codec, coder, analysed, QUALITIES)
    tried: dict[int, CodedImage] = {}

    def at(q: int) -> CodedImage:
        if q not in tried:
            tried[q] = code_at_quality(codec, coder, analysed, q)
        return tried[q]

    lo, hi = 1, QUALITIES
    if at(lo).bpp(pixels) < target_bpp and at(hi).bpp(pixels) > target_bpp:
        while hi - lo > 1:  # invariant: bpp(lo) < target < bpp(hi)
            mid = (lo + hi) // 2
            if at(mid).bpp(pixels) < target_bpp:
                lo = mid
            else:
                hi = mid
    return min(tried.values(), key=lambda c: (abs(c.bpp(pixels) - target_bpp), -c.quality))
