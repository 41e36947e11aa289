"""What a model is trained to minimize, rate + λ·distortion, for everything that optimizes
against it: training (imgarc.train.trainer), joint fine-tuning (imgarc.tasks.joint) and
per-photo latent refinement (imgarc.codec.refine). Needs torch.

The distortion is in CompressAI's units, so its λ tables carry over: 255²·MSE for "mse",
1 − MS-SSIM for "msssim", and for "mixed" (1 − s)·255²·MSE + s·1300·(1 − MS-SSIM) with the MSE λs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from pytorch_msssim import ms_ssim

from imgarc.codec.gained import between_points
from imgarc.codec.quality import rate_position
from imgarc.codec.weights import WeightsFile

DISTORTIONS = ("mse", "msssim", "mixed")
# MS-SSIM's five scales of an 11-tap window need crops larger than (11 - 1) · 2⁴ = 160 px.
MSSSIM_MIN_CROP = 161
# CompressAI's λ tables for its six qualities pair MSE λ 0.0018 … 0.0483 with MS-SSIM λ
# 2.40 … 60.5: at the same quality, 1 − MS-SSIM weighs about 1300 times 255²·MSE.
MSSSIM_PER_MSE_UNIT = 1300.0
# TrainConfig's λ, and the λ of a model whose weights file does not say.
DEFAULT_LAMBDA = 0.025
# CompressAI's training λs for its zoo models' qualities 1-8 (compressai.zoo's documentation).
ZOO_LAMBDAS = {"mse": (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800),
               "ms-ssim": (2.40, 4.58, 8.73, 16.64, 31.73, 60.50, 115.37, 220.00)}


def distortion_term(distortion: str, x_hat, x, mse, msssim_share: float = 0.5):
    """The distortion part of the loss. "mixed" keeps the MSE λ scale, so a model trained for
    MSE can be fine-tuned towards MS-SSIM with the same λs."""
    if distortion == "mse":
        return 255**2 * mse
    msssim_loss = 1 - ms_ssim(x_hat.clamp(0, 1), x, data_range=1.0)
    if distortion == "msssim":
        return msssim_loss
    return (1 - msssim_share) * 255**2 * mse + msssim_share * MSSSIM_PER_MSE_UNIT * msssim_loss


@dataclass(frozen=True)
class ModelObjective:
    """A model's training objective, from its weights file's record of how it was trained."""

    lambdas: tuple[float, ...]  # one per trained rate point (one for a single-rate model)
    distortion: str = "mse"
    msssim_share: float = 0.5

    @classmethod
    def of(cls, weights: WeightsFile) -> "ModelObjective":
        meta = weights.meta
        zoo = meta.get("zoo")
        if zoo and zoo.get("metric") in ZOO_LAMBDAS and 1 <= int(zoo.get("quality", 0)) <= 8:
            metric = str(zoo["metric"])
            return cls((ZOO_LAMBDAS[metric][int(zoo["quality"]) - 1],), "mse" if metric == "mse" else "msssim")
        lambdas = tuple(float(v) for v in meta.get("lambdas", ()))
        return cls(lambdas or (float(meta.get("lambda", DEFAULT_LAMBDA)),), str(meta.get("distortion", "mse")),
                   float(meta.get("msssim_share", 0.5)))

    def lmbda(self, quality: int | None) -> float:
        """λ at `quality`: geometric between the trained points, as the gains are."""
        if len(self.lambdas) == 1 or quality is None:
            return self.lambdas[0]
        lo, t = between_points(rate_position(quality, len(self.lambdas)), len(self.lambdas))
        if t == 0.0:
            return self.lambdas[lo]
        return math.exp((1 - t) * math.log(self.lambdas[lo]) + t * math.log(self.lambdas[lo + 1]))

    def distortion_of(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The distortion of x̂ against x ([B, 3, h, w] in [0, 1]): the model's, or its MSE part
        alone where the image is too small for MS-SSIM's five scales."""
        mse = torch.mean((x_hat - x) ** 2)
        if min(x.shape[2:]) >= MSSSIM_MIN_CROP:
            return distortion_term(self.distortion, x_hat, x, mse, self.msssim_share)
        # An MS-SSIM model's λs weigh 1 − MS-SSIM: its MSE stand-in goes in those units.
        return 255**2 * mse / (MSSSIM_PER_MSE_UNIT if self.distortion == "msssim" else 1.0)
