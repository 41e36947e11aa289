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
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterator

import numpy as np

from imgarc.alpha import MAX_PACKED_ALPHA, pack_alpha
from imgarc.archive.packed import stored_size
from imgarc.errors import ImgarcError
from imgarc.photo_write import encode_photo_file
from imgarc.source_info import decode_source_info, encode_source_info

CODED_FORMATS = ("JPEG", "PNG", "HEIF", "WEBP", "AVIF", "TIFF")
CODED_MODES = ("RGB", "L", "RGBA", "LA")
MAX_PIXELS = 40_000_000  # ~1 GB of activations in g_a; larger photos are stored byte-exact


@dataclass
class Photo:
    """A decoded photo ready for the codec, with what is needed to write it back."""

    rgb: np.ndarray  # uint8 [H, W, 3], as stored (grayscale replicated to 3 channels)
    mode: str  # "RGB", "L", "RGBA" or "LA": what the extracted file will be
    source_format: str  # Pillow format name: "JPEG", "PNG", "HEIF", ...
    exif: bytes | None = None
    icc_profile: bytes | None = None
    xmp: bytes | None = None
    source_info: dict = field(default_factory=dict)  # JPEG qtables/subsampling, PNG dpi/text, ...
    alpha: bytes | None = None  # xz-packed alpha plane (RGBA/LA), see imgarc.alpha

    @cached_property
    def header_fields(self) -> dict:
        """EntryHeader keyword arguments that carry this photo's metadata and alpha."""
        return dict(source_format=self.source_format, color_mode=self.mode, exif=self.exif,
                    icc_profile=self.icc_profile, xmp=self.xmp, source_info=encode_source_info(self.source_info),
                    alpha=self.alpha)

    @property
    def side_bytes(self) -> int:
        """Bytes the entry carries beside the coded payload (compare with the file's size).

        EXIF, ICC and XMP count as the header will hold them: LZMA-packed when that is smaller.
        """
        packable = ("exif", "icc_profile", "xmp")
        return sum(stored_size(v) if k in packable else len(v)
                   for k, v in self.header_fields.items() if isinstance(v, bytes))


@dataclass
class NotCoded:
    """Why a file is stored byte-exact instead; `warning` is set when the user should know."""

    reason: str
    warning: bool = False


class _Refuse(Exception):
    """Inside a reader: this file is stored byte-exact, for this reason."""


@contextmanager
def _no_pillow_pixel_limit() -> Iterator[None]:
    """We enforce our own size limit; lift Pillow's global one only while reading, then restore it."""
    from PIL import Image

    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


_heif_registered: bool | None = None


def heif_available() -> bool:
    """pillow-heif installed and registered with Pillow (HEIC/HEIF reading and writing)."""
    global _heif_registered
    if _heif_registered is None:
        try:
            import pillow_heif

            pillow_heif.register_heif_opener()
            _heif_registered = True
        except ImportError:
            _heif_registered = False
    return _heif_registered


def _xmp(info: dict) -> bytes | None:
    x = info.get("xmp") or info.get("XML:com.adobe.xmp")
    if isinstance(x, str):
        return x.encode("utf-8")
    return x or None


