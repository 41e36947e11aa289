"""The training plan for short, irregular GPU calls: scale-jittered crops, bf16 transforms, the
data split and seed that travel (scripts/gpu_prepare.py), and one call's chain
(scripts/gpu_train.sh) dry-run on the CPU."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from imgarc.codec.architecture import MEAN_SCALE, Architecture, build_model
from imgarc.train.crops import CropSampler
from imgarc.train.trainer import bf16_transforms
from tests.conftest import image_bytes, noise_rgb

REPO = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("gpu_prepare", REPO / "scripts" / "gpu_prepare.py")
gpu_prepare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_prepare)


def ramp_photo(h: int, w: int) -> np.ndarray:
    """Pixel value = column // 3: a crop's horizontal spread tells the scale it was cut at."""
    return np.repeat(np.repeat((np.arange(w) // 3).astype(np.uint8)[None, :, None], h, 0), 3, 2)


def spreads(crops: np.ndarray) -> np.ndarray:
    return crops[:, :, :, 0].max(axis=(1, 2)).astype(int) - crops[:, :, :, 0].min(axis=(1, 2))


def test_scale_jitter_cuts_larger_squares_and_scales_them_down():
    photo = ramp_photo(400, 600)
    plain = CropSampler([photo], 32, seed=1).batch(64)
    jittered = CropSampler([photo], 32, seed=1, scale_jitter=4.0).batch(64)
    assert plain.shape == jittered.shape == (64, 32, 32, 3) and jittered.dtype == np.uint8
    assert spreads(plain).max() <= 31 // 3 + 1
    assert spreads(jittered).max() > 25  # some crops come from squares over twice the side
    assert spreads(jittered).max() <= 4 * 32 // 3 + 2  # never from more than 4 times
    # A photo too small for the largest scale gives crops up to its own size, no error.
    small = CropSampler([ramp_photo(40, 40)], 32, seed=2, scale_jitter=4.0).batch(16)
    assert small.shape == (16, 32, 32, 3) and spreads(small).max() <= 40 // 3 + 1


def test_bf16_transforms_run_only_the_transforms_in_bf16():
    torch.manual_seed(0)
    model = build_model(Architecture(MEAN_SCALE, 8, 8))
    keys = list(model.state_dict())
    bf16_transforms(model, "cpu")
    seen = {}
    for name in ("g_a", "g_s", "h_s"):
        getattr(model, name)[0].register_forward_hook(lambda m, inputs, out, name=name: seen.update({name: out.dtype}))
    out = model(torch.rand(1, 3, 64, 64))
    assert seen == {"g_a": torch.bfloat16, "g_s": torch.bfloat16, "h_s": torch.float32}
    assert out["x_hat"].dtype == torch.float32 and out["likelihoods"]["y"].dtype == torch.float32
    assert list(model.state_dict()) == keys  # checkpoints and exports do not change
    out["x_hat"].mean().backward()
    assert model.g_a[0].weight.grad.dtype == torch.float32


def test_the_photo_split_is_a_partition_fixed_by_name(tmp_path):
    data = tmp_path / "train"
    (data / "sub").mkdir(parents=True)
    names = [f"p{k}.png" for k in range(12)] + ["sub/q.jpg"]
    for name in names:
        (data / name).write_bytes(image_bytes(noise_rgb(8, 8, len(name)), "PNG"))
    (data / "notes.txt").write_text("not a photo")
    parts = []
    for part in range(3):
        out = tmp_path / f"part{part}"
        count = gpu_prepare.copy_part(data, out, part, 3)
        got = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
        assert len(got) == count and all((out / n).read_bytes() == (data / n).read_bytes() for n in got)
        parts.append(got)
    assert sorted(n for got in parts for n in got) == sorted(names)  # every photo once, nothing else
    assert [gpu_prepare.in_part(n, 1, 3) for n in names] == [n in parts[1] for n in names]


def test_a_seed_checkpoint_comes_in_parts_that_join_to_the_weights_only_copy(tmp_path):
    arch = Architecture(MEAN_SCALE, 8, 8)
    torch.save({"model": build_model(arch).state_dict(), "opt": {}, "step": 7, "seconds": 1.0,
                "config": {"architecture": arch.to_dict()}}, tmp_path / "c.pt")
    gpu_prepare.write_seed(tmp_path / "c.pt", tmp_path / "seed", part_bytes=4096)
    parts = sorted((tmp_path / "seed").iterdir())
    assert len(parts) > 1 and all(p.stat().st_size <= 4096 for p in parts)
    (tmp_path / "joined.pt").write_bytes(b"".join(p.read_bytes() for p in parts))
    joined = torch.load(tmp_path / "joined.pt", weights_only=False)
    assert joined["step"] == 7 and "opt" not in joined and joined["model"]["g_a.0.weight"].dtype == torch.float16


@pytest.mark.slow
def test_one_gpu_call_dry_run_on_the_cpu_brings_back_a_checkpoint_the_next_call_resumes(tmp_path):
    data = tmp_path / ".gpu-data"
    data.mkdir()
    for k in range(2):
        (data / f"{k}.png").write_bytes(image_bytes(noise_rgb(96, 96, k), "PNG"))
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), IMGARC_DEVICE="cpu", IMGARC_WHEELS="skip",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    call = [str(REPO / "scripts" / "gpu_train.sh"), "run", "0.05", "--data", ".gpu-data", "--channels", "8,8",
            "--crop", "64", "--batch", "2", "--scale-jitter", "1.5", "--amp"]

    def one_call() -> subprocess.CompletedProcess:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        done = subprocess.run(call, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done

    one_call()
    first = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    parts = sorted(out.glob("slim.pt.part*"))
    assert parts and "checkpoint: run/checkpoint.pt" in (out / "train.log").read_text()
    # The next call finds a bare machine: only the carried seed.
    shutil.rmtree(tmp_path / "run")
    (tmp_path / ".gpu-seed").mkdir()
    for p in parts:
        shutil.copy(p, tmp_path / ".gpu-seed" / p.name)
    second = one_call()
    assert "resuming from the carried weights" in second.stdout
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["step"] > first["step"]
