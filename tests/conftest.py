"""Shared fixtures: a tiny random model exported through the real export path, test photos."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

TINY_MODEL_ID = "tiny-test"


def install_model(folder: Path, model, arch, model_id: str, description: str) -> str:
    """Export `model` through the real export path into `folder` and make it that catalog's default."""
    from imgarc.codec.export import export_model
    from imgarc.train.publish import register_model

    folder.mkdir(parents=True, exist_ok=True)
    sha = export_model(model, arch, model_id, folder / f"{model_id}.npz", {"note": "random test model"})
    register_model(folder, model_id, f"{model_id}.npz", sha, 75, description, make_default=True,
                   variable_rate=arch.rate_points > 1)
    return sha


def export_tiny_model(folder: Path, seed: int = 0, model_id: str = TINY_MODEL_ID) -> str:
    import torch

    from imgarc.codec.architecture import Architecture, build_model

    torch.manual_seed(seed)
    arch = Architecture("mbt2018-mean", N=8, M=8)
    return install_model(folder, build_model(arch), arch, model_id, "tiny random model for tests")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    export_tiny_model(folder)
    return folder


@pytest.fixture
def tiny_model(tiny_model_dir, monkeypatch) -> str:
    """Makes the tiny model installed (IMGARC_MODEL_PATH) for this test; returns its id."""
    monkeypatch.setenv("IMGARC_MODEL_PATH", str(tiny_model_dir))
    return TINY_MODEL_ID


def noise_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth gradient plus noise: PNG cannot shrink it much, so the codec always codes it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / max(w - 1, 1), y * 255 / max(h - 1, 1), (x + y) * 127 / max(h + w - 2, 1)], -1)
    return np.clip(base + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)


def image_bytes(rgb: np.ndarray, fmt: str, **kwargs) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


@pytest.fixture
def photo_folder(tmp_path) -> Path:
    """A small folder: PNGs, a JPEG, a grayscale PNG, a text file, a corrupt JPEG, nested paths."""
    src = tmp_path / "src"
    (src / "nested" / "deeper").mkdir(parents=True)
    (src / "a.png").write_bytes(image_bytes(noise_rgb(70, 90, 1), "PNG"))
    (src / "nested" / "b.jpg").write_bytes(image_bytes(noise_rgb(64, 64, 2), "JPEG", quality=92))
    (src / "nested" / "deeper" / "gray ç.png").write_bytes(image_bytes(noise_rgb(40, 50, 3)[:, :, 0], "PNG"))
    (src / "notes.txt").write_bytes(b"not a photo\n" * 50)
    good_jpeg = image_bytes(noise_rgb(48, 48, 4), "JPEG")
    (src / "broken.jpg").write_bytes(good_jpeg[: len(good_jpeg) // 3])
    return src
