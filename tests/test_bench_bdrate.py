"""BD-rate: exact on known shifts, and equal to the reference implementation on its example."""

from __future__ import annotations

import math

import numpy as np
import pytest

from imgarc.bench.bdrate import BDRateError, bd_rate, ms_ssim_db

# The x265 example of the `bjontegaard` package's README (anchor = b, test = a).
RATE_ANCHOR = [9487.76, 4593.60, 2486.44, 1358.24]
PSNR_ANCHOR = [40.037, 38.615, 36.845, 34.851]
RATE_TEST = [9787.80, 4469.00, 2451.52, 1356.24]
PSNR_TEST = [40.121, 38.651, 36.970, 34.987]


@pytest.mark.parametrize("method", ["cubic", "pchip"])
@pytest.mark.parametrize("factor", [0.5, 0.8, 1.0, 1.25, 3.0])
def test_constant_rate_factor_is_recovered_exactly(method, factor):
    psnr = [28.0, 31.5, 34.0, 36.2, 38.9]
    rates = [0.12, 0.3, 0.55, 0.9, 1.6]
    assert bd_rate([r * factor for r in rates], psnr, rates, psnr, method) == pytest.approx((factor - 1) * 100, abs=1e-9)


def test_points_at_other_qualities_on_the_same_shifted_curve():
    # log10(rate) is a cubic in quality: the cubic fits are exact, so the factor comes back exactly;
    # pchip only approximates a cubic between its points, so it is close, not exact.
    def curve(q):
        return 10 ** (0.001 * (q - 30) ** 3 - 0.01 * (q - 30) ** 2 + 0.12 * q - 4)

    qa, qb = [29.0, 31.0, 33.5, 36.0, 38.0], [28.0, 30.0, 32.0, 35.0, 39.0]
    ra, rb = [0.7 * curve(q) for q in qa], [curve(q) for q in qb]
    assert bd_rate(ra, qa, rb, qb, "cubic") == pytest.approx(-30.0, abs=1e-8)
    assert bd_rate(ra, qa, rb, qb, "pchip") == pytest.approx(-30.0, abs=1.0)


def test_matches_the_bjontegaard_package_on_its_readme_example():
    # Values printed by bjontegaard 1.3.0: bd_rate(anchor..., test..., method=...).
    assert bd_rate(RATE_TEST, PSNR_TEST, RATE_ANCHOR, PSNR_ANCHOR, "cubic") == pytest.approx(-4.420462706026296, abs=1e-9)
    assert bd_rate(RATE_TEST, PSNR_TEST, RATE_ANCHOR, PSNR_ANCHOR, "pchip") == pytest.approx(-4.417485350589045, abs=1e-9)


def test_sign_and_symmetry():
    a = bd_rate(RATE_TEST, PSNR_TEST, RATE_ANCHOR, PSNR_ANCHOR)
    b = bd_rate(RATE_ANCHOR, PSNR_ANCHOR, RATE_TEST, PSNR_TEST)
    assert a < 0 < b
    assert (1 + a / 100) * (1 + b / 100) == pytest.approx(1.0, abs=1e-12)


def test_point_order_does_not_matter():
    perm = [2, 0, 3, 1]
    shuffled = bd_rate([RATE_TEST[i] for i in perm], [PSNR_TEST[i] for i in perm], RATE_ANCHOR[::-1], PSNR_ANCHOR[::-1])
    assert shuffled == pytest.approx(bd_rate(RATE_TEST, PSNR_TEST, RATE_ANCHOR, PSNR_ANCHOR), abs=1e-12)


@pytest.mark.parametrize("rates_a, q_a, words", [
    ([1, 1, 1, 1], [30, 30, 30, 30], "at least 4"),  # one model at every quality: a single point
    ([1, 2, 3], [30, 31, 32], "at least 4"),
    ([1, 2, 3, 4], [50, 51, 52, 53], "do not overlap"),
    ([1, 2, 0, 4], [30, 31, 32, 33], "positive"),
    ([1, 2, 3, 4], [30, 31, 32, math.inf], "finite"),
])
def test_refuses_what_cannot_be_compared(rates_a, q_a, words):
    with pytest.raises(BDRateError, match=words):
        bd_rate(rates_a, q_a, RATE_ANCHOR, PSNR_ANCHOR)


def test_ms_ssim_db():
    assert ms_ssim_db(0.99) == pytest.approx(20.0)
    assert ms_ssim_db(0.9) == pytest.approx(10.0)
    assert ms_ssim_db(1.0) == math.inf
    assert np.isfinite(ms_ssim_db(0.0))
