"""Weights files stored with int8 networks and an 8-bit integer h_s (WeightStorage.INT8)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from imgarc.codec.export import export_model
from imgarc.codec.int8 import int8_weights
from imgarc.codec.int8 import WEIGHT_LIMIT
from imgarc.codec.int_hyper import MAX_WEIGHT_BITS, channel_weight_bits, float_h_s, integerize_h_s
from imgarc.codec.storage_bits import StorageBits
from imgarc.codec.weights import WeightStorage, int8_output_axis, load_weights, stored_in_int8
from imgarc.runtime.torch_networks import TorchNetworks
from imgarc.train.publish import register_model
from tests.conftest import image_bytes, noise_rgb
from tests.test_variable_rate import VR_MODEL_ID, export_tiny_vr_model

W8_MODEL_ID = "tiny-vr-w8"


def export_tiny_int8_stored(folder: Path) -> str:
    """The tiny variable-rate model (installed in `folder`) exported again with int8 storage,
    installed beside it as W8_MODEL_ID."""
    weights, _ = load_weights(folder / f"{VR_MODEL_ID}.npz")
    model = TorchNetworks(weights.architecture, weights.params, weights.model_id).model
    sha = export_model(model, weights.architecture, W8_MODEL_ID, folder / f"{W8_MODEL_ID}.npz", {**weights.meta},
                       storage=WeightStorage.INT8)
    register_model(folder, W8_MODEL_ID, f"{W8_MODEL_ID}.npz", sha, 50, "tiny int8-stored model", False, True)
    return W8_MODEL_ID


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("w8")
    export_tiny_vr_model(folder)
    export_tiny_int8_stored(folder)
    return folder


def test_int8_storage_holds_the_networks_within_half_a_step(stored):
    parent, _ = load_weights(stored / f"{VR_MODEL_ID}.npz")
    w8, _ = load_weights(stored / f"{W8_MODEL_ID}.npz")
    with zipfile.ZipFile(stored / f"{W8_MODEL_ID}.npz") as z:
        names = {n.removesuffix(".npy") for n in z.namelist()}
    assert not any(n.startswith("param/h_s.") for n in names)  # h_s is stored once, as integers
    assert set(w8.params) == set(parent.params)
    for name in parent.params:
        original, loaded = np.asarray(parent.params[name], np.float32), w8.params[name]
        assert loaded.shape == original.shape
        if stored_in_int8(name, original.ndim):
            assert f"param8/{name}" in names
            _, scale = int8_weights(original, axis=1 if name.startswith("g_s.") else 0)
            step = np.expand_dims(scale, tuple(d for d in range(4) if d != (1 if name.startswith("g_s.") else 0)))
            assert np.all(np.abs(loaded - original) <= step / 2 * 1.0001)
        elif not name.startswith("h_s."):
            # gains, GDNs, biases, densities and the two convolutions that touch pixels: as stored before
            np.testing.assert_array_equal(loaded, parent.params[name])
    assert {"param/g_a.0.weight", "param/g_s.6.weight"} <= names
    assert (stored / f"{W8_MODEL_ID}.npz").stat().st_size < (stored / f"{VR_MODEL_ID}.npz").stat().st_size


def test_the_8_bit_h_s_and_the_float_h_s_derived_from_it_agree(stored):
    w8, _ = load_weights(stored / f"{W8_MODEL_ID}.npz")
    hyper = w8.tables.hyper
    for layer in hyper.layers:
        assert layer.weight_bits is not None and np.abs(layer.weight).max() <= WEIGHT_LIMIT
        assert np.abs(layer.weight).reshape(layer.weight.shape[0], -1).max(axis=1).min() > WEIGHT_LIMIT // 2
    model = TorchNetworks(w8.architecture, w8.params, w8.model_id).model  # loads the derived float h_s
    medians = np.asarray(w8.params["entropy_bottleneck.quantiles"][:, 0, 1], np.float64)
    again = integerize_h_s(model.h_s, medians, np.ones(2), weight_limit=WEIGHT_LIMIT)
    for a, b in zip(hyper.layers, again.layers):
        np.testing.assert_array_equal(a.weight, b.weight)
        np.testing.assert_array_equal(a.weight_bits, b.weight_bits)
    assert float_h_s(hyper).keys() == {f"h_s.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")}


def test_an_8_bit_h_s_channel_takes_the_most_bits_that_keep_its_weights_within_127():
    peaks = np.array([127.0, 127.0000001, 1.0, 127 / 2**10, np.nextafter(127 / 2**10, 1), 0.0])
    bits = channel_weight_bits(peaks)
    assert bits.tolist() == [0, -1, 6, 10, 9, MAX_WEIGHT_BITS]
    assert np.all(np.ldexp(peaks, bits.astype(np.int32)) <= WEIGHT_LIMIT)
    assert np.all(np.ldexp(peaks[:-1], bits[:-1].astype(np.int32) + 1) > WEIGHT_LIMIT)  # one bit more would not fit


def test_an_int8_stored_model_compresses_and_extracts(stored, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rgb = noise_rgb(70, 90, 3)
    (photos / "p.png").write_bytes(image_bytes(rgb, "PNG"))
    env = dict(os.environ, IMGARC_MODEL_PATH=str(stored))
    cli = [sys.executable, "-m", "imgarc.cli"]
    done = subprocess.run([*cli, "compress", str(photos), str(tmp_path / "a.iarc"), "--model", W8_MODEL_ID, "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([*cli, "extract", str(tmp_path / "a.iarc"), str(tmp_path / "out"), "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    from PIL import Image

    with Image.open(tmp_path / "out" / "p.png") as im:
        assert np.asarray(im).shape == rgb.shape


def test_a_variant_of_an_int8_stored_model_keeps_its_int8_arrays(stored, tmp_path):
    """publish_network_variant writes a copy of its parent's weights but for the networks that
    trained: the others' int8 values and scales are copied as stored, not quantized again from
    their product (which moves about 1 % of scales by one ulp); the variant is int8-stored too."""
    import torch

    from imgarc.train.publish import publish_network_variant

    w8, _ = load_weights(stored / f"{W8_MODEL_ID}.npz")
    assert w8.storage is WeightStorage.INT8
    model = TorchNetworks(w8.architecture, w8.params, w8.model_id).model
    with torch.no_grad():
        model.g_a[2].weight.mul_(1.01)  # "trained"
    publish_network_variant(w8, model, ("g_a",), "variant", tmp_path, 50, "a g_a variant", dict(w8.meta))
    variant, _ = load_weights(tmp_path / "variant.npz")
    assert variant.storage is WeightStorage.INT8
    with np.load(stored / f"{W8_MODEL_ID}.npz") as a, np.load(tmp_path / "variant.npz") as b:
        copied = [k for k in a.files if k.startswith(("param8/", "scale/", "hs/", "gains/")) and "g_a." not in k]
        assert copied and set(copied) <= set(b.files)
        for k in copied:
            assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
        assert not np.array_equal(a["scale/g_a.2.weight"], b["scale/g_a.2.weight"])


def test_training_for_int8_storage_sees_the_weights_the_file_will_hold(stored):
    """The trainer's forward pass for an int8-stored export (stored_weights) rounds exactly the
    parameters int8 storage rounds, to the values loading the exported file gives (but a value
    at a rounding tie, which torch's x·(1/scale) and numpy's x/scale may send either way)."""
    import torch

    from imgarc.train.trainer import stored_weights

    parent, _ = load_weights(stored / f"{VR_MODEL_ID}.npz")
    w8, _ = load_weights(stored / f"{W8_MODEL_ID}.npz")
    model = TorchNetworks(parent.architecture, parent.params, parent.model_id).model
    rounded = stored_weights(model)
    assert set(rounded) == {n for n, p in model.named_parameters() if stored_in_int8(n, p.dim())}
    differing = total = 0
    for name, value in rounded.items():
        ours, loaded = value.detach().numpy(), w8.params[name]
        step = np.abs(loaded).max(axis=tuple(d for d in range(4) if d != int8_output_axis(name)), keepdims=True) / 127
        assert np.all(np.abs(ours - loaded) <= step * 1.001)
        differing += int((np.abs(ours - loaded) > step * 1e-3).sum())
        total += ours.size
    assert differing <= total * 0.002
    weight = next(iter(rounded))
    loss = rounded[weight].sum()
    loss.backward()  # straight through: the float parameter takes the gradient
    assert torch.equal(dict(model.named_parameters())[weight].grad, torch.ones_like(rounded[weight]))


def test_int8_storage_keeps_an_int8_g_s_layer_on_its_graphs_7_bit_grid(stored, tmp_path):
    """A layer the int8 graph runs in int8 is stored at the graph's weight limit (g_s: ±63), so
    the graph quantizes the stored weights back to the same integers (one rounding, not two)."""
    from dataclasses import replace

    from imgarc.codec.int8 import SYNTHESIS_WEIGHT_LIMIT, int8_weights, layer_ranges, CONV_POINTS
    from imgarc.codec.weights import save_weights
    from tests.test_int8 import INT8_VR_MODEL_ID, export_tiny_int8_variant

    export_tiny_int8_variant(stored)
    variant, _ = load_weights(stored / f"{INT8_VR_MODEL_ID}.npz")
    save_weights(replace(variant, storage=WeightStorage.INT8), tmp_path / "v.npz")
    loaded, _ = load_weights(tmp_path / "v.npz")
    with np.load(tmp_path / "v.npz") as z:
        for layer in (0, 2, 4, 6):
            name = f"g_s.{layer}.weight"
            if f"param8/{name}" not in z.files:
                continue
            limit = SYNTHESIS_WEIGHT_LIMIT if layer_ranges(variant.int8_ranges, "g_s", layer, CONV_POINTS) else WEIGHT_LIMIT
            q = z[f"param8/{name}"]
            assert np.abs(q).max() == limit
            again, _ = int8_weights(loaded.params[name], limit=limit, axis=1)
            np.testing.assert_array_equal(again, q)
    assert any(layer_ranges(variant.int8_ranges, "g_s", layer, CONV_POINTS) for layer in (2, 4))


def test_narrower_storage_bits_keep_every_weight_within_their_limit_and_still_code(stored, tmp_path):
    """6-bit storage: the same int8 arrays, every stored weight within ±31 (h_s's too, at the most
    fractional bits that allows), recorded in the file, smaller, and the model still codes."""
    weights, _ = load_weights(stored / f"{VR_MODEL_ID}.npz")
    model = TorchNetworks(weights.architecture, weights.params, weights.model_id).model
    folder = tmp_path / "models"
    folder.mkdir()
    sha = export_model(model, weights.architecture, "tiny-vr-w6", folder / "tiny-vr-w6.npz", {**weights.meta},
                       storage=WeightStorage.INT8, storage_bits=StorageBits.uniform(6))
    register_model(folder, "tiny-vr-w6", "tiny-vr-w6.npz", sha, 50, "tiny 6-bit-stored model", False, True)
    w6, _ = load_weights(folder / "tiny-vr-w6.npz")
    assert w6.storage is WeightStorage.INT8 and w6.storage_bits == StorageBits.uniform(6)
    with np.load(folder / "tiny-vr-w6.npz") as z:
        stored8 = [z[k] for k in z.files if k.startswith("param8/")]
        assert stored8 and all(a.dtype == np.int8 and np.abs(a).max() <= 31 for a in stored8)
    for layer in w6.tables.hyper.layers:
        assert np.abs(layer.weight).max() <= 31
        assert np.abs(layer.weight).reshape(layer.weight.shape[0], -1).max(axis=1).min() > 15  # the most bits that fit
    assert (folder / "tiny-vr-w6.npz").stat().st_size < (stored / f"{W8_MODEL_ID}.npz").stat().st_size
    env = dict(os.environ, IMGARC_MODEL_PATH=str(folder))
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "p.png").write_bytes(image_bytes(noise_rgb(64, 80, 3), "PNG"))
    cli = [sys.executable, "-m", "imgarc.cli"]
    done = subprocess.run([*cli, "compress", str(photos), str(tmp_path / "a.iarc"), "--model", "tiny-vr-w6", "--no-progress"],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([*cli, "extract", str(tmp_path / "a.iarc"), str(tmp_path / "x"), "--no-progress"],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0 and (tmp_path / "x" / "p.png").exists(), done.stderr
    listed = subprocess.run([*cli, "models", "--no-zoo"], env=env, capture_output=True, text=True)
    assert "(int8 storage, 6-bit weights)" in listed.stdout


def test_each_network_keeps_its_own_storage_bits(stored, tmp_path):
    """Per-network widths (g_s=8,h_s=5,6): every stored weight within its own network's limit,
    recorded in the file, read back the same, shown by `imgarc models`, and the model codes."""
    weights, _ = load_weights(stored / f"{VR_MODEL_ID}.npz")
    model = TorchNetworks(weights.architecture, weights.params, weights.model_id).model
    bits = StorageBits.parse("g_s=8,h_s=5,6")
    path = tmp_path / "tiny-vr-mixed.npz"
    export_model(model, weights.architecture, "tiny-vr-mixed", path, {**weights.meta}, storage=WeightStorage.INT8,
                 storage_bits=bits)
    mixed, _ = load_weights(path)
    assert mixed.storage_bits == bits == StorageBits(g_a=6, h_a=6, g_s=8, h_s=5)
    peaks: dict[str, int] = {}  # each network's largest stored weight
    with np.load(path) as z:
        for name in (k for k in z.files if k.startswith("param8/")):
            network = name.removeprefix("param8/").split(".")[0]
            peaks[network] = max(peaks.get(network, 0), int(np.abs(z[name]).max()))
    assert peaks == {"g_a": 31, "h_a": 31, "g_s": 127}
    for layer in mixed.tables.hyper.layers:
        assert np.abs(layer.weight).max() <= 15
    assert json.loads(np.load(path)["meta"].tobytes())["storage_bits"] == {"g_a": 6, "h_a": 6, "g_s": 8, "h_s": 5}


def test_a_file_recording_storage_bits_outside_5_to_8_is_refused(stored, tmp_path):
    from imgarc.errors import ModelError

    path = tmp_path / "w4.npz"
    with np.load(stored / f"{W8_MODEL_ID}.npz") as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["meta"].tobytes()) | {"storage_bits": 4}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez_compressed(path, **arrays)
    with pytest.raises(ModelError, match="g_a weights of 4 bits"):
        load_weights(path)
