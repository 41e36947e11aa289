"""ONNX Runtime and torch run the same networks: archives from either decode on the other.

The latent symbols an encoder writes may differ where g_a's float output lies within a rounding
of .5 (counted here: a rate effect only, the decoder reads the symbols). Decoding reads the same
symbols and selects the same tables on both (integer h_s); pixels may differ by one level where
g_s's output lies within a rounding of a level boundary.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imgarc import api
from imgarc.archive import KIND_IMAGE, ArchiveReader
from imgarc.runtime import Runtime
from tests.test_determinism import REPO

RUNTIMES = (Runtime.ONNX, Runtime.TORCH)


@pytest.fixture
def samples(tmp_path, monkeypatch):
    monkeypatch.delenv("IMGARC_MODEL_PATH", raising=False)  # the shipped default model
    src = tmp_path / "src"
    src.mkdir()
    for p in sorted((REPO / "assets" / "samples").glob("*.png")):
        rgb = np.asarray(Image.open(p).convert("RGB"))[:256, :384]  # a third of each: quicker, same kernels
        Image.fromarray(rgb).save(src / p.name)
    return src


def decoded(archive, runtime, monkeypatch) -> dict[str, tuple[str, np.ndarray]]:
    """{entry: (latent code bytes digest, pixels)} decoded on `runtime`."""
    monkeypatch.setenv("IMGARC_RUNTIME", runtime.value)
    decoder = api.EntryDecoder()
    out = {}
    with ArchiveReader(archive) as r:
        for i in range(len(r)):
            h, payload = r.header(i), r.payload(i)
            if h.kind == KIND_IMAGE:
                latents = decoder.latents(h, payload)
                code = latents.code.y_symbols.tobytes() + latents.code.z_symbols.tobytes() + latents.code.y_indexes.tobytes()
                out[h.path] = (code, decoder.pixels(h, payload))
    return out


@pytest.mark.slow
def test_archives_from_either_runtime_decode_on_the_other(tmp_path, samples, monkeypatch):
    archives = {}
    for runtime in RUNTIMES:
        monkeypatch.setenv("IMGARC_RUNTIME", runtime.value)
        archives[runtime] = tmp_path / f"{runtime.value}.iarc"
        api.compress_folder(samples, archives[runtime], quality=60)
    symbols_total = symbols_differing = 0
    for written_by, archive in archives.items():
        on = {runtime: decoded(archive, runtime, monkeypatch) for runtime in RUNTIMES}
        assert on[Runtime.ONNX].keys() == on[Runtime.TORCH].keys() and len(on[Runtime.ONNX]) == 2
        for path, (code, pixels) in on[Runtime.ONNX].items():
            torch_code, torch_pixels = on[Runtime.TORCH][path]
            assert code == torch_code, f"{path} written by {written_by.value}: latents decode differently"
            gap = np.abs(pixels.astype(int) - torch_pixels.astype(int))
            assert gap.max() <= 1 and (gap > 0).mean() < 1e-3, f"{path}: {gap.max()} levels, {(gap > 0).mean():.2%}"
    # What the two encoders wrote: the same symbols but for a few rounding ties.
    codes = {runtime: decoded(archives[runtime], runtime, monkeypatch) for runtime in RUNTIMES}
    for path, (code, _) in codes[Runtime.ONNX].items():
        a = np.frombuffer(code, np.int32)
        b = np.frombuffer(codes[Runtime.TORCH][path][0], np.int32)
        symbols_total += a.size
        symbols_differing += int((a != b).sum())
    assert symbols_differing / symbols_total < 1e-3


def test_onnx_networks_match_torch_within_float_rounding(tiny_model):
    from imgarc.codec.registry import find_model
    from imgarc.codec.weights import load_weights
    from imgarc.runtime.onnx_networks import OnnxNetworks
    from imgarc.runtime.torch_networks import TorchNetworks

    weights, _ = load_weights(find_model(tiny_model).path)
    a = weights.architecture
    onnx_nets = OnnxNetworks(a, weights.params, "0" * 64)
    torch_nets = TorchNetworks(a, weights.params, tiny_model)
    x = np.random.default_rng(0).random((1, 3, 128, 192), dtype=np.float32)
    y = torch_nets.analysis(x)
    assert y.shape == (1, a.M, 8, 12)
    np.testing.assert_allclose(onnx_nets.analysis(x), y, atol=1e-4)
    np.testing.assert_allclose(onnx_nets.hyper_analysis(y), torch_nets.hyper_analysis(y), atol=1e-4)
    y_hat = np.round(y)
    np.testing.assert_allclose(onnx_nets.synthesis(y_hat), torch_nets.synthesis(y_hat), atol=1e-4)


def test_built_graphs_are_cached_and_a_damaged_one_is_rebuilt(tiny_model, tmp_path, monkeypatch):
    from imgarc.codec.registry import find_model
    from imgarc.codec.weights import load_weights
    from imgarc.runtime.onnx_networks import OnnxNetworks, graph_cache_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    weights, sha = load_weights(find_model(tiny_model).path)
    x = np.random.default_rng(2).random((1, 3, 64, 64), dtype=np.float32)
    networks = OnnxNetworks(weights.architecture, weights.params, sha)

    def cached() -> list[str]:
        return sorted(p.name.rsplit("-", 1)[-1] for p in graph_cache_dir().iterdir())

    first = networks.analysis(x)
    assert cached() == ["g_a.onnx"]  # each graph is built (and its session made) when first run
    y = networks.hyper_analysis(first)
    networks.synthesis(first)
    assert cached() == ["g_a.onnx", "g_s.onnx", "h_a.onnx"]
    for p in graph_cache_dir().iterdir():
        p.write_bytes(b"damaged")
    again = OnnxNetworks(weights.architecture, weights.params, sha)
    np.testing.assert_array_equal(again.analysis(x), first)
    np.testing.assert_array_equal(again.hyper_analysis(first), y)
    assert all(p.read_bytes() != b"damaged" for p in graph_cache_dir().iterdir() if "g_s" not in p.name)  # rebuilt


@pytest.mark.parametrize("c_out", [3, 16])  # one merged convolution below a block, four phases from a block up
def test_transposed_convolution_graph_is_the_definition(c_out):
    import torch
    from onnx import TensorProto, helper

    from imgarc.runtime.onnx_graphs import OPSET, NetworkGraphBuilder
    from imgarc.runtime.onnx_networks import make_session

    rng = np.random.default_rng(c_out)
    weight, bias = rng.normal(0, 0.1, (8, c_out, 5, 5)).astype(np.float32), rng.normal(0, 1, c_out).astype(np.float32)
    x = rng.normal(0, 1, (1, 8, 5, 7)).astype(np.float32)
    g = NetworkGraphBuilder("g_s", {})
    y = g.transposed_conv("x", weight, bias)
    graph = helper.make_graph(g.nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, "h", "w"])],
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, [1, c_out, None, None])], g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    assert sum(n.op_type == "Conv" for n in model.graph.node) == (1 if c_out == 3 else 4)
    ours = make_session(model.SerializeToString()).run(None, {"x": x})[0]
    ref = torch.nn.functional.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(weight), torch.from_numpy(bias),
                                               stride=2, padding=2, output_padding=1).numpy()
    assert ours.shape == ref.shape == (1, c_out, 10, 14)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
