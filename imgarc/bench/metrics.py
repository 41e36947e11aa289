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


MS_SSIM_MIN_SIDE = 161  # 5 scales of an 11-tap window


def load_rgb(path) -> np.ndarray:
    """The pixels of an image file as RGB uint8 (grayscale replicated, alpha dropped)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def file_pair_metrics(reference_path, decoded_path) -> tuple[float, float | None]:
    """(PSNR, MS-SSIM) of a decoded image file against its original; MS-SSIM None below 161 px.

    Runs on one intra-op thread so that the value does not depend on how many threads or
    worker processes the caller uses.
    """
    import torch

    a, b = load_rgb(reference_path), load_rgb(decoded_path)
    if a.shape != b.shape:
        raise ValueError(f"{decoded_path} is {b.shape[1]}x{b.shape[0]}, its original {a.shape[1]}x{a.shape[0]}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        m = ms_ssim(a, b) if min(a.shape[:2]) >= MS_SSIM_MIN_SIDE else None
    finally:
        torch.set_num_threads(threads)
    return psnr(a, b), m
