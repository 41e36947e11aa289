"""The integer h_s matches float h_s closely, is exact, and its weights file refuses tampering."""

from __future__ import annotations

import shutil
import zipfile

import numpy as np
import pytest

from imgarc.codec.int_hyper import (ACT_BITS, ACT_LIMIT, LEAKY_NUM, LEAKY_SHIFT, LOOKUP_LIMIT, WEIGHT_BITS, IntHyperSynthesis,
                                    IntLayer, conv_exact)
from imgarc.codec.weights import load_weights
from imgarc.errors import ModelError
from tests.test_variable_rate import export_tiny_vr_model
from tests.test_weight_storage import export_tiny_int8_stored


def test_exact_convolution_matches_torch():
    import torch

    rng = np.random.default_rng(0)
    x = rng.integers(-50, 50, (3, 5, 7)).astype(np.float64)
    w_t = rng.integers(-20, 20, (3, 4, 5, 5))  # ConvTranspose2d layout [in, out, k, k]
    ref = torch.nn.functional.conv_transpose2d(torch.from_numpy(x)[None], torch.from_numpy(w_t).double(),
                                               stride=2, padding=2, output_padding=1)[0].numpy()
    layer = IntLayer(weight=np.flip(w_t, (2, 3)).transpose(1, 0, 2, 3).astype(np.int64), bias=np.zeros(4, np.int64),
                     upsample=2, stride=1, pad_before=2, pad_after=3, leaky=False)
    np.testing.assert_array_equal(conv_exact(x, layer), ref)
    w = rng.integers(-20, 20, (6, 3, 3, 3))
    ref = torch.nn.functional.conv2d(torch.from_numpy(x)[None], torch.from_numpy(w).double(), padding=1)[0].numpy()
    layer = IntLayer(weight=w.astype(np.int64), bias=np.zeros(6, np.int64), upsample=1, stride=1, pad_before=1,
                     pad_after=1, leaky=False)
    np.testing.assert_array_equal(conv_exact(x, layer), ref)


@pytest.mark.parametrize("k,padding,output_padding,shape", [(5, 2, 1, (1, 1)), (5, 2, 1, (6, 9)), (3, 1, 1, (4, 3)),
                                                             (4, 1, 0, (5, 5)), (5, 0, 0, (2, 7)), (3, 0, 1, (7, 2))])
def test_transposed_convolution_by_phases_is_the_definition(k, padding, output_padding, shape, monkeypatch):
    """Stride-2 transposed convolutions are computed per output phase, skipping the zeros of the
    upsampled input: the integers must equal torch's float64 conv_transpose2d (exact here), also
    when the im2col bands are forced down to one row."""
    import torch

    import imgarc.codec.int_hyper as int_hyper

    rng = np.random.default_rng(k * 100 + padding * 10 + output_padding)
    x = rng.integers(-1000, 1000, (3, *shape)).astype(np.float64)
    w_t = rng.integers(-3000, 3000, (3, 4, k, k))
    ref = torch.nn.functional.conv_transpose2d(torch.from_numpy(x)[None], torch.from_numpy(w_t).double(), stride=2,
                                               padding=padding, output_padding=output_padding)[0].numpy()
    layer = IntLayer(weight=np.flip(w_t, (2, 3)).transpose(1, 0, 2, 3).astype(np.int64), bias=np.arange(4, dtype=np.int64),
                     upsample=2, stride=1, pad_before=k - 1 - padding, pad_after=k - 1 - padding + output_padding, leaky=False)
    np.testing.assert_array_equal(conv_exact(x, layer), ref + np.arange(4)[:, None, None])
    monkeypatch.setattr(int_hyper, "BAND_VALUES", 1)
    np.testing.assert_array_equal(conv_exact(x, layer), ref + np.arange(4)[:, None, None])


