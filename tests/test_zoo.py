"""CompressAI zoo models (issue 8), offline: a fake torch hub cache seeded with small real
CompressAI models in the zoo's file layout, loaded through the real fetch/verify/convert path."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgarc import api
from imgarc.archive import KIND_IMAGE
from imgarc.coders import CODER_NAMES
from imgarc.errors import ArchiveError, ModelError
from tests.conftest import image_bytes, noise_rgb
from tests.zoo_fixtures import lively_model, seed_zoo_file

ARCHS = ("mbt2018-mean", "bmshj2018-hyperprior")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def zoo_env(tmp_path, monkeypatch) -> Path:
    """Empty torch and imgarc caches under tmp_path; downloads forbidden."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("IMGARC_OFFLINE", "1")
    return tmp_path / "torch" / "hub"


def seed(monkeypatch, hub: Path, arch: str, quality: int = 3, metric: str = "mse", seed: int = 0,
         old_keys: bool = False) -> tuple[str, Path]:
    """Seed the fake cache and point CompressAI's URL table at it; returns (model id, zoo file)."""
    from compressai.zoo.image import model_urls

    path, url = seed_zoo_file(hub, arch, metric, quality, lively_model(arch, seed=seed), old_keys=old_keys)
    monkeypatch.setitem(model_urls[arch][metric], quality, url)
    return f"cai:{arch}:{metric}:{quality}", path


@pytest.fixture
def photos(tmp_path) -> Path:
    src = tmp_path / "photos"
    src.mkdir()
    (src / "a.png").write_bytes(image_bytes(noise_rgb(70, 90, 1), "PNG"))
    (src / "b.png").write_bytes(image_bytes(noise_rgb(64, 130, 2), "PNG"))
    (src / "notes.txt").write_text("kept byte-exact\n")
    return src


