"""`imgarc train` runs, checkpoints, resumes, and exports a model the archiver then uses."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from tests.conftest import image_bytes, noise_rgb


def run_train(args, env):
    r = subprocess.run([sys.executable, "-m", "imgarc.cli", "train", *args], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


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
