"""Latent refinement (`compress --refine`): the coder's own tables, a lower real loss, the same
decoder, tiles that do not depend on the cores, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import image_bytes, noise_rgb
from tests.test_variable_rate import VR_MODEL_ID, vr_dir  # noqa: F401 (fixture)

torch = pytest.importorskip("torch")


@pytest.fixture
def vr_codec(vr_dir, monkeypatch):  # noqa: F811
    from imgarc.codec.registry import load_codec

    monkeypatch.setenv("IMGARC_MODEL_PATH", str(vr_dir))
    return load_codec(VR_MODEL_ID)


def _table_bits(codec, code) -> float:
    """What the y and z symbols cost under the coder's integer tables (escapes aside)."""
    total = 0.0
    for tables, symbols, indexes in ((codec.tables.y, code.y_symbols, code.y_indexes),
                                     (codec.tables.z, code.z_symbols, codec.z_indexes(code.z_symbols.shape))):
        for k, s in zip(np.ravel(indexes), np.ravel(symbols)):
            freqs = tables.frequencies(int(k))
            total -= np.log2(freqs[int(np.clip(s - tables.offsets[k], 0, len(freqs) - 2))] / 65536)
    return total


def _real_loss(codec, code, rgb, quality) -> float:
    """bits per pixel under the coder's tables + λ·D of the decoded photo: what refinement lowers."""
    from imgarc.codec.rd_objective import ModelObjective

    h, w = rgb.shape[:2]
    decoded = codec.synthesize(code, h, w)
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None].float() / 255  # noqa: E731
    objective = ModelObjective.of(codec.weights)
    distortion = float(objective.distortion_of(as_tensor(decoded), as_tensor(rgb)))
    return _table_bits(codec, code) / (h * w) + objective.lmbda(quality) * distortion


def test_table_scales_are_the_scales_the_tables_were_built_from(vr_codec):
    from imgarc.codec.export import scale_table
    from imgarc.codec.refine import table_scales

    ratio = table_scales(vr_codec.tables.y) / scale_table()
    # The smallest scales' tables hold more than their Gaussian off zero (each symbol has a count).
    assert np.all(np.abs(ratio[8:] - 1) < 0.01) and np.all(np.abs(ratio[:8] - 1) < 0.15)


def test_gaussian_bits_are_the_tables_costs(vr_codec):
    from imgarc.codec.refine import gaussian_bits, table_scales

    tables = vr_codec.tables.y
    sigmas = table_scales(tables)
    for k in (10, 60, 120):
        freqs = tables.frequencies(k)
        reach = int(np.ceil(2 * sigmas[k]))  # the tails' counts are floored: the Gaussian holds within 2σ
        symbols = np.arange(-reach, reach + 1)
        exact = -np.log2(freqs[symbols - tables.offsets[k]] / 65536)
        estimate = gaussian_bits(torch.tensor(symbols, dtype=torch.float32), torch.tensor(sigmas[k])).numpy()
        assert np.all(np.abs(estimate - exact) <= 0.05 + 0.01 * exact), (k, estimate, exact)


def test_refinement_lowers_the_real_loss_and_keeps_the_tables(vr_codec):
    from imgarc.codec.refine import LatentRefiner

    rgb = noise_rgb(96, 128, 3)
    analysed = vr_codec.transform(rgb)
    for quality in (20, 80):
        base = vr_codec.quantize(analysed, quality)
        untouched = LatentRefiner(vr_codec, 0).refine(rgb, analysed, quality)
        np.testing.assert_array_equal(untouched.y_symbols, base.y_symbols)  # step 0 is g_a's answer
        refiner = LatentRefiner(vr_codec, 20, learning_rate=0.2)
        # In float32: a random model's loss is nearly all distortion, which bf16 estimates (where the CPU
        # has it) more coarsely than these small moves; the benchmark measures bf16 on the shipped model.
        refiner.bf16 = False
        refined = refiner.refine(rgb, analysed, quality)
        np.testing.assert_array_equal(refined.z_symbols, base.z_symbols)
        np.testing.assert_array_equal(refined.y_indexes, base.y_indexes)
        np.testing.assert_array_equal(refined.y_means, base.y_means)
        assert (refined.y_symbols != base.y_symbols).any()
        assert _real_loss(vr_codec, refined, rgb, quality) < _real_loss(vr_codec, base, rgb, quality)


def test_tiled_refinement_does_not_depend_on_the_cores(vr_codec, monkeypatch):
    import imgarc.codec.refine as refine

    rgb = noise_rgb(600, 900, 4)  # 38x57 latents: over the whole-photo limit, cut into tiles
    assert not refine.REFINE_TILES.fits_whole(*vr_codec.transform(rgb).y.shape[1:])
    analysed = vr_codec.transform(rgb)
    results = []
    for cores in (1, 2):
        monkeypatch.setattr(refine, "usable_cores", lambda cores=cores: cores)
        results.append(refine.LatentRefiner(vr_codec, 8, learning_rate=0.1).refine(rgb, analysed, 95).y_symbols)
    np.testing.assert_array_equal(results[0], results[1])
    assert (results[0] != vr_codec.quantize(analysed, 95).y_symbols).any()


