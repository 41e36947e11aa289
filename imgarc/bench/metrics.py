"""Image quality metrics on RGB uint8 arrays: PSNR and MS-SSIM (pytorch-msssim)."""

from __future__ import annotations

import math

import numpy as np


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB over all channels (inf for identical images)."""
    if reference.shape != test.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {test.shape}")
    mse = np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def ms_ssim(reference: np.ndarray, test: np.ndarray) -> float:
    """Multi-scale SSIM on RGB (data range 255); images need ≥ 161 px per side (5 scales)."""
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    if reference.shape != test.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {test.shape}")

    def t(a: np.ndarray):
        a = a if a.ndim == 3 else a[:, :, None]
        return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).double()[None]

    return float(_ms_ssim(t(reference), t(test), data_range=255.0))
