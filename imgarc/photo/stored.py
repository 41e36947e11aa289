"""Files kept byte-exact: raw, LZMA, or (for JPEGs) JPEG XL lossless recompression.

JPEG XL can re-pack a JPEG's own DCT coefficients about 15-20 % smaller and rebuild the very
same file from them (pillow-jxl-plugin, libjxl). Each rebuild is checked against the file's
sha256 when compressing, and again when extracting; a JPEG that does not come back exactly
is kept as LZMA or raw instead.
"""

from __future__ import annotations

import hashlib
import lzma
from dataclasses import dataclass

from imgarc.archive.layout import STORAGE_JXL, STORAGE_LZMA, STORAGE_RAW
from imgarc.errors import ArchiveError, LatentStreamError

STORAGE_NAMES = {STORAGE_RAW: "raw", STORAGE_LZMA: "LZMA", STORAGE_JXL: "JPEG XL (lossless JPEG recompression)"}


@dataclass
class StoredPayload:
    storage: int
    payload: bytes
    original_sha256: bytes | None = None  # set where the bytes are rebuilt, not unpacked (JPEG XL)


def _jxl_encode(jpeg: bytes) -> bytes | None:
    """A JPEG XL stream that rebuilds `jpeg` exactly, or None where libjxl cannot."""
    try:
        from pillow_jxl import Encoder
    except ImportError:
        return None
    try:
        # Width and height are not used for JPEG reconstruction; libjxl reads them from the JPEG.
        encoder = Encoder(mode="RGB", lossless=True, quality=100, decoding_speed=0, effort=7,
                          use_container=True, use_original_profile=True, num_threads=1)
        return encoder(jpeg, 1, 1, jpeg_encode=True)
    except Exception:  # noqa: BLE001 - libjxl refuses some JPEGs (CMYK, arithmetic coding ...): keep LZMA
        return None


def _jxl_decode(stream: bytes) -> bytes:
    try:
        from pillow_jxl import Decoder
    except ImportError as e:
        raise ArchiveError("this entry is a JPEG recompressed with JPEG XL; install pillow-jxl-plugin to extract it") from e
    try:
        is_jpeg, _info, data, _icc, _boxes = Decoder(num_threads=1)(stream)
    except Exception as e:  # noqa: BLE001 - libjxl's errors are plain exceptions; the stream is damaged
        raise LatentStreamError(f"the JPEG XL stream does not decode ({e})") from e
    if not is_jpeg:
        raise LatentStreamError("the JPEG XL stream holds no JPEG reconstruction data")
    return bytes(data)


def pack_stored(data: bytes) -> StoredPayload:
    """The smallest exact form of `data`: raw, LZMA, or for a JPEG, JPEG XL (verified by sha256)."""
    best = StoredPayload(STORAGE_RAW, data)
    packed = lzma.compress(data, format=lzma.FORMAT_XZ, preset=6)
    if len(packed) < len(best.payload):
        best = StoredPayload(STORAGE_LZMA, packed)
    if data[:3] == b"\xff\xd8\xff":
        jxl = _jxl_encode(data)
        if jxl is not None and len(jxl) < len(best.payload):
            sha = hashlib.sha256(data).digest()
            try:
                rebuilt = _jxl_decode(jxl)
            except (ArchiveError, LatentStreamError):
                rebuilt = b""
            if hashlib.sha256(rebuilt).digest() == sha:
                best = StoredPayload(STORAGE_JXL, jxl, sha)
    return best


def unpack_stored(storage: int | None, payload: bytes, original_size: int, original_sha256: bytes | None, path: str) -> bytes:
    """The file's bytes from a stored entry's payload; damage -> LatentStreamError."""
    if storage == STORAGE_RAW:
        data = payload
    elif storage == STORAGE_LZMA:
        try:
            d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
            data = d.decompress(payload, max_length=original_size + 1)  # no bombs
        except lzma.LZMAError as e:
            raise LatentStreamError(f"stored data does not decompress ({e})") from e
    elif storage == STORAGE_JXL:
        if original_sha256 is None:
            raise LatentStreamError("a JPEG XL entry without ORIGINAL_SHA256 cannot be checked")
        data = _jxl_decode(payload)
        if len(data) == original_size and hashlib.sha256(data).digest() != original_sha256:
            raise LatentStreamError("the JPEG rebuilt from JPEG XL differs from the original (sha256)")
    else:
        raise ArchiveError(f"{path!r} uses storage method {storage}, unknown to this imgarc; upgrade imgarc")
    if len(data) != original_size:
        raise LatentStreamError(f"stored data has {len(data)} bytes, the header says {original_size}")
    return data
