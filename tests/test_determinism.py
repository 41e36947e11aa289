"""Archives decode to the pixels their encoder meant, on any CPU code path and decode pool size.

An archive is written on one machine and read on another. Here the encoder runs in a
subprocess under ATEN_CPU_CAPABILITY=default with one thread (torch and BLAS) and records, per
entry, its own latent code and the pixels that code synthesizes to. Decoders run in one
subprocess per capability this CPU has (default/avx2/avx512) and extract every archive: tiny
single-rate and variable-rate models (several qualities; the latter also with an int8 g_a and
g_s) and the shipped default model and `--tune fast` model (pruned, int8-stored) on the shipped
sample photos, with every coder. Every decoded photo must equal the encoder's intent byte for
byte, and decode from the same code.

What the decode subprocesses vary, precisely: the CPU code path (one process each), and the
torch thread count the *caller* set before extracting (TORCH_THREADS: 1, 2, 4). Synthesis pins
itself to one intra-op thread (Networks) and h_s is integer arithmetic, so no
thread count reaches the arithmetic: those runs check that the caller's setting does not leak
into it (the shipped model's convolutions are big enough that an unpinned g_s would split its
sums by thread count). They do not vary how many entries decode side by side: that is
pool_workers() of the machine; test_decode_pool_size_changes_no_byte_and_no_order varies it, and
test_compress_pool_size_changes_no_byte the same for compress.

The boundary stress test puts h_s scale outputs exactly on the table thresholds (T-1, T, T+1
for every threshold, with and without gains) and checks the table indexes against the integer
rule, here and in the decode subprocesses. Why it matters: with a float h_s a scale within one
rounding of a threshold picks either table depending on summation order; the rANS stream then
desynchronises. benchmarks/determinism.py measures how often that happens on Kodak.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from imgarc.coders import CODER_NAMES
from tests.conftest import TINY_MODEL_ID, image_bytes, noise_rgb
from tests.determinism_worker import BOUNDARY_OFFSETS, boundary_cases, boundary_digests
from tests.test_int8 import INT8_VR_MODEL_ID, export_tiny_int8_variant
from tests.test_variable_rate import VR_MODEL_ID, export_tiny_vr_model
from tests.test_weight_storage import W8_MODEL_ID, export_tiny_int8_stored

REPO = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "determinism_worker.py"
ENCODE_CAPABILITY = "default"
ONNX = "onnx"  # the decode run on ONNX Runtime, beside one torch run per capability
# The torch thread count set before each extraction (not the decode pool size): the worker's "threads".
TORCH_THREADS = (1, 2, 4)
POOL_WORKERS = (1, 2, 4)  # decode pool sizes of test_decode_pool_size_changes_no_byte_and_no_order
TINY_VR_QUALITIES = (5, 60, 100)
SHIPPED_VR_QUALITIES = (30, 90)  # a variable-rate default: two qualities; a single-rate one: the default


def capabilities() -> list[str]:
    """The ATEN_CPU_CAPABILITY values this CPU can run."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    caps = ["default"]
    if " avx2" in flags:
        caps.append("avx2")
    if " avx512f" in flags:
        caps.append("avx512")
    return caps


@dataclass
class Matrix:
    encoded: dict  # archive -> entry -> {"code", "pixels"}
    decoded: dict  # capability -> torch threads -> {"archives": ..., "boundary": ...}; plus "g_s_runs"
    tiny_weights: Path


def _worker(mode: str, job: dict, root: Path, name: str, env: dict) -> subprocess.Popen:
    (root / f"{name}.job.json").write_text(json.dumps(job))
    return subprocess.Popen([sys.executable, str(WORKER), mode, str(root / f"{name}.job.json"), str(root / f"{name}.out.json")],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, root: Path, name: str) -> dict:
    _, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err[-3000:]
    return json.loads((root / f"{name}.out.json").read_text())


