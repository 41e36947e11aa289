"""One phone photo: a 12 MP (4000×3000) image made from a real photo, for the time-per-photo table.

A user thinks in photos, not in Kodak folders: how long one phone photo takes to compress and
to extract, and how much memory that needs. No 12 MP photo with a licence we can use is in the
data sets, so one is made: the largest photo of the CLIC set (found locally, never
downloaded for this) or else of the benched folder, centre-cropped to 4:3 and resized with
Pillow's Lanczos filter to 4000×3000 (3000×4000 for a portrait source). Upscaled photos are
smoother than a camera's own, so they compress better than a real phone photo would: read the
table for time and memory, and its bytes as a lower bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imgarc.bench.datasets import DatasetError, resolve_dataset, sha256_file

PHONE_SIZE = (4000, 3000)  # 12 MP, 4:3, as most phone cameras take them
# 'auto' picks no source smaller than this: a thumbnail blown up to 12 MP says nothing about photos.
MIN_AUTO_SOURCE_PIXELS = 1_000_000


@dataclass
class PhonePhoto:
    """How the phone photo was made (recorded in the report)."""

    source: str  # the source file
    source_width: int
    source_height: int
    crop: list[int]  # [left, top, right, bottom] of the 4:3 centre crop, in source pixels
    width: int
    height: int
    bytes: int  # the PNG written
    sha256: str
    how: str


def phone_source(choice: str, dataset_images: list[Path], data: Path | None) -> Path | None:
    """The file to make the phone photo from: `choice` is 'none', 'auto' or a path.

    'auto': the largest image (in pixels) of CLIC when it is found locally (--data,
    $IMGARC_DATA or the cache; no download), else the largest of the benched images; None
    when that has under MIN_AUTO_SOURCE_PIXELS.
    """
    if choice == "none":
        return None
    if choice != "auto":
        path = Path(choice)
        if not path.is_file():
            raise DatasetError(f"--phone {choice}: no such image file")
        return path
    try:
        candidates = resolve_dataset("clic", data, download=False).images
    except DatasetError:
        candidates = list(dataset_images)
    sized = [(_pixels(p), p.name, p) for p in candidates]
    if not sized or max(sized)[0] < MIN_AUTO_SOURCE_PIXELS:
        return None
    return max(sized)[2]


def _pixels(path: Path) -> int:
    from PIL import Image

    with Image.open(path) as im:
        return im.width * im.height


def make_phone_photo(source: Path, dest: Path, size: tuple[int, int] = PHONE_SIZE) -> PhonePhoto:
    """Centre-crop `source` to the aspect of `size` (swapped for a portrait source) and resize it
    there with Lanczos; write it to `dest` as PNG."""
    from PIL import Image

    with Image.open(source) as im:
        rgb = im.convert("RGB")
    w, h = rgb.size
    tw, th = size if w >= h else (size[1], size[0])
    if w * th > h * tw:  # wider than the target: crop the sides
        cw, ch = round(h * tw / th), h
    else:
        cw, ch = w, round(w * th / tw)
    left, top = (w - cw) // 2, (h - ch) // 2
    crop = [left, top, left + cw, top + ch]
    photo = rgb.crop(tuple(crop)).resize((tw, th), Image.Resampling.LANCZOS)
    dest.parent.mkdir(parents=True, exist_ok=True)
    photo.save(dest, format="PNG")
    how = (f"{source.name} ({w}×{h}) centre-cropped to {cw}×{ch} (4:3) and resized to {tw}×{th} "
           f"with Pillow's Lanczos filter (×{tw / cw:.2f}), saved as PNG")
    return PhonePhoto(source.name, w, h, crop, tw, th, dest.stat().st_size, sha256_file(dest), how)
