"""int8 g_a and g_s (imgarc.codec.int8, fake_quant, the QDQ graph) and `imgarc optimize --int8`, on tiny random models."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import onnx
from onnx import numpy_helper

from imgarc.codec.fake_quant import Int8Network, calibrate, calibrated_ranges, decoded_latents, quantizable_points
from imgarc.codec.int8 import SYNTHESIS_WEIGHT_LIMIT, ActivationRange, int8_weights
from imgarc.codec.registry import find_model, load_codec
from imgarc.codec.weights import load_weights, save_weights
from imgarc.errors import ModelError
from imgarc.runtime import onnx_graphs
from imgarc.runtime.onnx_networks import OnnxNetworks
from imgarc.runtime.torch_networks import TorchNetworks
from imgarc.train.publish import register_model
from tests.conftest import image_bytes, noise_rgb
from tests.test_optimize import optimize_setup, run
from tests.test_variable_rate import VR_MODEL_ID, export_tiny_vr_model


def test_activation_grid_holds_zero_and_covers_its_bounds():
    grid = ActivationRange.from_bounds(-0.7, 2.3)
    assert grid.scale == pytest.approx(3.0 / 255) and grid.zero_point == round(0.7 / grid.scale)
    assert ActivationRange.from_bounds(0.5, 2.0) == ActivationRange(2.0 / 255, 0)  # 0 is always on the grid
    assert ActivationRange.from_array(grid.as_array(), "p") == grid
    low, high = grid.bounds()
    assert low <= -0.7 + grid.scale / 2 and high >= 2.3 - grid.scale / 2
    narrow = grid.narrowed(0.5)
    assert narrow.scale == pytest.approx(grid.scale / 2, rel=0.01) and narrow.zero_point == grid.zero_point
    for bad in ([0.0, 3], [0.1, 300], [0.1, 2.5], [np.nan, 1], [0.1]):
        with pytest.raises(ModelError):
            ActivationRange.from_array(np.array(bad, np.float64), "p")


def test_int8_weights_are_per_channel_and_within_half_a_step():
    w = np.random.default_rng(0).normal(0, 1, (4, 3, 5, 5)).astype(np.float32)
    w[2] *= 1e-3
    q, scale = int8_weights(w)
    assert q.dtype == np.int8 and np.abs(q).max() == 127 and (np.abs(q).reshape(4, -1).max(1) == 127).all()
    assert np.all(np.abs(q * scale[:, None, None, None] - w) <= scale[:, None, None, None] / 2 + 1e-9)
    _, floored = int8_weights(w, smallest_scale=0.01)
    assert floored[2] == np.float32(0.01) and floored[0] == scale[0]
    # A transposed convolution's weights [in, out, kh, kw], on g_s's 7 bits: per axis-1 channel.
    q7, scale7 = int8_weights(w, limit=SYNTHESIS_WEIGHT_LIMIT, axis=1)
    assert q7.shape == w.shape and len(scale7) == 3 and (np.abs(q7).max(axis=(0, 2, 3)) == SYNTHESIS_WEIGHT_LIMIT).all()
    assert np.all(np.abs(q7 * scale7[None, :, None, None] - w) <= scale7[None, :, None, None] / 2 + 1e-9)


INT8_VR_MODEL_ID = "tiny-vr-int8-both"


def noise_crops(count: int, size: int) -> torch.Tensor:
    """`count` noise photos of size × size as a batch [count, 3, size, size] in [0, 1]."""
    return torch.from_numpy(np.stack([noise_rgb(size, size, k) for k in range(count)]).transpose(0, 3, 1, 2).astype(np.float32) / 255)


def export_tiny_int8_variant(folder: Path) -> str:
    """The tiny variable-rate model (installed in `folder`) with an int8 g_a and g_s, their grids
    calibrated on noise, installed beside it: its archives take the int8 paths on every runtime."""
    weights, _ = load_weights(folder / f"{VR_MODEL_ID}.npz")
    model = TorchNetworks(weights.architecture, weights.params, weights.model_id).model
    crops = noise_crops(2, 64)
    ranges = {**calibrate(model.g_a, "g_a", [crops], quantizable_points(model.g_a, "g_a")),
              **calibrate(model.g_s, "g_s", [decoded_latents(model, crops)], quantizable_points(model.g_s, "g_s"))}
    variant = replace(weights, model_id=INT8_VR_MODEL_ID, int8_ranges=ranges, meta={**weights.meta, "parent": VR_MODEL_ID})
    sha = save_weights(variant, folder / f"{INT8_VR_MODEL_ID}.npz")
    register_model(folder, INT8_VR_MODEL_ID, f"{INT8_VR_MODEL_ID}.npz", sha, 50, "tiny int8 variant", False, True)
    return INT8_VR_MODEL_ID


@pytest.fixture
def tiny_vr(tmp_path, monkeypatch):
    models = tmp_path / "models"
    export_tiny_vr_model(models)
    monkeypatch.setenv("IMGARC_MODEL_PATH", str(models))
    weights, sha = load_weights(find_model(VR_MODEL_ID).path)
    return weights, sha


def calibrated(weights) -> dict:
    g_a = TorchNetworks(weights.architecture, weights.params, weights.model_id).model.g_a
    x = torch.from_numpy(noise_rgb(64, 64, 3).transpose(2, 0, 1)[None].astype(np.float32) / 255)
    return calibrate(g_a, "g_a", [x], quantizable_points(g_a, "g_a"))


def optimized_session(graph: bytes, tmp_path: Path) -> tuple[ort.InferenceSession, onnx.GraphProto]:
    """A CPU session of `graph`, and the graph as ONNX Runtime optimized it (fusions included)."""
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    return session, onnx.load(str(tmp_path / "optimized.onnx")).graph


def test_the_int8_graph_runs_int8_kernels_and_matches_torch_fake_quantization(tiny_vr, tmp_path):
    weights, _ = tiny_vr
    ranges = calibrated(weights)
    convs = [i for i, layer in enumerate(onnx_graphs.G_A) if layer.kind == "conv"]
    assert f"g_a.{convs[-1]}.in" not in ranges and f"g_a.{convs[0]}.in" in ranges  # all but the last convolution
    graph = onnx_graphs.build_graph("g_a", onnx_graphs.G_A, weights.params, 3, ranges=ranges)
    session, optimized = optimized_session(graph, tmp_path)
    ops = [n.op_type for n in optimized.node]
    assert ops.count("QLinearConv") == 6  # three 5x5 and three GDN convolutions fused into int8 kernels

    x = noise_rgb(96, 128, 5).transpose(2, 0, 1)[None].astype(np.float32) / 255
    int8_y = session.run(None, {"x": x})[0]
    torch_nets = TorchNetworks(weights.architecture, weights.params, weights.model_id, int8_ranges=ranges)
    assert isinstance(torch_nets.model.g_a, Int8Network) and not isinstance(torch_nets.model.g_s, Int8Network)
    float_y = TorchNetworks(weights.architecture, weights.params, weights.model_id).analysis(x)
    fake_y = torch_nets.analysis(x)
    np.testing.assert_allclose(int8_y, fake_y, atol=0.05)  # the same grid; only the sums' order differs
    assert np.abs(int8_y - float_y).max() > 10 * np.abs(int8_y - fake_y).mean()  # and it is not float


def test_the_int8_g_s_graph_runs_int8_kernels_and_matches_torch_fake_quantization(tiny_vr, tmp_path):
    weights, _ = tiny_vr
    model = TorchNetworks(weights.architecture, weights.params, weights.model_id).model
    crops = noise_crops(2, 64)
    y_hat = decoded_latents(model, crops)
    assert y_hat.shape == (2 * weights.architecture.rate_points, weights.architecture.M, 4, 4)
    ranges = calibrate(model.g_s, "g_s", [y_hat], quantizable_points(model.g_s, "g_s"))
    assert sorted({int(name.split(".")[1]) for name in ranges}) == [2, 3, 4, 5]  # the middle layers only
    graph = onnx_graphs.build_graph("g_s", onnx_graphs.G_S, weights.params, weights.architecture.M, ranges=ranges)
    session, optimized = optimized_session(graph, tmp_path)
    assert [n.op_type for n in optimized.node].count("QLinearConv") == 4  # two transposed, two IGDN convolutions
    int8_weights_in_graph = [numpy_helper.to_array(t) for t in optimized.initializer if t.data_type == onnx.TensorProto.INT8]
    assert int8_weights_in_graph and max(np.abs(w.astype(int)).max() for w in int8_weights_in_graph) <= SYNTHESIS_WEIGHT_LIMIT

    x = y_hat[:1].numpy()
    int8_x = session.run(None, {"x": x})[0]
    torch_nets = TorchNetworks(weights.architecture, weights.params, weights.model_id, int8_ranges=ranges)
    assert isinstance(torch_nets.model.g_s, Int8Network) and not isinstance(torch_nets.model.g_a, Int8Network)
    float_x = TorchNetworks(weights.architecture, weights.params, weights.model_id).synthesis(x)
    fake_x = torch_nets.synthesis(x)
    np.testing.assert_allclose(int8_x, fake_x, atol=0.02)  # the same grid; only the sums' order differs
    assert np.abs(int8_x - float_x).max() > 5 * np.abs(int8_x - fake_x).mean()  # and it is not float
    onnx_nets = OnnxNetworks(weights.architecture, weights.params, "1" * 64, int8_ranges=ranges)
    np.testing.assert_array_equal(onnx_nets.synthesis(x), int8_x)  # what the codec runs


def test_searched_grids_bring_y_closer_to_the_float_g_a(tiny_vr):
    weights, _ = tiny_vr
    model = TorchNetworks(weights.architecture, weights.params, weights.model_id).model
    crops = noise_crops(4, 48)
    minmax = calibrate(model.g_a, "g_a", crops.split(4), quantizable_points(model.g_a, "g_a"))
    searched = calibrated_ranges(model, crops)
    assert searched.keys() == minmax.keys() and searched != minmax
    with torch.no_grad():
        reference = model.g_a(crops)
        error = {name: float(((Int8Network(model.g_a, r, "g_a")(crops) - reference) ** 2).mean())
                 for name, r in (("minmax", minmax), ("searched", searched))}
    assert error["searched"] < error["minmax"]


def test_weights_file_keeps_int8_ranges_and_refuses_an_incomplete_layer(tiny_vr, tmp_path):
    weights, _ = tiny_vr
    ranges = calibrated(weights)
    path = tmp_path / "v.npz"
    save_weights(replace(weights, model_id="v", int8_ranges=ranges), path)
    loaded, sha = load_weights(path)
    assert loaded.int8_ranges == ranges and loaded.tables_sha256 == weights.tables_sha256
    nets = OnnxNetworks(loaded.architecture, loaded.params, sha, int8_ranges=loaded.int8_ranges)
    with pytest.raises(ModelError, match="incomplete"):
        broken = {k: v for k, v in ranges.items() if k != "g_a.1.norm"}
        OnnxNetworks(loaded.architecture, loaded.params, "0" * 64, int8_ranges=broken).analysis(np.zeros((1, 3, 32, 32), np.float32))
    assert nets.analysis(np.zeros((1, 3, 32, 32), np.float32)).shape[1] == weights.architecture.M


def test_optimize_int8_trains_g_a_alone_and_the_parent_decodes_its_archives(tmp_path, monkeypatch):
    data, run_dir, out, env = optimize_setup(tmp_path)
    done = run(["optimize", "--parent", VR_MODEL_ID, "--int8", "--data", str(data), "--run-dir", str(run_dir), "--crop", "64",
                "--batch", "2", "--minutes", "0.05", "--lambdas", "0.005,0.02,0.08", "--lr", "1e-3",
                "--export", "tiny-vr-int8", "--export-dir", str(out)], env)
    assert done.returncode == 0, done.stderr
    assert "int8 g_a" in done.stdout
    monkeypatch.setenv("IMGARC_MODEL_PATH", env["IMGARC_MODEL_PATH"])
    parent, _ = load_weights(find_model(VR_MODEL_ID).path)
    variant, _ = load_weights(out / "tiny-vr-int8.npz")
    assert variant.meta["parent"] == VR_MODEL_ID and variant.int8_ranges
    assert variant.tables_sha256 == parent.tables_sha256 and variant.architecture == parent.architecture
    changed = {k.split(".")[0] for k in parent.params if not np.array_equal(parent.params[k], variant.params[k])}
    assert changed == {"g_a"}  # trained through its grid; everything else is the parent's

    # An archive made with the variant; the parent's decoder gives its pixels exactly.
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "p.png").write_bytes(image_bytes(noise_rgb(80, 112, 7), "PNG"))
    archive = tmp_path / "a.iarc"
    assert run(["compress", str(photos), str(archive), "--model", "tiny-vr-int8", "--no-progress"], env).returncode == 0
    assert run(["extract", str(archive), str(tmp_path / "x"), "--no-progress"], env).returncode == 0
    listed = run(["models", "--no-zoo"], env).stdout.splitlines()
    facts = listed[next(n for n, line in enumerate(listed) if line.startswith("tiny-vr-int8")) + 1]
    assert "g_a " in facts and " (int8), h_a" in facts and f"parent: {VR_MODEL_ID}" in facts
    rgb = noise_rgb(80, 112, 7)
    code = load_codec("tiny-vr-int8").analyse(rgb, 70)
    assert np.array_equal(load_codec(VR_MODEL_ID).synthesize(code, 80, 112), load_codec("tiny-vr-int8").synthesize(code, 80, 112))
    x = rgb[:64, :64].transpose(2, 0, 1)[None].astype(np.float32) / 255
    y_parent, y_variant = load_codec(VR_MODEL_ID).networks.analysis(x), load_codec("tiny-vr-int8").networks.analysis(x)
    assert np.abs(y_parent - y_variant).max() > 1e-3  # the variant's g_a is its own (int8, trained)


def test_int8_refuses_widths(tmp_path):
    models = tmp_path / "models"
    export_tiny_vr_model(models)
    env = dict(os.environ, IMGARC_MODEL_PATH=str(models))
    done = run(["optimize", "--parent", VR_MODEL_ID, "--int8", "--widths", "8,8,8,8,8,8", "--run-dir", str(tmp_path / "r"),
                "--lambdas", "0.005,0.02,0.08"], env)
    assert done.returncode == 2 and "--int8 keeps the parent's widths" in done.stderr and "Traceback" not in done.stderr


def test_optimize_int8_g_s_on_an_int8_g_a_variant_gives_a_variant_with_both(tmp_path, monkeypatch):
    data, run_dir, out, env = optimize_setup(tmp_path)
    common = ["--int8", "--data", str(data), "--crop", "64", "--batch", "2", "--lambdas", "0.005,0.02,0.08",
              "--export-dir", str(out)]
    first = run(["optimize", "--parent", VR_MODEL_ID, *common, "--run-dir", str(tmp_path / "a"), "--export", "tiny-a8"], env)
    assert first.returncode == 0, first.stderr
    second = run(["optimize", "--parent", "tiny-a8", "--int8-network", "g_s", *common, "--run-dir", str(run_dir),
                  "--minutes", "0.05", "--lr", "1e-3", "--distill", "0", "--export", "tiny-a8-s8"], env)
    assert second.returncode == 0, second.stderr
    assert "int8 g_s" in second.stdout and "g_s alone trains" in second.stdout
    monkeypatch.setenv("IMGARC_MODEL_PATH", env["IMGARC_MODEL_PATH"])
    parent, _ = load_weights(out / "tiny-a8.npz")
    variant, _ = load_weights(out / "tiny-a8-s8.npz")
    assert variant.meta["parent"] == "tiny-a8" and variant.tables_sha256 == parent.tables_sha256
    assert {k: v for k, v in variant.int8_ranges.items() if k.startswith("g_a.")} == parent.int8_ranges  # kept
    assert {k.split(".")[0] for k in variant.int8_ranges} == {"g_a", "g_s"}
    changed = {k.split(".")[0] for k in parent.params if not np.array_equal(parent.params[k], variant.params[k])}
    assert changed == {"g_s"}  # trained through its grid; everything else is the parent's

    # The same symbols as the parent writes (the same g_a); other pixels, from its int8 g_s.
    rgb = noise_rgb(80, 112, 7)
    code = load_codec("tiny-a8-s8").analyse(rgb, 70)
    assert np.array_equal(code.y_symbols, load_codec("tiny-a8").analyse(rgb, 70).y_symbols)
    assert not np.array_equal(load_codec("tiny-a8").synthesize(code, 80, 112), load_codec("tiny-a8-s8").synthesize(code, 80, 112))
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "p.png").write_bytes(image_bytes(rgb, "PNG"))
    archive = tmp_path / "a.iarc"
    assert run(["compress", str(photos), str(archive), "--model", "tiny-a8-s8", "--no-progress"], env).returncode == 0
    assert run(["extract", str(archive), str(tmp_path / "x"), "--no-progress"], env).returncode == 0
    listed = run(["models", "--no-zoo"], env).stdout.splitlines()
    facts = listed[next(n for n, line in enumerate(listed) if line.startswith("tiny-a8-s8")) + 1]
    assert " (int8), h_a" in facts and facts.rstrip().count("(int8)") == 2 and "parent: tiny-a8" in facts


def test_int8_network_goes_with_int8(tmp_path):
    models = tmp_path / "models"
    export_tiny_vr_model(models)
    env = dict(os.environ, IMGARC_MODEL_PATH=str(models))
    done = run(["optimize", "--parent", VR_MODEL_ID, "--int8-network", "g_s", "--run-dir", str(tmp_path / "r"),
                "--lambdas", "0.005,0.02,0.08"], env)
    assert done.returncode == 2 and "--int8-network goes with --int8" in done.stderr and "Traceback" not in done.stderr


def test_a_gdn_norm_grid_that_rounds_beta_to_zero_is_refused_and_never_made(tiny_vr):
    weights, _ = tiny_vr
    model = TorchNetworks(weights.architecture, weights.params, weights.model_id).model
    with torch.no_grad():
        model.g_a[1].beta.fill_(1e-4)  # β ≈ 1e-6 after reparametrization, as training can leave it
    crops = noise_crops(4, 48)
    ranges = calibrated_ranges(model, crops)
    assert "g_a.1.norm" not in ranges and "g_a.1.square" not in ranges and "g_a.3.norm" in ranges  # that GDN stays float
    params = {**weights.params, "g_a.1.beta": model.g_a[1].beta.detach().numpy()}
    forced = {**ranges, "g_a.1.square": ActivationRange(0.01, 0), "g_a.1.norm": ActivationRange(0.01, 0)}
    with pytest.raises(ModelError, match=r"g_a\.1\.norm rounds β to 0"):
        onnx_graphs.build_graph("g_a", onnx_graphs.G_A, params, 3, ranges=forced)
    onnx_graphs.build_graph("g_a", onnx_graphs.G_A, params, 3, ranges=ranges)  # without it, it builds
