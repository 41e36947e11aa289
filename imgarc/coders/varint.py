"""Zigzag + LEB128 varints for the rare values coded outside the tables."""

from __future__ import annotations

import numpy as np

from imgarc.errors import LatentStreamError


def encode_varints(values: np.ndarray) -> bytes:
    out = bytearray()
    for v in values.tolist():
        z = (v << 1) ^ (v >> 63)  # zigzag: small magnitudes -> small codes
        while z >= 0x80:
            out.append((z & 0x7F) | 0x80)
            z >>= 7
        out.append(z)
    return bytes(out)


def decode_varints(data: bytes, count: int) -> np.ndarray:
    values = np.empty(count, dtype=np.int64)
    pos = 0
    for i in range(count):
        z, shift = 0, 0
        while True:
            if pos >= len(data) or shift > 35:
                raise LatentStreamError("escape values are truncated or malformed")
            b = data[pos]
            pos += 1
            z |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
        values[i] = (z >> 1) ^ -(z & 1)
    if pos != len(data):
        raise LatentStreamError("unexpected bytes after the escape values")
    return values
