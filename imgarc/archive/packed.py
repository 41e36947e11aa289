"""LZMA packing of the metadata blocks an entry header carries (EXIF, ICC profile, XMP).

A block is written packed, under its own critical tag (EXIF_LZMA, ICC_PROFILE_LZMA, XMP_LZMA),
only when that is smaller than the block as found; otherwise it keeps its version-1 optional tag.

The packed form is a raw LZMA2 stream (no container): metadata blocks are mostly a few hundred
bytes to a few KB, and the xz container's ~50 bytes of framing would eat much of the gain (a
236-byte camera EXIF packs to 146 bytes raw, 196 in xz). The header CRC already protects the
bytes, so xz's own check would add nothing. A decoder needs only the dictionary size, which
the format fixes (DICT_SIZE); an LZMA2 stream ends with its own end marker.
"""

from __future__ import annotations

import lzma

# Decoders read every packed block with this dictionary; writers may use any size up to it.
# It equals the header cap: no block can be longer, so no match can reach further back.
DICT_SIZE = 16 * 1024 * 1024
_MIN_DICT = 4096  # LZMA2's smallest dictionary


class PackedBlockError(ValueError):
    """A packed block that does not unpack within its limit; the caller names the entry and field."""


def _dict_size_for(size: int) -> int:
    """The smallest power of two that holds the block: a 16 MiB match finder for a 300-byte EXIF
    costs ~75 ms to set up, a 4 KiB one ~0.1 ms, and the output is the same."""
    d = _MIN_DICT
    while d < size and d < DICT_SIZE:
        d *= 2
    return d


def pack_block(raw: bytes) -> bytes | None:
    """The raw LZMA2 stream of `raw`, or None when it would not be smaller than `raw`."""
    if len(raw) > DICT_SIZE:
        return None  # longer than any header may be: the caller's size check refuses it
    packed = lzma.compress(raw, format=lzma.FORMAT_RAW,
                           filters=[{"id": lzma.FILTER_LZMA2, "preset": 6, "dict_size": _dict_size_for(len(raw))}])
    return packed if len(packed) < len(raw) else None


def stored_size(raw: bytes) -> int:
    """Bytes `raw` takes in an entry header: packed when that is smaller, else as it is."""
    packed = pack_block(raw)
    return len(raw) if packed is None else len(packed)


def unpack_block(packed: bytes, limit: int) -> bytes:
    """The block a packed value holds, at most `limit` bytes (bounds memory against a bomb).

    Raises PackedBlockError for a stream that is damaged, cut short, followed by other bytes,
    or longer than `limit` unpacked.
    """
    decoder = lzma.LZMADecompressor(format=lzma.FORMAT_RAW,
                                    filters=[{"id": lzma.FILTER_LZMA2, "dict_size": DICT_SIZE}])
    try:
        raw = decoder.decompress(packed, max_length=max(limit, 0) + 1)
    except lzma.LZMAError as e:
        raise PackedBlockError(f"does not decompress ({e})") from None
    if len(raw) > limit:
        raise PackedBlockError(f"decompresses to more than the {limit} bytes the header has room for")
    if not decoder.eof:
        raise PackedBlockError("ends inside its LZMA2 stream")
    if decoder.unused_data:
        raise PackedBlockError(f"has {len(decoder.unused_data)} byte(s) after the end of its LZMA2 stream")
    return raw
