"""Deciding what is a photo the codec may touch, and reading it with everything needed to write it back.

A file is *coded* only when it decodes fully as a single still 8-bit image in a format imgarc
can write back (JPEG, PNG, HEIC/HEIF, WebP, AVIF, TIFF), in mode RGB, L (grayscale), RGBA or LA,
of at most MAX_PIXELS. Colour goes through the codec (grayscale as three equal channels, written
back as L); an alpha plane is packed losslessly beside it. Everything else is *stored* byte-exact,
with the reason recorded in the entry: animated, 16-bit or 10-bit, CMYK, palette (graphics that a
photo codec would blur, and already small), a transparent colour, HEIC depth maps or gain maps,
other formats, corrupt files.

Pixels are coded as stored in the file, before any EXIF orientation; EXIF, ICC and XMP are kept
as found, so viewers show the extracted photo as they showed the original. (HEIF decoders rotate
while decoding; the rotation is undone here and redone by the HEIF writer from the same EXIF.)
"""

from __future__ import annotations

import io
import threading
from contextlib import contextmanager
from typing import Iterator

import numpy as np
from PIL import Image, JpegImagePlugin, UnidentifiedImageError

from imgarc.errors import ImgarcError
from imgarc.photo.alpha import unpack_alpha
from imgarc.photo.heif import heif_available, is_heif, read_heif
from imgarc.photo.model import CODED_FORMATS, NotCoded, Photo, Refused, check_mode, check_size, split_pixels
from imgarc.photo.source_info import decode_source_info, encode_source_info
from imgarc.photo.write import encode_photo_file


_pixel_limit_lock = threading.Lock()
_pixel_limit_readers = 0
_pixel_limit_saved: int | None = None


@contextmanager
def _no_pillow_pixel_limit() -> Iterator[None]:
    """We enforce our own size limit; lift Pillow's global one only while reading, then restore it.
    Counted: photos are read on several threads at once, and the limit comes back when the last
    of them is done (a plain save-and-restore would let one thread restore it under another)."""
    global _pixel_limit_readers, _pixel_limit_saved
    with _pixel_limit_lock:
        if _pixel_limit_readers == 0:
            _pixel_limit_saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
        _pixel_limit_readers += 1
    try:
        yield
    finally:
        with _pixel_limit_lock:
            _pixel_limit_readers -= 1
            if _pixel_limit_readers == 0:
                Image.MAX_IMAGE_PIXELS = _pixel_limit_saved


def _xmp(info: dict) -> bytes | None:
    x = info.get("xmp") or info.get("XML:com.adobe.xmp")
    if isinstance(x, str):
        return x.encode("utf-8")
    return x or None


def _webp_lossless(data: bytes) -> bool:
    """VP8L chunk present: the WebP was lossless, so it is written back lossless."""
    return data[12:16] == b"VP8L" or (data[12:16] == b"VP8X" and b"VP8L" in data[30:4096])


def _avif_deep(data: bytes) -> bool:
    """An AVIF whose `pixi` box says more than 8 bits per channel (Pillow would reduce it to 8)."""
    at = data.find(b"pixi", 0, 65536)
    if at < 0 or at + 9 > len(data):
        return False
    n = data[at + 8]
    return any(b > 8 for b in data[at + 9: at + 9 + n])


def _format_details(im, fmt: str, data: bytes) -> dict:
    """SOURCE_INFO for this format (JPEG tables, PNG text, WebP losslessness, ...)."""
    info = im.info
    details: dict = {}
    if fmt == "JPEG":
        details["qtables"] = {str(k): [int(q) for q in v] for k, v in im.quantization.items()}
        details["subsampling"] = JpegImagePlugin.get_sampling(im)
        if info.get("progressive"):
            details["progressive"] = True
        if isinstance(info.get("comment"), bytes) and info["comment"]:
            details["comment"] = info["comment"].decode("latin-1")
    elif fmt == "PNG":
        text = {k: v for k, v in getattr(im, "text", {}).items()
                if isinstance(v, str) and k != "XML:com.adobe.xmp" and 0 < len(k) < 80}
        if text:
            details["text"] = text
    elif fmt == "WEBP":
        details["lossless"] = _webp_lossless(data)
    elif fmt == "TIFF":
        if info.get("compression") in ("raw", "tiff_lzw", "tiff_adobe_deflate", "tiff_deflate", "packbits", "jpeg"):
            details["compression"] = info["compression"]
        orientation = im.tag_v2.get(274)
        if isinstance(orientation, int) and 2 <= orientation <= 8:
            details["orientation"] = orientation
    dpi = info.get("dpi")
    if isinstance(dpi, tuple) and len(dpi) == 2 and all(isinstance(v, (int, float)) and 0 < v < 1e6 for v in dpi):
        details["dpi"] = [float(v) for v in dpi]
    return details