@pytest.fixture(scope="module")
def matrix(tmp_path_factory, tiny_model_dir) -> Matrix:
    from imgarc.codec.registry import Tune, default_model_id, load_codec

    root = tmp_path_factory.mktemp("det")
    vr_dir = root / "vr-models"
    export_tiny_vr_model(vr_dir)
    export_tiny_int8_variant(vr_dir)  # its int8 g_a and g_s: ONNX Runtime's int8 kernels, torch's fake quantization
    export_tiny_int8_stored(vr_dir)  # int8-stored networks and an 8-bit integer h_s
    tiny_src, shipped_src = root / "tiny-src", root / "shipped-src"
    tiny_src.mkdir()
    shipped_src.mkdir()
    for i, (h, w) in enumerate([(96, 130), (70, 64)]):
        (tiny_src / f"p{i}.png").write_bytes(image_bytes(noise_rgb(h, w, 10 + i), "PNG"))
    # The shipped model on the shipped photos: its convolutions are big enough for torch to split
    # sums by thread count (the tiny models' are not). PNGs only: a JPEG is written back lossy.
    for sample in sorted((REPO / "assets" / "samples").glob("*.png")):
        (shipped_src / sample.name).write_bytes(sample.read_bytes())
    # The shipped default and the shipped fast variant (pruned, int8-stored), before
    # IMGARC_MODEL_PATH names the tiny models' folders.
    shipped = [m for m in (default_model_id(), default_model_id(Tune.FAST)) if m]
    models = [(TINY_MODEL_ID, tiny_src, (75,)), (VR_MODEL_ID, tiny_src, TINY_VR_QUALITIES),
              (INT8_VR_MODEL_ID, tiny_src, TINY_VR_QUALITIES), (W8_MODEL_ID, tiny_src, TINY_VR_QUALITIES),
              *[(m, shipped_src, SHIPPED_VR_QUALITIES if load_codec(m).variable_rate else (75,)) for m in shipped]]
    jobs = [{"archive": str(root / f"{model}-q{q}-{coder}.iarc"), "src": str(src), "model": model, "coder": coder, "quality": q}
            for model, src, qualities in models for q in qualities for coder in CODER_NAMES]
    extra = [p for p in os.environ.get("IMGARC_MODEL_PATH", "").split(os.pathsep) if p]  # where the default may come from
    env = dict(os.environ, IMGARC_MODEL_PATH=os.pathsep.join([str(tiny_model_dir), str(vr_dir), *extra]))
    blas_1 = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    torch_env = dict(env, IMGARC_RUNTIME="torch")  # ATEN_CPU_CAPABILITY steers torch's kernels only
    encoded = _finish(_worker("encode", {"jobs": jobs, "threads": 1}, root, "encode",
                              dict(torch_env, ATEN_CPU_CAPABILITY=ENCODE_CAPABILITY, **blas_1)), root, "encode")
    tiny_weights = tiny_model_dir / f"{TINY_MODEL_ID}.npz"
    decode_job = {"archives": [j["archive"] for j in jobs], "threads": list(TORCH_THREADS),  # torch.set_num_threads
                  "boundary_weights": str(tiny_weights)}
    # One process per capability (fixed when torch loads), run side by side.
    procs = {cap: _worker("decode", dict(decode_job, dest=str(root / f"out-{cap}")), root, f"decode-{cap}",
                          dict(torch_env, ATEN_CPU_CAPABILITY=cap)) for cap in capabilities()}
    # The same archives on ONNX Runtime (its kernels pick their own instruction set).
    procs[ONNX] = _worker("decode", dict(decode_job, dest=str(root / "out-onnx")), root, "decode-onnx",
                          dict(env, IMGARC_RUNTIME="onnx"))
    decoded = {cap: _finish(p, root, f"decode-{cap}") for cap, p in procs.items()}
    return Matrix(encoded, decoded, tiny_weights)


@pytest.mark.slow
def test_every_archive_decodes_to_the_encoders_pixels(matrix):
    n_archives = 3 * (1 + 2 * len(TINY_VR_QUALITIES)) + 3  # at least one shipped quality
    assert len(matrix.encoded) >= n_archives
    compared = 0
    for cap, runs in matrix.decoded.items():
        for threads in map(str, TORCH_THREADS):
            archives = runs[threads]["archives"]
            assert archives.keys() == matrix.encoded.keys()
            for archive, entries in matrix.encoded.items():
                assert archives[archive].keys() == entries.keys() and entries
                for path, intent in entries.items():
                    got = archives[archive][path]
                    where = f"{archive}:{path} decoded under {cap} with torch set to {threads} threads"
                    assert got["code"] == intent["code"], f"{where}: latent code differs from the encoder's"
                    if cap == ONNX:  # another runtime: the same on every run (tests/test_runtimes.py bounds the gap)
                        assert got["pixels"] == matrix.decoded[ONNX]["1"]["archives"][archive][path]["pixels"], where
                    else:
                        assert got["pixels"] == intent["pixels"], f"{where}: pixels differ from the encoder's"
                    compared += 1
    assert compared == (len(capabilities()) + 1) * len(TORCH_THREADS) * sum(map(len, matrix.encoded.values()))


