"""Which format and name a coded photo is extracted as (`imgarc extract --format`).

Default (`keep`): the source's format under the source's name. `png`, `jpeg`, `webp`: every
coded photo in that format, its extension replaced (`IMG_1.HEIC` -> `IMG_1.png`); where that name
belongs to another file of the archive, the new extension is appended (`a.jpg` -> `a.jpg.png`).
Photos with an alpha channel asked for as JPEG are written as PNG (JPEG has no alpha), and HEIC
photos as PNG when pillow-heif cannot write HEIC here. Byte-exact entries never change.
"""

from __future__ import annotations

import posixpath

from PIL import features

from imgarc.errors import ImageError, UsageError
from imgarc.photo.alpha import unpack_alpha
from imgarc.photo.heif import heif_available
from imgarc.photo.source_info import decode_source_info
from imgarc.photo.write import encode_photo_file

EXTRACT_FORMATS = ("keep", "png", "jpeg", "webp")
EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "HEIF": ".heic", "AVIF": ".avif", "TIFF": ".tif"}


def check_extract_format(requested: str) -> str:
    """The --format value, lower case; anything else -> UsageError."""
    value = requested.lower()
    if value not in EXTRACT_FORMATS:
        raise UsageError(f"--format must be one of {', '.join(EXTRACT_FORMATS)}, not {requested!r}")
    return value


def _writable(fmt: str) -> bool:
    if fmt == "HEIF":
        return heif_available()
    if fmt in ("WEBP", "AVIF"):
        return bool(features.check(fmt.lower()))
    return fmt in EXTENSIONS


def output_format(source_format: str, color_mode: str, requested: str = "keep") -> str:
    """The Pillow format a coded photo is written in."""
    fmt = source_format if requested == "keep" else requested.upper()
    if fmt == "JPEG" and color_mode in ("RGBA", "LA"):
        return "PNG"
    return fmt if _writable(fmt) else "PNG"


def output_path(path: str, source_format: str, out_format: str, taken: set[str]) -> str:
    """The extracted file's relative path: the entry's own unless the format changes."""
    if out_format == source_format:
        return path
    ext = EXTENSIONS[out_format]
    stem, old_ext = posixpath.splitext(path)
    if old_ext.lower() in (ext, ".jpeg" if ext == ".jpg" else ext):
        return path
    candidate = stem + ext
    if candidate in taken:
        candidate = path + ext
    n = 1
    while candidate in taken:
        candidate, n = f"{path}.{n}{ext}", n + 1
    return candidate


def photo_output_path(header, requested: str, taken: set[str]) -> str:
    """Where a coded photo's entry (EntryHeader `header`) is extracted to, relative to the destination."""
    fmt = output_format(header.source_format, header.color_mode, requested)
    return output_path(header.path, header.source_format, fmt, taken)


def photo_file_bytes(rgb, header, requested: str = "keep") -> bytes:
    """The extracted file of a coded photo (EntryHeader `header`) from its decoded pixels."""
    fmt = output_format(header.source_format, header.color_mode, requested)
    alpha = unpack_alpha(header.alpha, header.width, header.height) if header.alpha is not None else None
    return encode_photo_file(rgb, header.color_mode, header.source_format, header.exif, header.icc_profile,
                             header.xmp, decode_source_info(header.source_info, header.path), alpha, fmt,
                             header.original_size)


def check_photo_fields(header) -> None:
    """What `verify` checks beyond the latents: the alpha plane unpacks, SOURCE_INFO is well formed."""
    decode_source_info(header.source_info, header.path)
    if header.alpha is not None:
        unpack_alpha(header.alpha, header.width, header.height)
    elif header.color_mode in ("RGBA", "LA"):
        raise ImageError(f"{header.path!r} is a {header.color_mode} photo without its alpha plane")
