"""Archives decode to the pixels their encoder meant, on any CPU code path and thread count.

An archive is written on one machine and read on another. Here the encoder runs in a
subprocess under ATEN_CPU_CAPABILITY=default with one thread (torch and BLAS) and records, per
entry, its own latent code and the pixels that code synthesizes to. Decoders run in one
subprocess per capability this CPU has (default/avx2/avx512), each looping over 1, 2 and 4
torch threads and extracting every archive: tiny single-rate and variable-rate models (several
qualities) and the shipped default model on the shipped sample photos, with every coder. Every
decoded photo must equal the encoder's intent byte for byte, and decode from the same code.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from imgarc.coders import CODER_NAMES
from tests.conftest import TINY_MODEL_ID, image_bytes, noise_rgb
from tests.determinism_worker import BOUNDARY_OFFSETS, boundary_cases, boundary_digests
from tests.test_variable_rate import VR_MODEL_ID, export_tiny_vr_model

REPO = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "determinism_worker.py"
ENCODE_CAPABILITY = "default"
DECODE_THREADS = (1, 2, 4)
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
    decoded: dict  # capability -> threads -> {"archives": ..., "boundary": ...}; plus "g_s_runs"
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
    from imgarc.codec.registry import default_model_id, load_codec

    root = tmp_path_factory.mktemp("det")
    vr_dir = root / "vr-models"
    export_tiny_vr_model(vr_dir)
    tiny_src, shipped_src = root / "tiny-src", root / "shipped-src"
    tiny_src.mkdir()
    shipped_src.mkdir()
    for i, (h, w) in enumerate([(96, 130), (70, 64)]):
        (tiny_src / f"p{i}.png").write_bytes(image_bytes(noise_rgb(h, w, 10 + i), "PNG"))
    # The shipped model on the shipped photos: its convolutions are big enough for torch to split
    # sums by thread count (the tiny models' are not). PNGs only: a JPEG is written back lossy.
    for sample in sorted((REPO / "assets" / "samples").glob("*.png")):
        (shipped_src / sample.name).write_bytes(sample.read_bytes())
    shipped = default_model_id()  # before IMGARC_MODEL_PATH names the tiny models' folders
    shipped_q = SHIPPED_VR_QUALITIES if load_codec(shipped).variable_rate else (75,)
    models = [(TINY_MODEL_ID, tiny_src, (75,)), (VR_MODEL_ID, tiny_src, TINY_VR_QUALITIES), (shipped, shipped_src, shipped_q)]
    jobs = [{"archive": str(root / f"{model}-q{q}-{coder}.iarc"), "src": str(src), "model": model, "coder": coder, "quality": q}
            for model, src, qualities in models for q in qualities for coder in CODER_NAMES]
    extra = [p for p in os.environ.get("IMGARC_MODEL_PATH", "").split(os.pathsep) if p]  # where the default may come from
    env = dict(os.environ, IMGARC_MODEL_PATH=os.pathsep.join([str(tiny_model_dir), str(vr_dir), *extra]))
    blas_1 = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    encoded = _finish(_worker("encode", {"jobs": jobs, "threads": 1}, root, "encode",
                              dict(env, ATEN_CPU_CAPABILITY=ENCODE_CAPABILITY, **blas_1)), root, "encode")
    tiny_weights = tiny_model_dir / f"{TINY_MODEL_ID}.npz"
    decode_job = {"archives": [j["archive"] for j in jobs], "threads": list(DECODE_THREADS),
                  "boundary_weights": str(tiny_weights)}
    # One process per capability (fixed when torch loads), run side by side.
    procs = {cap: _worker("decode", dict(decode_job, dest=str(root / f"out-{cap}")), root, f"decode-{cap}",
                          dict(env, ATEN_CPU_CAPABILITY=cap)) for cap in capabilities()}
    decoded = {cap: _finish(p, root, f"decode-{cap}") for cap, p in procs.items()}
    return Matrix(encoded, decoded, tiny_weights)


def test_every_archive_decodes_to_the_encoders_pixels(matrix):
    n_archives = 3 * (1 + len(TINY_VR_QUALITIES)) + 3  # at least one shipped quality
    assert len(matrix.encoded) >= n_archives
    compared = 0
    for cap, runs in matrix.decoded.items():
        for threads in map(str, DECODE_THREADS):
            archives = runs[threads]["archives"]
            assert archives.keys() == matrix.encoded.keys()
            for archive, entries in matrix.encoded.items():
                assert archives[archive].keys() == entries.keys() and entries
                for path, intent in entries.items():
                    got = archives[archive][path]
                    where = f"{archive}:{path} decoded under {cap} with {threads} threads"
                    assert got["code"] == intent["code"], f"{where}: latent code differs from the encoder's"
                    assert got["pixels"] == intent["pixels"], f"{where}: pixels differ from the encoder's"
                    compared += 1
    assert compared == len(capabilities()) * len(DECODE_THREADS) * sum(map(len, matrix.encoded.values()))


def test_qualities_and_coders_make_different_archives_of_the_same_code(matrix):
    """Guards the matrix itself: qualities really change the code; coders never do."""
    vr = {k: v for k, v in matrix.encoded.items() if k.startswith(f"{VR_MODEL_ID}-")}
    codes = {q: {e["code"] for k, v in vr.items() if k.startswith(f"{VR_MODEL_ID}-q{q}-") for e in v.values()}
             for q in TINY_VR_QUALITIES}
    assert all(len(c) == 2 for c in codes.values())  # two photos, one code each whatever the coder
    assert len(set().union(*codes.values())) == 2 * len(TINY_VR_QUALITIES)


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


def test_boundary_cases_are_identical_under_every_capability_and_thread_count(matrix):
    here = boundary_digests(matrix.tiny_weights)
    for cap, runs in matrix.decoded.items():
        for threads in map(str, DECODE_THREADS):
            assert runs[threads]["boundary"] == here, f"boundary table indexes differ under {cap}, {threads} threads"