@pytest.mark.slow
def test_qualities_and_coders_make_different_archives_of_the_same_code(matrix):
    """Guards the matrix itself: qualities really change the code; coders never do."""
    vr = {k: v for k, v in matrix.encoded.items() if k.startswith(f"{VR_MODEL_ID}-")}
    codes = {q: {e["code"] for k, v in vr.items() if k.startswith(f"{VR_MODEL_ID}-q{q}-") for e in v.values()}
             for q in TINY_VR_QUALITIES}
    assert all(len(c) == 2 for c in codes.values())  # two photos, one code each whatever the coder
    assert len(set().union(*codes.values())) == 2 * len(TINY_VR_QUALITIES)


@pytest.mark.slow
def test_boundary_scales_pick_the_tables_the_integer_rule_says(matrix):
    cases = boundary_cases(matrix.tiny_weights)
    thresholds = cases["plain"].hyper.scale_thresholds
    targets = np.array([int(t) + d for t in thresholds for d in BOUNDARY_OFFSETS])
    for name, case in cases.items():
        indexes, _ = case.hyper.run(case.z_symbols, case.gains)
        assert indexes.shape[0] == len(targets) and indexes.shape[1:] == (12, 16)
        # every position of a channel got that channel's table, exactly the rule's
        np.testing.assert_array_equal(indexes, np.broadcast_to(case.expected_indexes[:, None, None], indexes.shape), err_msg=name)
        if name != "gain-above-1":  # these land exactly on T-1, T, T+1
            np.testing.assert_array_equal(case.scales, targets)
            k = np.arange(len(thresholds))
            np.testing.assert_array_equal(case.expected_indexes.reshape(-1, 3), np.stack([k, k + 1, k + 1], 1))
        else:  # nearest reachable scale at or below each target; some sit exactly on a threshold
            assert np.all(case.scales <= targets) and np.all(case.scales > targets - 7)
            assert np.isin(case.scales, thresholds).sum() > len(thresholds) // 10


@pytest.mark.slow
def test_boundary_cases_are_identical_under_every_capability_and_torch_thread_setting(matrix):
    here = boundary_digests(matrix.tiny_weights)
    for cap, runs in matrix.decoded.items():
        for threads in map(str, TORCH_THREADS):
            assert runs[threads]["boundary"] == here, f"boundary table indexes differ under {cap}, torch set to {threads} threads"


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}



@pytest.mark.slow
def test_compress_pool_size_changes_no_byte(tmp_path, monkeypatch):
    """compress codes photos side by side on pool_workers() threads, and the tiles of a large
    photo's g_a and g_s side by side too: with 1, 2 and 4 cores the archive is byte-identical,
    and with more than one every photo was coded on a thread of the pool. The shipped default
    model: both shipped samples (768x512, run here as two tiles, as larger photos are), a crop of
    each, one JPEG, one text."""
    from PIL import Image

    from imgarc import api, ordered_pool
    from imgarc.api import compressor
    from imgarc.codec import image_codec

    monkeypatch.delenv("IMGARC_MODEL_PATH", raising=False)
    src = tmp_path / "src"
    src.mkdir()
    for k, path in enumerate(sorted((REPO / "assets" / "samples").glob("*.png"))):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        (src / f"p{k}.png").write_bytes(path.read_bytes())
        (src / f"p{k} crop.png").write_bytes(image_bytes(np.ascontiguousarray(rgb[40:140, 100:260]), "PNG"))
    (src / "q.jpg").write_bytes(image_bytes(noise_rgb(48, 64, 4), "JPEG", quality=90))
    (src / "notes.txt").write_bytes(b"not a photo\n" * 50)

    coded_on: list[str] = []
    entry_of = compressor.Compressor.entry_of

    def recording_entry_of(self, source):
        coded_on.append(threading.current_thread().name)
        return entry_of(self, source)

    monkeypatch.setattr(compressor.Compressor, "entry_of", recording_entry_of)
    monkeypatch.setattr(image_codec, "ANALYSIS_TILES", replace(image_codec.ANALYSIS_TILES, whole=0))
    archives = {}
    for workers in POOL_WORKERS:
        monkeypatch.setattr(ordered_pool, "usable_cores", lambda workers=workers: workers)
        monkeypatch.setattr(image_codec, "usable_cores", lambda workers=workers: workers)
        coded_on.clear()
        archive = tmp_path / f"photos-{workers}.iarc"
        summary = api.compress_folder(src, archive)
        assert sum(e.kind is api.EntryKind.PHOTO for e in summary.entries) == 5
        assert len(coded_on) == 6
        expected = {threading.main_thread().name} if workers == 1 else {f"{ordered_pool.WORKER_NAME}-{k}" for k in range(workers)}
        assert set(coded_on) <= expected and (workers == 1 or threading.main_thread().name not in coded_on)
        archives[workers] = archive.read_bytes()
    for workers in POOL_WORKERS[1:]:
        assert archives[workers] == archives[1], f"{workers} workers wrote other bytes than 1"

