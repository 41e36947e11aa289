"""compress -> extract/list/verify on a small mixed folder with a tiny random model."""

from __future__ import annotations

import dataclasses
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgarc import api
from imgarc.coders import CODER_NAMES
from imgarc.errors import ArchiveError, ImgarcError, UsageError
from tests.conftest import noise_rgb


def files_under(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def archive(tmp_path, photo_folder, tiny_model) -> Path:
    out = tmp_path / "photos.iarc"
    api.compress_folder(photo_folder, out, model_id=tiny_model)
    return out


@pytest.mark.parametrize("coder", CODER_NAMES)
def test_round_trip_every_coder(tmp_path, photo_folder, tiny_model, coder):
    out = tmp_path / f"{coder}.iarc"
    summary = api.compress_folder(photo_folder, out, coder_name=coder, model_id=tiny_model)
    kinds = {e.path: e.kind for e in summary.entries}
    assert kinds == {"a.png": "image", "nested/b.jpg": "image", "nested/deeper/gray ç.png": "image",
                     "notes.txt": "stored", "broken.jpg": "stored"}
    assert any("broken.jpg" in w for w in summary.warnings)
    dest = tmp_path / f"out-{coder}"
    api.extract_archive(out, dest)
    original, restored = files_under(photo_folder), files_under(dest)
    assert set(restored) == set(original)
    for rel in ("notes.txt", "broken.jpg"):
        assert restored[rel].read_bytes() == original[rel].read_bytes()
    for rel in ("a.png", "nested/b.jpg", "nested/deeper/gray ç.png"):
        with Image.open(original[rel]) as a, Image.open(restored[rel]) as b:
            assert (b.size, b.mode, b.format) == (a.size, a.mode, a.format)
    for rel in original:
        assert os.stat(restored[rel]).st_mtime_ns == os.stat(original[rel]).st_mtime_ns
    assert api.verify_archive(out).ok


def test_coders_give_identical_images(tmp_path, photo_folder, tiny_model):
    images = {}
    for coder in CODER_NAMES:
        out, dest = tmp_path / f"{coder}.iarc", tmp_path / f"x-{coder}"
        api.compress_folder(photo_folder, out, coder_name=coder, model_id=tiny_model)
        api.extract_archive(out, dest)
        images[coder] = (dest / "a.png").read_bytes()
    assert images["rans"] == images["lzma"] == images["ref"]


def test_file_modes_and_listing(tmp_path, photo_folder, tiny_model):
    os.chmod(photo_folder / "notes.txt", 0o640)
    out = tmp_path / "m.iarc"
    api.compress_folder(photo_folder, out, model_id=tiny_model, quality=60)
    listing = {e.header.path: e.header for e in api.list_archive(out)}
    assert listing["a.png"].quality == 60 and listing["a.png"].coder == "rans"
    assert listing["a.png"].model_id == tiny_model
    assert listing["nested/deeper/gray ç.png"].color_mode == "L"
    assert "does not decode" in listing["broken.jpg"].note
    dest = tmp_path / "d"
    api.extract_archive(out, dest)
    assert os.stat(dest / "notes.txt").st_mode & 0o777 == 0o640


def test_photo_that_would_grow_is_stored(tmp_path, tiny_model, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(src / "flat.png")

    class Bloated(api.Compressor):
        def code_photo(self, photo):  # a coded payload bigger than the file it came from
            coded = super().code_photo(photo)
            return dataclasses.replace(coded, payload=coded.payload + bytes(10_000))

    out = tmp_path / "f.iarc"
    summary = Bloated(api.CompressOptions(model_id=tiny_model)).compress_folder(src, out)
    assert summary.entries[0].kind == "stored" and "smaller" in summary.entries[0].note
    api.extract_archive(out, tmp_path / "o")
    assert (tmp_path / "o" / "flat.png").read_bytes() == (src / "flat.png").read_bytes()


def test_images_the_codec_must_not_touch_are_stored_byte_exact(tmp_path, tiny_model):
    src = tmp_path / "src"
    src.mkdir()
    rgb = (np.random.default_rng(0).integers(0, 65535, (40, 40, 3))).astype(">u2")
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    raw = b"".join(b"\x00" + row.tobytes() for row in rgb)  # filter byte 0 per row
    png16 = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 40, 40, 16, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    (src / "deep.png").write_bytes(png16)
    Image.fromarray(noise_rgb(40, 40, 5)).save(src / "trns.png", transparency=(0, 0, 0))
    Image.fromarray(noise_rgb(40, 40, 6)).convert("P").save(src / "palette.png")  # graphics: kept as they are
    Image.fromarray(noise_rgb(40, 40, 7)).convert("CMYK").save(src / "cmyk.jpg")
    frames = [Image.fromarray(noise_rgb(30, 30, i)).convert("P") for i in range(2)]
    frames[0].save(src / "anim.gif", save_all=True, append_images=frames[1:])
    out = tmp_path / "s.iarc"
    summary = api.compress_folder(src, out, model_id=tiny_model)
    notes = {e.path: (e.kind, e.note) for e in summary.entries}
    assert all(kind == "stored" for kind, _ in notes.values()), notes
    assert "16-bit" in notes["deep.png"][1] and "transparent" in notes["trns.png"][1] and "palette" in notes["palette.png"][1]
    api.extract_archive(out, tmp_path / "o")
    for p in src.iterdir():
        assert (tmp_path / "o" / p.name).read_bytes() == p.read_bytes()


def test_usage_errors(tmp_path, photo_folder, archive, tiny_model):
    with pytest.raises(UsageError, match="does not exist"):
        api.compress_folder(tmp_path / "missing", tmp_path / "x.iarc")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="no files"):
        api.compress_folder(empty, tmp_path / "x.iarc")
    with pytest.raises(UsageError, match="already exists"):
        api.compress_folder(photo_folder, archive, model_id=tiny_model)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="not empty"):
        api.extract_archive(archive, busy)
    assert (busy / "keep.txt").read_text() == "mine"
    api.extract_archive(archive, busy, force=True)
    assert (busy / "keep.txt").read_text() == "mine" and (busy / "a.png").exists()


