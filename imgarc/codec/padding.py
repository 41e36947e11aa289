"""Padding images to the model's stride and back (numpy only, no torch)."""

from __future__ import annotations

import numpy as np


def padded_size(height: int, width: int, stride: int) -> tuple[int, int]:
    """(height, width) rounded up to multiples of `stride`."""
    return -(-height // stride) * stride, -(-width // stride) * stride


def pad_to_multiple(rgb: np.ndarray, stride: int) -> np.ndarray:
    """Edge-replicate to a multiple of `stride` (cheaper to code than a black border)."""
    h, w = rgb.shape[:2]
    ph, pw = padded_size(h, w, stride)
    return np.pad(rgb, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
