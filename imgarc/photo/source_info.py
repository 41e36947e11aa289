"""SOURCE_INFO: the small format details needed to write a photo back as it was.

Stored as UTF-8 JSON in the entry header. Every known key is checked when read: a malformed
value (a buggy or hostile writer; the header CRC rules out disk damage) is a clean ImageError
for that entry, never a TypeError deep inside Pillow. Unknown keys are ignored (newer writers).
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

from imgarc.errors import ImageError


def _int_in(*allowed: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v in allowed


def _qtables(v: Any) -> bool:
    return (isinstance(v, dict) and 1 <= len(v) <= 4 and all(
        isinstance(k, str) and k.isdigit() and int(k) < 4 and isinstance(t, list) and len(t) == 64
        and all(isinstance(q, int) and not isinstance(q, bool) and 1 <= q <= 65535 for q in t)
        for k, t in v.items()))


def _dpi(v: Any) -> bool:
    return (isinstance(v, list) and len(v) == 2
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and 0 < x < 1e6 for x in v))


def _text(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and 0 < len(k) < 80 and isinstance(t, str) for k, t in v.items())


CHECKS: dict[str, Callable[[Any], bool]] = {
    "qtables": _qtables,  # JPEG quantization tables, by table number
    "subsampling": _int_in(-1, 0, 1, 2),  # JPEG chroma subsampling (Pillow's numbering)
    "progressive": lambda v: isinstance(v, bool),  # JPEG
    "comment": lambda v: isinstance(v, str),  # JPEG COM segment, latin-1
    "dpi": _dpi,
    "text": _text,  # PNG text chunks
    "lossless": lambda v: isinstance(v, bool),  # WebP: VP8L rather than VP8
    "chroma": _int_in(420, 422, 444),  # HEIF chroma subsampling
    "compression": lambda v: v in ("raw", "tiff_lzw", "tiff_adobe_deflate", "tiff_deflate", "packbits", "jpeg"),
    "orientation": _int_in(*range(1, 9)),  # TIFF Orientation tag
}


def encode_source_info(info: dict) -> bytes | None:
    """The SOURCE_INFO field value (None when there is nothing to record)."""
    return json.dumps(info, sort_keys=True).encode() if info else None


def decode_source_info(raw: bytes | None, entry: str = "entry") -> dict:
    """The checked details; a malformed field -> ImageError naming the entry."""
    if not raw:
        return {}
    try:
        info = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ImageError(f"{entry!r}: its SOURCE_INFO field is not JSON text") from None
    if not isinstance(info, dict):
        raise ImageError(f"{entry!r}: its SOURCE_INFO field is not a JSON object")
    bad = [k for k, check in CHECKS.items() if k in info and not check(info[k])]
    if bad:
        raise ImageError(f"{entry!r}: its SOURCE_INFO field has malformed {', '.join(bad)}")
    return {k: v for k, v in info.items() if k in CHECKS}