def test_cli_refine_round_trip_and_errors(vr_dir, tmp_path):  # noqa: F811
    src = tmp_path / "src"
    src.mkdir()
    rgb = noise_rgb(80, 112, 5)
    (src / "p.png").write_bytes(image_bytes(rgb, "PNG"))
    env = dict(os.environ, IMGARC_MODEL_PATH=str(vr_dir))
    cli = [sys.executable, "-m", "imgarc.cli"]

    def run(*args):
        return subprocess.run(cli + list(args), capture_output=True, text=True, env=env, timeout=300)

    for name, refine in (("plain", "0"), ("refined", "200")):
        r = run("compress", str(src), str(tmp_path / f"{name}.iarc"), "-q", "100", "--refine", refine, "--no-progress")
        assert r.returncode == 0, r.stderr
        x = run("extract", str(tmp_path / f"{name}.iarc"), str(tmp_path / name))
        assert x.returncode == 0, x.stderr
        assert run("verify", str(tmp_path / f"{name}.iarc")).returncode == 0
    # The same decoder reads both: the refined entry differs only in its symbols.
    assert (tmp_path / "plain.iarc").read_bytes() != (tmp_path / "refined.iarc").read_bytes()
    bad = run("compress", str(src), str(tmp_path / "bad.iarc"), "--refine", "-3")
    assert bad.returncode == 2 and "--refine" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "bad.iarc").exists()


def test_refine_without_the_training_extra_is_one_clear_line(monkeypatch):
    import imgarc.extras
    from imgarc import api
    from imgarc.errors import MissingExtraError

    monkeypatch.setattr(imgarc.extras, "installed", lambda module: module != "pytorch_msssim")
    with pytest.raises(MissingExtraError, match=r"--refine needs pytorch_msssim.*imgarc\[train\]"):
        api.CompressOptions(refine_steps=10)
    api.CompressOptions(refine_steps=0)  # without --refine, nothing is asked of the extra


def test_bench_plans_and_runs_a_refined_series(tiny_model_dir, tmp_path, monkeypatch):
    from imgarc.bench.command import BenchOptions, build_config
    from imgarc.bench.datasets import resolve_dataset
    from imgarc.bench.methods import BenchConfig, plan_methods
    from imgarc.bench.runner import run_bench
    from imgarc.errors import UsageError
    from tests.conftest import TINY_MODEL_ID

    planned = plan_methods(BenchConfig(qualities=[10, 50], coders=["rans", "lzma"], coder_qualities=[50], baselines=[],
                                       refine_steps=30))
    assert [m.id for m in planned] == ["imgarc-rans-q10", "imgarc-rans-q50", "imgarc-lzma-q50",
                                       "imgarc-rans-refine30-q10", "imgarc-rans-refine30-q50"]
    assert {m.params["series"] for m in planned[3:]} == {"imgarc rans --refine 30"}
    with pytest.raises(UsageError, match="--refine"):
        build_config(BenchOptions("kodak", refine=-1))

    src = tmp_path / "photos"
    src.mkdir()
    (src / "a.png").write_bytes(image_bytes(noise_rgb(96, 80, 6), "PNG"))
    monkeypatch.setenv("IMGARC_MODEL_PATH", str(tiny_model_dir))
    config = BenchConfig(qualities=[90], coders=["rans"], coder_qualities=[90], model=TINY_MODEL_ID, baselines=[],
                         jobs=1, study_images=0, compressai_pipeline=False, refine_steps=3)
    result = run_bench(resolve_dataset(str(src)), config, "imgarc bench (test)", work_dir=tmp_path)
    refined = result.method("imgarc-rans-refine3-q90")
    assert refined.status == "ok", refined.reason
    assert refined.extra["entry_qualities"] == [90] and refined.images[0].psnr > 0
    assert refined.compress.seconds > 0 and refined.bytes > 0


def test_refined_archives_do_not_depend_on_the_pool(vr_dir, tmp_path, monkeypatch):  # noqa: F811
    """Photos are refined side by side on the pool's threads, each on one intra-op thread: with 1 and
    2 workers the archive is byte-identical (and differs from the unrefined one)."""
    import imgarc.codec.refine as refine
    from imgarc import api, ordered_pool

    monkeypatch.setenv("IMGARC_MODEL_PATH", str(vr_dir))
    src = tmp_path / "src"
    src.mkdir()
    for k in range(3):
        (src / f"p{k}.png").write_bytes(image_bytes(noise_rgb(64 + 16 * k, 96, 20 + k), "PNG"))
    archives = {}
    for workers, steps in ((1, 150), (2, 150), (2, 0)):
        monkeypatch.setattr(ordered_pool, "usable_cores", lambda workers=workers: workers)
        monkeypatch.setattr(refine, "usable_cores", lambda workers=workers: workers)
        archive = tmp_path / f"a-{workers}-{steps}.iarc"
        api.Compressor(api.CompressOptions(quality=100, model_id=VR_MODEL_ID, refine_steps=steps)).compress_folder(src, archive)
        archives[workers, steps] = archive.read_bytes()
    assert archives[1, 150] == archives[2, 150]
    assert archives[2, 150] != archives[2, 0]
