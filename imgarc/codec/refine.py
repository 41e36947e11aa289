"""Latent refinement (`imgarc compress --refine N`): a slower encoder, smaller files, the same decoder.

g_a predicts a photo's latents in one pass, one function for every photo (amortized inference);
its answer is not the best the decoder could be given for this photo. Refinement starts from it
and takes N steps of Adam on the photo's own loss, the model's training objective rate + λ·D at
the entry's quality (imgarc.codec.rd_objective), through the float g_s and the archive's own
coding: ẑ stays as h_a made it, so every latent keeps the table and the mean the integer h_s
picks (its rate is that table's Gaussian), and ŷ is rounded as the coder rounds it, with a
straight-through gradient. The best step seen is kept (step 0 is g_a's own latents), so by the
objective the result is never worse. Campos et al., "Content adaptive optimization for neural
image compression" (2019); Yang et al., "Improving inference for neural image compression" (2020).

The archive does not change form: the symbols are ordinary ones, decoded by any imgarc that reads
the model. Large photos refine in tiles of latents with a halo (a tile's own latents move, its
halo holds g_a's), each tile on one thread, side by side: the result depends on the photo, never
on the number of cores. Needs torch, CompressAI and pytorch-msssim (the training extra).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from imgarc.codec.image_codec import SYNTHESIS_TILES, AnalysedImage, ImageCodec, LatentCode, rounded_to_int32
from imgarc.codec.rd_objective import ModelObjective
from imgarc.codec.tiles import Tile, for_each_tile
from imgarc.coders.tables import PRECISION, CdfTables
from imgarc.runtime import usable_cores
from imgarc.runtime.torch_networks import one_thread

# Adam's first step, in quantization steps of the gained latents, then a cosine to zero over the
# steps (tuned on Kodak: benchmarks/README.md, sixteenth session).
LEARNING_RATE = 5e-3
# Refinement runs g_s forward and back in g_s's own tiles (its halo holds what a tile's pixels
# see; photos up to 768x512 whole), which also bounds its memory: about what decoding holds
# (ImageCodec.synthesis_footprint; measured on 768x512: g_s forward 234 MB, forward and back 460 MB
# in float32, 290 MB in bf16).
REFINE_TILES = SYNTHESIS_TILES
LATENT_PIXELS = int(SYNTHESIS_TILES.scale)  # pixels per latent along each axis


def table_scales(tables: CdfTables) -> np.ndarray:
    """The Gaussian scale σ (float32 [K]) each y table codes, read back from the table itself: a
    table codes a zero-mean Gaussian rounded to integers, whose P(0) is erf(0.5 / (σ√2))."""
    p0 = np.array([tables.frequencies(k)[-int(tables.offsets[k])] for k in range(tables.count)], np.float64)
    p0 = torch.from_numpy(np.minimum(p0 / (1 << PRECISION), 1 - 2.0**-PRECISION))
    return (0.5 / (math.sqrt(2) * torch.special.erfinv(p0))).numpy().astype(np.float32)


def gaussian_bits(v: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """−log2 P(v) of integers v under zero-mean Gaussians of scale σ rounded to integers, as
    CompressAI's GaussianConditional computes it (in its tail-safe form), floored at one count of
    the coder's 16-bit tables."""
    half = math.sqrt(0.5)
    values = v.abs()
    p = 0.5 * (torch.erfc((values - 0.5) / sigma * half) - torch.erfc((values + 0.5) / sigma * half))
    return -torch.log2(p.clamp_min(2.0**-PRECISION))