def test_archive_inside_source_is_not_archived_into_itself(tmp_path, photo_folder, tiny_model):
    out = photo_folder / "self.iarc"
    api.compress_folder(photo_folder, out, model_id=tiny_model)
    api.compress_folder(photo_folder, out, model_id=tiny_model, force=True)
    assert "self.iarc" not in {e.header.path for e in api.list_archive(out)}


def test_truncated_archive_is_a_clean_error(tmp_path, archive):
    data = archive.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 5):
        bad = tmp_path / f"cut{cut}.iarc"
        bad.write_bytes(data[:cut])
        with pytest.raises(ArchiveError):
            api.extract_archive(bad, tmp_path / f"o{cut}")


def test_flipped_byte_names_the_damaged_entry_and_extracts_the_rest(tmp_path, archive):
    from imgarc.archive import ArchiveReader

    with ArchiveReader(archive) as r:
        i = next(i for i in range(len(r)) if r.header(i).path == "a.png")
        start = r.locations[i + 1].offset if i + 1 < len(r) else None
    data = bytearray(archive.read_bytes())
    data[start - 10] ^= 0x40  # inside a.png's payload (the bytes just before the next entry)
    bad = tmp_path / "flip.iarc"
    bad.write_bytes(bytes(data))
    report = api.verify_archive(bad)
    assert [name for name, _ in report.damaged] == ["a.png"]
    with pytest.raises(ArchiveError, match="a.png"):
        api.extract_archive(bad, tmp_path / "o")
    assert (tmp_path / "o" / "notes.txt").exists()  # intact entries are still extracted
    assert not (tmp_path / "o" / "a.png").exists()


def test_entry_escaping_destination_is_refused(tmp_path, tiny_model, monkeypatch):
    from imgarc.archive import KIND_STORED, STORAGE_RAW, ArchiveWriter, EntryHeader, writer

    monkeypatch.setattr(writer, "safe_relative_path", lambda p: p)  # a hostile writer skips the check
    bad = tmp_path / "evil.iarc"
    with ArchiveWriter(bad) as w:
        w.add(EntryHeader(path="../evil.txt", kind=KIND_STORED, storage=STORAGE_RAW, original_size=4,
                          mtime_ns=0, mode=0o644), b"evil")
    with pytest.raises(ArchiveError, match="evil"):
        api.extract_archive(bad, tmp_path / "dest")
    assert not (tmp_path / "evil.txt").exists()


def test_missing_model_is_named(tmp_path, archive, monkeypatch):
    monkeypatch.delenv("IMGARC_MODEL_PATH")
    with pytest.raises(ImgarcError, match="tiny-test"):
        api.extract_archive(archive, tmp_path / "o")


def test_extract_weighs_each_photo_by_its_pixels_and_synthesis_width(tmp_path, archive, tiny_model, monkeypatch):
    """The decode pool's memory budget counts padded pixels × g_s channels, read from the entry's model."""
    from imgarc import ordered_pool
    from imgarc.api import extractor
    from imgarc.archive import ArchiveReader
    from imgarc.codec.registry import load_codec

    seen: dict[str, int] = {}
    real_in_order = ordered_pool.in_order

    def recording_in_order(tasks, workers, **kw):
        def record():
            for task in tasks:
                seen[task.key] = task.activations
                yield task
        return real_in_order(record(), workers, **kw)

    monkeypatch.setattr(extractor, "in_order", recording_in_order)
    api.extract_archive(archive, tmp_path / "out")
    with ArchiveReader(archive) as reader:
        headers = [reader.header(i) for i in range(len(reader))]
    width = load_codec(tiny_model).architecture.N
    expected = {h.path: h.padded_height * h.padded_width * width if h.model_id else 0 for h in headers}
    assert seen == expected and sum(v > 0 for v in seen.values()) == 3
