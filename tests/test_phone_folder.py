"""A folder as a phone keeps it: JPEG/HEIC with EXIF, ICC, XMP and orientation, alpha, grayscale,
16-bit, GIF, video, nested non-ASCII names. Round trips in every mode, with real files throughout."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps, features

from imgarc import api
from imgarc.archive import STORAGE_JXL, ArchiveReader, ArchiveWriter
from imgarc.errors import ArchiveError, LatentStreamError, UsageError
from imgarc.photo import Photo, pack_stored, read_photo, unpack_stored
from imgarc.photo.heif import heif_available
from tests.conftest import noise_rgb

XMP = (b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
       b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
       b'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="5"/></rdf:RDF></x:xmpmeta><?xpacket end="w"?>')
ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
CODED = ["DCIM/100APPLE/IMG_0001.JPG", "DCIM/100APPLE/IMG_0002.HEIC", "DCIM/100APPLE/IMG_0003.webp",
         "Screenshots/Écran 2024-06-01.png", "Scans/scan grüße.png", "日本/写真.jpg"]
STORED = ["Scans/deep16.png", "Fun/cat.gif", "Videos/clip.mov"]


def phone_exif(orientation: int = 6) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F], exif[0x0110] = "Apple", "iPhone 15"
    exif.get_ifd(0x8769)[0x9003] = "2024:06:01 12:34:56"  # DateTimeOriginal
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (48.0, 51.0, 24.0), "E", (2.0, 21.0, 3.0)
    return exif.tobytes()


def save(path: Path, im: Image.Image, fmt: str, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format=fmt, **kwargs)


@pytest.fixture
def phone_folder(tmp_path) -> Path:
    if not heif_available():
        pytest.skip("pillow-heif is not installed")
    src = tmp_path / "phone"
    tall = Image.fromarray(noise_rgb(128, 192, 11))  # 192 wide, 128 high: orientation 6 shows it 128 x 192
    save(src / CODED[0], tall, "JPEG", quality=90, exif=phone_exif(), icc_profile=ICC, xmp=XMP)
    save(src / CODED[1], Image.fromarray(noise_rgb(64, 80, 12)), "HEIF", quality=90, exif=phone_exif(), xmp=XMP)
    save(src / CODED[2], Image.fromarray(noise_rgb(64, 64, 13)), "WEBP", quality=90, exif=phone_exif(1), icc_profile=ICC)
    rgba = np.dstack([noise_rgb(70, 60, 14), np.tile(np.linspace(0, 255, 60).astype(np.uint8), (70, 1))])
    rgba[10:20, 10:20, 3] = 0
    save(src / CODED[3], Image.fromarray(rgba, "RGBA"), "PNG")
    save(src / CODED[4], Image.fromarray(noise_rgb(50, 70, 15)[:, :, 1]), "PNG", dpi=(300, 300))
    save(src / CODED[5], Image.fromarray(noise_rgb(128, 128, 16)), "JPEG", quality=85, progressive=True,
         subsampling=0, exif=phone_exif(1))
    deep = (np.random.default_rng(1).integers(0, 65535, (30, 30))).astype(np.uint16)
    save(src / STORED[0], Image.fromarray(deep), "PNG")  # I;16: a 16-bit grayscale PNG
    frames = [Image.fromarray(noise_rgb(20, 20, i)).convert("P") for i in range(3)]
    (src / "Fun").mkdir()
    frames[0].save(src / STORED[1], save_all=True, append_images=frames[1:])
    (src / "Videos").mkdir()
    (src / STORED[2]).write_bytes(np.random.default_rng(2).bytes(5000))
    return src


def files_under(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}


def raw_metadata(path: Path) -> dict:
    """EXIF/ICC/XMP as stored in the file (for HEIC, before pillow-heif resets the orientation)."""
    data = path.read_bytes()
    if data[4:12] == b"ftypheic":
        import pillow_heif

        info = pillow_heif.open_heif(io.BytesIO(data)).info
    else:
        with Image.open(path) as im:
            info = dict(im.info)
    xmp = info.get("xmp") or info.get("XML:com.adobe.xmp")
    return {"exif": info.get("exif"), "icc": info.get("icc_profile"),
            "xmp": xmp.encode() if isinstance(xmp, str) else xmp}


def shown(path: Path) -> Image.Image:
    """What a viewer shows: EXIF orientation applied (HEIF decoders apply the HEIF rotation)."""
    with Image.open(path) as im:
        return ImageOps.exif_transpose(im)


def test_phone_folder_round_trip(tmp_path, phone_folder, tiny_model):
    out = tmp_path / "phone.iarc"
    summary = api.compress_folder(phone_folder, out, model_id=tiny_model)
    kinds = {e.path: e.kind for e in summary.entries}
    assert kinds == {**{p: "image" for p in CODED}, **{p: "stored" for p in STORED}}, summary.entries
    dest = tmp_path / "out"
    api.extract_archive(out, dest)
    original, restored = files_under(phone_folder), files_under(dest)
    assert set(restored) == set(original)  # names and relative paths identical
    for rel in STORED:
        assert restored[rel].read_bytes() == original[rel].read_bytes()
    for rel in CODED:
        a, b = original[rel], restored[rel]
        assert raw_metadata(b) == raw_metadata(a), rel  # EXIF, ICC, XMP byte-identical
        with Image.open(a) as ia, Image.open(b) as ib:
            assert (ib.format, ib.mode, ib.size) == (ia.format, ia.mode, ia.size), rel
            assert ib.getexif().get(0x0112) == ia.getexif().get(0x0112)
        assert shown(b).size == shown(a).size, rel  # orientation preserved
        assert os.stat(b).st_mtime_ns == os.stat(a).st_mtime_ns
    with Image.open(restored[CODED[0]]) as im:
        exif = im.getexif()
        assert exif[0x0112] == 6 and exif.get_ifd(0x8769)[0x9003] == "2024:06:01 12:34:56"
        assert exif.get_ifd(0x8825)[1] == "N" and im.size == (192, 128)
    assert shown(restored[CODED[0]]).size == (128, 192)
    with Image.open(original[CODED[3]]) as ia, Image.open(restored[CODED[3]]) as ib:
        assert np.array_equal(np.asarray(ib.getchannel("A")), np.asarray(ia.getchannel("A")))  # alpha identical
    with Image.open(restored[CODED[4]]) as im:
        assert im.mode == "L" and round(im.info["dpi"][0]) == 300  # grayscale stays grayscale
    with Image.open(restored[CODED[5]]) as im:
        assert im.info.get("progressive") and im.size == (128, 128)
    # A JPEG comes back no larger than it was (same quantization tables and subsampling).
    for rel in (CODED[0], CODED[5]):
        assert restored[rel].stat().st_size <= original[rel].stat().st_size * 1.05
    assert api.verify_archive(out).ok


@pytest.mark.slow
def test_list_says_how_and_why(tmp_path, phone_folder, tiny_model_dir):
    env = dict(os.environ, IMGARC_MODEL_PATH=str(tiny_model_dir), COLUMNS="250")
    out = tmp_path / "p.iarc"
    run = [sys.executable, "-m", "imgarc.cli"]
    r = subprocess.run(run + ["compress", str(phone_folder), str(out), "--model", "tiny-test", "--no-progress"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(run + ["list", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = {line.split()[0]: line for line in r.stdout.splitlines() if line.strip()}
    text = r.stdout
    assert "16-bit PNG" in text and "GIF files are stored" in text and "not an image" in text
    assert "coded: JPEG RGB 192x128" in text and "kept: EXIF, ICC, XMP" in text
    assert "alpha plane" in text and "coded: PNG L 70x50" in text and "coded: HEIF RGB" in text
    assert lines and "byte-exact" in text
    r = subprocess.run(run + ["extract", str(out), str(tmp_path / "x"), "--format", "tiff"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "--format must be one of" in r.stderr


def test_keep_originals_is_byte_exact_and_recompresses_jpegs(tmp_path, phone_folder, tiny_model):
    out = tmp_path / "keep.iarc"
    summary = api.compress_folder(phone_folder, out, model_id=tiny_model, keep_originals=True)
    assert all(e.kind == "stored" for e in summary.entries)
    storage = {e.header.path: e.header.storage for e in api.list_archive(out)}
    assert storage[CODED[0]] == storage[CODED[5]] == STORAGE_JXL
    dest = tmp_path / "out"
    api.extract_archive(out, dest)
    original, restored = files_under(phone_folder), files_under(dest)
    assert set(restored) == set(original)
    for rel, path in original.items():
        assert hashlib.sha256(restored[rel].read_bytes()).digest() == hashlib.sha256(path.read_bytes()).digest(), rel
    assert api.verify_archive(out).ok


def test_format_override_renames_without_clobbering(tmp_path, phone_folder, tiny_model):
    # a.jpg would become a.png, which another file already is: it becomes a.jpg.png instead.
    Image.fromarray(noise_rgb(64, 64, 20)).save(phone_folder / "a.jpg", quality=90, exif=phone_exif(3))
    Image.fromarray(noise_rgb(64, 64, 21)).save(phone_folder / "a.png")
    out = tmp_path / "f.iarc"
    api.compress_folder(phone_folder, out, model_id=tiny_model)
    dest = tmp_path / "png"
    summary = api.extract_archive(out, dest, image_format="png")
    restored = files_under(dest)
    assert {"a.png", "a.jpg.png", "DCIM/100APPLE/IMG_0001.png", "DCIM/100APPLE/IMG_0002.png", "日本/写真.png"} <= set(restored)
    assert "a.jpg" not in restored and len(restored) == len(files_under(phone_folder))
    assert {e.path for e in summary.entries} == set(restored)
    for rel in STORED:  # byte-exact entries never change
        assert restored[rel].read_bytes() == (phone_folder / rel).read_bytes()
    with Image.open(dest / "DCIM/100APPLE/IMG_0001.png") as im:
        assert im.format == "PNG" and im.getexif()[0x0112] == 6 and im.info["icc_profile"] == ICC
    # HEIC as PNG: pixels as stored plus EXIF orientation show what the HEIC showed.
    assert shown(dest / "DCIM/100APPLE/IMG_0002.png").size == shown(phone_folder / CODED[1]).size
    api.extract_archive(out, tmp_path / "jpeg", image_format="jpeg")
    with Image.open(tmp_path / "jpeg" / CODED[3]) as im:  # alpha never becomes JPEG
        assert im.format == "PNG" and im.mode == "RGBA"
    with pytest.raises(UsageError, match="--format"):
        api.extract_archive(out, tmp_path / "bad", image_format="bmp")


def test_malformed_source_info_is_a_clean_entry_error(tmp_path, phone_folder, tiny_model):
    out = tmp_path / "p.iarc"
    api.compress_folder(phone_folder, out, model_id=tiny_model)
    bad = tmp_path / "bad.iarc"
    with ArchiveReader(out) as r, ArchiveWriter(bad) as w:
        for i in range(len(r)):
            h = r.header(i)
            if h.path == CODED[0]:
                h = dataclasses.replace(h, source_info=b'{"qtables": {"0": 5}, "dpi": "x"}')
            w.add(h, r.payload(i))
    with pytest.raises(ArchiveError, match="SOURCE_INFO"):
        api.extract_archive(bad, tmp_path / "o")
    assert [name for name, _ in api.verify_archive(bad).damaged] == [CODED[0]]
    assert (tmp_path / "o" / CODED[5]).exists()  # the other entries are extracted


def test_jpeg_xl_storage_is_checked(tmp_path):
    jpeg = io.BytesIO()
    Image.fromarray(noise_rgb(128, 192, 30)).save(jpeg, "JPEG", quality=90, exif=phone_exif())
    data = jpeg.getvalue()
    stored = pack_stored(data)
    assert stored.storage == STORAGE_JXL and len(stored.payload) < len(data)
    assert unpack_stored(stored.storage, stored.payload, len(data), stored.original_sha256, "x.jpg") == data
    with pytest.raises(LatentStreamError):
        unpack_stored(stored.storage, stored.payload, len(data), bytes(32), "x.jpg")
    with pytest.raises(LatentStreamError):
        unpack_stored(stored.storage, stored.payload[:-20], len(data), stored.original_sha256, "x.jpg")
    assert pack_stored(b"not a jpeg").storage != STORAGE_JXL


def test_reading_does_not_change_pillows_global_limit():
    before = Image.MAX_IMAGE_PIXELS
    assert isinstance(read_photo(_png(noise_rgb(8, 8))), Photo)
    assert Image.MAX_IMAGE_PIXELS == before


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.skipif(not features.check("avif"), reason="Pillow without AVIF")
def test_avif_and_tiff_round_trip(tmp_path, tiny_model):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(noise_rgb(64, 64, 40)).save(src / "p.avif", quality=90, exif=phone_exif(8), xmp=XMP)
    tiff = Image.fromarray(noise_rgb(48, 64, 41))
    tiff.save(src / "scan.tif", compression="tiff_lzw", icc_profile=ICC, tiffinfo={274: 6})
    out = tmp_path / "a.iarc"
    summary = api.compress_folder(src, out, model_id=tiny_model)
    assert {e.path: e.kind for e in summary.entries} == {"p.avif": "image", "scan.tif": "image"}
    api.extract_archive(out, tmp_path / "o")
    b = tmp_path / "o" / "p.avif"
    assert raw_metadata(b) == raw_metadata(src / "p.avif") and b.stat().st_size <= (src / "p.avif").stat().st_size
    with Image.open(tmp_path / "o" / "scan.tif") as im:
        assert im.info["compression"] == "tiff_lzw" and im.info["icc_profile"] == ICC and im.tag_v2[274] == 6
