"""Image <-> latents with a loaded model: g_a/h_a/g_s in a float runtime, h_s in integers.

The codec hands out integer symbols and the per-symbol table indexes; coders turn those into
bytes. Only pixels depend on float math (g_s); which table codes which symbol never does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from imgarc.background import ahead_of_need
from imgarc.codec.padding import padded_size
from imgarc.codec.quality import QualityRow
from imgarc.codec.tiles import Tile, TileGrid, for_each_tile, run_tiled
from imgarc.codec.weights import WeightsFile
from imgarc.errors import ModelError
from imgarc.runtime import Device, Networks, load_networks, torch_model_of, usable_cores


@dataclass
class LatentCode:
    z_symbols: np.ndarray  # int32 [N, Hp/64, Wp/64]
    y_symbols: np.ndarray  # int32 [M, Hp/16, Wp/16]
    y_indexes: np.ndarray  # uint8 (any int) [M, Hp/16, Wp/16]: table of each y symbol, from integer h_s(ẑ)
    y_means: np.ndarray  # float32 [M, Hp/16, Wp/16]: μ (of the gained latent), from the same h_s run
    gains: QualityRow | None = None  # variable-rate models: the entry's quality


# (z_symbols, gains) -> (y table indexes, any integer type; y means float32): how quantize picks y's tables.
TableSelection = Callable[[np.ndarray, "QualityRow | None"], tuple[np.ndarray, np.ndarray]]


@dataclass
class AnalysedImage:
    """g_a/h_a outputs before quantization: they do not depend on the quality."""

    y: np.ndarray  # float32 [M, Hp/16, Wp/16]
    z: np.ndarray  # float32 [N, Hp/64, Wp/64]


# Receptive fields, in each network's input units: g_a's four 5x5 stride-2 convolutions read
# 2+4+8+16 = 30 pixels either side; h_a's 3x3 and two 5x5 stride-2 ones 1+2+4 = 7 latents; h_s's
# and g_s's two or four 5x5 stride-2 transposed ones (and h_s's 3x3) under 2 input units. The
# halos are wider. Tile sizes bound memory. Every network runs on one thread per call (Networks),
# so g_a and g_s cut every photo over 768x512 (0.4 MP) into tiles of at most 512 px a side that
# run side by side, with the same pixels as in one piece on ONNX Runtime (measured); the cut
# depends on the photo's size only, never on the machine. Smaller photos run whole: in a folder
# they are coded side by side anyway, and cut in two, a Kodak photo (768x512) cost 8 % more
# work: the Kodak folder's compress + extract took 14.25 s whole, 15.42 s in halves (a lone
# one 2.27 s instead of 1.85). h_a's input is 256x smaller: photos up to 1024x768 run it whole.
ANALYSIS_TILES = TileGrid(tile=512, halo=32, align=16, scale=1 / 16, whole=768 * 512)
HYPER_ANALYSIS_TILES = TileGrid(tile=96, halo=8, align=4, scale=1 / 4, whole=64 * 48)
# Exact (integers), so tiles only bound memory: a 32x32 tile of ẑ holds ~150 MB of float64
# activations and im2col bands; an 8x8 one, as before, recomputed 2.25x the work in its halos.
HYPER_SYNTHESIS_TILES = TileGrid(tile=32, halo=2, align=1, scale=4, whole=32 * 24)
# h_s's tiles run side by side on every core for photos up to this many ẑ (64x64: 16 MP), which
# parallels its transforms and activations too, not only its matrix products: a 12 MP photo's
# h_s took 1.00 s instead of 1.17 (fast model; default 1.65 vs 1.86) and its extract peaked
# 150 MB higher. Larger photos' latents hold most of the memory budget: one tile at a time.
HYPER_SYNTHESIS_SIDE_BY_SIDE = 64 * 64
SYNTHESIS_TILES = TileGrid(tile=32, halo=2, align=1, scale=16, whole=48 * 32)
# After the networks of a photo larger than this (padded pixels), the runtime hands back the
# memory it keeps between calls: the photo's latents, pixels and file need it next.
RELEASE_MEMORY_PIXELS = 4_000_000


class ImageCodec:
    def __init__(self, weights: WeightsFile, weights_sha256: str, device: Device = Device.CPU):
        self.weights = weights
        self.model_id = weights.model_id
        self.architecture = weights.architecture
        self.weights_sha256 = weights_sha256
        self.tables = weights.tables
        self.tables_sha256 = weights.tables_sha256
        self.stride = weights.architecture.stride
        # Every use of a codec runs h_s: its tap matrices are built meanwhile (~0.04 s of a lone photo).
        ahead_of_need(self.tables.hyper.prepare)
        self.networks: Networks = load_networks(weights.architecture, weights.params, weights.model_id, weights_sha256,
                                                device, weights.int8_ranges)
        self.medians = weights.params["entropy_bottleneck.quantiles"][:, 0, 1].astype(np.float32)
        self._torch_model = None

    @property
    def torch_model(self):
        """The model as a torch module, for tools that need more than the three networks (the
        entropy estimate of forward(), a float h_s to compare with): the runtime's own when it
        runs torch, else built once from the weights."""
        if self._torch_model is None:
            self._torch_model = torch_model_of(self.networks, self.architecture, self.weights.params, self.model_id)
        return self._torch_model

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
        """Deterministic table index per latent (the smallest unsigned type that holds them: uint8
        for the shipped tables) and its mean (float32), from integer h_s, run in tiles on large
        photos (integer arithmetic: the tiles give exactly the one-piece result). A 100-megapixel
        photo's indexes and means take 375 MB this way; as two int32/float32 arrays, 600."""
        m = self.architecture.M
        _, zh, zw = z_symbols.shape
        indexes = np.empty((m, 4 * zh, 4 * zw), self.tables.hyper.index_dtype)
        means = np.empty((m, 4 * zh, 4 * zw), np.float32)

        def hyper_synthesis(tile: Tile) -> None:
            part_indexes, part_means = self.tables.hyper.run(z_symbols[:, tile.read_rows, tile.read_cols], gains)
            indexes[:, tile.rows, tile.cols] = part_indexes[:, tile.keep_rows, tile.keep_cols]
            means[:, tile.rows, tile.cols] = part_means[:, tile.keep_rows, tile.keep_cols]

        workers = usable_cores() if zh * zw <= HYPER_SYNTHESIS_SIDE_BY_SIDE else 1
        for_each_tile(hyper_synthesis, (zh, zw), HYPER_SYNTHESIS_TILES, workers)
        return indexes, means

    def transform(self, rgb: np.ndarray) -> AnalysedImage:
        """RGB uint8 [H, W, 3] -> unquantized latents (the image is padded here); the slow half.
        g_a and h_a run tile by tile on large photos (imgarc.codec.tiles)."""
        h, w = rgb.shape[:2]
        padded_h, padded_w = padded_size(h, w, self.stride)

        def read(rows: slice, cols: slice) -> np.ndarray:
            # The photo edge-replicated to the padded size, one tile at a time (no padded copy:
            # a 100-megapixel photo's would be another 300 MB); a tile inside the photo is a
            # plain slice, converted in one pass.
            if rows.stop <= h and cols.stop <= w:
                tile = rgb[rows, cols]
            else:
                tile = rgb[np.minimum(np.arange(rows.start, rows.stop), h - 1)[:, None],
                           np.minimum(np.arange(cols.start, cols.stop), w - 1)]
            x = np.empty((1, 3, *tile.shape[:2]), np.float32)
            np.divide(tile.transpose(2, 0, 1), np.float32(255), out=x[0])
            return x

        y = run_tiled(self.networks.analysis, read, (padded_h, padded_w), ANALYSIS_TILES, usable_cores())
        z = run_tiled(self.networks.hyper_analysis, lambda rows, cols: np.ascontiguousarray(y[:, :, rows, cols]),
                      y.shape[2:], HYPER_ANALYSIS_TILES, usable_cores())
        if padded_h * padded_w > RELEASE_MEMORY_PIXELS:
            self.networks.release_memory()
        return AnalysedImage(y[0], z[0])

    def quantize(self, analysed: AnalysedImage, quality: int | None, select: TableSelection | None = None,
                 consume: bool = False) -> LatentCode:
        """Unquantized latents -> integer latents at `quality` (cheap: no g_a, so rate search can repeat it).

        `select(z_symbols, gains) -> (y_indexes, y_means)` picks each y symbol's table; the default,
        and what every archive uses, is the integer h_s (`y_indexes_and_means`). Another selection
        (a float h_s, a memoized one) is for measuring against it: ẑ is the same either way.
        `consume`: the caller does not use `analysed` again, so its y becomes the symbols in
        place (a 100-megapixel photo's y is 300 MB); the same arithmetic, so the same symbols.
        """
        gains = self.gains_for(quality)
        z = analysed.z if gains is None else analysed.z * gains.as_float("hyper_gain")[:, None, None]
        z_symbols = np.round(z - self.medians[:, None, None]).astype(np.int32)
        indexes, means = (select or self.y_indexes_and_means)(z_symbols, gains)
        y = analysed.y if consume else analysed.y.copy()
        if gains is not None:
            y *= gains.as_float("gain")[:, None, None]
        y -= means  # in place: the same float32 arithmetic as round(y * gain - means), one array fewer
        return LatentCode(z_symbols, rounded_to_int32(y), indexes, means, gains)

    def analyse(self, rgb: np.ndarray, quality: int | None = None) -> LatentCode:
        """RGB uint8 [H, W, 3] -> integer latents at `quality`."""
        return self.quantize(self.transform(rgb), quality)

    def y_hat(self, code: LatentCode, consume: bool = False) -> np.ndarray:
        """Dequantized, ungained latents ŷ = (symbol + μ)·inv_gain (float32 [M, h, w]): what g_s and
        latent readers use. In place on one new array: a 100-megapixel photo's are 300 MB each;
        with `consume` (the caller drops `code`), over the symbols' own memory."""
        y = _int32_as_float32(code.y_symbols) if consume else code.y_symbols.astype(np.float32)
        y += code.y_means
        if code.gains is not None:
            y *= code.gains.as_float("inv_gain")[:, None, None]
        return y

    def synthesize(self, code: LatentCode, height: int, width: int) -> np.ndarray:
        """Integer latents -> RGB uint8 [height, width, 3] (cropped from the padded size)."""
        return self.synthesize_y_hat(self.y_hat(code), height, width)

    def synthesize_y_hat(self, y_hat: np.ndarray, height: int, width: int) -> np.ndarray:
        """ŷ [M, h, w] (y_hat()) -> RGB uint8 [height, width, 3] (cropped from the padded size).

        g_s runs on one intra-op thread: torch splits convolution sums differently for other
        thread counts, which moves some pixels by one level; one thread gives the same bytes
        whatever the caller's setting (measured: ~0.03 s slower per Kodak image). Large photos
        use every core instead through tiles, each on one thread, side by side.
        """
        rgb = run_tiled(self.networks.synthesis, lambda rows, cols: np.ascontiguousarray(y_hat[None, :, rows, cols]),
                        y_hat.shape[1:], SYNTHESIS_TILES, usable_cores(), to_pixels, channels_last=True)
        if rgb.shape[0] * rgb.shape[1] > RELEASE_MEMORY_PIXELS:
            self.networks.release_memory()
        return rgb[:height, :width] if rgb.shape[:2] == (height, width) else np.ascontiguousarray(rgb[:height, :width])

    def synthesis_footprint(self, padded_h: int, padded_w: int) -> int:
        """What decoding a photo holds in memory at once, as pixels × g_s channels: the whole photo,
        or for a tiled one, the tiles that run side by side (the pools' budget unit, ~9 bytes)."""
        return self._tiles_footprint(SYNTHESIS_TILES, padded_h // 16, padded_w // 16, 256)

    def analysis_footprint(self, padded_h: int, padded_w: int) -> int:
        """What coding a photo holds in memory at once, in synthesis_footprint's unit: g_a's first
        activations (N channels at half the resolution) for the tiles that run side by side, and
        the photo's own arrays, ~25 bytes a pixel (pixels, latents, symbols, tables and means;
        measured on a 48-megapixel photo)."""
        activations = self._tiles_footprint(ANALYSIS_TILES, padded_h, padded_w, 1) // 4
        return activations + padded_h * padded_w * 3

    def _tiles_footprint(self, grid: TileGrid, h: int, w: int, pixels_per_unit: int) -> int:
        """Input units in flight (the whole input, or the tiles that run side by side) × pixels
        per unit × the width N."""
        if grid.fits_whole(h, w):
            return h * w * pixels_per_unit * self.architecture.N
        tiles = min(usable_cores(), -(-h // grid.tile) * -(-w // grid.tile))
        return tiles * grid.tile_inputs(h, w) * pixels_per_unit * self.architecture.N


def rounded_to_int32(y: np.ndarray) -> np.ndarray:
    """round(y) as int32 (y: contiguous float32 [C, h, w]), written over y's own memory channel by
    channel (numpy copies each channel first, as they overlap): a large photo's latents are not
    held twice."""
    np.round(y, out=y)
    symbols = y.view(np.int32)
    for c in range(y.shape[0]):
        symbols[c] = y[c]
    return symbols


def _int32_as_float32(symbols: np.ndarray) -> np.ndarray:
    """symbols (contiguous int32 [C, h, w]) as float32, written over their own memory channel by
    channel (the inverse of rounded_to_int32); other arrays are copied."""
    if symbols.dtype != np.int32 or not symbols.flags.c_contiguous:
        return symbols.astype(np.float32)
    y = symbols.view(np.float32)
    for c in range(symbols.shape[0]):
        y[c] = symbols[c]
    return y


def to_pixels(x_hat: np.ndarray) -> np.ndarray:
    """g_s output (float32, unclamped; overwritten) -> uint8, rounding half to even as torch does."""
    np.clip(x_hat, 0, 1, out=x_hat)
    x_hat *= np.float32(255)
    np.round(x_hat, out=x_hat)
    return x_hat.astype(np.uint8)