def test_integer_h_s_follows_the_float_network(tiny_model_dir):
    import torch

    from imgarc.codec.image_codec import ImageCodec

    weights, sha = load_weights(tiny_model_dir / "tiny-test.npz")
    codec = ImageCodec(weights, sha)
    z = np.random.default_rng(1).integers(-4, 5, (8, 3, 5)).astype(np.int32)
    indexes, means = codec.y_indexes_and_means(z)
    with torch.no_grad():
        z_hat = torch.from_numpy(z).float() + torch.from_numpy(codec.medians)[:, None, None]
        params = codec.torch_model.h_s(z_hat[None])[0].numpy()
    np.testing.assert_allclose(means, params[8:], atol=4 / (1 << ACT_BITS))
    assert indexes.shape == (8, 12, 20) and indexes.dtype == np.uint8
    assert 0 <= indexes.min() and indexes.max() < weights.tables.y.count


def test_same_integers_on_repeated_runs(tiny_model_dir):
    weights, _ = load_weights(tiny_model_dir / "tiny-test.npz")
    z = np.random.default_rng(2).integers(-30, 30, (8, 4, 4))
    a = weights.tables.hyper.run(z)
    b = weights.tables.hyper.run(z.copy())
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def _reference_run(hyper: IntHyperSynthesis, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """h_s as its definition reads (no gains): each layer's sum floor-divided, LeakyReLU's
    negative side floor(x·655/2^16), clamped; the table by binary search over the thresholds;
    the integer means over 2^ACT_BITS as float32."""
    x = (z.astype(np.int64) * (1 << ACT_BITS) + hyper.z_median_fixed[:, None, None]).astype(np.float64)
    for layer in hyper.layers:
        bits = np.full(layer.weight.shape[0], WEIGHT_BITS) if layer.weight_bits is None else layer.weight_bits
        x = np.floor(conv_exact(x, layer) / (2.0 ** bits)[:, None, None])
        if layer.leaky:
            x = np.where(x >= 0, x, np.floor(x * LEAKY_NUM / (1 << LEAKY_SHIFT)))
        elif layer.relu:
            x = np.maximum(x, 0)
        x = np.clip(x, -ACT_LIMIT, ACT_LIMIT)
    out = x.astype(np.int64)
    m = out.shape[0] // 2
    return np.searchsorted(hyper.scale_thresholds, out[:m], side="right"), (out[m:] / (1 << ACT_BITS)).astype(np.float32)


@pytest.mark.parametrize("eight_bit", [False, True])
@pytest.mark.parametrize("one_row_bands", [False, True])
def test_h_s_is_its_definition(tiny_model_dir, tmp_path, eight_bit, one_row_bands, monkeypatch):
    """The in-place activations and the table lookup give the definition's integers exactly,
    from typical hyper-latents to ones that clamp; with 14-bit weights and with an 8-bit h_s's
    per-channel weight bits; with the last layer's output in one band or a band per 2 rows."""
    import imgarc.codec.int_hyper as int_hyper

    if one_row_bands:
        monkeypatch.setattr(int_hyper, "BAND_VALUES", 1)
    if eight_bit:
        export_tiny_vr_model(tmp_path)
        hyper = load_weights(tmp_path / f"{export_tiny_int8_stored(tmp_path)}.npz")[0].tables.hyper
        assert hyper.layers[0].weight_bits is not None
    else:
        hyper = load_weights(tiny_model_dir / "tiny-test.npz")[0].tables.hyper
    z_channels = hyper.z_median_fixed.shape[0]
    rng = np.random.default_rng(3)
    for spread in (3, 40, 3000):
        z = rng.integers(-spread, spread + 1, (z_channels, 3, 4))
        indexes, means = hyper.run(z)
        ref_indexes, ref_means = _reference_run(hyper, z)
        np.testing.assert_array_equal(indexes, ref_indexes)
        np.testing.assert_array_equal(means, ref_means)


@pytest.mark.parametrize("thresholds", [[116, 122, 128, 900, 63914], [-5, 0, 7], [3, LOOKUP_LIMIT + 10]])
def test_table_indexes_are_the_binary_search(thresholds):
    """Read from a lookup table (or searched, for thresholds too far apart for one): the same
    table as a binary search for every scale, on and around each threshold and far outside."""
    t = np.array(thresholds, np.int64)
    hyper = IntHyperSynthesis((), np.zeros(1, np.int64), t)
    near = (t[:, None] + np.arange(-2, 3)).ravel()
    scales = np.concatenate([near, [-(1 << 40), -1, 0, 1, 1 << 40], np.arange(-50, 1000)]).reshape(1, 1, -1)
    indexes = hyper.table_indexes(scales)
    assert indexes.dtype == hyper.index_dtype == np.min_scalar_type(len(thresholds))
    np.testing.assert_array_equal(indexes, np.searchsorted(t, scales, side="right"))


def _rewrite_npz_entry(src, dst, key, change):
    """Copy an .npz, changing one array (simulates an edited weights file)."""
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    arrays[key] = change(arrays[key].copy())
    np.savez_compressed(dst, **arrays)


@pytest.mark.parametrize("key", ["tables/y/cdfs", "tables/z/offsets", "hs/0/weight", "hs/scale_thresholds"])
def test_altered_tables_are_refused_naming_the_model(tiny_model_dir, tmp_path, key):
    def bump(a):
        flat = a.reshape(-1)
        flat[len(flat) // 2] += 1
        return a

    bad = tmp_path / "bad.npz"
    _rewrite_npz_entry(tiny_model_dir / "tiny-test.npz", bad, key, bump)
    with pytest.raises(ModelError, match="tiny-test"):
        load_weights(bad)


def test_garbage_weights_file_is_a_clean_error(tmp_path):
    bad = tmp_path / "x.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelError):
        load_weights(bad)


def test_catalog_refuses_a_file_whose_sha256_changed(tiny_model_dir, tmp_path, monkeypatch):
    from imgarc.codec import registry

    copy = tmp_path / "models"
    shutil.copytree(tiny_model_dir, copy)
    with zipfile.ZipFile(copy / "tiny-test.npz", "a") as z:
        z.writestr("extra.txt", "appended")  # still a valid npz, different bytes
    monkeypatch.setenv("IMGARC_MODEL_PATH", str(copy))
    with pytest.raises(ModelError, match="sha256"):
        registry.load_codec("tiny-test")


@pytest.mark.parametrize("shape,pads", [((6, 9), (1, 1)), ((7, 4), (1, 1)), ((1, 1), (1, 1)), ((5, 5), (0, 0)),
                                        ((4, 7), (2, 1))])
def test_winograd_convolution_is_the_direct_one(shape, pads, monkeypatch):
    """F(2×2, 3×3) gives the direct convolution's integers exactly: even and odd sizes, other
    paddings, inputs and weights near the largest an exact sum allows, and bands of one row."""
    import imgarc.codec.int_hyper as int_hyper

    rng = np.random.default_rng(shape[0] * 10 + shape[1])
    x = rng.integers(-ACT_LIMIT, ACT_LIMIT + 1, (5, *shape)).astype(np.float64)
    layer = IntLayer(weight=rng.integers(-(1 << 14), 1 << 14, (7, 5, 3, 3)), bias=rng.integers(-99, 99, 7),
                     upsample=1, stride=1, pad_before=pads[0], pad_after=pads[1], leaky=False)
    assert layer.is_winograd_shaped and int_hyper.winograd_bound(layer, ACT_LIMIT) < int_hyper.EXACT_LIMIT
    direct = conv_exact(x, layer)
    np.testing.assert_array_equal(conv_exact(x, layer, winograd=True), direct)
    monkeypatch.setattr(int_hyper, "BAND_VALUES", 1)
    np.testing.assert_array_equal(conv_exact(x, layer, winograd=True), direct)


def test_winograd_only_where_its_sums_stay_exact(tiny_model_dir):
    """The 3×3 layer runs by Winograd when its transformed sums are provably exact, and directly
    when weights that large could take them past 2**52 (the direct sums still fit)."""
    hyper = load_weights(tiny_model_dir / "tiny-test.npz")[0].tables.hyper
    assert hyper._winograd_layers == (False, False, True)
    last = hyper.layers[-1]
    in_c = last.weight.shape[1]
    big = np.full_like(last.weight, (1 << 52) // (ACT_LIMIT * 9 * in_c * 2))
    heavy = IntLayer(weight=big, bias=last.bias, upsample=1, stride=1, pad_before=1, pad_after=1, leaky=False)
    fallback = IntHyperSynthesis(hyper.layers[:-1] + (heavy,), hyper.z_median_fixed, hyper.scale_thresholds)
    fallback.check_exactness()
    assert fallback._winograd_layers == (False, False, False)
