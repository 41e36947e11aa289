"""Metadata as cameras write it, built here (tests never depend on outside files).

`camera_exif()` is the EXIF block of a JPEG from a camera: IFD0 (make, model, orientation,
resolution, software, date), the Exif IFD (exposure, aperture, ISO, dates, a maker note of
settings arrays as camera makers write them) and IFD1 with a JPEG thumbnail, as Pillow hands it
over (`Exif\\0\\0` + a TIFF structure). Pillow cannot write IFD1, so the TIFF is laid out here.
"""

from __future__ import annotations

import io
import random
import struct

import numpy as np
from PIL import Image, ImageCms

ASCII, SHORT, LONG, RATIONAL, UNDEFINED = 2, 3, 4, 5, 7
_WIDTH = {ASCII: 1, SHORT: 2, LONG: 4, RATIONAL: 8, UNDEFINED: 1}

SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()  # LittleCMS's sRGB


def _ifd(entries: list[tuple[int, int, bytes]], at: int, next_ifd: int) -> bytes:
    """An IFD at TIFF offset `at`: values over 4 bytes go right after it (little-endian TIFF)."""
    data_at = at + 2 + 12 * len(entries) + 4
    table, data = [struct.pack("<H", len(entries))], b""
    for tag, kind, value in sorted(entries):
        count = len(value) // _WIDTH[kind]
        if len(value) <= 4:
            table.append(struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\0"))
        else:
            table.append(struct.pack("<HHII", tag, kind, count, data_at + len(data)))
            data += value + b"\0" * (len(value) % 2)  # values start on word boundaries
    return b"".join(table) + struct.pack("<I", next_ifd) + data


def _ifd_size(entries: list[tuple[int, int, bytes]]) -> int:
    return len(_ifd(entries, 0, 0))


def _text(s: str) -> bytes:
    return s.encode("ascii") + b"\0"


def _rational(*pairs: tuple[int, int]) -> bytes:
    return b"".join(struct.pack("<II", n, d) for n, d in pairs)


def thumbnail_jpeg(seed: int = 0) -> bytes:
    """A 160x120 JPEG thumbnail of a smooth scene with sensor noise (~5 KB, incompressible)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:120, 0:160]
    scene = np.stack([x * 1.5, y * 2.0, (x + y) * 0.9], -1) + rng.normal(0, 12, (120, 160, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(scene, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def _maker_note(seed: int) -> bytes:
    """Settings arrays (small integers, many zeros) and strings, as maker notes hold (~4 KB)."""
    rnd = random.Random(seed)
    parts = [b"CAMERA\0\0"]
    for _ in range(24):
        n = rnd.randrange(8, 120)
        parts.append(struct.pack(f"<{n}H", *(rnd.choice((0, 0, 0, 1, 2, 3, 100, rnd.randrange(1024)))
                                             for _ in range(n))))
    parts += [b"Firmware Version 1.1.1\0", b"\0" * 512, b"Owner\0" + b" " * 26, bytes(range(256))]
    return b"".join(parts)


def camera_exif(seed: int = 0) -> bytes:
    """A camera JPEG's EXIF block with maker note and thumbnail (about 9 KB, a 5 KB thumbnail)."""
    thumb = thumbnail_jpeg(seed)
    date = _text("2024:06:01 12:34:56")
    exif_ifd = [
        (0x829A, RATIONAL, _rational((1, 250))), (0x829D, RATIONAL, _rational((56, 10))),
        (0x8827, SHORT, struct.pack("<H", 400)), (0x9000, UNDEFINED, b"0231"),
        (0x9003, ASCII, date), (0x9004, ASCII, date), (0x920A, RATIONAL, _rational((50, 1))),
        (0x927C, UNDEFINED, _maker_note(seed)), (0xA002, LONG, struct.pack("<I", 6000)),
        (0xA003, LONG, struct.pack("<I", 4000)), (0xA434, ASCII, _text("EF24-105mm f/4L IS USM")),
    ]
    ifd0 = [
        (0x010F, ASCII, _text("Canon")), (0x0110, ASCII, _text("Canon EOS 5D Mark IV")),
        (0x0112, SHORT, struct.pack("<H", 6)), (0x011A, RATIONAL, _rational((72, 1))),
        (0x011B, RATIONAL, _rational((72, 1))), (0x0128, SHORT, struct.pack("<H", 2)),
        (0x0131, ASCII, _text("Firmware 1.1.1")), (0x0132, ASCII, date),
        (0x8769, LONG, b"\0" * 4),  # Exif IFD offset: set below
    ]
    ifd1 = [(0x0103, SHORT, struct.pack("<H", 6)), (0x0201, LONG, b"\0" * 4),  # thumbnail offset: set below
            (0x0202, LONG, struct.pack("<I", len(thumb)))]
    at0 = 8
    at_exif = at0 + _ifd_size(ifd0)
    at1 = at_exif + _ifd_size(exif_ifd)
    at_thumb = at1 + _ifd_size(ifd1)
    ifd0[-1] = (0x8769, LONG, struct.pack("<I", at_exif))
    ifd1[1] = (0x0201, LONG, struct.pack("<I", at_thumb))
    tiff = (b"II*\0" + struct.pack("<I", at0) + _ifd(ifd0, at0, at1) + _ifd(exif_ifd, at_exif, 0)
            + _ifd(ifd1, at1, 0) + thumb)
    return b"Exif\0\0" + tiff
