"""What a user chooses for a compress run, checked once, before anything is read or written."""

from __future__ import annotations

from dataclasses import dataclass

from imgarc.coders import CODER_NAMES, DEFAULT_CODER
from imgarc.errors import UsageError
from imgarc.extras import require
from imgarc.runtime.device import Device

DEFAULT_QUALITY = 75
MAX_REFINE_STEPS = 1000


def check_refine_steps(steps: int) -> None:
    """UsageError unless `steps` is a valid --refine (compress's, and the bench's)."""
    if not 0 <= steps <= MAX_REFINE_STEPS:
        raise UsageError(f"--refine must be between 0 and {MAX_REFINE_STEPS} steps, not {steps}")


@dataclass(frozen=True)
class CompressOptions:
    """How photos are coded.

    `quality` 1-100, or `target_bpp`: each photo at the quality whose coded size is nearest that
    many bits per pixel (the quality used is recorded per entry). `model_id`: a model instead
    of the one `quality` and `tune` pick ("psnr" or "msssim": the model trained for that metric).
    `keep_originals`: no photo is coded; every file is kept byte-exact. `device`: where the
    networks run (the bytes of an archive made on a GPU may differ from a CPU's; both decode anywhere).
    `refine_steps`: refine each photo's latents for this many steps (imgarc.codec.refine; 0: off),
    which needs the training extra.
    """

    quality: int = DEFAULT_QUALITY
    target_bpp: float | None = None
    coder: str = DEFAULT_CODER
    model_id: str | None = None
    tune: str | None = None
    keep_originals: bool = False
    device: Device = Device.AUTO  # where g_a/h_a run: a CUDA GPU where one can be used (runtime.device)
    refine_steps: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.quality <= 100:
            raise UsageError(f"--quality must be between 1 and 100, not {self.quality}")
        if self.target_bpp is not None and not 0 < self.target_bpp <= 24:
            raise UsageError(f"--target-bpp must be above 0 and at most 24, not {self.target_bpp}")
        check_refine_steps(self.refine_steps)
        if self.refine_steps:
            require("--refine", "torch", "compressai", "pytorch_msssim")
        if self.coder not in CODER_NAMES:
            raise UsageError(f"unknown coder {self.coder!r}; choose one of: {', '.join(CODER_NAMES)}")
