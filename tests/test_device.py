"""--device: where the networks run. The CUDA tests run wherever a CUDA GPU can be used and are
skipped elsewhere; everywhere, asking for CUDA where there is none is one clear line."""

from __future__ import annotations

import numpy as np
import pytest

from imgarc import api
from imgarc.api.options import CompressOptions
from imgarc.errors import UsageError
from imgarc.runtime.device import Device, cuda_runtime, resolve_device
from tests.conftest import TINY_MODEL_ID

NO_CUDA = cuda_runtime() is None
needs_cuda = pytest.mark.skipif(NO_CUDA, reason="no CUDA GPU can be used here")


def pixels(folder) -> dict[str, np.ndarray]:
    from PIL import Image

    return {p.name: np.asarray(Image.open(p).convert("RGB")).astype(int) for p in sorted(folder.rglob("*.png"))}


@pytest.mark.skipif(not NO_CUDA, reason="this machine has a CUDA GPU")
def test_cuda_where_there_is_none_is_one_line(photo_folder, tmp_path, tiny_model):
    assert resolve_device(Device.AUTO) is Device.CPU
    with pytest.raises(UsageError, match="--device cuda: no CUDA GPU"):
        api.Compressor(CompressOptions(model_id=TINY_MODEL_ID, device=Device.CUDA)).compress_folder(
            photo_folder, tmp_path / "a.iarc")
    assert not (tmp_path / "a.iarc").exists()


def test_auto_and_cpu_make_the_same_archive_without_a_gpu(photo_folder, tmp_path, tiny_model):
    if not NO_CUDA:
        pytest.skip("with a GPU, auto codes on it")
    for device in (Device.AUTO, Device.CPU):
        api.Compressor(CompressOptions(model_id=TINY_MODEL_ID, device=device)).compress_folder(
            photo_folder, tmp_path / f"{device.value}.iarc")
    assert (tmp_path / "auto.iarc").read_bytes() == (tmp_path / "cpu.iarc").read_bytes()


@needs_cuda
def test_gpu_archives_extract_on_the_cpu_and_back(photo_folder, tmp_path, tiny_model):
    for device in (Device.CUDA, Device.CPU):
        api.Compressor(CompressOptions(model_id=TINY_MODEL_ID, device=device)).compress_folder(
            photo_folder, tmp_path / f"{device.value}.iarc")
    made_on_gpu = tmp_path / "cuda.iarc"
    api.Extractor(tmp_path / "gpu-cpu").extract(made_on_gpu)
    api.Extractor(tmp_path / "gpu-gpu", decoder=api.EntryDecoder(Device.CUDA)).extract(made_on_gpu)
    api.Extractor(tmp_path / "cpu-gpu", decoder=api.EntryDecoder(Device.CUDA)).extract(tmp_path / "cpu.iarc")
    api.Extractor(tmp_path / "cpu-cpu").extract(tmp_path / "cpu.iarc")
    for a, b in (("gpu-cpu", "gpu-gpu"), ("cpu-gpu", "cpu-cpu")):
        for name, x in pixels(tmp_path / a).items():
            gap = np.abs(x - pixels(tmp_path / b)[name])
            assert gap.max() <= 1 and (gap > 0).mean() < 0.05  # one level, in rare values
