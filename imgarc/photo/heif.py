"""HEIC/HEIF support through pillow-heif: is it installed, is a file HEIF, reading one.

pillow-heif is optional in principle: without it HEIC files are stored byte-exact and
`extract --format keep` writes their photos as PNG.
"""

from __future__ import annotations

import io

from imgarc.photo.model import Photo, Refused, check_mode, check_size, split_pixels
from imgarc.photo.orientation import heif_orientation, to_stored

_heif_registered: bool | None = None


def heif_available() -> bool:
    """pillow-heif installed and registered with Pillow (HEIC/HEIF reading and writing)."""
    global _heif_registered
    if _heif_registered is None:
        try:
            import pillow_heif  # optional dependency: probed, not required

            pillow_heif.register_heif_opener()
            _heif_registered = True
        except ImportError:
            _heif_registered = False
    return _heif_registered


def is_heif(data: bytes) -> bool:
    """The file's `ftyp` brand says HEIC/HEIF (and not AVIF, which shares the container)."""
    return data[4:8] == b"ftyp" and (data[8:12] in (b"heic", b"heix", b"heim", b"heis")
                                     or (data[8:12] in (b"mif1", b"msf1") and b"avif" not in data[12:64]))


def read_heif(data: bytes) -> Photo:
    """HEIC/HEIF via pillow-heif: single 8-bit image without depth or auxiliary images."""
    import pillow_heif

    heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=False)
    if len(heif) != 1:
        raise Refused("HEIF with several images (burst or sequence): stored as it is")
    info = heif.info  # as in the file: pillow-heif's Pillow plugin would reset the orientation
    if info.get("bit_depth", 8) != 8:
        raise Refused(f"{info.get('bit_depth')}-bit HEIF: stored as it is")
    if info.get("depth_images") or info.get("aux"):
        raise Refused("HEIF with a depth map or auxiliary images (e.g. an HDR gain map): stored as it is, so they are kept")
    w, h = heif.size
    check_size(w, h)
    check_mode(heif.mode)
    im = heif[0].to_pillow()  # decoded with the HEIF rotation applied
    im = to_stored(im, heif_orientation(info))  # the HEIF writer re-applies it from the same EXIF
    rgb, alpha = split_pixels(im)
    details: dict = {}
    if info.get("chroma") in (420, 422, 444):
        details["chroma"] = info["chroma"]
    return Photo(rgb, im.mode, "HEIF", info.get("exif") or None, info.get("icc_profile") or None,
                 info.get("xmp") or None, details, alpha)
