"""Byte layout of an image entry's payload (normative; mirrored in docs/FORMAT.md).

    u8  layout version (1)
    u32 length of the hyper-latent (z) stream, then that stream
    u32 length of the latent (y) stream, then that stream

Both streams are written by the entry's coder (CODER header field). Their symbol counts
follow from the header: z is [N, PADDED_HEIGHT/64, PADDED_WIDTH/64], y is [M, /16, /16].
"""

from __future__ import annotations

import struct

from imgarc.errors import LatentStreamError

LAYOUT_VERSION = 1


def pack_image_payload(z_stream: bytes, y_stream: bytes) -> bytes:
    return b"".join((bytes([LAYOUT_VERSION]), struct.pack("<I", len(z_stream)), z_stream,
                     struct.pack("<I", len(y_stream)), y_stream))


def unpack_image_payload(payload: bytes) -> tuple[bytes, bytes]:
    if not payload or payload[0] != LAYOUT_VERSION:
        raise LatentStreamError("image payload has an unknown layout version")
    pos, streams = 1, []
    for _ in range(2):
        if pos + 4 > len(payload):
            raise LatentStreamError("image payload is truncated")
        (n,) = struct.unpack_from("<I", payload, pos)
        pos += 4
        if pos + n > len(payload):
            raise LatentStreamError("image payload is truncated")
        streams.append(payload[pos : pos + n])
        pos += n
    if pos != len(payload):
        raise LatentStreamError("image payload has trailing bytes")
    return streams[0], streams[1]
