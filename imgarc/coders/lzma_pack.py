"""LZMA packing of the integer latents: the seed's fast, simple alternative to rANS.

Symbols are ordered by table (the decoder knows the tables, so the permutation is free),
which puts the near-always-zero low-scale symbols in long runs; then zigzag-mapped to the
narrowest unsigned width that holds them and compressed with raw LZMA2.
Layout: u8 width (1, 2 or 4 bytes per symbol), raw LZMA2 stream.
"""

from __future__ import annotations

import lzma

import numpy as np

from imgarc.coders.base import LatentCoder, order_by_table
from imgarc.coders.tables import CdfTables
from imgarc.errors import LatentStreamError

# Fixed, so the raw stream needs no container header. lc=0/lp=0/pb=0: bytes are not text.
FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": 1 << 24, "lc": 0, "lp": 0, "pb": 0}]
WIDTHS = {1: np.uint8, 2: np.uint16, 4: np.uint32}


class LzmaCoder(LatentCoder):
    name = "lzma"

    def encode(self, symbols: np.ndarray, indexes: np.ndarray, tables: CdfTables) -> bytes:
        order, _, _ = order_by_table(indexes)
        s = symbols[order].astype(np.int64)
        zigzag = np.where(s >= 0, 2 * s, -2 * s - 1)
        top = int(zigzag.max(initial=0))
        width = 1 if top < 1 << 8 else 2 if top < 1 << 16 else 4
        packed = zigzag.astype(np.dtype(WIDTHS[width]).newbyteorder("<")).tobytes()
        return bytes([width]) + lzma.compress(packed, format=lzma.FORMAT_RAW, filters=FILTERS)

    def decode(self, data: bytes, indexes: np.ndarray, tables: CdfTables) -> np.ndarray:
        if not data or data[0] not in WIDTHS:
            raise LatentStreamError("LZMA latent stream has an unknown symbol width")
        width = data[0]
        expected = len(indexes) * width
        try:
            # max_length bounds memory whatever the stream claims (no decompression bombs).
            d = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=FILTERS)
            packed = d.decompress(data[1:], max_length=expected + 1)
        except lzma.LZMAError as e:
            raise LatentStreamError(f"LZMA latent stream does not decode: {e}") from e
        if len(packed) != expected:
            raise LatentStreamError("LZMA latent stream holds the wrong number of symbols")
        zigzag = np.frombuffer(packed, dtype=np.dtype(WIDTHS[width]).newbyteorder("<")).astype(np.int64)
        values = np.where(zigzag & 1, -(zigzag + 1) // 2, zigzag // 2)
        order, _, _ = order_by_table(indexes)
        symbols = np.empty(len(indexes), dtype=np.int32)
        symbols[order] = values
        return symbols
