"""`--quality` 1–100 -> fixed-point gains of a variable-rate model (a table made at export).

Quality q sits at rate position (q-1)/99 · (K-1) between the K trained rate points (low
quality = the lowest-rate point). The interpolated gains are computed once, at export, and
stored as integers with GAIN_BITS fractional bits, hashed with the coding tables: float `exp`
and `pow` may round differently across CPUs and library builds, integers read from a file
cannot. A single-rate model has no table; every quality then means the same gains of 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imgarc.errors import ModelError

GAIN_BITS = 16
QUALITIES = 100
GAIN_LIMIT = 1 << (GAIN_BITS + 8)  # gains above 256 are not a codec, they are a bug
# The four gain vectors of a variable-rate model, as named in its torch module, its weights file and here.
GAIN_NAMES = ("gain", "inv_gain", "hyper_gain", "hyper_inv_gain")


def rate_position(quality: int, rate_points: int) -> float:
    return (quality - 1) / (QUALITIES - 1) * (rate_points - 1)


@dataclass(frozen=True)
class QualityRow:
    """The four gain vectors of one quality, in fixed point (int64, GAIN_BITS fractional bits)."""

    gain: np.ndarray  # [M] latent gain (encoder: y·gain is quantized)
    inv_gain: np.ndarray  # [M] latent inverse gain (decoder: ŷ·inv_gain feeds g_s)
    hyper_gain: np.ndarray  # [N]
    hyper_inv_gain: np.ndarray  # [N]

    def as_float(self, name: str) -> np.ndarray:
        """A gain vector as float32 (exact: fixed point with ≤ 24 significant bits)."""
        return (getattr(self, name).astype(np.float64) / (1 << GAIN_BITS)).astype(np.float32)


@dataclass(frozen=True)
class QualityGains:
    """Row q-1 holds quality q's gains; every array is int64 [QUALITIES, C]."""

    gain: np.ndarray
    inv_gain: np.ndarray
    hyper_gain: np.ndarray
    hyper_inv_gain: np.ndarray

    NAMES = GAIN_NAMES

    def row(self, quality: int) -> QualityRow:
        if not 1 <= quality <= QUALITIES:
            raise ModelError(f"quality {quality} is outside 1-{QUALITIES}")
        return QualityRow(*(getattr(self, n)[quality - 1] for n in self.NAMES))

    def arrays(self) -> dict[str, np.ndarray]:
        return {n: getattr(self, n) for n in self.NAMES}

    def check(self, n_channels: int, m_channels: int) -> None:
        for name, a in self.arrays().items():
            width = n_channels if name.startswith("hyper") else m_channels
            if a.shape != (QUALITIES, width) or a.min(initial=1) < 1 or a.max(initial=1) > GAIN_LIMIT:
                raise ModelError(f"quality gain table {name!r} is malformed")


def build_quality_gains(model) -> QualityGains:
    """Interpolate a GainedMeanScaleHyperprior's gains at every quality, in fixed point."""
    import torch

    rows: dict[str, list[np.ndarray]] = {n: [] for n in QualityGains.NAMES}
    with torch.no_grad():
        for q in range(1, QUALITIES + 1):
            for name, g in zip(QualityGains.NAMES, model.gains_at(rate_position(q, model.rate_points))):
                rows[name].append(np.round(g.double().cpu().numpy() * (1 << GAIN_BITS)).astype(np.int64))
    gains = QualityGains(*(np.clip(np.stack(rows[n]), 1, GAIN_LIMIT) for n in QualityGains.NAMES))
    return gains