def decoded(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


# --------------------------------------------------------------------------- naming


def test_ids_shorthands_and_refusals():
    from imgarc.codec.zoo import parse_zoo_id

    assert parse_zoo_id("cai:mbt2018-mean:mse:3").model_id == "cai:mbt2018-mean:mse:3"
    assert parse_zoo_id("cai:bmshj2018-hyperprior:ms-ssim:8").model_id == "cai:bmshj2018-hyperprior:ms-ssim:8"
    assert parse_zoo_id("cai:mbt2018-mean:5").model_id == "cai:mbt2018-mean:mse:5"
    # Without a zoo quality, imgarc's --quality 1-100 is split evenly over the zoo's 1-8.
    assert [parse_zoo_id("cai:mbt2018-mean", q).quality for q in (1, 13, 14, 50, 88, 100)] == [1, 1, 2, 4, 7, 8]
    assert parse_zoo_id("cai:mbt2018-mean:ms-ssim", 100).model_id == "cai:mbt2018-mean:ms-ssim:8"
    for bad, words in (("cai:mbt2018:mse:3", ("autoregressive", "one after another",
                                               "supported: cai:mbt2018-mean, cai:bmshj2018-hyperprior")),
                       ("cai:cheng2020-attn:mse:1", ("autoregressive",)),
                       ("cai:bmshj2018-factorized:mse:1", ("no hyperprior",)),
                       ("cai:nope:mse:1", ("unknown CompressAI zoo model",)),
                       ("cai:mbt2018-mean:mse:9", ("no mbt2018-mean mse model of quality 9", "1-8")),
                       ("cai:mbt2018-mean:psnr:3", ("cannot read model id",)),
                       ("cai:mbt2018-mean", ("names no zoo quality",))):
        with pytest.raises(ModelError) as e:
            parse_zoo_id(bad)
        for w in words:
            assert w in str(e.value), (bad, str(e.value))


def test_hub_dir_is_torchs(monkeypatch, tmp_path):
    import torch.hub

    from imgarc.codec.zoo import torch_hub_dir

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert torch_hub_dir() == Path(torch.hub.get_dir())
    monkeypatch.delenv("TORCH_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert torch_hub_dir() == Path(torch.hub.get_dir()) == tmp_path / "xdg" / "torch" / "hub"


def test_integer_scale_only_h_s_follows_the_float_one():
    """ScaleHyperprior's h_s (ReLU after every layer, scales only) in integers: zero means, no
    negative scale, and the table each latent gets is the float h_s's nearest table."""
    import torch

    from imgarc.codec.int_hyper import integerize_h_s

    net = lively_model("bmshj2018-hyperprior")
    table = net.gaussian_conditional.scale_table.double().numpy()
    medians = net.entropy_bottleneck.quantiles[:, 0, 1].detach().double().numpy()
    hyper = integerize_h_s(net.h_s, medians, table, scale_only=True)
    assert [(layer.relu, layer.leaky) for layer in hyper.layers] == [(True, False)] * 3
    z = np.random.default_rng(3).integers(-6, 7, (8, 3, 4)).astype(np.int32)
    indexes, means = hyper.run(z)
    assert indexes.shape == (12, 12, 16) and not means.any()
    with torch.no_grad():
        scales = net.h_s(torch.from_numpy(z + medians[:, None, None]).float()[None])[0].double().numpy()
    expected = np.searchsorted(np.sqrt(table[:-1] * table[1:]), scales, side="right")
    assert scales.min() >= 0 and len(np.unique(expected)) > 5
    assert np.mean(indexes == expected) > 0.98


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("arch", ARCHS)
def test_round_trip_every_coder(arch, zoo_env, monkeypatch, photos, tmp_path):
    """compress -> extract through every coder; the archive records the zoo model exactly, every
    coder gives the same pixels, and they are the encoder's own (codec.synthesize of its code)."""
    from imgarc.codec.registry import load_codec

    model_id, zoo_path = seed(monkeypatch, zoo_env, arch, old_keys=arch == "mbt2018-mean")
    zoo_sha = hashlib.sha256(zoo_path.read_bytes()).hexdigest()
    images = {}
    for coder in CODER_NAMES:
        out, dest = tmp_path / f"{coder}.iarc", tmp_path / f"x-{coder}"
        s = api.compress_folder(photos, out, coder_name=coder, model_id=model_id)
        assert {e.path: e.kind for e in s.entries} == {"a.png": "image", "b.png": "image", "notes.txt": "stored"}
        headers = [e.header for e in api.list_archive(out) if e.header.kind == KIND_IMAGE]
        codec = load_codec(model_id)
        for h in headers:
            assert (h.model_id, h.weights_sha256.hex(), h.tables_sha256.hex()) == (model_id, zoo_sha, codec.tables_sha256)
        assert api.verify_archive(out).ok
        api.extract_archive(out, dest)
        assert (dest / "notes.txt").read_text() == "kept byte-exact\n"
        images[coder] = decoded(dest)
    for coder in CODER_NAMES[1:]:
        for name in images["rans"]:
            assert np.array_equal(images[coder][name], images["rans"][name]), (coder, name)
    rgb = np.asarray(Image.open(photos / "a.png"))
    code = codec.analyse(rgb, 75)
    assert np.array_equal(images["rans"]["a.png"], codec.synthesize(code, *rgb.shape[:2]))
    # Lively latents: many tables in use, non-zero symbols (the coders were really exercised).
    assert len(np.unique(code.y_indexes)) > 5 and np.count_nonzero(code.y_symbols) > code.y_symbols.size // 4
    assert np.count_nonzero(code.z_symbols) > 0


@pytest.mark.parametrize("arch", ARCHS)
def test_conversion_keeps_the_files_tables_and_matches_compressai(arch, zoo_env, monkeypatch):
    """The tables are the file's own integers (no update(), no float rebuild) and imgarc's
    latents are CompressAI's: identical ŷ for the scale-only model, near-identical with means."""
    import torch
    from compressai.entropy_models import EntropyBottleneck, GaussianConditional

    from imgarc.codec.zoo_convert import load_zoo_codec

    model_id, zoo_path = seed(monkeypatch, zoo_env, arch)
    state = torch.load(zoo_path, weights_only=True)

    def no_update(*a, **k):
        raise AssertionError("the conversion must not rebuild tables with float math")

    with monkeypatch.context() as m:
        m.setattr(EntropyBottleneck, "update", no_update)
        m.setattr(GaussianConditional, "update", no_update)
        m.setattr(GaussianConditional, "update_scale_table", no_update)
        codec = load_zoo_codec(model_id)
    for name, t in (("entropy_bottleneck", codec.tables.z), ("gaussian_conditional", codec.tables.y)):
        assert np.array_equal(t.cdfs, state[f"{name}._quantized_cdf"].numpy())
        assert np.array_equal(t.lengths, state[f"{name}._cdf_length"].numpy())
        assert np.array_equal(t.offsets, state[f"{name}._offset"].numpy())
    assert codec.tables.hyper.scale_only == (arch == "bmshj2018-hyperprior")
    assert codec.weights.params["g_a.0.weight"].dtype == np.float32  # the zoo's weights, unrounded

    net = lively_model(arch).eval()
    rgb = noise_rgb(128, 192, 5)
    x = torch.from_numpy(rgb.transpose(2, 0, 1).copy()).float().div(255)[None]
    with torch.no_grad():
        y = net.g_a(x)
        z = net.h_a(y.abs() if arch == "bmshj2018-hyperprior" else y)
        z_hat = torch.round(z - net.entropy_bottleneck._get_medians()) + net.entropy_bottleneck._get_medians()
        params = net.h_s(z_hat)
        means = params.chunk(2, 1)[1] if arch == "mbt2018-mean" else torch.zeros_like(y)
        y_symbols = torch.round(y - means)[0].numpy().astype(np.int32)
        z_symbols = torch.round(z - net.entropy_bottleneck._get_medians())[0].numpy().astype(np.int32)
    code = codec.analyse(rgb, 75)
    assert np.array_equal(code.z_symbols, z_symbols)
    same = np.mean(code.y_symbols == y_symbols)
    assert same == 1.0 if arch == "bmshj2018-hyperprior" else same > 0.99


def test_conversion_is_cached_and_reused(zoo_env, monkeypatch):
    from imgarc.codec import zoo_convert
    from imgarc.codec.zoo import parse_zoo_id
    from imgarc.codec.zoo_convert import cached_zoo_model_ids, zoo_state

    model_id, _ = seed(monkeypatch, zoo_env, "mbt2018-mean")
    m = parse_zoo_id(model_id)
    assert zoo_state(m) == "downloaded" and model_id in cached_zoo_model_ids()
    first = zoo_convert.load_zoo_codec(model_id)
    assert zoo_state(m) == "cached"
    record = json.loads(zoo_convert.find_conversion(m).record.read_text())
    assert record["tables_sha256"] == first.tables_sha256 and record["zoo_sha256"] == first.weights_sha256

    def no_convert(*a, **k):
        raise AssertionError("a cached conversion must be reused")

    monkeypatch.setattr(zoo_convert, "convert", no_convert)
    zoo_convert.forget_loaded()
    assert zoo_convert.load_zoo_codec(model_id).tables_sha256 == first.tables_sha256
    # The converted file alone (CompressAI's file deleted) still serves the model.
    zoo_convert.zoo_file(m).unlink()
    zoo_convert.forget_loaded()
    assert zoo_convert.load_zoo_codec(model_id).weights_sha256 == first.weights_sha256


# --------------------------------------------------------------------------- missing, tampered, mismatched


def test_missing_model_offline_says_what_to_do(zoo_env):
    from imgarc.codec.registry import load_codec

    with pytest.raises(ModelError) as e:
        load_codec("cai:mbt2018-mean:mse:2")
    msg = str(e.value)
    for w in ("cai:mbt2018-mean:mse:2 is not cached", "IMGARC_OFFLINE", "imgarc models --download cai:mbt2018-mean:mse:2",
              "https://compressai.s3.amazonaws.com/models/v1/mbt2018-mean-2-e54a039d.pth.tar", str(zoo_env / "checkpoints")):
        assert w in msg, msg


def test_failed_download_says_what_to_do(zoo_env, monkeypatch):
    """Online allowed but no network: CompressAI's zoo mechanism (torch hub's downloader, with the
    URL's hash prefix) is asked, and its failure becomes one clear message."""
    import torch.hub
    from urllib.error import URLError

    from imgarc.codec.registry import load_codec

    monkeypatch.delenv("IMGARC_OFFLINE")
    calls = []

    def offline_download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, Path(dst).name, hash_prefix))
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline_download)
    with pytest.raises(ModelError) as e:
        load_codec("cai:bmshj2018-hyperprior:ms-ssim:4")
    assert calls == [("https://compressai.s3.amazonaws.com/models/v1/bmshj2018-hyperprior-ms-ssim-4-4377354e.pth.tar",
                      "bmshj2018-hyperprior-ms-ssim-4-4377354e.pth.tar", "4377354e")]
    assert "could not be downloaded ([Errno -3] Temporary failure in name resolution)" in str(e.value)
    assert "imgarc models --download cai:bmshj2018-hyperprior:ms-ssim:4" in str(e.value)


