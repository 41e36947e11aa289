"""A per-symbol arithmetic (range) coder in plain Python: the slow coder rANS and LZMA replace.

This is how learned codecs were first entropy-coded in research code: one symbol at a time,
in the latents' own order, each with the static CDF table its index names (no adaptation:
the hyperprior already gives every symbol its own distribution). It is a real coder, exact
and within a fraction of a percent of the tables' code length, and it is slow because every
symbol is a trip through the Python interpreter. The bench (`imgarc bench`) times it against
imgarc's vectorized coders on the same integer latents and tables; it is deliberately not in
`CODERS`: no archive is written with it.

The range coder is LZMA's: a 32-bit range, a 33-bit low whose carry ripples into a cached byte
and a run of pending 0xFF bytes, renormalized a byte at a time below 2**24; frequencies are
the tables' 16-bit ones. Escaped values (outside a table's range) are coded as the table's
escape symbol, then the value, zigzag-mapped, as an Elias-gamma code of equiprobable bits
through the same coder. The stream is the coder's bytes alone: the decoder knows the symbol
count from the indexes, as for every coder, and a valid stream ends exactly where it reads its
last byte.
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np

from imgarc.coders.base import LatentCoder
from imgarc.coders.tables import PRECISION, CdfTables
from imgarc.errors import LatentStreamError

MASK32 = 0xFFFFFFFF
TOP = 1 << 24  # renormalize (shift a byte out) when the range falls below this
GAMMA_LIMIT = 64  # an Elias-gamma prefix longer than this is damage, not an int32 latent


class RangeEncoder:
    """LZMA's range encoder over 16-bit frequency tables, plus equiprobable bits."""

    def __init__(self) -> None:
        self.low = 0
        self.range = MASK32
        self.cache = 0
        self.cache_size = 1
        self.out = bytearray()

    def _shift_low(self) -> None:
        low = self.low
        if low < 0xFF000000 or low > MASK32:  # the top byte is settled (or a carry settles it)
            carry = low >> 32
            self.out.append((self.cache + carry) & 0xFF)
            if self.cache_size > 1:
                self.out += bytes([(0xFF + carry) & 0xFF]) * (self.cache_size - 1)
            self.cache_size = 0
            self.cache = (low >> 24) & 0xFF
        self.cache_size += 1
        self.low = (low & 0x00FFFFFF) << 8

    def encode(self, start: int, size: int) -> None:
        """Code the interval [start, start + size) of 2**16."""
        r = self.range >> PRECISION
        self.low += r * start
        self.range = r * size
        while self.range < TOP:
            self.range <<= 8
            self._shift_low()

    def encode_bit(self, bit: int) -> None:
        r = self.range >> 1
        self.low += r * bit
        self.range = r
        while self.range < TOP:
            self.range <<= 8
            self._shift_low()

    def finish(self) -> bytes:
        for _ in range(5):
            self._shift_low()
        return bytes(self.out)


class RangeDecoder:
    def __init__(self, data: bytes) -> None:
        if len(data) < 5 or data[0] != 0:
            raise LatentStreamError("arithmetic-coded stream is truncated or damaged")
        self.data = data
        self.code = int.from_bytes(data[1:5], "big")
        self.pos = 5
        self.range = MASK32

    def _normalize(self) -> None:
        while self.range < TOP:
            if self.pos >= len(self.data):
                raise LatentStreamError("arithmetic-coded stream is truncated")
            self.range <<= 8
            self.code = ((self.code << 8) | self.data[self.pos]) & MASK32
            self.pos += 1

    def decode(self, cdf: list[int]) -> int:
        """The index s of the interval [cdf[s], cdf[s+1]) the stream is in, consumed."""
        r = self.range >> PRECISION
        v = self.code // r
        if v >= 1 << PRECISION:
            raise LatentStreamError("arithmetic-coded stream is damaged")
        s = bisect_right(cdf, v) - 1
        start = cdf[s]
        self.code -= r * start
        self.range = r * (cdf[s + 1] - start)
        self._normalize()
        return s

    def decode_bit(self) -> int:
        r = self.range >> 1
        bit = self.code // r
        if bit > 1:
            raise LatentStreamError("arithmetic-coded stream is damaged")
        self.code -= r * bit
        self.range = r
        self._normalize()
        return bit

    def at_end(self) -> bool:
        return self.pos == len(self.data)


def _table_lists(tables: CdfTables) -> tuple[list[list[int]], list[int], list[int]]:
    """Each table's CDF as a Python list, its offset, and its escape symbol (the last one)."""
    cdfs = [tables.cdfs[k, : tables.lengths[k]].tolist() for k in range(tables.count)]
    return cdfs, tables.offsets.tolist(), (tables.lengths - 2).tolist()


def _encode_gamma(enc: RangeEncoder, value: int) -> None:
    n = ((value << 1) ^ (value >> 63)) + 1  # zigzag, then +1: Elias gamma codes n >= 1
    bits = n.bit_length()
    for _ in range(bits - 1):
        enc.encode_bit(0)
    for i in range(bits - 1, -1, -1):
        enc.encode_bit((n >> i) & 1)


def _decode_gamma(dec: RangeDecoder) -> int:
    zeros = 0
    while dec.decode_bit() == 0:
        zeros += 1
        if zeros > GAMMA_LIMIT:
            raise LatentStreamError("arithmetic-coded escape value is malformed")
    n = 1
    for _ in range(zeros):
        n = (n << 1) | dec.decode_bit()
    z = n - 1
    return (z >> 1) ^ -(z & 1)


class ArithmeticCoder(LatentCoder):
    """Symbol by symbol, in the order given, each with its own table: exact, and slow."""

    name = "arith"

    def encode(self, symbols: np.ndarray, indexes: np.ndarray, tables: CdfTables) -> bytes:
        cdfs, offsets, escapes = _table_lists(tables)
        enc = RangeEncoder()
        for s, k in zip(symbols.tolist(), indexes.tolist()):
            cdf, esc = cdfs[k], escapes[k]
            v = s - offsets[k]
            if 0 <= v < esc:
                enc.encode(cdf[v], cdf[v + 1] - cdf[v])
            else:
                enc.encode(cdf[esc], cdf[esc + 1] - cdf[esc])
                _encode_gamma(enc, s)
        return enc.finish()

    def decode(self, data: bytes, indexes: np.ndarray, tables: CdfTables) -> np.ndarray:
        cdfs, offsets, escapes = _table_lists(tables)
        dec = RangeDecoder(data)
        out = []
        for k in indexes.tolist():
            v = dec.decode(cdfs[k])
            out.append(_decode_gamma(dec) if v == escapes[k] else v + offsets[k])
        if not dec.at_end():
            raise LatentStreamError("arithmetic-coded stream does not match its symbol count")
        try:
            return np.array(out, dtype=np.int32)
        except OverflowError as e:
            raise LatentStreamError("arithmetic-coded stream holds a value beyond 32 bits") from e
