"""Structured pruning and `imgarc optimize` (imgarc.optimize), on tiny random models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from imgarc.codec.architecture import MEAN_SCALE, Architecture, build_model, macs_per_pixel
from imgarc.codec.weights import WeightStorage, load_weights
from imgarc.optimize.prune import Kept, choose_channels, parameter_count, prune_model, pruned_state
from imgarc.optimize.widths import GROUP_NAMES, architecture_of, group_widths, widths_for
from tests.conftest import image_bytes, noise_rgb
from tests.test_variable_rate import VR_MODEL_ID, export_tiny_vr_model

IMGARC = [sys.executable, "-m", "imgarc.cli"]


def vr_model(n: int = 16, m: int = 8):
    torch.manual_seed(0)
    arch = Architecture(MEAN_SCALE, n, m, rate_points=3)
    return build_model(arch).eval(), arch


def test_pruning_to_the_full_width_is_the_parent():
    model, arch = vr_model()
    x = torch.rand(2, 3, 64, 64)
    child, child_arch, kept = prune_model(model, arch, group_widths(arch), x, rate_position=1.0)
    with torch.no_grad():
        assert torch.equal(child.eval()(x, rate_position=1.0)["x_hat"], model(x, rate_position=1.0)["x_hat"])
    assert group_widths(child_arch) == group_widths(arch) and kept.latents == list(range(arch.M))


KEPT = {"g_a.0": [1, 5, 9], "g_a.2": [0, 2], "g_a.4": [3, 4, 15], "latents": [0, 3, 6], "g_s.0": [7], "g_s.2": [2, 3],
        "g_s.4": [0, 8, 12, 14], "h_a.0": [2, 11], "h_a.2": [4], "hyper_latents": [1, 2, 13], "h_s.0": [0, 5], "h_s.2": [6, 7, 11]}


def test_a_pruned_child_holds_exactly_the_kept_channels_of_the_parent():
    model, arch = vr_model()
    kept = Kept(tuple(torch.tensor(KEPT[name]) for name in GROUP_NAMES))
    state, child = model.state_dict(), pruned_state(model.state_dict(), kept)
    assert torch.equal(child["g_a.0.weight"], state["g_a.0.weight"][[1, 5, 9]])
    assert torch.equal(child["g_a.1.gamma"], state["g_a.1.gamma"][[1, 5, 9]][:, [1, 5, 9]])
    assert torch.equal(child["g_a.2.weight"], state["g_a.2.weight"][[0, 2]][:, [1, 5, 9]])
    assert torch.equal(child["g_a.6.weight"], state["g_a.6.weight"][[0, 3, 6]][:, [3, 4, 15]])
    assert torch.equal(child["g_s.0.weight"], state["g_s.0.weight"][[0, 3, 6]][:, [7]])  # ConvTranspose: [in, out, k, k]
    assert torch.equal(child["g_s.4.weight"], state["g_s.4.weight"][[2, 3]][:, [0, 8, 12, 14]])
    assert torch.equal(child["g_s.5.beta"], state["g_s.5.beta"][[0, 8, 12, 14]])
    assert torch.equal(child["gain"], state["gain"][:, [0, 3, 6]])
    assert torch.equal(child["h_a.0.weight"], state["h_a.0.weight"][[2, 11]][:, [0, 3, 6]])
    assert torch.equal(child["h_a.4.weight"], state["h_a.4.weight"][[1, 2, 13]][:, [4]])
    assert torch.equal(child["hyper_gain"], state["hyper_gain"][:, [1, 2, 13]])
    assert torch.equal(child["entropy_bottleneck.matrices.0"], state["entropy_bottleneck.matrices.0"][[1, 2, 13]])
    assert torch.equal(child["h_s.0.weight"], state["h_s.0.weight"][[1, 2, 13]][:, [0, 5]])
    # h_s's last layer predicts M scales, then M means: both halves keep the same latents.
    assert torch.equal(child["h_s.4.weight"], state["h_s.4.weight"][[0, 3, 6, 8, 11, 14]][:, [6, 7, 11]])
    assert torch.equal(child["h_s.4.bias"], state["h_s.4.bias"][[0, 3, 6, 8, 11, 14]])
    new_arch = architecture_of(arch, kept.widths)
    assert (new_arch.N, new_arch.M, new_arch.hyper_widths) == (3, 3, (2, 1, 2, 3))
    new = build_model(new_arch)
    new.load_state_dict(child, strict=False)  # the shapes fit the pruned architecture
    with torch.no_grad():
        out = new.eval()(torch.rand(1, 3, 64, 64), rate_position=0.5)
    assert out["x_hat"].shape == (1, 3, 64, 64) and out["likelihoods"]["y"].shape[1] == 3


def test_channels_are_kept_by_importance_and_widths_round_to_eight():
    kept = choose_channels([torch.tensor([0.1, 3.0, 2.0, 0.5])] * 12, (2,) * 12)
    assert all(c.tolist() == [1, 2] for c in kept.channels)
    assert widths_for(Architecture(MEAN_SCALE, 128, 192), 0.5) == (64,) * 6
    assert widths_for(Architecture(MEAN_SCALE, 128, 192, widths=(96, 96, 96, 64, 64, 64)), 0.5) == (48, 48, 48, 32, 32, 32)
    full = macs_per_pixel(Architecture(MEAN_SCALE, 128, 192))
    assert full["g_a"] == full["g_s"] == 42176  # 2400 + 4096 + 25600 + 1024 + 6400 + 256 + 2400
    assert (full["h_a"], full["h_s"]) == (1364, 5388)
    half = macs_per_pixel(Architecture(MEAN_SCALE, 128, 192, widths=(64,) * 6))
    assert 3.4 < full["g_s"] / half["g_s"] < 3.8


def test_parameter_counts_follow_every_group():
    default = Architecture(MEAN_SCALE, 128, 192, rate_points=6)
    assert parameter_count(default) == 7031843  # the shipped default's learned parameters
    small = architecture_of(default, (32, 96, 96, 128, 96, 96, 32, 64, 64, 64, 96, 128))
    assert 2.2e6 < parameter_count(small) < 2.4e6
    assert macs_per_pixel(small)["h_s"] < macs_per_pixel(default)["h_s"] / 3


def test_architecture_records_of_unpruned_models_are_unchanged():
    assert Architecture(MEAN_SCALE, 8, 8).to_dict() == {"name": MEAN_SCALE, "N": 8, "M": 8, "rate_points": 1}
    assert "hyper_widths" not in Architecture(MEAN_SCALE, 8, 8, hyper_widths=(8, 8, 8, 12)).to_dict()  # CompressAI's
    for arch in (Architecture(MEAN_SCALE, 8, 8, widths=(4, 4, 4, 4, 4, 4)),
                 Architecture(MEAN_SCALE, 8, 6, widths=(4, 4, 4, 4, 4, 4), hyper_widths=(8, 8, 8, 12))):
        assert Architecture.from_dict(json.loads(json.dumps(arch.to_dict()))) == arch


def run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(IMGARC + args, capture_output=True, text=True, env=env, timeout=600)


def optimize_setup(tmp_path: Path) -> tuple[Path, Path, Path, dict[str, str]]:
    """The tiny variable-rate parent installed, three training photos: (their folder, the run
    folder, the folder variants are exported to, the environment that finds the parent and them)."""
    models, data, run_dir, out = tmp_path / "models", tmp_path / "data", tmp_path / "run", tmp_path / "variants"
    export_tiny_vr_model(models)
    data.mkdir()
    for k in range(3):
        (data / f"t{k}.png").write_bytes(image_bytes(noise_rgb(96, 96, k), "PNG"))
    return data, run_dir, out, dict(os.environ, IMGARC_MODEL_PATH=f"{out}:{models}")


@pytest.mark.slow
def test_optimize_prunes_fine_tunes_resumes_and_exports_a_working_variant(tmp_path):
    data, run_dir, out, env = optimize_setup(tmp_path)
    # Every group pruned: g_a's and g_s's inner widths 16 -> 8 (--keep), latents 8 -> 6, h_a's and
    # h_s's inner widths (8, 8, 8, 12) -> (4, 4, 6, 9), hyper-latents 8 -> 6.
    common = ["--parent", VR_MODEL_ID, "--keep", "0.5", "--latents", "6", "--hyper-widths", "4,4,6,9", "--hyper-latents", "6",
              "--data", str(data), "--run-dir", str(run_dir),
              "--crop", "64", "--batch", "2", "--checkpoint-minutes", "0.01", "--lambdas", "0.005,0.02,0.08"]
    first = run(["optimize", *common, "--minutes", "0.05"], env)
    assert first.returncode == 0, first.stderr
    assert "widths 8,8,8,8,8,8, 6 latents, hyper widths 4,4,6,9, 6 hyper-latents" in first.stdout
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    steps = checkpoint["step"]
    assert len(checkpoint["teacher_latents"]) == 6  # distillation compares ŷ on the parent's kept latents
    # The second call fine-tunes through int8 storage's rounding and exports in int8.
    second = run(["optimize", *common, "--minutes", "0.05", "--export", "tiny-vr-pruned", "--export-dir", str(out),
                  "--storage", "int8"], env)
    assert second.returncode == 0, second.stderr
    assert torch.load(run_dir / "checkpoint.pt", weights_only=False)["step"] > steps  # resumed, not pruned again
    other = run(["optimize", *[("5" if a == "6" else a) for a in common], "--minutes", "0.05"], env)  # 5 latents and hyper-latents
    assert other.returncode == 2 and "holds a model of other widths" in other.stderr and "Traceback" not in other.stderr

    weights, _ = load_weights(out / "tiny-vr-pruned.npz")
    assert weights.storage is WeightStorage.INT8
    arch = weights.architecture
    assert (arch.widths, arch.M, arch.hyper_widths, arch.N) == ((8,) * 6, 6, (4, 4, 6, 9), 6)
    assert weights.meta["parent"] == VR_MODEL_ID
    assert weights.params["g_s.2.weight"].shape == (8, 8, 5, 5) and weights.params["h_s.4.weight"].shape == (12, 9, 3, 3)
    assert [layer.weight.shape[0] for layer in weights.tables.hyper.layers] == [6, 9, 12]  # the integer h_s is pruned too
    assert len(weights.tables.z.lengths) == 6

    photos = tmp_path / "photos"
    photos.mkdir()
    rgb = noise_rgb(80, 112, 7)
    (photos / "p.png").write_bytes(image_bytes(rgb, "PNG"))
    assert run(["compress", str(photos), str(tmp_path / "a.iarc"), "--model", "tiny-vr-pruned", "--no-progress"], env).returncode == 0
    done = run(["extract", str(tmp_path / "a.iarc"), str(tmp_path / "x"), "--no-progress"], env)
    assert done.returncode == 0, done.stderr
    from PIL import Image

    with Image.open(tmp_path / "x" / "p.png") as im:
        assert np.asarray(im).shape == rgb.shape

    listed = run(["models", "--no-zoo", "--measure"], env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    facts = lines[next(n for n, line in enumerate(lines) if line.startswith("tiny-vr-pruned")) + 1]
    parameters = sum(weights.params[k].size for k in weights.params)
    macs = macs_per_pixel(weights.architecture)
    assert "MB weights (int8 storage)" in facts
    assert f"{parameters:,} parameters" in facts and f"g_s {macs['g_s']:,.0f}" in facts
    assert f"parent: {VR_MODEL_ID}" in facts and " ms/MP here" in facts
    assert "  tune fast  " in lines[next(n for n, line in enumerate(lines) if line.startswith("tiny-vr-pruned"))]

    # A pruned variant is listed as the fast tune, and records the parent's latents it kept, so
    # a new run (its checkpoint gone) goes on training it from the weights file alone.
    catalog = json.loads((out / "models.json").read_text())
    assert [m["tune"] for m in catalog["models"] if m["id"] == "tiny-vr-pruned"] == ["fast"]
    # The first catalog that names a model for --tune fast wins over the shipped one.
    (out / "models.json").write_text(json.dumps({**catalog, "tune_defaults": {"fast": "tiny-vr-pruned"}}))
    exported = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    assert weights.meta["teacher_latents"] == exported["teacher_latents"] and weights.meta["steps"] == exported["step"]
    fast = run(["compress", str(photos), str(tmp_path / "f.iarc"), "--tune", "fast", "--no-progress"], env)
    assert fast.returncode == 0, fast.stderr
    listing = run(["list", str(tmp_path / "f.iarc")], env)
    assert "tiny-vr-pruned" in listing.stdout, listing.stdout
    again = run(["optimize", "--init", "tiny-vr-pruned", "--data", str(data), "--run-dir", str(tmp_path / "run2"),
                 "--crop", "64", "--batch", "2", "--minutes", "0.05", "--lambdas", "0.005,0.02,0.08",
                 "--export", "tiny-vr-pruned-2", "--export-dir", str(out)], env)
    assert again.returncode == 0, again.stderr
    continued = torch.load(tmp_path / "run2" / "checkpoint.pt", weights_only=False)
    assert continued["step"] > exported["step"] and continued["teacher_latents"] == exported["teacher_latents"]
    continued_weights = load_weights(out / "tiny-vr-pruned-2.npz")[0]
    assert continued_weights.meta["parent"] == VR_MODEL_ID
    assert continued_weights.storage is WeightStorage.INT8  # stored as the model it went on from, unless told
    wider = run(["optimize", "--init", "tiny-vr-pruned", "--latents", "5", "--run-dir", str(tmp_path / "run3")], env)
    assert wider.returncode == 2 and "--init goes on with the widths" in wider.stderr


@pytest.mark.parametrize("args, message", [
    (["--widths", "8,8"], "six positive integers"),
    (["--widths", "a,b,c,d,e,f"], "six positive integers"),
    (["--hyper-widths", "4,4"], "four positive integers (h_a's two inner widths, then h_s's)"),
    (["--latents", "x"], "Invalid value for '--latents'"),
    (["--latents", "0"], "Invalid value for '--latents'"),
    (["--widths", "8,8,8,8,8,99"], "cannot be wider than its parent"),
    (["--latents", "99"], "cannot be wider than its parent"),
    (["--keep", "0"], "fraction"),
    (["--keep", "0.5"], "give them with --lambdas"),
    (["--keep", "0.5", "--storage-bits", "6"], "--storage-bits goes with --storage int8"),
    (["--keep", "0.5", "--storage", "int8", "--storage-bits", "9", "--lambdas", "0.005,0.02,0.08"], "--storage-bits must be 5–8"),
    (["--keep", "0.5", "--storage", "int8", "--storage-bits", "g_t=8,6"], "--storage-bits names 'g_t'"),
    (["--int8", "--msssim-share", "0.3"], "--msssim-share goes with pruning"),
    (["--keep", "0.5", "--msssim-share", "1.5"], "Invalid value for '--msssim-share'"),
])
def test_bad_optimize_options_are_one_line(tmp_path, args, message):
    models = tmp_path / "models"
    export_tiny_vr_model(models)
    env = dict(os.environ, IMGARC_MODEL_PATH=str(models))
    done = run(["optimize", "--parent", VR_MODEL_ID, "--run-dir", str(tmp_path / "run"), *args], env)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_a_child_trains_on_the_parents_msssim_share_unless_told_otherwise(tmp_path, monkeypatch):
    from imgarc.optimize.run import child_config

    data, run_dir, _, env = optimize_setup(tmp_path)
    monkeypatch.setenv("IMGARC_MODEL_PATH", env["IMGARC_MODEL_PATH"])
    parent = load_weights(Path(env["IMGARC_MODEL_PATH"].split(":")[1]) / f"{VR_MODEL_ID}.npz")[0]
    lambdas = (0.005, 0.02, 0.08)
    inherited = child_config(VR_MODEL_ID, data, run_dir, parent.architecture, lambdas)
    assert inherited.msssim_share == float(parent.meta.get("msssim_share", 0.5))
    assert child_config(VR_MODEL_ID, data, run_dir, parent.architecture, lambdas, msssim_share=0.3).msssim_share == 0.3


@pytest.mark.parametrize("every", [1, 3])
def test_the_parent_is_consulted_on_every_nth_step_only(tmp_path, monkeypatch, every):
    from imgarc.optimize.run import child_config, start_pruned_run
    from imgarc.train import trainer

    data, run_dir, _, env = optimize_setup(tmp_path)
    monkeypatch.setenv("IMGARC_MODEL_PATH", env["IMGARC_MODEL_PATH"])
    parent = load_weights(Path(env["IMGARC_MODEL_PATH"].split(":")[1]) / f"{VR_MODEL_ID}.npz")[0].architecture
    arch = architecture_of(parent, (8, 8, 8, *group_widths(parent)[3:4], 8, 8, 8, *group_widths(parent)[7:]))
    config = child_config(VR_MODEL_ID, data, run_dir, arch, (0.005, 0.02, 0.08), crop=64, batch=2, minutes=0.1,  # 6 s: ≥ 3 steps on a busy machine too
                          distill_every=every)
    start_pruned_run(config)
    calls = []
    load_teacher = trainer.load_teacher

    def counting_teacher(path, device):
        teacher = load_teacher(path, device)
        teacher.register_forward_hook(lambda *_: calls.append(1))
        return teacher

    monkeypatch.setattr(trainer, "load_teacher", counting_teacher)
    trainer.train(config, resume=True)
    steps = torch.load(run_dir / "checkpoint.pt", weights_only=False)["step"]
    assert steps >= 3 and len(calls) == -(-steps // every)  # steps 0, N, 2N, … of this call


def test_distill_every_below_one_is_refused(tmp_path):
    from imgarc.errors import UsageError
    from imgarc.train.trainer import TrainConfig

    with pytest.raises(UsageError, match="--distill-every must be 1 or more"):
        TrainConfig(data=tmp_path, run_dir=tmp_path, distill_every=0)
