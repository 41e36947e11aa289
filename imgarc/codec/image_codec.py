"""Image <-> latents with a loaded model: g_a/h_a/g_s in float torch, h_s in integers.

The codec hands out integer symbols and the per-symbol table indexes; coders turn those into
bytes. Only pixels depend on float math (g_s); which table codes which symbol never does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from imgarc.codec.architecture import COMPRESSAI_TABLE_BUFFERS, build_model
from imgarc.codec.int_hyper import ACT_BITS
from imgarc.codec.padding import pad_to_multiple
from imgarc.codec.quality import QualityRow
from imgarc.codec.weights import WeightsFile
from imgarc.errors import ModelError


@dataclass
class LatentCode:
    z_symbols: np.ndarray  # int32 [N, Hp/64, Wp/64]
    y_symbols: np.ndarray  # int32 [M, Hp/16, Wp/16]
    y_indexes: np.ndarray  # int32 [M, Hp/16, Wp/16]: table of each y symbol, from integer h_s(ẑ)
    y_means: np.ndarray  # float32 [M, Hp/16, Wp/16]: μ (of the gained latent), from the same h_s run
    gains: QualityRow | None = None  # variable-rate models: the entry's quality


# (z_symbols, gains) -> (y table indexes int32, y means float32): how quantize picks y's tables.
TableSelection = Callable[[np.ndarray, "QualityRow | None"], tuple[np.ndarray, np.ndarray]]


@dataclass
class AnalysedImage:
    """g_a/h_a outputs before quantization: they do not depend on the quality."""

    y: np.ndarray  # float32 [M, Hp/16, Wp/16]
    z: np.ndarray  # float32 [N, Hp/64, Wp/64]


class ImageCodec:
    def __init__(self, weights: WeightsFile, weights_sha256: str):
        import torch

        self.weights = weights
        self.model_id = weights.model_id
        self.architecture = weights.architecture
        self.weights_sha256 = weights_sha256
        self.tables = weights.tables
        self.tables_sha256 = weights.tables.digest().hex()
        self.stride = weights.architecture.stride
        model = build_model(weights.architecture)
        state = {k: torch.from_numpy(v.astype(np.float32) if v.dtype == np.float16 else v) for k, v in weights.params.items()}
        # nn.Module's loader, not CompressAI's: that one insists on its float-built table buffers.
        missing, unexpected = torch.nn.Module.load_state_dict(model, state, strict=False)
        missing = [k for k in missing if k.rsplit(".", 1)[-1] not in COMPRESSAI_TABLE_BUFFERS]
        if missing or unexpected:
            raise ModelError(f"weights for model {self.model_id!r} do not fit its architecture (missing {missing[:3]}, unexpected {unexpected[:3]})")
        self.model = model.eval()
        self.medians = model.entropy_bottleneck.quantiles[:, 0, 1].detach().numpy().astype(np.float32)

    def latent_shapes(self, padded_h: int, padded_w: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        a = self.architecture
        return (a.N, padded_h // 64, padded_w // 64), (a.M, padded_h // 16, padded_w // 16)

    def z_indexes(self, z_shape: tuple[int, int, int]) -> np.ndarray:
        """Hyper-latents use one table per channel."""
        c, h, w = z_shape
        return np.repeat(np.arange(c, dtype=np.int32), h * w)

    @property
    def variable_rate(self) -> bool:
        return self.tables.quality is not None

    def gains_for(self, quality: int | None) -> QualityRow | None:
        """The fixed-point gains of `quality` (None for a single-rate model: quality is moot)."""
        if self.tables.quality is None:
            return None
        if quality is None:
            raise ModelError(f"model {self.model_id!r} is variable-rate: an image entry must record its quality")
        return self.tables.quality.row(quality)

    def y_indexes_and_means(self, z_symbols: np.ndarray, gains: QualityRow | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Deterministic table index per latent and its mean (float32), from integer h_s."""
        indexes, means_fixed = self.tables.hyper.run(z_symbols, gains)
        return indexes, (means_fixed / (1 << ACT_BITS)).astype(np.float32)

    def transform(self, rgb: np.ndarray) -> AnalysedImage:
        """RGB uint8 [H, W, 3] -> unquantized latents (the image is padded here); the slow half."""
        import torch

        padded = pad_to_multiple(rgb, self.stride)
        x = torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1))).float().div_(255.0)[None]
        with torch.no_grad():
            y = self.model.g_a(x)
            z = self.model.h_a(y.abs() if self.architecture.scale_only else y)  # ScaleHyperprior reads |y|
        return AnalysedImage(y[0].numpy(), z[0].numpy())

    def quantize(self, analysed: AnalysedImage, quality: int | None, select: TableSelection | None = None) -> LatentCode:
        """Unquantized latents -> integer latents at `quality` (cheap: no g_a, so rate search can repeat it).

        `select(z_symbols, gains) -> (y_indexes, y_means)` picks each y symbol's table; the default,
        and what every archive uses, is the integer h_s (`y_indexes_and_means`). Another selection
        (a float h_s, a memoized one) is for measuring against it: ẑ is the same either way.
        """
        gains = self.gains_for(quality)
        z = analysed.z if gains is None else analysed.z * gains.as_float("hyper_gain")[:, None, None]
        z_symbols = np.round(z - self.medians[:, None, None]).astype(np.int32)
        indexes, means = (select or self.y_indexes_and_means)(z_symbols, gains)
        y = analysed.y if gains is None else analysed.y * gains.as_float("gain")[:, None, None]
        y_symbols = np.round(y - means).astype(np.int32)
        return LatentCode(z_symbols, y_symbols, indexes, means, gains)

    def analyse(self, rgb: np.ndarray, quality: int | None = None) -> LatentCode:
        """RGB uint8 [H, W, 3] -> integer latents at `quality`."""
        return self.quantize(self.transform(rgb), quality)

    def y_hat(self, code: LatentCode) -> np.ndarray:
        """Dequantized, ungained latents ŷ = (symbol + μ)·inv_gain (float32 [M, h, w]): what g_s and latent readers use."""
        y = code.y_symbols.astype(np.float32) + code.y_means
        return y if code.gains is None else y * code.gains.as_float("inv_gain")[:, None, None]

    def synthesize(self, code: LatentCode, height: int, width: int) -> np.ndarray:
        """Integer latents -> RGB uint8 [height, width, 3] (cropped from the padded size).

        g_s runs on one intra-op thread: torch splits convolution sums differently for other
        thread counts, which moves some pixels by one level; one thread gives the same bytes
        whatever the caller's setting (measured: ~0.03 s slower per Kodak image).
        """
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.no_grad():
                x_hat = self.model.g_s(torch.from_numpy(self.y_hat(code))[None])
        finally:
            torch.set_num_threads(threads)
        rgb = x_hat[0].clamp_(0, 1).mul_(255).round_().to(torch.uint8).numpy().transpose(1, 2, 0)
        return np.ascontiguousarray(rgb[:height, :width])
