"""`imgarc bench` end to end on two synthetic photos with the tiny model, and its clean errors."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgarc.bench import baselines
from imgarc.bench.datasets import resolve_dataset
from imgarc.bench.methods import BenchConfig, parse_int_list, plan_methods
from imgarc.bench.plots import write_plots
from imgarc.bench.process import run_measured
from imgarc.bench.report import write_report
from imgarc.bench.results import MethodResult, result_from_json
from imgarc.bench.runner import run_bench
from imgarc.errors import UsageError
from tests.conftest import TINY_MODEL_ID, image_bytes, noise_rgb

HAVE_7Z = baselines.ARCHIVERS["7z"].binary() is not None


def config(**kw) -> BenchConfig:
    # The coder study, CompressAI's pipeline and the phone photo: tests/test_bench_studies.py.
    base = dict(qualities=[90], coders=["rans", "lzma"], coder_qualities=[90], model=TINY_MODEL_ID,
                baselines=["7z", "tar", "jpeg", "webp", "avif", "heic", "jxl"],
                baseline_qualities={"jpeg": [10, 40, 70, 90], "webp": [30], "avif": [40], "heic": [30], "jxl": [45]},
                jobs=1, study_images=0)
    base.update(kw)
    return BenchConfig(**base)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("photos")
    (src / "a.png").write_bytes(image_bytes(noise_rgb(192, 176, 1), "PNG"))
    (src / "sub").mkdir()
    (src / "sub" / "b.png").write_bytes(image_bytes(noise_rgb(168, 200, 2), "PNG"))
    return src


@pytest.fixture(scope="module")
def first_run(photos, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMGARC_MODEL_PATH", str(tiny_model_dir))
        steps: list[tuple[int, int, str]] = []
        result = run_bench(resolve_dataset(str(photos)), config(), "imgarc bench (test)", work_dir=out,
                           progress=lambda d, t, label: steps.append((d, t, label)))
    plots = write_plots(result, out)
    write_report(result, out, plots)
    return result, out, steps


@pytest.mark.slow
def test_every_method_ran_and_was_measured(first_run):
    result, out, steps = first_run
    ids = [m.id for m in result.methods]
    assert ids == ["imgarc-rans-q90", "imgarc-lzma-q90", "7z", "7z-mx9", "tar", "tar-xz",
                   "jpeg-q10", "jpeg-q40", "jpeg-q70", "jpeg-q90", "webp-q30", "avif-q40", "heic-q30", "jxl-q45"]
    for m in result.methods:
        if m.family == "7z" and not HAVE_7Z:
            assert m.status == "skipped" and "7zz" in m.reason
            continue
        assert m.status == "ok", (m.id, m.reason)
        assert m.bytes > 0 and m.ratio == pytest.approx(result.dataset.source_bytes / m.bytes)
        assert m.bpp == pytest.approx(m.bytes * 8 / (192 * 176 + 168 * 200))
        assert m.compress.seconds > 0 and m.decompress.seconds > 0
        assert m.compress.peak_rss_bytes > 1_000_000
        assert len(m.images) == 2 and [im.name for im in m.images] == ["a.png", "sub/b.png"]
    assert not list(out.glob("imgarc-bench-*")), "the work folder is removed"
    assert steps[-1][0] == steps[-1][1]  # the progress bar ends full


@pytest.mark.slow
def test_imgarc_rows(first_run):
    result, _, _ = first_run
    rans, lzma = result.method("imgarc-rans-q90"), result.method("imgarc-lzma-q90")
    assert rans.extra["models"] == [TINY_MODEL_ID] and rans.extra["entry_qualities"] == [90]
    # Same latents, other coder: the same pixels, so the same quality, other bytes.
    assert (rans.psnr_mean, rans.ms_ssim_mean) == (lzma.psnr_mean, lzma.ms_ssim_mean)
    assert rans.bytes != lzma.bytes
    for m in (rans, lzma):
        assert all(im.bytes and im.psnr and 0 < im.ms_ssim <= 1 for im in m.images)
        assert m.bpp_mean == pytest.approx(sum(im.bytes * 8 / im.pixels for im in m.images) / 2)
        for step in (m.compress, m.decompress):
            assert set(step.split) == {"model", "coder", "other", "startup"}
            assert sum(step.split.values()) == pytest.approx(step.seconds, rel=1e-6, abs=1e-6)


@pytest.mark.slow
def test_codec_and_archiver_rows(first_run):
    result, _, _ = first_run
    jpeg = [result.method(f"jpeg-q{q}") for q in (10, 40, 70, 90)]
    assert [m.bytes for m in jpeg] == sorted(m.bytes for m in jpeg)  # more quality, more bytes
    assert jpeg[0].psnr_mean < jpeg[-1].psnr_mean and jpeg[0].ms_ssim_mean < jpeg[-1].ms_ssim_mean
    for m in jpeg:
        assert m.bytes == sum(im.bytes for im in m.images) and set(m.compress.split) == {"work", "startup"}
    for mid in ("tar", "tar-xz") + (("7z", "7z-mx9") if HAVE_7Z else ()):
        m = result.method(mid)
        assert m.lossless and m.identical_images == 2 and m.psnr_mean is None and m.ms_ssim_mean == 1.0
        assert m.extra["version"] != "unknown"
    assert result.method("tar").bytes % 10240 == 0  # a real tar: whole records
    # BD-rate needs curves: imgarc has one point here, so every pair says why it is missing.
    assert result.bd_rates and all(r["cubic"] is None and "at least 4" in r["note"] for r in result.bd_rates)


@pytest.mark.slow
def test_written_outputs(first_run):
    result, out, _ = first_run
    doc = json.loads((out / "results.json").read_text())
    assert doc["schema"] == "imgarc-bench/1" and doc["dataset"]["images"] == 2
    assert doc["command"] == "imgarc bench (test)" and doc["machine"]["cores"] == os.cpu_count()
    assert result_from_json(doc).to_json() == doc  # reports can be redrawn from the JSON alone
    keys = {k for m in doc["methods"] for k in m}
    assert all(set(m) == keys for m in doc["methods"]), "one schema for every method"
    assert {"bytes", "ratio", "bpp", "bpp_mean", "psnr_mean", "ms_ssim_mean", "compress", "decompress"} <= keys
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == [m.id for m in result.methods]
    assert float(rows[0]["bpp_mean"]) == pytest.approx(result.methods[0].bpp_mean)
    md = (out / "report.md").read_text()
    assert "| technique | avg bpp | avg MS-SSIM | avg PSNR (dB) | total time (s) |" in md
    assert "| technique | size | ratio |" in md and "2 images" in md and "imgarc bench (test)" in md
    for name in ("rd_psnr.png", "rd_msssim.png", "bubble_ratio_msssim.png"):
        assert f"]({name})" in md
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.size[0] >= 800
            assert len(np.unique(np.asarray(im.convert("L")))) > 20, f"{name} is blank"


@pytest.mark.slow
def test_rerun_same_numbers_missing_binary_skipped_failing_binary_failed(first_run, photos, tiny_model_dir,
                                                                        monkeypatch, tmp_path):
    first, _, _ = first_run
    monkeypatch.setenv("IMGARC_MODEL_PATH", str(tiny_model_dir))
    monkeypatch.setitem(baselines.ARCHIVERS, "7z", dataclasses.replace(baselines.ARCHIVERS["7z"], binaries=("no-such-7zz",)))
    monkeypatch.setitem(baselines.ARCHIVERS, "tar", dataclasses.replace(baselines.ARCHIVERS["tar"], binaries=("false",)))
    monkeypatch.chdir(tmp_path)  # a relative work folder, as `--out benchmarks/...` gives
    Path("relative-out").mkdir()
    again = run_bench(resolve_dataset(str(photos)), config(coders=["rans"], baselines=["7z", "tar", "jpeg"], jobs=2),
                      "again", work_dir=Path("relative-out"))
    assert again.method("7z").status == "skipped" and "no-such-7zz" in again.method("7z").reason
    assert again.method("tar").status == "failed" and again.method("tar").reason.startswith("compress failed: exit 1")
    compared = [m.id for m in again.methods if m.ok]
    assert "imgarc-rans-q90" in compared and "jpeg-q40" in compared and "tar-xz" in compared
    for mid in compared:
        a, b = first.method(mid), again.method(mid)
        assert (a.bytes, a.bpp, a.bpp_mean, a.psnr_mean, a.ms_ssim_mean) == (b.bytes, b.bpp, b.bpp_mean, b.psnr_mean, b.ms_ssim_mean), mid
        assert [(i.bytes, i.psnr, i.ms_ssim) for i in a.images] == [(i.bytes, i.psnr, i.ms_ssim) for i in b.images]


def test_plan_and_option_parsing():
    ids = [m.id for m in plan_methods(BenchConfig(qualities=[10, 50], coders=["rans", "ref"], coder_qualities=[75],
                                                  baselines=["tar", "webp"], baseline_qualities={"webp": [20]}))]
    assert ids == ["imgarc-rans-q10", "imgarc-rans-q50", "imgarc-ref-q75", "tar", "tar-xz", "webp-q20"]
    ids = [m.id for m in plan_methods(BenchConfig(qualities=[10, 50], coders=["rans", "lzma"], coder_qualities=None, baselines=[]))]
    assert ids == ["imgarc-rans-q10", "imgarc-rans-q50", "imgarc-lzma-q10", "imgarc-lzma-q50"]
    assert parse_int_list("50, 10,50", "--qualities") == [10, 50]
    for bad in ("0,50", "ten", ""):
        with pytest.raises(UsageError, match="--qualities"):
            parse_int_list(bad, "--qualities")


def test_run_measured_reports_exit_code_output_and_memory():
    m = run_measured([sys.executable, "-c", "import sys; b = bytearray(60_000_000); print('hi'); sys.exit(3)"])
    assert m.returncode == 3 and m.stdout.strip() == "hi" and m.peak_rss_bytes > 60_000_000
    small = run_measured(["true"])
    assert small.ok and small.peak_rss_bytes < 20_000_000  # not the test process's own memory
    assert "cannot run" in run_measured(["no-such-binary-here"]).failure()


IMGARC = [sys.executable, "-m", "imgarc.cli"]


@pytest.mark.parametrize("args, words", [
    (["kodak", "--qualities", "0,50"], "--qualities values must be between 1 and 100"),
    (["kodak", "--coders", "rans,zip"], "unknown 'zip'"),
    # these get past option parsing into the run's start-up (~2 s each)
    pytest.param(["kodak", "--no-download"], "was not found", marks=pytest.mark.slow),
    pytest.param(["nowhere/at/all"], "neither 'kodak', 'clic' nor a folder", marks=pytest.mark.slow),
    pytest.param(["kodak", "--model", "no-such-model"], "'no-such-model' is not installed", marks=pytest.mark.slow),
])
def test_bench_bad_input_is_one_clean_line(args, words, tmp_path):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), IMGARC_DATA=str(tmp_path))
    r = subprocess.run(IMGARC + ["bench", *args, "--data", str(tmp_path), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, env=env, timeout=120)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode != 0 and "Traceback" not in r.stderr + r.stdout
    assert len(lines) == 1 and lines[0].startswith("imgarc: error:") and words in lines[0], r.stderr


def _row(mid, family, coder, q, bpp, psnr_db, ms):
    from imgarc.bench.results import MethodResult

    params = {"quality": q, "coder": coder} if coder else {"quality": q}
    label = f"imgarc {coder} q{q}" if coder else f"{family.upper()} q{q}"
    return MethodResult(mid, family, label, params, False, "ok", bpp_mean=bpp, psnr_mean=psnr_db, ms_ssim_mean=ms)


def test_bd_rate_table_and_its_markdown():
    from imgarc.bench.bdrate import bd_rate, ms_ssim_db
    from imgarc.bench.curves import bd_rate_table
    from imgarc.bench.report import bd_table

    q = [10, 30, 50, 70]
    bpp = [0.2, 0.4, 0.7, 1.1]
    psnr_db = [27.0, 29.5, 31.8, 33.9]
    ms = [0.93, 0.96, 0.975, 0.985]
    rows = [_row(f"imgarc-rans-q{x}", "imgarc", "rans", x, b * 0.8, p, m) for x, b, p, m in zip(q, bpp, psnr_db, ms)]
    rows += [_row(f"jpeg-q{x}", "jpeg", None, x, b, p, m) for x, b, p, m in zip(q, bpp, psnr_db, ms)]
    rows.append(_row("imgarc-lzma-q75", "imgarc", "lzma", 75, 0.9, 32.0, 0.98))  # one point: no curve
    table = bd_rate_table(rows)
    got = {(r["test"], r["anchor"], r["quality"]): r for r in table}
    assert got[("imgarc rans", "JPEG", "psnr")]["cubic"] == pytest.approx(-20.0, abs=1e-9)
    assert got[("imgarc rans", "JPEG", "ms_ssim_db")]["pchip"] == pytest.approx(
        bd_rate([b * 0.8 for b in bpp], [ms_ssim_db(m) for m in ms], bpp, [ms_ssim_db(m) for m in ms], "pchip"))
    assert got[("imgarc lzma", "JPEG", "psnr")]["cubic"] is None

    class Result:
        bd_rates = table

    md = "\n".join(bd_table(Result()))
    assert "| imgarc rans | JPEG | PSNR | -20.0 % | -20.0 % |" in md
    assert "imgarc lzma: no BD-rate against any codec (needs at least 4 points" in md


def test_bd_matrix_has_a_psnr_and_an_ms_ssim_column_per_codec():
    from imgarc.bench.curves import bd_rate_table
    from imgarc.bench.report import bd_matrix

    q, bpp, psnr_db, ms = [10, 30, 50, 70], [0.2, 0.4, 0.7, 1.1], [27.0, 29.5, 31.8, 33.9], [0.93, 0.96, 0.975, 0.985]
    rows = [_row(f"imgarc-rans-q{x}", "imgarc", "rans", x, b * 0.8, p, m) for x, b, p, m in zip(q, bpp, psnr_db, ms)]
    for family, label, factor in (("jpeg", "JPEG", 1.0), ("heic", "HEIC", 0.8), ("jxl", "JPEG XL", 0.5)):
        rows += [MethodResult(f"{family}-q{x}", family, f"{label} q{x}", {"quality": x}, False, "ok", bpp_mean=b * factor,
                              psnr_mean=p, ms_ssim_mean=m) for x, b, p, m in zip(q, bpp, psnr_db, ms)]

    class Result:
        bd_rates = bd_rate_table(rows)

    lines = bd_matrix(Result())
    assert lines[0] == ("| imgarc curve | vs JPEG (PSNR) | vs JPEG (MS-SSIM) | vs HEIC (PSNR) | vs HEIC (MS-SSIM) "
                        "| vs JPEG XL (PSNR) | vs JPEG XL (MS-SSIM) |")
    assert lines[2] == "| imgarc rans | -20.0 % | -20.0 % | +0.0 % | +0.0 % | +60.0 % | +60.0 % |"
