"""EXIF orientation: which transposition turns the pixels as stored into what a viewer shows."""

from __future__ import annotations

from PIL import Image

# Orientation value -> Pillow Transpose name applied by viewers (ImageOps.exif_transpose).
_TO_DISPLAY = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
               6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90"}
# Its inverse: from what a viewer shows back to the pixels as stored.
_TO_STORED = {**_TO_DISPLAY, 6: "ROTATE_90", 8: "ROTATE_270"}


def to_stored(im, orientation: int):
    """Undo a viewer's orientation transform: display-oriented pixels -> pixels as stored."""
    name = _TO_STORED.get(orientation)
    return im.transpose(getattr(Image.Transpose, name)) if name else im


def to_display(im, orientation: int):
    """What a viewer shows for pixels `im` stored with this orientation."""
    name = _TO_DISPLAY.get(orientation)
    return im.transpose(getattr(Image.Transpose, name)) if name else im


def heif_orientation(info: dict) -> int:
    """The orientation pillow-heif writes as the HEIF transform (irot/imir) for this metadata.

    pillow-heif derives it from EXIF (else XMP) when saving; reading applies the transform to the
    pixels. Asking pillow-heif itself keeps both directions consistent.
    """
    from pillow_heif.misc import _get_orientation_for_encoder  # optional dependency, only for HEIF files

    return _get_orientation_for_encoder(dict(info)) or 1
