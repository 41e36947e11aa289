"""Variable-rate mean-scale hyperprior: one network serves many rates through learned gains.

Gained units (Cui et al., "Asymmetric gained deep image compression with continuous rate
adaptation", CVPR 2021): for each trained rate point k the latent y is multiplied per channel
by a learned gain before quantization (a finer or coarser quantization step per channel) and
by a separate learned inverse gain before the synthesis; the hyper-latent z likewise. h_s
predicts the Gaussian of the *ungained* latent, so the gained latent's scale and mean are that
scale and mean times the gain. Between trained points the gains are interpolated geometrically
(`rate_position` is continuous), which is what makes `--quality` continuous.

This module is torch-only (training and export). Inference reads the gains as fixed-point
integers from the weights file (see `quality.py`), so table selection stays exact.
"""

from __future__ import annotations

import math

import torch
from compressai.models import MeanScaleHyperprior
from torch import nn

from imgarc.codec.quality import GAIN_NAMES


def initial_gains(lambdas: list[float], reference_lambda: float) -> torch.Tensor:
    """Starting latent gain per rate point for a model trained at `reference_lambda`.

    Distortion ~ step² and an R-D optimum has distortion ~ 1/λ, so the quantization step
    1/gain should scale like 1/√λ: gain = √(λ/λ_ref).
    """
    return torch.tensor([math.sqrt(lm / reference_lambda) for lm in lambdas], dtype=torch.float32)


def between_points(rate_position: float, rate_points: int) -> tuple[int, float]:
    """(lower trained point, fraction t of the way to the next) of a position clamped to
    [0, rate_points - 1]: what is interpolated geometrically between trained points."""
    pos = min(max(float(rate_position), 0.0), rate_points - 1.0)
    lo = min(int(math.floor(pos)), rate_points - 2) if rate_points > 1 else 0
    return lo, pos - lo


class GainedMeanScaleHyperprior(MeanScaleHyperprior):
    def __init__(self, N: int, M: int, rate_points: int):
        super().__init__(N=N, M=M)
        self.rate_points = rate_points
        self.gain = nn.Parameter(torch.ones(rate_points, M))
        self.inv_gain = nn.Parameter(torch.ones(rate_points, M))
        self.hyper_gain = nn.Parameter(torch.ones(rate_points, N))
        self.hyper_inv_gain = nn.Parameter(torch.ones(rate_points, N))

    def set_initial_gains(self, per_point: torch.Tensor) -> None:
        """Latent gains `per_point` [K] for every channel; inverse gains their reciprocals."""
        with torch.no_grad():
            self.gain.copy_(per_point[:, None].expand_as(self.gain))
            self.inv_gain.copy_(1.0 / self.gain)
            self.hyper_gain.fill_(1.0)
            self.hyper_inv_gain.fill_(1.0)

    def gains_at(self, rate_position: float) -> tuple[torch.Tensor, ...]:
        """(gain, inv_gain, hyper_gain, hyper_inv_gain) at a position in [0, K-1], each [C].

        Geometric interpolation between the neighbouring trained points; abs() keeps every
        gain positive whatever the optimizer does.
        """
        lo, t = between_points(rate_position, self.rate_points)
        out = []
        for name in GAIN_NAMES:
            g = getattr(self, name).abs().clamp_min(1e-4)
            if self.rate_points == 1 or t == 0.0:
                out.append(g[lo])
            else:
                out.append(torch.exp((1 - t) * torch.log(g[lo]) + t * torch.log(g[lo + 1])))
        return tuple(out)

    def forward(self, x: torch.Tensor, rate_position: float = 0.0) -> dict:  # type: ignore[override]
        gain, inv_gain, hyper_gain, hyper_inv_gain = (g[None, :, None, None] for g in self.gains_at(rate_position))
        y = self.g_a(x)
        z = self.h_a(y)
        z_hat_gained, z_likelihoods = self.entropy_bottleneck(z * hyper_gain)
        scales, means = self.h_s(z_hat_gained * hyper_inv_gain).chunk(2, 1)
        y_hat_gained, y_likelihoods = self.gaussian_conditional(y * gain, scales * gain, means=means * gain)
        x_hat = self.g_s(y_hat_gained * inv_gain)
        # y_gained (in quantization steps) lets a pruned child match its parent's latents (distillation).
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}, "y_gained": y * gain}
