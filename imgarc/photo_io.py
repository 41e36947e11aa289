"""Deciding what is a photo the codec may touch, reading it, and writing it back.

A file is *coded* only when Pillow decodes it fully as a single still 8-bit RGB or grayscale
PNG or JPEG of at most MAX_PIXELS. Everything else is *stored* byte-exact, with the reason
recorded in the entry (animated, 16-bit, CMYK, alpha, palette, other formats, corrupt ...).
Pixels are coded as stored in the file (EXIF orientation not applied), and EXIF, ICC and
XMP are kept as found, so viewers show the extracted photo as they showed the original.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
import numpy as np

from imgarc.errors import ImageError

CODED_FORMATS = ("PNG", "JPEG")
CODED_MODES = ("RGB", "L")
MAX_PIXELS = 40_000_000  # ~1 GB of activations in g_a; larger photos are stored byte-exact


@dataclass
class Photo:
    """A decoded photo ready for the codec, with what is needed to write it back."""

    rgb: np.ndarray  # uint8 [H, W, 3] (grayscale replicated to 3 channels)
    mode: str  # "RGB" or "L": what the extracted file will be
    source_format: str  # "PNG" or "JPEG"
    exif: bytes | None = None
    icc_profile: bytes | None = None
    xmp: bytes | None = None
    source_info: dict = field(default_factory=dict)  # JPEG qtables/subsampling, PNG dpi


@dataclass
class NotCoded:
    """Why a file is stored byte-exact instead; `warning` is set when the user should know."""

    reason: str
    warning: bool = False


def _xmp(info: dict) -> bytes | None:
    x = info.get("xmp") or info.get("XML:com.adobe.xmp")
    if isinstance(x, str):
        return x.encode("utf-8")
    return x or None


def read_photo(data: bytes) -> Photo | NotCoded:
    """Decode the file `data` if the codec should code it, else say why not (never raises for bad files)."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = None  # we enforce our own limit below, without a warning
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format
            if fmt not in CODED_FORMATS:
                return NotCoded(f"{fmt} files are stored as they are")
            if getattr(im, "n_frames", 1) > 1:
                return NotCoded("animated image: stored as it is")
            if im.mode not in CODED_MODES:
                return NotCoded(f"{im.mode} pixels (not 8-bit RGB or grayscale): stored as they are")
            # Pillow opens 16-bit RGB PNGs as 8-bit "RGB": read the IHDR bit depth (byte 24) itself.
            if fmt == "PNG" and (len(data) < 25 or data[24] != 8):
                return NotCoded("16-bit PNG: stored as it is")
            if "transparency" in im.info:
                return NotCoded("PNG with a transparent colour: stored as it is")
            w, h = im.size
            if (-(-w // 64) * 64) * (-(-h // 64) * 64) > MAX_PIXELS:  # padded area: what the codec allocates
                return NotCoded(f"{w}x{h} is over the codec's {MAX_PIXELS // 1_000_000} MP limit: stored as it is")
            im.load()
            info = dict(im.info)
            source_info: dict = {}
            if fmt == "JPEG":
                from PIL import JpegImagePlugin

                source_info["qtables"] = {str(k): list(v) for k, v in im.quantization.items()}
                source_info["subsampling"] = JpegImagePlugin.get_sampling(im)
                if info.get("progressive"):
                    source_info["progressive"] = True
            if "dpi" in info:
                source_info["dpi"] = [float(v) for v in info["dpi"]]
            rgb = np.asarray(im.convert("RGB"))
            return Photo(rgb, im.mode, fmt, info.get("exif") or None, info.get("icc_profile") or None,
                         _xmp(info), source_info)
    except (UnidentifiedImageError, Image.DecompressionBombError):
        return NotCoded("not an image")
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # Pillow raises these for truncated or corrupt image data.
        return NotCoded(f"image data does not decode ({e}): stored as it is", warning=True)


def encode_photo_file(rgb: np.ndarray, mode: str, source_format: str, exif: bytes | None,
                      icc_profile: bytes | None, xmp: bytes | None, source_info: dict) -> bytes:
    """The bytes of the extracted file, in the source's format, with its metadata."""
    from PIL import Image

    im = Image.fromarray(rgb, "RGB")
    if mode == "L":
        im = im.convert("L")
    kwargs: dict = {}
    if exif:
        kwargs["exif"] = exif
    if icc_profile:
        kwargs["icc_profile"] = icc_profile
    if xmp:
        kwargs["xmp"] = xmp
    if "dpi" in source_info:
        kwargs["dpi"] = tuple(source_info["dpi"])
    if source_format == "JPEG":
        # The source's own quantization tables and subsampling: the file does not grow.
        qtables = source_info.get("qtables")
        if qtables:
            kwargs["qtables"] = [qtables[k] for k in sorted(qtables, key=int)]
            kwargs["subsampling"] = source_info.get("subsampling", -1)
        else:
            kwargs["quality"] = 95
        if source_info.get("progressive"):
            kwargs["progressive"] = True
    elif source_format != "PNG":
        raise ImageError(f"cannot write {source_format} files")
    buf = io.BytesIO()
    try:
        im.save(buf, format=source_format, **kwargs)
    except (OSError, ValueError) as e:
        raise ImageError(f"cannot write the {source_format} file: {e}") from e
    return buf.getvalue()


def encode_source_info(info: dict) -> bytes | None:
    return json.dumps(info, sort_keys=True).encode() if info else None


def decode_source_info(raw: bytes | None) -> dict:
    if not raw:
        return {}
    try:
        info = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}  # optional hints only; the photo still decodes without them
    return info if isinstance(info, dict) else {}

