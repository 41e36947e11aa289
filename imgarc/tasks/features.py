"""What a latent classifier reads: ŷ and log σ̂ of the grid that covers the photo.

Two kinds of input, one function each, giving identical numbers for the same latents:
- a decoded archive entry (`photo_features`, from imgarc.api.latents.PhotoLatents);
- a photo quantized in memory (`code_features`): training data, never entropy-coded, since the
  coder is lossless and the decoder gives back exactly these integers.
Both are in ŷ's own units (ungained), so photos coded at different qualities are comparable.
"""

from __future__ import annotations

import numpy as np

from imgarc.api.latents import PhotoLatents, code_latents, latent_grid_size
from imgarc.codec.image_codec import ImageCodec, LatentCode

# Recorded in task files and cache paths: a change to what features mean must change this.
FEATURES = "yhat+log-sigma/v1"

# The eight flips and rotations of a square, as (quarter turns, then mirror left-right), in the
# order `learn --augment N` takes the first N: the first four keep a photo's width and height.
DIHEDRAL = ((0, False), (0, True), (2, False), (2, True), (1, False), (3, False), (1, True), (3, True))


def latent_features(y_hat: np.ndarray, scales: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """float32 [2M, rows, cols]: ŷ, then log σ̂, on the latents that cover the photo, rounded to
    float16 values: what the training cache stores, so a classifier sees the very numbers it was
    trained on (a nearly constant channel would otherwise turn float32-vs-float16 differences
    into large normalized ones)."""
    features = np.concatenate([y_hat[:, :rows, :cols], np.log(scales[:, :rows, :cols])])
    return features.astype(np.float16).astype(np.float32)


def photo_features(photo: PhotoLatents) -> np.ndarray:
    """Features of a photo decoded from an archive."""
    return latent_features(photo.y_hat, photo.scales, photo.rows, photo.cols)


def code_features(codec: ImageCodec, code: LatentCode, height: int, width: int) -> np.ndarray:
    """Features of a height x width photo's integer latents (as its archive entry would give)."""
    y_hat, scales, _ = code_latents(codec, code)
    rows, cols = latent_grid_size(codec, height, width)
    return latent_features(y_hat, scales, rows, cols)


def dihedral(rgb: np.ndarray, transform: int) -> np.ndarray:
    """Pixels [H, W, C] under DIHEDRAL[transform] (a view; copy before handing to a network)."""
    turns, mirror = DIHEDRAL[transform]
    out = np.rot90(rgb, turns, axes=(0, 1))
    return out[:, ::-1] if mirror else out