def _ste_round(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


class LatentRefiner:
    """Refines the latents of one model's photos: `refine(rgb, analysed, quality)` in place of
    `codec.quantize(analysed, quality)`. Thread-safe (the compress pool codes photos side by side)."""

    def __init__(self, codec: ImageCodec, steps: int, learning_rate: float = LEARNING_RATE) -> None:
        self.codec = codec
        self.steps = steps
        self.learning_rate = learning_rate
        self.objective = ModelObjective.of(codec.weights)
        self.g_s = codec.torch_model.g_s
        for p in self.g_s.parameters():
            p.requires_grad_(False)  # only the latents move
        # Where the codec's torch g_s is: the CPU, or a CUDA GPU when the torch runtime runs there.
        self.device = next(self.g_s.parameters()).device
        self.sigmas = torch.from_numpy(table_scales(codec.tables.y)).to(self.device)
        # g_s in bf16 where the hardware computes it natively (AVX-512 BF16, AMX, recent GPUs): 2.5x
        # the steps per second on a Zen 4 (the loss only steers the search; the symbols decode in
        # float32 as always).
        if self.device.type == "cuda":
            self.bf16 = torch.cuda.is_bf16_supported()
        else:
            self.bf16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()

    def refine(self, rgb: np.ndarray, analysed: AnalysedImage, quality: int | None) -> LatentCode:
        """The photo's integer latents at `quality`, refined (`rgb`: the photo, uint8 [H, W, 3])."""
        code = self.codec.quantize(analysed, quality)
        m = analysed.y.shape[0]
        gain = code.gains.as_float("gain") if code.gains is not None else np.ones(m, np.float32)
        inv_gain = code.gains.as_float("inv_gain") if code.gains is not None else np.ones(m, np.float32)
        gained = analysed.y * gain[:, None, None]  # as quantize computes it: unmoved latents keep their symbols
        refined = gained.copy()
        lmbda = self.objective.lmbda(quality)

        def work(tile: Tile) -> None:
            core = (slice(tile.rows.start // LATENT_PIXELS, tile.rows.stop // LATENT_PIXELS),
                    slice(tile.cols.start // LATENT_PIXELS, tile.cols.stop // LATENT_PIXELS))
            region = (tile.read_rows, tile.read_cols)
            refined[:, core[0], core[1]] = self._refine_region(
                rgb, gained, code, inv_gain, lmbda, region, core)

        for_each_tile(work, gained.shape[1:], REFINE_TILES, usable_cores())
        refined -= code.y_means
        return LatentCode(code.z_symbols, rounded_to_int32(refined), code.y_indexes, code.y_means, code.gains)

    def _refine_region(self, rgb: np.ndarray, gained: np.ndarray, code: LatentCode, inv_gain: np.ndarray,
                       lmbda: float, region: tuple[slice, slice], core: tuple[slice, slice]) -> np.ndarray:
        """The refined gained latents of `core` (latent slices of the photo), optimized with the
        latents of `region` (core and halo) in view and the pixels they decode to."""
        rows, cols = region
        h, w = rgb.shape[:2]
        # The pixels the region decodes to that are in the photo (the rest is padding, cropped on extract).
        pixel_rows = slice(rows.start * LATENT_PIXELS, min(rows.stop * LATENT_PIXELS, h))
        pixel_cols = slice(cols.start * LATENT_PIXELS, min(cols.stop * LATENT_PIXELS, w))
        local = (slice(core[0].start - rows.start, core[0].stop - rows.start),
                 slice(core[1].start - cols.start, core[1].stop - cols.start))
        core_pixels = ((min(core[0].stop * LATENT_PIXELS, h) - core[0].start * LATENT_PIXELS)
                       * (min(core[1].stop * LATENT_PIXELS, w) - core[1].start * LATENT_PIXELS))
        region_pixels = (pixel_rows.stop - pixel_rows.start) * (pixel_cols.stop - pixel_cols.start)

        def tensor(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(self.device)[None]

        with one_thread(grad=True):
            x = tensor(rgb[pixel_rows, pixel_cols].transpose(2, 0, 1)).float() / 255
            start = tensor(gained[:, rows, cols])
            means = tensor(code.y_means[:, rows, cols])
            sigmas = self.sigmas[tensor(code.y_indexes[:, rows, cols].astype(np.int64))]
            mask = torch.zeros_like(start)
            mask[:, :, local[0], local[1]] = 1.0
            inv = tensor(inv_gain)[:, :, None, None]
            delta = torch.zeros_like(start, requires_grad=True)
            optimizer = torch.optim.Adam([delta], lr=self.learning_rate)
            best_loss, best = math.inf, torch.zeros_like(start)
            for step in range(self.steps + 1):
                symbols = _ste_round(start + delta * mask - means)
                bits = (gaussian_bits(symbols, sigmas) * mask).sum()
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                    x_hat = self.g_s((symbols + means) * inv).float()[:, :, : x.shape[2], : x.shape[3]]
                # Per pixel of the core: its bits, and the distortion of every pixel its latents reach.
                loss = (bits + lmbda * self.objective.distortion_of(x_hat, x) * region_pixels) / core_pixels
                if loss.item() < best_loss:
                    best_loss, best = loss.item(), delta.detach().clone()
                if step == self.steps:
                    break
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                for group in optimizer.param_groups:  # a cosine to zero: the last steps settle
                    group["lr"] = self.learning_rate * 0.5 * (1 + math.cos(math.pi * step / self.steps))
                optimizer.step()
            return (start + best * mask)[0, :, local[0], local[1]].cpu().numpy()
