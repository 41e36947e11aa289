"""`imgarc train` runs, checkpoints, resumes, and exports a model the archiver then uses."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import image_bytes, noise_rgb


def run_train(args, env):
    r = subprocess.run([sys.executable, "-m", "imgarc.cli", "train", *args], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.slow
def test_train_checkpoint_resume_export(tmp_path):
    data = tmp_path / "photos"
    data.mkdir()
    for i in range(3):
        (data / f"{i}.png").write_bytes(image_bytes(noise_rgb(80, 96, i), "PNG"))
    run_dir, models = tmp_path / "run", tmp_path / "models"
    env = dict(os.environ, IMGARC_MODEL_PATH=str(models))
    common = ["--data", str(data), "--run-dir", str(run_dir), "--channels", "8,8", "--crop", "64", "--batch", "2",
              "--minutes", "0.05"]
    run_train(common, env)
    first = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    assert first["step"] > 0
    out = run_train(common + ["--export", "tiny-trained", "--export-dir", str(models), "--quality", "40"], env)
    second = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    assert second["step"] > first["step"] and second["seconds"] > first["seconds"]  # resumed, not restarted
    assert "exported tiny-trained" in out
    # the exported model is installed and codes a photo end to end
    from imgarc import api

    os.environ["IMGARC_MODEL_PATH"] = str(models)
    try:
        src = tmp_path / "src"
        src.mkdir()
        (src / "p.png").write_bytes(image_bytes(noise_rgb(64, 64, 9), "PNG"))
        summary = api.compress_folder(src, tmp_path / "a.iarc", quality=40)
        assert summary.entries[0].kind == "image"
        api.extract_archive(tmp_path / "a.iarc", tmp_path / "out")
        assert (tmp_path / "out" / "p.png").exists()
    finally:
        del os.environ["IMGARC_MODEL_PATH"]
    # a new run can start from the exported weights alone (checkpoint lost with a machine)
    fresh = common[:2] + ["--run-dir", str(tmp_path / "run2")] + common[4:] + ["--init", "tiny-trained"]
    run_train(fresh, env)
    assert (tmp_path / "run2" / "checkpoint.pt").exists()


@pytest.mark.slow
def test_msssim_training_exports_a_model_that_tune_msssim_picks(tmp_path, monkeypatch):
    """--distortion msssim trains on 1 − MS-SSIM; the export is recorded as tuned for msssim, and
    `compress --tune msssim` (not the default model) codes with it."""
    data = tmp_path / "photos"
    data.mkdir()
    (data / "0.png").write_bytes(image_bytes(noise_rgb(200, 200, 3), "PNG"))
    models = tmp_path / "models"
    env = dict(os.environ, IMGARC_MODEL_PATH=str(models))
    out = run_train(["--data", str(data), "--run-dir", str(tmp_path / "run"), "--channels", "8,8", "--crop", "192",
                     "--batch", "1", "--minutes", "0.03", "--distortion", "msssim", "--lambda", "8.73",
                     "--export", "tiny-msssim", "--export-dir", str(models)], env)
    assert "exported tiny-msssim" in out
    from tests.conftest import export_tiny_model

    export_tiny_model(models, model_id="tiny-psnr")  # becomes the catalog's default
    catalog = json.loads((models / "models.json").read_text())
    catalog["tune_defaults"] = {"msssim": "tiny-msssim"}  # else the shipped catalog's msssim choice wins
    (models / "models.json").write_text(json.dumps(catalog))
    monkeypatch.setenv("IMGARC_MODEL_PATH", str(models))
    from imgarc import api
    from imgarc.codec.registry import find_model, model_for_quality

    assert find_model("tiny-msssim").tune == "msssim"
    assert model_for_quality(75).model_id == "tiny-psnr"
    assert model_for_quality(75, "msssim").model_id == "tiny-msssim"
    src = tmp_path / "src"
    src.mkdir()
    (src / "p.png").write_bytes(image_bytes(noise_rgb(64, 64, 9), "PNG"))
    api.compress_folder(src, tmp_path / "a.iarc", quality=75, tune="msssim")
    assert [e.header.model_id for e in api.list_archive(tmp_path / "a.iarc")] == ["tiny-msssim"]


@pytest.mark.slow
@pytest.mark.parametrize("distortion", ["msssim", "mixed"])
def test_msssim_training_refuses_crops_too_small_for_five_scales(tmp_path, distortion):
    r = subprocess.run([sys.executable, "-m", "imgarc.cli", "train", "--data", str(tmp_path), "--run-dir", str(tmp_path / "r"),
                        "--distortion", distortion, "--crop", "128"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "--crop 192" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_mixed_training_records_its_share_and_is_filed_under_the_larger_one(tmp_path):
    """--distortion mixed trains on both metrics with the MSE λs; the export records the share,
    and a model with more MS-SSIM than MSE in its loss is listed as tuned for msssim."""
    from imgarc.codec.weights import load_weights

    data = tmp_path / "photos"
    data.mkdir()
    (data / "0.png").write_bytes(image_bytes(noise_rgb(200, 200, 4), "PNG"))
    models = tmp_path / "models"
    env = dict(os.environ, IMGARC_MODEL_PATH=str(models))
    for share, model_id in (("0.7", "tiny-mostly-msssim"), ("0.2", "tiny-mostly-mse")):
        out = run_train(["--data", str(data), "--run-dir", str(tmp_path / model_id), "--channels", "8,8", "--crop", "192",
                         "--batch", "1", "--minutes", "0.03", "--distortion", "mixed", "--msssim-share", share,
                         "--lambda", "0.013", "--export", model_id, "--export-dir", str(models)], env)
        assert f"exported {model_id}" in out
        assert load_weights(models / f"{model_id}.npz")[0].meta["msssim_share"] == float(share)
    tunes = {m["id"]: m.get("tune", "psnr") for m in json.loads((models / "models.json").read_text())["models"]}
    assert tunes == {"tiny-mostly-msssim": "msssim", "tiny-mostly-mse": "psnr"}


def test_tune_picks_the_catalogs_choice(tmp_path, monkeypatch):
    """`tune_defaults` in models.json names the model --tune picks; the default stays the default."""
    from tests.conftest import export_tiny_model

    models = tmp_path / "models"
    for model_id in ("tiny-a", "tiny-b", "tiny-c"):
        export_tiny_model(models, model_id=model_id)
    doc = json.loads((models / "models.json").read_text())
    for m in doc["models"]:
        if m["id"] != "tiny-a":
            m["tune"] = "msssim"
    doc["default"], doc["tune_defaults"] = "tiny-a", {"msssim": "tiny-b"}
    (models / "models.json").write_text(json.dumps(doc))
    monkeypatch.setenv("IMGARC_MODEL_PATH", str(models))
    from imgarc.codec.registry import model_for_quality
    from imgarc.errors import ModelError

    assert model_for_quality(50).model_id == "tiny-a"
    assert model_for_quality(50, "psnr").model_id == "tiny-a"
    assert model_for_quality(50, "msssim").model_id == "tiny-b"
    with pytest.raises(ModelError, match="--tune must be one of psnr, msssim"):
        model_for_quality(50, "ssim")


@pytest.mark.slow
def test_a_slim_checkpoint_resumes_training_without_nans(tmp_path):
    """The weights-only fp16 checkpoint that moves a run off a lent GPU keeps the tiny buffers
    exact (fp16 would zero GDN's pedestal and the likelihood floor) and resumes, variable rate too."""
    from imgarc.train.trainer import slim_checkpoint

    data = tmp_path / "photos"
    data.mkdir()
    for i in range(2):
        (data / f"{i}.png").write_bytes(image_bytes(noise_rgb(80, 96, i), "PNG"))
    run_dir, moved = tmp_path / "gpu", tmp_path / "here"
    common = ["--data", str(data), "--channels", "8,8", "--crop", "64", "--batch", "2", "--minutes", "0.05",
              "--lambdas", "0.005,0.05"]
    run_train(common + ["--run-dir", str(run_dir)], dict(os.environ))
    moved.mkdir()
    slim_checkpoint(run_dir / "checkpoint.pt", moved / "checkpoint.pt")
    full = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    slim = torch.load(moved / "checkpoint.pt", weights_only=False)
    assert "opt" not in slim and slim["step"] == full["step"]
    assert slim["model"]["g_a.0.weight"].dtype == torch.float16
    assert slim["model"]["g_a.1.beta_reparam.pedestal"] == full["model"]["g_a.1.beta_reparam.pedestal"] > 0
    assert (moved / "checkpoint.pt").stat().st_size < (run_dir / "checkpoint.pt").stat().st_size / 3
    run_train(common + ["--run-dir", str(moved)], dict(os.environ))
    resumed = torch.load(moved / "checkpoint.pt", weights_only=False)
    assert resumed["step"] > full["step"] and "opt" in resumed
    assert all(torch.isfinite(v).all() for v in resumed["model"].values() if v.is_floating_point())


@pytest.mark.slow
def test_a_diverging_run_stops_with_one_line_and_keeps_the_good_checkpoint(tmp_path):
    data = tmp_path / "photos"
    data.mkdir()
    (data / "0.png").write_bytes(image_bytes(noise_rgb(80, 96, 0), "PNG"))
    run_dir = tmp_path / "run"
    common = ["--data", str(data), "--run-dir", str(run_dir), "--channels", "8,8", "--crop", "64", "--batch", "2",
              "--minutes", "0.03"]
    run_train(common, dict(os.environ))
    good = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    r = subprocess.run([sys.executable, "-m", "imgarc.cli", "train", *common, "--lr", "1e12"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "training diverged" in r.stderr + r.stdout
    kept = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    assert kept["step"] == good["step"]
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())