@pytest.mark.slow
def test_cli_missing_model_is_one_clean_line(zoo_env, photos, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "imgarc.cli", "compress", str(photos), str(tmp_path / "a.iarc"),
                        "--model", "cai:mbt2018-mean", "--quality", "30", "--no-progress"],
                       capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 1 and "Traceback" not in r.stderr and len(lines) == 1, r.stderr
    assert "imgarc: error: model cai:mbt2018-mean:mse:3 is not cached" in lines[0]
    assert not (tmp_path / "a.iarc").exists()


def test_extract_without_the_model_names_it(zoo_env, monkeypatch, photos, tmp_path):
    from imgarc.codec import zoo_convert

    model_id, zoo_path = seed(monkeypatch, zoo_env, "bmshj2018-hyperprior")
    api.compress_folder(photos, tmp_path / "a.iarc", model_id=model_id)
    zoo_path.unlink()
    for p in zoo_convert.conversion_dir().iterdir():
        p.unlink()
    zoo_convert.forget_loaded()
    with pytest.raises(ArchiveError) as e:
        api.extract_archive(tmp_path / "a.iarc", tmp_path / "out")
    msg = str(e.value)
    assert "2 of 3 entries could not be extracted" in msg and f"model {model_id} is not cached" in msg
    assert f"imgarc models --download {model_id}" in msg
    assert (tmp_path / "out" / "notes.txt").is_file()  # the rest still comes out