def _check_size(w: int, h: int) -> None:
    if (-(-w // 64) * 64) * (-(-h // 64) * 64) > MAX_PIXELS:  # padded area: what the codec allocates
        raise _Refuse(f"{w}x{h} is over the codec's {MAX_PIXELS // 1_000_000} MP limit: stored as it is")


def _check_mode(mode: str) -> None:
    if mode == "P":
        raise _Refuse("palette image (graphics, already small; a photo codec would blur it): stored as it is")
    if mode not in CODED_MODES:
        raise _Refuse(f"{mode} pixels (not 8-bit RGB, grayscale or with alpha): stored as it is")


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
        from PIL import JpegImagePlugin

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


def _pixels(im) -> tuple[np.ndarray, bytes | None]:
    """RGB uint8 [H, W, 3] and the packed alpha plane (RGBA/LA), from a loaded 8-bit image."""
    alpha = None
    if im.mode in ("RGBA", "LA"):
        alpha = pack_alpha(np.asarray(im.getchannel("A")))
        if len(alpha) > MAX_PACKED_ALPHA:
            raise _Refuse("alpha plane too irregular to keep beside the photo: stored as it is")
    rgb = np.asarray(im.convert("L" if im.mode == "LA" else "RGB").convert("RGB"))
    return rgb, alpha


def _read_heif(data: bytes) -> Photo:
    """HEIC/HEIF via pillow-heif: single 8-bit image without depth or auxiliary images."""
    import pillow_heif

    from imgarc.orientation import heif_orientation, to_stored

    heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=False)
    if len(heif) != 1:
        raise _Refuse("HEIF with several images (burst or sequence): stored as it is")
    info = heif.info  # as in the file: pillow-heif's Pillow plugin would reset the orientation
    if info.get("bit_depth", 8) != 8:
        raise _Refuse(f"{info.get('bit_depth')}-bit HEIF: stored as it is")
    if info.get("depth_images") or info.get("aux"):
        raise _Refuse("HEIF with a depth map or auxiliary images (e.g. an HDR gain map): stored as it is, so they are kept")
    w, h = heif.size
    _check_size(w, h)
    _check_mode(heif.mode)
    im = heif[0].to_pillow()  # decoded with the HEIF rotation applied
    im = to_stored(im, heif_orientation(info))  # the HEIF writer re-applies it from the same EXIF
    rgb, alpha = _pixels(im)
    details: dict = {}
    if info.get("chroma") in (420, 422, 444):
        details["chroma"] = info["chroma"]
    return Photo(rgb, im.mode, "HEIF", info.get("exif") or None, info.get("icc_profile") or None,
                 info.get("xmp") or None, details, alpha)


def _read_pillow(data: bytes) -> Photo:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        fmt = im.format
        if fmt == "HEIF":  # pillow-heif's Pillow plugin: read the file's own metadata instead
            return _read_heif(data)
        if fmt not in CODED_FORMATS:
            raise _Refuse(f"{fmt} files are stored as they are")
        if getattr(im, "n_frames", 1) > 1:
            raise _Refuse("animated or multi-page image: stored as it is")
        # Pillow opens 16-bit RGB PNGs as 8-bit "RGB": read the IHDR bit depth (byte 24) itself.
        if fmt == "PNG" and len(data) > 24 and data[24] == 16:
            raise _Refuse("16-bit PNG: stored as it is")
        _check_mode(im.mode)
        if fmt == "PNG" and data[24:25] != b"\x08":
            raise _Refuse(f"{data[24] if len(data) > 24 else '?'}-bit PNG: stored as it is")
        if fmt == "AVIF" and _avif_deep(data):
            raise _Refuse("AVIF with more than 8 bits per channel: stored as it is")
        if "transparency" in im.info:
            raise _Refuse("image with a transparent colour: stored as it is")
        w, h = im.size
        _check_size(w, h)
        details = _format_details(im, fmt, data)  # before load: Pillow drops a TIFF's orientation tag when loading
        im.load()
        info = dict(im.info)
        rgb, alpha = _pixels(im)
        exif = None if fmt == "TIFF" else (info.get("exif") or None)  # TIFF tags are the file itself
        return Photo(rgb, im.mode, fmt, exif, info.get("icc_profile") or None, _xmp(info), details, alpha)


def _check_writable(photo: Photo) -> None:
    """Write the photo back once now (its own pixels, its format and metadata): whatever a writer
    refuses is found while the original is still at hand, and stored byte-exact, never lost."""
    from imgarc.alpha import unpack_alpha

    h, w = photo.rgb.shape[:2]
    try:
        alpha = unpack_alpha(photo.alpha, w, h) if photo.alpha is not None else None
        encode_photo_file(photo.rgb, photo.mode, photo.source_format, photo.exif, photo.icc_profile, photo.xmp,
                          decode_source_info(encode_source_info(photo.source_info)), alpha, trial=True)
    except ImgarcError as e:
        raise _Refuse(f"{photo.source_format} file imgarc could not write back ({e}): stored as it is") from e


def read_photo(data: bytes) -> Photo | NotCoded:
    """Decode the file `data` if the codec should code it, else say why not (never raises for bad files)."""
    from PIL import Image, UnidentifiedImageError

    heif = data[4:8] == b"ftyp" and (data[8:12] in (b"heic", b"heix", b"heim", b"heis")
                                     or (data[8:12] in (b"mif1", b"msf1") and b"avif" not in data[12:64]))
    try:
        with _no_pillow_pixel_limit():
            if heif:
                if not heif_available():
                    return NotCoded("HEIC file and pillow-heif is not installed: stored as it is")
                photo = _read_heif(data)
            else:
                photo = _read_pillow(data)
            _check_writable(photo)
            return photo
    except _Refuse as e:
        return NotCoded(str(e))
    except (UnidentifiedImageError, Image.DecompressionBombError):
        return NotCoded("not an image")
    except (OSError, SyntaxError, ValueError, EOFError, RuntimeError) as e:
        # Pillow (and pillow-heif) raise these for truncated or corrupt image data.
        detail = " ".join(str(e).split())  # one line: libheif's messages end in a newline
        return NotCoded(f"image data does not decode ({detail}): stored as it is", warning=True)


__all__ = ["CODED_FORMATS", "MAX_PIXELS", "NotCoded", "Photo", "decode_source_info", "encode_photo_file",
           "encode_source_info", "heif_available", "read_photo"]
