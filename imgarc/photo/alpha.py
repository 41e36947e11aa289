"""The alpha plane of a coded photo: kept losslessly beside the lossy colour.

The colour goes through the codec; the alpha plane (one byte per pixel) is packed with LZMA
into the entry header's ALPHA field, so transparency comes back bit for bit.
"""

from __future__ import annotations

import lzma

import numpy as np

from imgarc.errors import LatentStreamError

# Packed planes above this are not put in an entry header (16 MiB cap): such files are stored.
MAX_PACKED_ALPHA = 8 * 1024 * 1024


def pack_alpha(alpha: np.ndarray) -> bytes:
    """uint8 [H, W] -> xz stream of its bytes in row order."""
    return lzma.compress(np.ascontiguousarray(alpha, dtype=np.uint8).tobytes(), format=lzma.FORMAT_XZ, preset=6)


def unpack_alpha(packed: bytes, width: int, height: int) -> np.ndarray:
    """The alpha plane back as uint8 [height, width]; damage -> LatentStreamError."""
    size = width * height
    try:
        raw = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(packed, max_length=size + 1)
    except lzma.LZMAError as e:
        raise LatentStreamError(f"the alpha plane does not decompress ({e})") from e
    if len(raw) != size:
        raise LatentStreamError(f"the alpha plane has {len(raw)} bytes, the image needs {size}")
    return np.frombuffer(raw, np.uint8).reshape(height, width)
