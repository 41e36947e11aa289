"""The bench's extra rows on tiny models and images: the coder study, CompressAI's own pipeline,
the phone photo, the HEIC and JPEG XL baselines, and CLIC's recorded hashes."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgarc.bench import baselines, compressai_pipeline as cai, datasets, phone
from imgarc.bench.coder_study import latent_symbol_count, sample_names, study_coders
from imgarc.bench.datasets import DatasetError, resolve_dataset
from imgarc.bench.methods import BenchConfig, phone_methods
from imgarc.bench.phone import make_phone_photo, phone_source
from imgarc.bench.runner import run_bench
from tests.conftest import TINY_MODEL_ID, image_bytes, noise_rgb
from tests.test_variable_rate import VR_MODEL_ID, export_tiny_vr_model


@pytest.fixture(scope="module")
def vr_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("vr-models")
    export_tiny_vr_model(folder)
    return folder


def test_sample_names_spread_over_the_set():
    names = [f"n{i:02d}" for i in range(24)]
    assert sample_names(names, 4) == ["n00", "n08", "n15", "n23"]
    assert sample_names(names, 1) == ["n12"]
    assert sample_names(names, 0) == []
    assert sample_names(names[:3], 10) == names[:3]


def test_latent_symbol_count():
    # 768x512 with N=128, M=192: z is 128 x 8 x 12, y is 192 x 32 x 48
    assert latent_symbol_count(128, 192, 768, 512) == 128 * 8 * 12 + 192 * 32 * 48
    assert latent_symbol_count(8, 8, 65, 64) == 8 * 1 * 2 + 8 * 4 * 8  # padded to 128 x 64


def test_coder_study_every_coder_exact_on_the_same_latents(tiny_model, tmp_path):
    from imgarc.codec.registry import load_codec

    for i, (h, w) in enumerate([(96, 80), (64, 130)]):
        (tmp_path / f"i{i}.png").write_bytes(image_bytes(noise_rgb(h, w, i), "PNG"))
    codec = load_codec(tiny_model)
    study = study_coders(codec, tmp_path, ["i0.png", "i1.png"], 90, ["arith", "rans", "lzma", "ref"])
    assert [im["name"] for im in study["images"]] == ["i0.png", "i1.png"]
    assert study["symbols"] == sum(latent_symbol_count(8, 8, w, h) for h, w in [(96, 80), (64, 130)])
    for name, t in study["totals"].items():
        assert t["exact"] and t["bytes"] > 0 and t["encode_cpu_s"] >= 0, name
    # rans and ref code the same symbols with the same tables: the same number of bytes
    assert study["totals"]["rans"]["bytes"] == study["totals"]["ref"]["bytes"]
    assert study["estimate_bits"] > 0 and all(im["estimate_bits"] > 0 for im in study["images"])


def _tensor(seed: int, h: int = 64, w: int = 128):
    return cai.to_tensor(noise_rgb(h, w, seed), 64)


def test_compressai_pipeline_is_model_compress_for_a_single_rate_model(tiny_model):
    from imgarc.codec.registry import load_codec

    codec = load_codec(tiny_model)
    model = codec.torch_model
    cai.update_tables(model)
    x = _tensor(1)
    ours = cai.compress(model, x)
    theirs = model.compress(x)
    assert ours.y_strings == theirs["strings"][0] and ours.z_strings == theirs["strings"][1]
    assert ours.bytes == sum(len(s) for strings in theirs["strings"] for s in strings)
    x_hat, symbols, _ = cai.decompress(model, ours)
    np.testing.assert_array_equal(symbols, ours.y_symbols)
    np.testing.assert_allclose(x_hat, model.decompress(theirs["strings"], theirs["shape"])["x_hat"].detach().numpy(), atol=1e-6)


def test_compressai_pipeline_gained_model_decodes_exactly_and_follows_quality(vr_dir, monkeypatch):
    from imgarc.codec.registry import load_codec

    monkeypatch.setenv("IMGARC_MODEL_PATH", str(vr_dir))
    codec = load_codec(VR_MODEL_ID)
    model = codec.torch_model
    digest = cai.update_tables(model)
    assert len(digest) == 64 and cai.update_tables(model) == digest  # same process, same tables
    x = _tensor(2)
    sizes = []
    for q in (10, 95):
        streams = cai.compress(model, x, codec.gains_for(q))
        _, symbols, z_hat = cai.decompress(model, streams, codec.gains_for(q))
        np.testing.assert_array_equal(symbols, streams.y_symbols)
        np.testing.assert_array_equal(z_hat, streams.z_hat)
        sizes.append(streams.bytes)
    assert sizes[0] < sizes[1]  # the gains are applied: a higher quality costs more bytes
    rgb = cai.to_rgb(np.zeros((1, 3, 64, 128), np.float32) + 0.5, 50, 100)
    assert rgb.shape == (50, 100, 3) and rgb.dtype == np.uint8 and int(rgb[0, 0, 0]) == 128


def test_phone_photo_crop_and_size(tmp_path):
    src = tmp_path / "wide.png"
    Image.fromarray(noise_rgb(100, 200, 1)).save(src)
    photo = make_phone_photo(src, tmp_path / "out" / "p.png", (80, 60))
    with Image.open(tmp_path / "out" / "p.png") as im:
        assert im.size == (80, 60) and im.mode == "RGB"
    assert photo.crop == [33, 0, 166, 100]  # 200x100 -> centre 133x100 (4:3)
    assert (photo.width, photo.height, photo.source_width, photo.source_height) == (80, 60, 200, 100)
    assert "Lanczos" in photo.how and "wide.png" in photo.how
    assert photo.sha256 == hashlib.sha256((tmp_path / "out" / "p.png").read_bytes()).hexdigest()
    tall = tmp_path / "tall.png"
    Image.fromarray(noise_rgb(90, 40, 2)).save(tall)
    photo = make_phone_photo(tall, tmp_path / "t.png", (80, 60))
    assert (photo.width, photo.height) == (60, 80) and photo.crop == [0, 18, 40, 71]  # portrait stays portrait


def test_phone_source_choice(tmp_path, monkeypatch):
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path / "nothing"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(phone, "MIN_AUTO_SOURCE_PIXELS", 1000)
    small, big = tmp_path / "small.png", tmp_path / "big.png"
    Image.fromarray(noise_rgb(20, 30, 1)).save(small)
    Image.fromarray(noise_rgb(40, 30, 2)).save(big)
    assert phone_source("none", [small, big], None) is None
    assert phone_source("auto", [small, big], tmp_path / "no-data") == big  # no CLIC here: the set's largest
    assert phone_source("auto", [small], tmp_path / "no-data") is None  # too small to make a phone photo of
    assert phone_source(str(small), [], None) == small
    with pytest.raises(DatasetError, match="no such image"):
        phone_source(str(tmp_path / "missing.png"), [], None)


def test_phone_methods_imgarc_and_each_codec_mid_grid():
    cfg = BenchConfig(coders=["rans", "lzma"], coder_qualities=[80], baselines=["7z", "jpeg", "heic"],
                      baseline_qualities={"jpeg": [10, 20, 30], "heic": [12, 50]})
    assert [(m.id, m.params["quality"]) for m in phone_methods(cfg)] == [
        ("phone-imgarc-rans-q80", 80), ("phone-jpeg-q20", 20), ("phone-heic-q50", 50)]


@pytest.mark.parametrize("name", ["heic", "jxl"])
def test_heic_and_jxl_encode_and_decode_through_their_plugins(name, tmp_path):
    codec = baselines.PILLOW_CODECS[name]
    assert codec.unavailable() is None, "pillow-heif and pillow-jxl-plugin are dependencies"
    assert codec.package in codec.version()
    rgb = noise_rgb(64, 96, 3)
    sizes = []
    for q in (min(codec.default_qualities), max(codec.default_qualities)):
        path = tmp_path / f"{q}{codec.suffix}"
        Image.fromarray(rgb).save(path, format=codec.pillow_format, **codec.options(q))
        with Image.open(path) as im:
            assert im.convert("RGB").size == (96, 64)
        sizes.append(path.stat().st_size)
    assert sizes[0] < sizes[1]


def test_missing_encoder_is_a_skipped_row_with_its_reason(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(image_bytes(noise_rgb(48, 64, 1), "PNG"))
    monkeypatch.setitem(baselines.PILLOW_CODECS, "heic", dataclasses.replace(
        baselines.PILLOW_CODECS["heic"], plugin="no_such_heif_plugin"))
    cfg = BenchConfig(coders=[], baselines=["heic", "jxl"], baseline_qualities={"heic": [30], "jxl": [45]}, jobs=1)
    result = run_bench(resolve_dataset(str(src)), cfg, "test", work_dir=tmp_path)
    heic, jxl = result.method("heic-q30"), result.method("jxl-q45")
    assert heic.status == "skipped" and "pillow-heif is not installed" in heic.reason
    assert jxl.ok and jxl.bytes > 0 and jxl.psnr_mean > 10 and jxl.extra["encoder"].startswith("pillow-jxl-plugin")
    assert result.coder_study is None and result.compressai is None and result.phone is None  # no imgarc coders


def test_clic_hashes_are_the_30_of_the_shared_folder_plus_one():
    assert "jacob-aguilar-friend-343.png" not in datasets.CLIC_SHA256  # not one of the 41
    assert len(datasets.CLIC_SHA256) == 31 and all(len(h) == 64 for h in datasets.CLIC_SHA256.values())
    assert datasets.CLIC_SHA256["zugr-108.png"].startswith("8dfb79901e62")


def test_clic_subset_is_found_and_called_biased(tmp_path, monkeypatch):
    files = {f"c{i}.png": image_bytes(noise_rgb(24, 32, i), "PNG") for i in range(3)}
    monkeypatch.setattr(datasets, "CLIC_SHA256", {n: hashlib.sha256(b).hexdigest() for n, b in files.items()})
    monkeypatch.delenv(datasets.ENV_VAR, raising=False)
    folder = tmp_path / "clic" / "professional_valid_30of41"
    folder.mkdir(parents=True)
    for n, b in files.items():
        (folder / n).write_bytes(b)
    d = resolve_dataset("clic", tmp_path, cache_dir=tmp_path / "cache", download=False)
    assert d.folder == folder and d.verified == 3
    assert "3 images of the 41" in d.note and "biased subset" in d.note and "largest" in d.note
    other = tmp_path / "o" / "clic" / "professional_valid_some"
    other.mkdir(parents=True)
    (other / "c0.png").write_bytes(files["c0.png"])
    d = resolve_dataset("clic", tmp_path / "o", cache_dir=tmp_path / "cache", download=False)
    assert "a subset; scores on it are not comparable" in d.note and "largest" not in d.note


@pytest.mark.slow
def test_studies_and_phone_rows_end_to_end(tiny_model, tmp_path):
    """The coder study, CompressAI's pipeline (decoded in two fresh processes) and the phone table in one run."""
    from imgarc.bench.report import markdown
    from imgarc.bench.results import result_from_json

    src = tmp_path / "src"
    src.mkdir()
    for i, (h, w) in enumerate([(96, 112), (80, 72), (64, 64)]):
        (src / f"p{i}.png").write_bytes(image_bytes(noise_rgb(h, w, i), "PNG"))
    cfg = BenchConfig(qualities=[90], coders=["rans"], coder_qualities=[90], model=TINY_MODEL_ID, baselines=["jpeg"],
                      baseline_qualities={"jpeg": [50]}, jobs=1, study_images=2, phone=str(src / "p0.png"),
                      phone_size=(160, 120))
    result = run_bench(resolve_dataset(str(src)), cfg, "test", work_dir=tmp_path)
    st = result.coder_study
    assert st["status"] == "ok" and st["sample_of"] == 3 and [im["name"] for im in st["images"]] == ["p0.png", "p2.png"]
    assert set(st["totals"]) == {"arith", "rans", "lzma", "ref"} and all(t["exact"] for t in st["totals"].values())
    assert st["folder_symbols"] > st["symbols"] and st["process"]["peak_rss_bytes"] > 1_000_000
    c = result.compressai
    assert c["status"] == "ok" and len(c["images"]) == 2 and all(im["bytes"] > 0 for im in c["images"])
    assert [d["capability"] for d in c["decodes"]] == [None, "default"]
    assert all(d["exact_images"] == 2 for d in c["decodes"])
    first = c["decodes"][0]["images"]
    assert all(r["max_diff_vs_imgarc"] <= 3 and abs(r["psnr"] - r["imgarc_psnr"]) < 0.5 for r in first)
    ph = result.phone
    assert ph.photo["width"] == 160 and [m.id for m in ph.methods] == ["phone-imgarc-rans-q90", "phone-jpeg-q50"]
    for m in ph.methods:
        assert m.ok and m.bytes > 0 and m.compress.peak_rss_bytes > 1_000_000 and m.psnr_mean > 0
        assert m.bpp == pytest.approx(m.bytes * 8 / (160 * 120))
    assert result_from_json(result.to_json()).to_json() == result.to_json()
    md = markdown(result, [])
    for words in ("## The per-symbol arithmetic coder that rans and lzma replace", "## CompressAI's own pipeline",
                  "## Time per phone photo (12 MP)", "ATEN_CPU_CAPABILITY=default", "speed-up over arith"):
        assert words in md
