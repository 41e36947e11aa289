"""Large PNGs are deflated in bands on several threads (imgarc.photo.png_bands): the file must
decode to exactly the pixels, keep the metadata Pillow writes, and be a valid PNG (every CRC and
the zlib stream's Adler-32 checked by a strict decoder: Python's zlib on the joined IDATs)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from imgarc.photo import png_bands
from imgarc.photo.write import encode_photo_file
from tests.conftest import noise_rgb
from tests.metadata_samples import SRGB_ICC, camera_exif


def idat_stream(png: bytes) -> bytes:
    chunks = png_bands._chunks(png)
    for kind, body in chunks:  # every chunk's CRC, as a strict reader checks it
        at = png.index(kind + body) + len(kind) + len(body)
        assert struct.unpack(">I", png[at:at + 4])[0] == zlib.crc32(kind + body)
    return b"".join(body for kind, body in chunks if kind == b"IDAT")


def smooth(h: int, w: int, channels: int, seed: int) -> np.ndarray:
    """Photo-like pixels: a gradient plus noise, so every filter path sees real differences."""
    rng = np.random.default_rng(seed)
    base = (np.arange(h)[:, None, None] * 3 + np.arange(w)[None, :, None] * 2 + np.arange(channels) * 40) % 256
    return np.clip(base + rng.integers(-8, 9, (h, w, channels)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("mode,channels", [("RGB", 3), ("RGBA", 4), ("L", 1), ("LA", 2)])
@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("standard_zlib", [False, True])
def test_banded_png_has_the_exact_pixels(mode, channels, workers, standard_zlib, monkeypatch):
    """With zlib-ng (where installed) and with the standard library's zlib, its fallback."""
    if standard_zlib:
        monkeypatch.setattr(png_bands, "zlib", zlib)
        monkeypatch.setattr(png_bands, "DEFLATE_LEVEL", 4)
    h = 2 * png_bands.BAND_ROWS + 37  # three bands, the last one short
    pixels = smooth(h, 301, channels, seed=channels)
    pixels = pixels[:, :, 0] if channels == 1 else pixels
    first = io.BytesIO()
    Image.fromarray(pixels[:1, :1], mode).save(first, "PNG")
    png = png_bands.with_pixels(first.getvalue(), pixels, workers)
    zlib.decompress(idat_stream(png))  # checks the joined stream's Adler-32
    with Image.open(io.BytesIO(png)) as im:
        assert im.mode == mode and im.size == (301, h)
        assert np.array_equal(np.asarray(im), pixels)


def test_banded_png_keeps_its_metadata():
    rgb = smooth(400, 300, 3, seed=7)
    exif = camera_exif()
    info = {"dpi": [300, 300], "text": {"Title": "a title", "Größe": "groß"}}
    banded = encode_photo_file(rgb, "RGB", "PNG", exif, SRGB_ICC, b"<x:xmpmeta/>", info)
    # A trial write is Pillow's own file (deflate level 0), with the same metadata.
    pillows = encode_photo_file(rgb, "RGB", "PNG", exif, SRGB_ICC, b"<x:xmpmeta/>", info, trial=True)
    assert banded != pillows
    with Image.open(io.BytesIO(banded)) as a, Image.open(io.BytesIO(pillows)) as b:
        assert np.array_equal(np.asarray(a), rgb)
        assert a.info["icc_profile"] == b.info["icc_profile"] == SRGB_ICC
        assert a.info["exif"] == b.info["exif"]
        assert a.text == b.text and a.info["dpi"] == b.info["dpi"]
    assert [k for k, _ in png_bands._chunks(banded) if k != b"IDAT"] == [k for k, _ in png_bands._chunks(pillows) if k != b"IDAT"]


def test_noise_survives_too():
    """Incompressible pixels: deflate's stored blocks across band joins."""
    pixels = noise_rgb(png_bands.BAND_ROWS + 5, 64, 3)
    first = io.BytesIO()
    Image.fromarray(pixels[:1, :1]).save(first, "PNG")
    with Image.open(io.BytesIO(png_bands.with_pixels(first.getvalue(), pixels, 2))) as im:
        assert np.array_equal(np.asarray(im), pixels)
