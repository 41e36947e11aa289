"""What the photo layer hands to the codec: a decoded Photo, or why a file is NotCoded.

Also the rules every reader applies before decoding pixels (size, pixel mode), shared by the
Pillow reader (photo/read.py) and the HEIF reader (photo/heif.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from imgarc.photo.alpha import MAX_PACKED_ALPHA, pack_alpha
from imgarc.photo.source_info import encode_source_info

CODED_FORMATS = ("JPEG", "PNG", "HEIF", "WEBP", "AVIF", "TIFF")
CODED_MODES = ("RGB", "L", "RGBA", "LA")
# 16384 x 16384: above every phone sensor (200 MP). The networks run in tiles, so their memory
# does not grow with the photo; the latents do (about 11 bytes per pixel at a compress's peak).
MAX_PIXELS = 16384 * 16384
STRIP_ROWS = 256  # rows of a decoded image turned into an array at once (split_pixels)


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
    alpha: bytes | None = None  # xz-packed alpha plane (RGBA/LA), see imgarc.photo.alpha
    height: int = field(init=False)  # the pixels' size, kept after take_pixels()
    width: int = field(init=False)

    def __post_init__(self) -> None:
        self.height, self.width = self.rgb.shape[:2]

    def take_pixels(self) -> np.ndarray:
        """The pixels, handed over: the photo holds them no longer (`rgb` is then empty), so that
        coding can free them once g_a has read them (a 100 MP photo's are 300 MB)."""
        rgb, self.rgb = self.rgb, np.empty((0, 0, 3), np.uint8)
        return rgb

    @cached_property
    def header_fields(self) -> dict:
        """EntryHeader keyword arguments that carry this photo's metadata and alpha."""
        return dict(source_format=self.source_format, color_mode=self.mode, exif=self.exif,
                    icc_profile=self.icc_profile, xmp=self.xmp, source_info=encode_source_info(self.source_info),
                    alpha=self.alpha)


@dataclass
class NotCoded:
    """Why a file is stored byte-exact instead; `warning` is set when the user should know."""

    reason: str
    warning: bool = False


class Refused(Exception):
    """Inside a reader: this file is stored byte-exact, for this reason (`warning`: tell the user)."""

    def __init__(self, reason: str, warning: bool = False) -> None:
        super().__init__(reason)
        self.warning = warning


def check_size(w: int, h: int) -> None:
    if (-(-w // 64) * 64) * (-(-h // 64) * 64) > MAX_PIXELS:  # padded area: what the codec allocates
        raise Refused(f"{w}x{h} is over the codec's {MAX_PIXELS // 1_000_000} MP limit: stored as it is", warning=True)


def check_mode(mode: str) -> None:
    if mode == "P":
        raise Refused("palette image (graphics, already small; a photo codec would blur it): stored as it is")
    if mode not in CODED_MODES:
        raise Refused(f"{mode} pixels (not 8-bit RGB, grayscale or with alpha): stored as it is")


def split_pixels(im) -> tuple[np.ndarray, bytes | None]:
    """RGB uint8 [H, W, 3] and the packed alpha plane (RGBA/LA), from a loaded 8-bit Pillow image."""
    alpha = None
    if im.mode in ("RGBA", "LA"):
        alpha = pack_alpha(np.asarray(im.getchannel("A")))
        if len(alpha) > MAX_PACKED_ALPHA:
            raise Refused("alpha plane too irregular to keep beside the photo: stored as it is")
    # Copied out a strip of rows at a time: Pillow holds 4 bytes a pixel and hands its pixels to
    # numpy through a joined copy of them, so a whole-image conversion of a 100 MP photo would
    # hold another 600-700 MB for a moment.
    w, h = im.size
    rgb = np.empty((h, w, 3), np.uint8)
    for top in range(0, h, STRIP_ROWS):
        strip = im.crop((0, top, w, min(h, top + STRIP_ROWS)))
        if im.mode in ("L", "LA"):
            rgb[top:top + strip.height] = np.asarray(strip.getchannel(0))[:, :, None]
        else:
            rgb[top:top + strip.height] = np.asarray(strip.convert("RGB") if im.mode == "RGBA" else strip)
    return rgb, alpha
