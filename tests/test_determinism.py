"""An archive decodes to identical bytes whatever the thread count or CPU code path.

Encode once; decode in subprocesses with 1 and 2 torch threads and under each ATEN CPU
capability this machine has (an archive is written on one machine and read on another).
Each subprocess decodes the archive of every coder, so the matrix costs few interpreter starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imgarc import api
from imgarc.coders import CODER_NAMES

DECODE_ALL = """
import hashlib, json, sys, torch
torch.set_num_threads(int(sys.argv[1]))
from pathlib import Path
from imgarc import api
digests = {}
for archive in sys.argv[3:]:
    dest = Path(sys.argv[2]) / Path(archive).stem
    api.extract_archive(Path(archive), dest)
    digests[Path(archive).stem] = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(dest.rglob('*')) if p.is_file()}
print(json.dumps(digests))
"""


def capabilities() -> list[str]:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    caps = ["default"]
    if " avx2" in flags:
        caps.append("avx2")
    if " avx512f" in flags:
        caps.append("avx512")
    return caps


@pytest.fixture(scope="module")
def archives(tmp_path_factory, tiny_model_dir):
    from tests.conftest import image_bytes, noise_rgb

    root = tmp_path_factory.mktemp("det")
    src = root / "src"
    src.mkdir()
    for i, (h, w) in enumerate([(96, 130), (70, 64)]):
        (src / f"p{i}.png").write_bytes(image_bytes(noise_rgb(h, w, 10 + i), "PNG"))
    old = os.environ.get("IMGARC_MODEL_PATH")
    os.environ["IMGARC_MODEL_PATH"] = str(tiny_model_dir)
    try:
        paths = []
        for coder in CODER_NAMES:
            out = root / f"{coder}.iarc"
            api.compress_folder(src, out, coder_name=coder, model_id="tiny-test")
            paths.append(out)
        # The shipped model on the shipped sample photos: its convolutions are big enough for torch to split
        # sums by thread count (the tiny model's are not), which is what this test must catch.
        big = root / "big"
        big.mkdir()
        for sample in sorted((Path(__file__).parent.parent / "assets" / "samples").glob("*.png")):
            (big / sample.name).write_bytes(sample.read_bytes())
        from imgarc.codec.registry import default_model_id

        api.compress_folder(big, root / "shipped.iarc", model_id=default_model_id())
        paths.append(root / "shipped.iarc")
    finally:
        if old is None:
            del os.environ["IMGARC_MODEL_PATH"]
        else:
            os.environ["IMGARC_MODEL_PATH"] = old
    return root, paths


def decode_digests(root: Path, paths: list[Path], threads: int, capability: str, tiny_model_dir: Path) -> dict:
    out = root / f"out-{threads}-{capability}"
    env = dict(os.environ, ATEN_CPU_CAPABILITY=capability, IMGARC_MODEL_PATH=str(tiny_model_dir))
    r = subprocess.run([sys.executable, "-c", DECODE_ALL, str(threads), str(out), *map(str, paths)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_decoding_is_identical_across_threads_and_cpu_paths(archives, tiny_model_dir):
    root, paths = archives
    runs = {(t, c): decode_digests(root, paths, t, c, tiny_model_dir) for t in (1, 2) for c in capabilities()[-1:]}
    runs.update({(1, c): decode_digests(root, paths, 1, c, tiny_model_dir) for c in capabilities()[:-1]})
    reference = runs[(1, capabilities()[-1])]
    assert len(reference) == len(paths) and all(reference.values())
    for key, digests in runs.items():
        assert digests == reference, f"decode under threads/capability {key} differs"