def _read_pillow(data: bytes) -> Photo:
    with Image.open(io.BytesIO(data)) as im:
        fmt = im.format
        if fmt == "HEIF":  # pillow-heif's Pillow plugin: read the file's own metadata instead
            return read_heif(data)
        if fmt not in CODED_FORMATS:
            raise Refused(f"{fmt} files are stored as they are")
        if getattr(im, "n_frames", 1) > 1:
            raise Refused("animated or multi-page image: stored as it is")
        # Pillow opens 16-bit RGB PNGs as 8-bit "RGB": read the IHDR bit depth (byte 24) itself.
        if fmt == "PNG" and len(data) > 24 and data[24] == 16:
            raise Refused("16-bit PNG: stored as it is")
        check_mode(im.mode)
        if fmt == "PNG" and data[24:25] != b"\x08":
            raise Refused(f"{data[24] if len(data) > 24 else '?'}-bit PNG: stored as it is")
        if fmt == "AVIF" and _avif_deep(data):
            raise Refused("AVIF with more than 8 bits per channel: stored as it is")
        if "transparency" in im.info:
            raise Refused("image with a transparent colour: stored as it is")
        w, h = im.size
        check_size(w, h)
        details = _format_details(im, fmt, data)  # before load: Pillow drops a TIFF's orientation tag when loading
        im.load()
        info = dict(im.info)
        rgb, alpha = split_pixels(im)
        exif = None if fmt == "TIFF" else (info.get("exif") or None)  # TIFF tags are the file itself
        return Photo(rgb, im.mode, fmt, exif, info.get("icc_profile") or None, _xmp(info), details, alpha)


# The write-back check writes a corner of the photo this large (at most): what a writer refuses
# is the metadata, the mode or the format, never the pixel values, and the photo's size is one its
# own format already holds. A whole 100 MP photo's check would take ~1 GB.
CHECK_SIDE = 64


def _check_writable(photo: Photo) -> None:
    """Write the photo back once now (a corner of its own pixels, with its format and metadata):
    whatever a writer refuses is found while the original is still at hand, and stored
    byte-exact, never lost."""
    h, w = photo.rgb.shape[:2]
    ch, cw = (min(n, CHECK_SIDE + n % 2) for n in (h, w))  # odd sides stay odd (chroma subsampling)
    try:
        alpha = np.ascontiguousarray(unpack_alpha(photo.alpha, w, h)[:ch, :cw]) if photo.alpha is not None else None
        encode_photo_file(photo.rgb[:ch, :cw], photo.mode, photo.source_format, photo.exif, photo.icc_profile,
                          photo.xmp, decode_source_info(encode_source_info(photo.source_info)), alpha, trial=True)
    except ImgarcError as e:
        raise Refused(f"{photo.source_format} file imgarc could not write back ({e}): stored as it is") from e


# What Pillow (and pillow-heif) raise for data that is not an image, or a truncated or corrupt one.
BAD_IMAGE = (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError, EOFError,
             RuntimeError)


def photo_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the file's header, without decoding its pixels; None where that cannot
    be told (not an image, HEIC without pillow-heif). What the compress pool budgets memory by."""
    if is_heif(data) and not heif_available():  # available: registered as a Pillow opener
        return None
    try:
        with _no_pillow_pixel_limit(), Image.open(io.BytesIO(data)) as im:
            return im.size
    except BAD_IMAGE:
        return None


def read_photo(data: bytes) -> Photo | NotCoded:
    """Decode the file `data` if the codec should code it, else say why not (never raises for bad files)."""
    try:
        with _no_pillow_pixel_limit():
            if is_heif(data):
                if not heif_available():
                    return NotCoded("HEIC file and pillow-heif is not installed: stored as it is")
                photo = read_heif(data)
            else:
                photo = _read_pillow(data)
            _check_writable(photo)
            return photo
    except Refused as e:
        return NotCoded(str(e), e.warning)
    except (UnidentifiedImageError, Image.DecompressionBombError):
        return NotCoded("not an image")
    except BAD_IMAGE as e:  # truncated or corrupt image data
        detail = " ".join(str(e).split())  # one line: libheif's messages end in a newline
        return NotCoded(f"image data does not decode ({detail}): stored as it is", warning=True)


__all__ = ["NotCoded", "Photo", "photo_size", "read_photo"]
