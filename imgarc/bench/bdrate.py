"""Bjøntegaard delta rate: the average rate difference between two rate-quality curves.

VCEG-M33 (Bjøntegaard 2001): fit log10(rate) as a cubic polynomial of quality for each
curve, integrate both over the quality interval where the curves overlap, and turn the mean
log-rate difference into a percentage. The "pchip" variant interpolates with a piecewise
cubic Hermite polynomial instead (as the JCT-VC/JVET common-test-conditions sheets do); it
does not overshoot where a global cubic would, and is exact on any curve that is itself
piecewise cubic in log-rate.

Checked against the `bjontegaard` package (1.3.0) on its README's x265 example.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

METHODS = ("cubic", "pchip")


class BDRateError(ValueError):
    """The curves cannot be compared (too few points, repeated qualities, no overlap)."""


def _curve(rates: Sequence[float], quality: Sequence[float], min_points: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(rates, dtype=np.float64)
    q = np.asarray(quality, dtype=np.float64)
    if r.shape != q.shape or r.ndim != 1:
        raise BDRateError(f"rates and qualities must be two lists of the same length, not {r.shape} and {q.shape}")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(q))) or np.any(r <= 0):
        raise BDRateError("rates must be positive and qualities finite")
    order = np.argsort(q, kind="stable")
    q, r = q[order], r[order]
    if len(np.unique(q)) < min_points:
        raise BDRateError(f"needs at least {min_points} points with distinct quality, got {len(np.unique(q))}")
    if np.any(np.diff(q) == 0):
        raise BDRateError("two points of one curve have the same quality")
    return q, np.log10(r)


def _mean_log_rate(q: np.ndarray, log_r: np.ndarray, lo: float, hi: float, method: str) -> float:
    """Mean of the fitted log10(rate) over quality [lo, hi]."""
    if method == "cubic":
        poly = np.polyint(np.polyfit(q, log_r, 3))
        return float((np.polyval(poly, hi) - np.polyval(poly, lo)) / (hi - lo))
    from scipy.interpolate import PchipInterpolator

    return float(PchipInterpolator(q, log_r).integrate(lo, hi) / (hi - lo))


def bd_rate(rates_a: Sequence[float], quality_a: Sequence[float],
            rates_b: Sequence[float], quality_b: Sequence[float], method: str = "cubic") -> float:
    """Average rate difference of curve a against curve b at equal quality, in percent.

    Negative: a needs less rate than b for the same quality (e.g. -20.0 = 20 % fewer bits).
    Rates in any positive unit (bpp, bytes), the same for both curves; quality in any scale
    where higher is better (PSNR dB, MS-SSIM dB). `method` is "cubic" (VCEG-M33: a cubic
    fit, needs ≥ 4 points per curve) or "pchip" (piecewise cubic Hermite, ≥ 2 points).
    Only the quality interval both curves cover is compared.
    """
    if method not in METHODS:
        raise BDRateError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    min_points = 4 if method == "cubic" else 2
    qa, la = _curve(rates_a, quality_a, min_points)
    qb, lb = _curve(rates_b, quality_b, min_points)
    lo, hi = max(qa[0], qb[0]), min(qa[-1], qb[-1])
    if not hi > lo:
        raise BDRateError(f"the curves' quality ranges do not overlap ({qa[0]:.4g}–{qa[-1]:.4g} vs {qb[0]:.4g}–{qb[-1]:.4g})")
    diff = _mean_log_rate(qa, la, lo, hi, method) - _mean_log_rate(qb, lb, lo, hi, method)
    return float((10.0**diff - 1.0) * 100.0)


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on the decibel scale used for rate-quality curves: -10·log10(1 - MS-SSIM)."""
    return float("inf") if value >= 1.0 else float(-10.0 * np.log10(1.0 - value))
