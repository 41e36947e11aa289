"""One variable-rate model, many rates: gains in fixed point, quality monotone, --target-bpp."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import image_bytes, install_model, noise_rgb

VR_MODEL_ID = "tiny-vr"


def export_tiny_vr_model(folder: Path, seed: int = 0) -> str:
    """A random 3-point variable-rate model whose gains span a wide rate range."""
    import torch

    from imgarc.codec.architecture import Architecture, build_model

    torch.manual_seed(seed)
    arch = Architecture("mbt2018-mean", N=8, M=8, rate_points=3)
    model = build_model(arch)
    model.set_initial_gains(torch.tensor([0.25, 1.0, 4.0]))
    with torch.no_grad():
        model.gain.mul_(1 + 0.1 * torch.rand_like(model.gain))  # channels differ, as after training
        model.hyper_gain.copy_(torch.tensor([0.5, 1.0, 2.0])[:, None].expand_as(model.hyper_gain))
        model.hyper_inv_gain.copy_(1 / model.hyper_gain)
    return install_model(folder, model, arch, VR_MODEL_ID, "tiny variable-rate model")


@pytest.fixture(scope="module")
def vr_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("vr-models")
    export_tiny_vr_model(folder)
    return folder


@pytest.fixture
def vr_codec(vr_dir, monkeypatch):
    from imgarc.codec.registry import load_codec

    monkeypatch.setenv("IMGARC_MODEL_PATH", str(vr_dir))
    return load_codec(VR_MODEL_ID)


def _payload_size(codec, analysed, quality: int) -> int:
    from imgarc.codec.rate_control import code_at_quality
    from imgarc.coders import get_coder

    return len(code_at_quality(codec, get_coder("rans"), analysed, quality).payload)


def test_weights_carry_a_fixed_point_gain_table(vr_dir):
    from imgarc.codec.quality import GAIN_BITS, QUALITIES
    from imgarc.codec.weights import load_weights

    weights, _ = load_weights(vr_dir / f"{VR_MODEL_ID}.npz")
    gains = weights.tables.quality
    assert gains is not None and gains.gain.shape == (QUALITIES, 8) and gains.gain.dtype == np.int64
    # ends are the trained points; the latent gain grows with quality on every channel
    assert np.all(np.diff(gains.gain, axis=0) >= 0)
    assert gains.gain[0].max() < 0.3 * (1 << GAIN_BITS) * 1.1 and gains.gain[-1].min() > 4.0 * (1 << GAIN_BITS)


def test_altered_gain_table_is_refused_naming_the_model(vr_dir, tmp_path):
    from imgarc.codec.weights import load_weights
    from imgarc.errors import ModelError

    with np.load(vr_dir / f"{VR_MODEL_ID}.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["gains/gain"] = arrays["gains/gain"].copy()
    arrays["gains/gain"][40, 3] += 1
    bad = tmp_path / "bad.npz"
    np.savez_compressed(bad, **arrays)
    with pytest.raises(ModelError, match=VR_MODEL_ID):
        load_weights(bad)


def test_identity_gains_change_nothing_in_the_integer_hyper_synthesis(vr_codec):
    from imgarc.codec.quality import GAIN_BITS, QualityRow

    rng = np.random.default_rng(1)
    z = rng.integers(-6, 7, size=(8, 2, 3)).astype(np.int32)
    one_n, one_m = (np.full(c, 1 << GAIN_BITS, dtype=np.int64) for c in (8, 8))
    plain = vr_codec.tables.hyper.run(z)
    gained = vr_codec.tables.hyper.run(z, QualityRow(one_m, one_m, one_n, one_n))
    assert np.array_equal(plain[0], gained[0]) and np.array_equal(plain[1], gained[1])


def test_rate_is_monotone_in_quality(vr_codec):
    analysed = vr_codec.transform(noise_rgb(64, 128, 5))
    sizes = [_payload_size(vr_codec, analysed, q) for q in range(1, 101, 9)] + [_payload_size(vr_codec, analysed, 100)]
    assert sizes == sorted(sizes) and sizes[-1] > 2 * sizes[0], sizes


def test_target_bpp_picks_the_nearest_quality(vr_codec):
    from imgarc.codec.rate_control import code_at_target_bpp
    from imgarc.coders import get_coder

    analysed = vr_codec.transform(noise_rgb(64, 128, 6))
    pixels = 64 * 128
    bpps = {q: _payload_size(vr_codec, analysed, q) * 8 / pixels for q in range(1, 101)}
    target = (min(bpps.values()) + max(bpps.values())) / 2
    chosen = code_at_target_bpp(vr_codec, get_coder("rans"), analysed, pixels, target)
    best = min(abs(b - target) for b in bpps.values())
    assert abs(chosen.bpp(pixels) - target) == pytest.approx(best)
    # outside the model's range: the nearest end
    assert code_at_target_bpp(vr_codec, get_coder("rans"), analysed, pixels, 1e-4).quality == 1
    assert code_at_target_bpp(vr_codec, get_coder("rans"), analysed, pixels, 20.0).quality == 100


@pytest.mark.parametrize("coder", ["rans", "lzma", "ref"])
def test_archive_round_trip_at_several_qualities(vr_dir, tmp_path, monkeypatch, coder):
    from imgarc import api
    from imgarc.codec.registry import load_codec

    monkeypatch.setenv("IMGARC_MODEL_PATH", str(vr_dir))
    src = tmp_path / "src"
    src.mkdir()
    rgb = noise_rgb(72, 100, 7)
    (src / "p.png").write_bytes(image_bytes(rgb, "PNG"))
    codec = load_codec(VR_MODEL_ID)
    sizes = []
    for q in (5, 60, 100):
        archive = tmp_path / f"{coder}{q}.iarc"
        api.compress_folder(src, archive, quality=q, coder_name=coder, model_id=VR_MODEL_ID)
        (listing,) = api.list_archive(archive)
        assert listing.header.quality == q
        out = tmp_path / f"out{coder}{q}"
        api.extract_archive(archive, out)
        from PIL import Image

        decoded = np.asarray(Image.open(io.BytesIO((out / "p.png").read_bytes())))
        assert np.array_equal(decoded, codec.synthesize(codec.analyse(rgb, q), 72, 100))
        sizes.append(listing.header.payload_size)
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


@pytest.mark.slow
def test_cli_target_bpp_records_the_quality_it_chose(vr_dir, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        (src / f"{i}.png").write_bytes(image_bytes(noise_rgb(64, 96, 10 + i), "PNG"))
    env = dict(os.environ, IMGARC_MODEL_PATH=str(vr_dir))
    run = [sys.executable, "-m", "imgarc.cli"]
    r = subprocess.run(run + ["compress", str(src), str(tmp_path / "t.iarc"), "--target-bpp", "1.5", "--no-progress"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    bad = subprocess.run(run + ["compress", str(src), str(tmp_path / "u.iarc"), "--target-bpp", "-1"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "--target-bpp" in bad.stderr and "Traceback" not in bad.stderr
    from imgarc import api

    os.environ["IMGARC_MODEL_PATH"] = str(vr_dir)
    try:
        qualities = {e.header.quality for e in api.list_archive(tmp_path / "t.iarc")}
    finally:
        del os.environ["IMGARC_MODEL_PATH"]
    assert qualities and all(1 <= q <= 100 for q in qualities)


@pytest.mark.slow
def test_train_variable_rate_from_a_single_rate_model(tmp_path):
    """--lambdas trains one model with a gain vector per λ, seeded from single-rate weights."""
    from tests.conftest import export_tiny_model

    models = tmp_path / "models"
    export_tiny_model(models)
    data = tmp_path / "photos"
    data.mkdir()
    for i in range(2):
        (data / f"{i}.png").write_bytes(image_bytes(noise_rgb(80, 96, i), "PNG"))
    env = dict(os.environ, IMGARC_MODEL_PATH=str(models))
    r = subprocess.run([sys.executable, "-m", "imgarc.cli", "train", "--data", str(data), "--run-dir", str(tmp_path / "run"),
                        "--channels", "8,8", "--crop", "64", "--batch", "2", "--minutes", "0.05",
                        "--init", "tiny-test", "--lambda", "0.01", "--lambdas", "0.0025,0.01,0.04",
                        "--export", "tiny-vr-trained", "--export-dir", str(models)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    from imgarc.codec.weights import load_weights

    weights, sha = load_weights(models / "tiny-vr-trained.npz")
    assert weights.architecture.rate_points == 3 and weights.meta["lambdas"] == [0.0025, 0.01, 0.04]
    assert sha == hashlib.sha256((models / "tiny-vr-trained.npz").read_bytes()).hexdigest()
    # gains were seeded at sqrt(λ/λ_init): 0.5, 1, 2 (training for seconds barely moves them)
    g = weights.tables.quality.gain
    assert g[0].mean() < g[49].mean() < g[99].mean()


def test_a_variable_rate_default_serves_every_quality(vr_dir, monkeypatch):
    from imgarc.codec.registry import model_for_quality

    monkeypatch.setenv("IMGARC_MODEL_PATH", str(vr_dir))
    assert {model_for_quality(q).model_id for q in (1, 40, 100)} == {VR_MODEL_ID}
