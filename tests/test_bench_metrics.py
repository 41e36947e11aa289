"""Quality metrics against values worked out by hand and an independent MS-SSIM."""

from __future__ import annotations

import math

import numpy as np
import pytest

from imgarc.bench.metrics import file_pair_metrics, ms_ssim, psnr
from tests.conftest import image_bytes, noise_rgb


def test_psnr_known_values():
    a = np.full((8, 8, 3), 100, np.uint8)
    assert psnr(a, a) == math.inf
    assert psnr(a, a + 1) == pytest.approx(20 * math.log10(255), abs=1e-12)  # MSE 1: 48.1308 dB
    b = a.copy()
    b[0, 0, 0] = 110  # one error of 10 in 192 samples: MSE 100/192
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 * 192 / 100), abs=1e-12)
    assert psnr(np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 255, np.uint8)) == pytest.approx(0.0)


def _reference_ms_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. 2003 MS-SSIM written out in numpy: 11-tap Gaussian (σ 1.5), valid filtering,
    K = (0.01, 0.03), 5 scales, 2×2 average pooling (zero-padded on odd sides), per channel, averaged."""
    from pytorch_msssim.ssim import _fspecial_gauss_1d

    # The window: pytorch-msssim's own, built in float32 and 1 ulp off numpy's. σ² = E[x²] − μ²
    # cancels heavily, so a window summing to 1 − 3e-8 moves MS-SSIM by ~1e-7: take the exact one.
    size = 11
    g = _fspecial_gauss_1d(size, 1.5).flatten().double().numpy()
    weights = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(a):
        a = np.lib.stride_tricks.sliding_window_view(a, size, axis=0) @ g
        return np.lib.stride_tricks.sliding_window_view(a, size, axis=1) @ g

    def pool(a):
        ph, pw = a.shape[0] % 2, a.shape[1] % 2
        a = np.pad(a, ((ph, ph), (pw, pw)))
        h, w = (a.shape[0] - 2) // 2 + 1, (a.shape[1] - 2) // 2 + 1
        return a[: 2 * h, : 2 * w].reshape(h, 2, w, 2).mean(axis=(1, 3))

    per_channel = []
    for ch in range(3):
        a, b = x[:, :, ch].astype(np.float64), y[:, :, ch].astype(np.float64)
        factors = []
        for level in range(5):
            mu_a, mu_b = blur(a), blur(b)
            saa, sbb, sab = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
            cs_map = (2 * sab + c2) / (saa + sbb + c2)
            if level < 4:
                factors.append(max(cs_map.mean(), 0.0))
                a, b = pool(a), pool(b)
            else:
                factors.append(max((((2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)) * cs_map).mean(), 0.0))
        per_channel.append(np.prod([f**w for f, w in zip(factors, weights)]))
    return float(np.mean(per_channel))


@pytest.mark.slow
@pytest.mark.parametrize("noise", [5, 30])
def test_ms_ssim_matches_an_independent_implementation(noise):
    a = noise_rgb(171, 200, 1)  # odd height: the padded pooling path
    rng = np.random.default_rng(7)
    b = np.clip(a.astype(np.int16) + rng.normal(0, noise, a.shape).round().astype(np.int16), 0, 255).astype(np.uint8)
    got = ms_ssim(a, b)
    assert got == pytest.approx(_reference_ms_ssim(a, b), abs=1e-9)
    assert 0 < got < 1
    assert ms_ssim(a, a) == pytest.approx(1.0, abs=1e-12)


def test_file_pair_metrics(tmp_path):
    a = noise_rgb(170, 180, 3)
    (tmp_path / "a.png").write_bytes(image_bytes(a, "PNG"))
    (tmp_path / "b.png").write_bytes(image_bytes(np.clip(a.astype(int) + 1, 0, 255).astype(np.uint8), "PNG"))
    (tmp_path / "a.jpg").write_bytes(image_bytes(a, "JPEG", quality=50))
    p, m = file_pair_metrics(tmp_path / "a.png", tmp_path / "a.png")
    assert p == math.inf and m == pytest.approx(1.0)
    p, m = file_pair_metrics(tmp_path / "a.png", tmp_path / "a.jpg")
    from PIL import Image

    decoded = np.asarray(Image.open(tmp_path / "a.jpg").convert("RGB"))
    assert p == pytest.approx(psnr(a, decoded)) and m == pytest.approx(ms_ssim(a, decoded))
    small = noise_rgb(100, 180, 4)
    (tmp_path / "s.png").write_bytes(image_bytes(small, "PNG"))
    p, m = file_pair_metrics(tmp_path / "s.png", tmp_path / "s.png")
    assert m is None  # below 161 px a side MS-SSIM's 5 scales do not fit
    with pytest.raises(ValueError, match="180x170"):
        file_pair_metrics(tmp_path / "s.png", tmp_path / "a.png")