@pytest.mark.slow
def test_decode_pool_size_changes_no_byte_and_no_order(tmp_path, monkeypatch):
    """extract and salvage decode entries side by side on pool_workers() threads (min(4, CPUs)).

    With 1, 2 and 4 workers every file comes out byte-identical and the entries come back in
    archive order; every photo was synthesized on a thread of that pool (on the caller's thread
    for 1 worker), so the pool size really changed. The caller's torch thread count is 4 and
    stays 4: each photo's g_s runs on one intra-op thread (Networks.synthesis,
    ImageCodec.synthesize_y_hat) whatever the caller set. The shipped default model, on small crops
    of the shipped photos, and one JPEG.
    """
    import torch
    from PIL import Image

    from imgarc import api
    from imgarc.codec.image_codec import ImageCodec
    from imgarc import ordered_pool
    from imgarc.ordered_pool import pool_workers

    monkeypatch.delenv("IMGARC_MODEL_PATH", raising=False)  # the shipped default model
    src = tmp_path / "src"
    src.mkdir()
    samples = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((REPO / "assets" / "samples").glob("*.png"))]
    for k in range(4):
        crop = samples[k % len(samples)][60 * k : 60 * k + 32, 90 * k : 90 * k + 48]  # one size: one set of kernels
        (src / f"p{k}.png").write_bytes(image_bytes(np.ascontiguousarray(crop), "PNG"))
        (src / f"p{k} notes.txt").write_bytes(f"notes on photo {k}\n".encode() * (k + 1))
    (src / "p4.jpg").write_bytes(image_bytes(noise_rgb(32, 48, 4), "JPEG", quality=90))
    archive = tmp_path / "photos.iarc"
    api.compress_folder(src, archive)
    order = [e.header.path for e in api.list_archive(archive)]
    photos = sum(name.startswith("p") and not name.endswith(".txt") for name in order)
    assert len(order) == 9 and photos == 5
    cut = tmp_path / "cut.iarc"  # index and footer cut off: salvage finds the entries by scanning
    cut.write_bytes(archive.read_bytes()[:-30])

    synthesized_on: list[str] = []
    synthesize = ImageCodec.synthesize_y_hat

    def recording_synthesize(self, y_hat, height, width):
        synthesized_on.append(threading.current_thread().name)
        return synthesize(self, y_hat, height, width)

    monkeypatch.setattr(ImageCodec, "synthesize_y_hat", recording_synthesize)
    caller_threads = torch.get_num_threads()
    torch.set_num_threads(4)
    runs = {}
    try:
        for workers in POOL_WORKERS:
            monkeypatch.setattr(ordered_pool, "usable_cores", lambda workers=workers: workers)
            assert pool_workers() == workers
            synthesized_on.clear()
            extracted = api.extract_archive(archive, tmp_path / f"extract-{workers}")
            assert torch.get_num_threads() == 4
            salvaged = api.salvage_archive(cut, tmp_path / f"salvage-{workers}")
            assert torch.get_num_threads() == 4
            assert salvaged.index_rebuilt
            assert len(synthesized_on) == 2 * photos
            if workers == 1:
                assert set(synthesized_on) == {threading.main_thread().name}
            else:
                assert set(synthesized_on) <= {f"{ordered_pool.WORKER_NAME}-{k}" for k in range(workers)}
            runs[workers] = {
                "extracted": files_under(tmp_path / f"extract-{workers}"),
                "extract order": [e.path for e in extracted.entries],
                "salvaged": files_under(tmp_path / f"salvage-{workers}"),
                "salvage order": [e.path for e in salvaged.entries],
                "salvage damaged": salvaged.damaged,
            }
    finally:
        torch.set_num_threads(caller_threads)
    one = runs[1]
    assert one["extract order"] == one["salvage order"] == order
    assert sorted(one["extracted"]) == sorted(order) and one["salvaged"] == one["extracted"]
    for workers in POOL_WORKERS[1:]:
        for what in one:
            assert runs[workers][what] == one[what], f"{what}: {workers} decode workers differ from 1"