def test_tampered_zoo_file_is_refused(zoo_env, monkeypatch):
    from imgarc.codec.registry import load_codec

    model_id, zoo_path = seed(monkeypatch, zoo_env, "mbt2018-mean")
    data = bytearray(zoo_path.read_bytes())
    data[len(data) // 2] ^= 0x01
    zoo_path.write_bytes(bytes(data))
    with pytest.raises(ModelError) as e:
        load_codec(model_id)
    assert "does not match the sha256 prefix" in str(e.value) and "refusing it" in str(e.value)
    assert not any((zoo_env.parent.parent / "cache").rglob("*.npz"))  # nothing was converted from it


def test_tampered_conversion_is_refused(zoo_env, monkeypatch):
    from imgarc.codec import zoo_convert
    from imgarc.codec.zoo import parse_zoo_id

    model_id, _ = seed(monkeypatch, zoo_env, "mbt2018-mean")
    zoo_convert.load_zoo_codec(model_id)
    npz = zoo_convert.find_conversion(parse_zoo_id(model_id)).weights
    data = bytearray(npz.read_bytes())
    data[len(data) // 3] ^= 0x01
    npz.write_bytes(bytes(data))
    with pytest.raises(ModelError) as e:
        zoo_convert.load_zoo_codec(model_id)
    assert "was altered or damaged" in str(e.value) and "delete it" in str(e.value)


def test_archive_needs_its_own_zoo_file(zoo_env, monkeypatch, photos, tmp_path):
    """Another file under the same model id (other weights): refused, never decoded with them."""
    from imgarc.codec import zoo_convert

    model_id, zoo_path = seed(monkeypatch, zoo_env, "mbt2018-mean", seed=0)
    api.compress_folder(photos, tmp_path / "a.iarc", model_id=model_id)
    zoo_path.unlink()
    for p in zoo_convert.conversion_dir().iterdir():
        p.unlink()
    seed(monkeypatch, zoo_env, "mbt2018-mean", seed=1)
    with pytest.raises(ArchiveError) as e:
        api.extract_archive(tmp_path / "a.iarc", tmp_path / "out")
    assert "was made with other weights for model" in str(e.value)
    assert "the archive needs CompressAI's file" in str(e.value)


def test_other_tables_are_refused(zoo_env, monkeypatch, photos, tmp_path):
    """A decoder whose conversion gave other tables (say, a future recipe) refuses the entries."""
    from imgarc.codec import zoo_convert
    from imgarc.codec.weights import CodingTables, WeightsFile, load_weights, save_weights
    from imgarc.codec.zoo import parse_zoo_id
    import dataclasses

    model_id, _ = seed(monkeypatch, zoo_env, "bmshj2018-hyperprior")
    api.compress_folder(photos, tmp_path / "a.iarc", model_id=model_id)
    c = zoo_convert.find_conversion(parse_zoo_id(model_id))
    w, _ = load_weights(c.weights)
    hyper = dataclasses.replace(w.tables.hyper, scale_thresholds=w.tables.hyper.scale_thresholds + 1)
    other = WeightsFile(w.model_id, w.architecture, w.params, CodingTables(w.tables.z, w.tables.y, hyper), w.meta)
    record = json.loads(c.record.read_text())
    record["weights_sha256"] = save_weights(other, c.weights)
    c.record.write_text(json.dumps(record))
    zoo_convert.forget_loaded()
    with pytest.raises(ArchiveError) as e:
        api.extract_archive(tmp_path / "a.iarc", tmp_path / "out")
    assert "other coding tables" in str(e.value) and "refusing to decode" in str(e.value)


# --------------------------------------------------------------------------- across machines


@pytest.mark.slow
def test_two_machines_convert_alike_and_decode_each_others_archives(zoo_env, monkeypatch, photos, tmp_path):
    """Each 'machine' (a subprocess with its own conversion cache, CPU capability and thread
    count) converts the same zoo file itself; one encodes, the other decodes: same tables hash,
    same pixels as the encoder's own extraction."""
    from tests.test_determinism import capabilities

    model_id, zoo_path = seed(monkeypatch, zoo_env, "mbt2018-mean")
    url_name = zoo_path.name
    archive = tmp_path / "a.iarc"
    caps = capabilities()
    machines = [("default", "1", "encode"), (caps[-1], "2", "decode")]
    results = []
    for n, (cap, threads, role) in enumerate(machines):
        env = dict(os.environ, ATEN_CPU_CAPABILITY=cap, OMP_NUM_THREADS=threads, XDG_CACHE_HOME=str(tmp_path / f"cache{n}"),
                   PYTHONPATH=str(ROOT))
        r = subprocess.run([sys.executable, "-m", "tests.zoo_worker", role, model_id, url_name, str(photos), str(archive),
                            str(tmp_path / f"out{n}")], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
        assert r.returncode == 0, r.stderr[-2000:]
        results.append(json.loads(r.stdout.strip().splitlines()[-1]))
    assert results[0]["tables_sha256"] == results[1]["tables_sha256"]
    a, b = decoded(tmp_path / "out0"), decoded(tmp_path / "out1")
    assert a.keys() == b.keys() == {"a.png", "b.png"}
    for name in a:
        assert np.array_equal(a[name], b[name])


# --------------------------------------------------------------------------- listing


def test_models_lists_embedded_and_zoo_states(zoo_env, monkeypatch, capsys):
    from imgarc.cli import app

    cached, _ = seed(monkeypatch, zoo_env, "mbt2018-mean", quality=2)
    downloaded, _ = seed(monkeypatch, zoo_env, "bmshj2018-hyperprior", quality=1, metric="ms-ssim")
    app(["models", "--download", cached], standalone_mode=False)  # converts the seeded file: no network needed
    assert capsys.readouterr().out.startswith(f"{cached}: cached (CompressAI file sha256 ")
    app(["models"], standalone_mode=False)
    lines = capsys.readouterr().out.splitlines()
    state = {line.split()[0]: line.split()[1] for line in lines if line.startswith("cai:")}
    assert any(" embedded " in line and "(default)" in line for line in lines)
    assert state[cached] == "cached" and state[downloaded] == "downloaded"
    assert state["cai:mbt2018-mean:mse:8"] == "downloadable" and len([s for s in state.values() if s != "not"]) == 32
    assert state["cai:mbt2018"] == "not" and any("cai:mbt2018  not supported: autoregressive" in line for line in lines)
    from imgarc.codec.zoo_convert import cached_zoo_model_ids

    assert sorted(cached_zoo_model_ids()) == sorted([cached, downloaded])


@pytest.mark.slow
def test_bench_puts_cached_zoo_models_beside_the_embedded_one(zoo_env, monkeypatch, photos, tmp_path, tiny_model):
    """`imgarc bench` adds every cached zoo model (one point per zoo quality) to the embedded model's
    run: same tables, curves, BD-rates and plots (bench workers are separate processes that find the
    conversion)."""
    from imgarc.bench.command import BenchOptions, bench
    from imgarc.bench.curves import rate_quality_curves
    from imgarc.codec.zoo_convert import load_zoo_codec

    ids = [seed(monkeypatch, zoo_env, "bmshj2018-hyperprior", quality=q, seed=q)[0] for q in (3, 5)]
    for model_id in ids:
        load_zoo_codec(model_id)
    (photos / "notes.txt").unlink()
    options = BenchOptions(str(photos), out=tmp_path / "bench", qualities="50", coders="rans", coder_qualities="50",
                           baselines="webp", webp_qualities="40,80", jobs=1)
    result, out = bench(options, "imgarc bench (test)")
    rows = {m.id: m for m in result.methods}
    assert all(m.status == "ok" for m in rows.values()), [(m.id, m.reason) for m in rows.values()]
    for q, model_id in zip((3, 5), ids):
        row = rows[f"cai-bmshj2018-hyperprior-mse-{q}-rans"]
        assert row.extra["models"] == [model_id] and row.bytes > 0 and all(im.psnr for im in row.images)
        assert row.label == f"cai:bmshj2018-hyperprior:mse q{q}"
    assert rows["imgarc-rans-q50"].extra["models"] == [tiny_model]
    curves = {c.name: c for c in rate_quality_curves(result.methods)}
    assert len(curves["cai:bmshj2018-hyperprior:mse"].bpp) == 2 and len(curves["imgarc rans"].bpp) == 1
    # compared with WebP like the embedded curve (random models rarely overlap WebP's range: then the row gives why)
    assert any(r["test"] == "cai:bmshj2018-hyperprior:mse" and (r["pchip"] is not None or r["note_pchip"])
               for r in result.bd_rates)
    report = (out / "report.md").read_text()
    assert "cai:bmshj2018-hyperprior:mse q5" in report and ids[1] in report
    # --no-zoo leaves them out; --models adds one explicitly
    from imgarc.bench.command import build_config
    from imgarc.bench.methods import plan_methods

    options.zoo, options.models = False, ids[0]
    planned = plan_methods(build_config(options))
    assert sorted(m.id for m in planned) == ["cai-bmshj2018-hyperprior-mse-3-rans", "imgarc-rans-q50", "webp-q40", "webp-q80"]


def test_a_file_without_tables_is_refused_not_rebuilt():
    """A state dict saved before update() has empty tables: refused (rebuilding them with float
    math is exactly what differs between machines)."""
    import compressai.models as cm

    from imgarc.codec.zoo import ZooModel
    from imgarc.codec.zoo_convert import convert_state_dict

    state = cm.MeanScaleHyperprior(8, 12).state_dict()
    with pytest.raises(ModelError) as e:
        convert_state_dict(ZooModel("mbt2018-mean", "mse", 1), state, Path("x.pth.tar"), "0" * 64)
    assert "carries no coding tables (entropy_bottleneck._quantized_cdf)" in str(e.value)
    net = lively_model("bmshj2018-hyperprior")
    with pytest.raises(ModelError) as e:  # a ScaleHyperprior file offered as mbt2018-mean
        convert_state_dict(ZooModel("mbt2018-mean", "mse", 1), net.state_dict(), Path("x.pth.tar"), "0" * 64)
    assert "is not a CompressAI mbt2018-mean model" in str(e.value)
