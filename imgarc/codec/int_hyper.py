"""Integer hyper-synthesis h_s: ẑ -> (scale table index, mean) with identical results everywhere.

Why: the table each latent is coded with is chosen from h_s(ẑ). Float convolutions round
differently across CPUs (AVX2 vs AVX-512), thread counts and library versions; one flipped
table index desynchronises the entropy decoder and the image is lost. Here every weight,
bias and activation is an integer (fixed point) and every convolution is computed in
float64 on integer values whose partial sums stay below 2**53, where float64 addition is
exact in any order. So the result is the same integers on every machine, by construction
(Ballé et al., "Integer networks for data compression with latent-variable models", 2019).

Fixed point: activations carry ACT_BITS fractional bits, weights WEIGHT_BITS (or, in an 8-bit
or narrower h_s, each output channel's own `weight_bits`: its weights within ±127, or ±31 for
6 bits). After each layer the accumulator is floor-divided back to ACT_BITS (exact on
integers) and clamped to ±ACT_LIMIT; export checks that no accumulator can exceed 2**52.

The 3×3 convolution that makes most of h_s's multiply-adds runs as Winograd's F(2×2, 3×3)
(integer transforms: see `winograd_bands`), 2.25x fewer of them, wherever its larger intermediate
sums provably stay below 2**52 too: the same integers, sooner.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Iterator

import numpy as np

from imgarc.codec.int8 import WEIGHT_LIMIT
from imgarc.codec.quality import GAIN_BITS, QualityRow
from imgarc.cores import usable_cores
from imgarc.errors import ModelError

ACT_BITS = 10
WEIGHT_BITS = 14
MAX_WEIGHT_BITS = 24  # an 8-bit h_s channel's fractional bits at most (a channel of all-but-zero weights)
ACT_LIMIT = 1 << 24
EXACT_LIMIT = 1 << 52
Z_SYMBOL_LIMIT = 1 << 15  # |ẑ| symbols beyond this are clamped before h_s (never in real images)
LEAKY_NUM, LEAKY_SHIFT = 655, 16  # LeakyReLU slope 0.01 ≈ 655 / 2**16


@dataclass(frozen=True)
class IntLayer:
    """One convolution in fixed point. `weight` is int64 [out, in, k, k] (conv layout, already
    flipped/transposed for transposed convolutions, which run as upsample + conv)."""

    weight: np.ndarray
    bias: np.ndarray  # int64 [out], at ACT_BITS + WEIGHT_BITS (+ weight_bits)
    upsample: int  # 2 for a stride-2 transposed conv, 1 for a plain conv
    stride: int
    pad_before: int
    pad_after: int
    leaky: bool  # LeakyReLU after the layer
    relu: bool = False  # ReLU after the layer (CompressAI ScaleHyperprior's h_s)
    # int64 [out]: each output channel's fractional weight bits (an 8-bit h_s, where they keep
    # its weights within ±127: a weights file a third of the size, +0.03 % in rate on 6 Kodak
    # photos; a 6-bit one, ±31: h_s's bytes −30 % more, +0.12 %); None: WEIGHT_BITS for all, as
    # every model before 8-bit h_s had.
    weight_bits: np.ndarray | None = None
    # The weights of each tap set as one float64 matrix (`tap_weights`), built once: on small
    # photos building them took most of h_s's time (latent classification, 150x150 px).
    # (WINOGRAD_KEY: the Winograd transforms of the filters, `winograd_matrices`.)
    _tap_matrices: dict[object, np.ndarray] = field(default_factory=dict, init=False, repr=False, compare=False)

    def tap_sets(self) -> list[list[tuple[int, int]]]:
        """The taps conv_exact multiplies together: all k×k, or for a transposed convolution
        those of each output phase (a, b), in phase order."""
        k = self.weight.shape[-1]
        if self.upsample == 1:
            return [[(i, j) for i in range(k) for j in range(k)]]
        return [_phase_taps(k, self.upsample, self.pad_before, a, b) for a in range(self.upsample) for b in range(self.upsample)]

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """(h, w) of the layer's output for an input of h×w (a transposed convolution's: that of its
        input upsampled with zeros, convolved at stride 1)."""
        k = self.weight.shape[-1]
        pads = self.pad_before + self.pad_after
        if self.upsample == 1:
            return (h + pads - k) // self.stride + 1, (w + pads - k) // self.stride + 1
        return (h - 1) * self.upsample + pads - k + 2, (w - 1) * self.upsample + pads - k + 2

    def output_scales(self) -> np.ndarray | float:
        """What the accumulator is multiplied by to come back to ACT_BITS (powers of two: exact)."""
        if self.weight_bits is None:
            return 1 / (1 << WEIGHT_BITS)
        return np.ldexp(1.0, -self.weight_bits.astype(np.int32))[:, None, None]

    def tap_matrix(self, taps: list[tuple[int, int]]) -> np.ndarray:
        return self._cached(tuple(taps), lambda: tap_weights(self.weight, taps))

    @property
    def is_winograd_shaped(self) -> bool:
        """A plain 3×3 convolution of stride 1: what `winograd_bands` computes."""
        return self.upsample == 1 and self.stride == 1 and self.weight.shape[-1] == 3

    def winograd_matrices(self) -> np.ndarray:
        """The filters' Winograd transforms U = 2G·g·(2G)ᵀ as float64 [16, out, in] (integers)."""
        return self._cached(WINOGRAD_KEY, lambda: np.ascontiguousarray(
            np.einsum("ri,ocij,sj->rsoc", WINOGRAD_G2, self.weight, WINOGRAD_G2).reshape(16, *self.weight.shape[:2]),
            dtype=np.float64))

    def _cached(self, key: object, build: Callable[[], np.ndarray]) -> np.ndarray:
        with _TAP_MATRICES_LOCK:  # a thread that needs one another is building waits for it
            matrix = self._tap_matrices.get(key)
            if matrix is None:
                matrix = self._tap_matrices[key] = build()
        return matrix


_TAP_MATRICES_LOCK = threading.Lock()


def _phase_taps(k: int, s: int, pad_before: int, a: int, b: int) -> list[tuple[int, int]]:
    """The taps of a k×k transposed convolution of stride s that meet non-zero inputs at output
    phase (a, b): output row s·m + a reads upsampled row s·m + a + i - pad_before, which is an
    input row when a + i - pad_before ≡ 0 (mod s)."""
    rows = [i for i in range(k) if (a + i - pad_before) % s == 0]
    cols = [j for j in range(k) if (b + j - pad_before) % s == 0]
    return [(i, j) for i in rows for j in cols]


LOOKUP_LIMIT = 1 << 20  # entries of IntHyperSynthesis's threshold lookup table, at most
# float64 values per im2col band (16 MiB): bounds h_s's memory (a 12 MP extract peaked 95 MB lower
# than with 32 MiB bands, as fast; 8 MiB ones were slower)
BAND_VALUES = 1 << 21


_scratch_buffers = threading.local()


def _scratch(name: str, values: int) -> np.ndarray:
    """`values` float64 of this thread's buffer `name`, kept between calls (at most a band's:
    BAND_VALUES): the command hands every freed block over 1 MB back to the system
    (imgarc.process_memory), and a fresh im2col band's page faults were a third of h_s's time
    when Kodak's photos decode side by side."""
    buffer = getattr(_scratch_buffers, name, None)
    if buffer is None or buffer.size < values:
        buffer = np.empty(values, np.float64)
        setattr(_scratch_buffers, name, buffer)
    return buffer[:values]


def _gemm_taps(x: np.ndarray, taps: list[tuple[int, int]], weights: np.ndarray, out: np.ndarray, stride: int) -> None:
    """out[:, m, n] = Σ_t weights_t @ x[:, dy_t + stride·m, dx_t + stride·n] (out: float64
    [out, oh, ow], a view of the layer's output), one matrix product per band of output rows
    (im2col). `weights` is [out, len(taps)·in], tap-major; x is padded so that every read is in
    range. Integer-valued float64 below 2**53: exact in any order."""
    in_c = x.shape[0]
    _, oh, ow = out.shape
    band = max(1, BAND_VALUES // max(1, len(taps) * in_c * ow))
    for r0 in range(0, oh, band):
        r1 = min(oh, r0 + band)
        cols = _scratch("cols", len(taps) * in_c * (r1 - r0) * ow).reshape(len(taps), in_c, r1 - r0, ow)
        for t, (dy, dx) in enumerate(taps):
            cols[t] = x[:, dy + stride * r0 : dy + stride * (r1 - 1) + 1 : stride, dx : dx + stride * (ow - 1) + 1 : stride]
        product = _scratch("product", weights.shape[0] * (r1 - r0) * ow).reshape(weights.shape[0], (r1 - r0) * ow)
        _matmul_on_every_core(weights, cols.reshape(len(taps) * in_c, -1), product)
        out[:, r0:r1] = product.reshape(-1, r1 - r0, ow)


# numpy's BLAS runs on one thread in the command (imgarc.blas_threads). A product that no other
# thread is computing at the time (one photo's h_s) is cut by rows of its weights into one part
# per core, on one shared pool; while photos are coded side by side, each runs whole (cutting
# them too cost the Kodak folder 2 %). Each output is the same dot product either way (exact:
# integers below 2**53). A 12 MP extract: 13.8 s instead of 15.0.
_matmul_pool: ThreadPoolExecutor | None = None
_matmul_lock = threading.Lock()
_matmuls_running = 0
MIN_ROWS_PER_PART = 32


def _matmul_on_every_core(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """out[...] = a @ b, split over every usable core when no other product runs: by rows of a
    matrix `a`, or by matrices of a stack (3-D `a`, `b` and `out`)."""
    global _matmul_pool, _matmuls_running
    stacked = a.ndim == 3
    parts_of = a.shape[0] if stacked else a.shape[0] // MIN_ROWS_PER_PART
    with _matmul_lock:
        _matmuls_running += 1
        parts = min(usable_cores(), parts_of) if _matmuls_running == 1 else 1
        if parts > 1 and _matmul_pool is None:
            _matmul_pool = ThreadPoolExecutor(max_workers=usable_cores() - 1, thread_name_prefix="imgarc-matmul")
    try:
        if parts <= 1:
            np.matmul(a, b, out=out)
            return
        assert _matmul_pool is not None
        def part(r0: int, r1: int) -> None:
            np.matmul(a[r0:r1], b[r0:r1] if stacked else b, out=out[r0:r1])

        bounds = [a.shape[0] * n // parts for n in range(parts + 1)]
        others = [_matmul_pool.submit(part, r0, r1) for r0, r1 in zip(bounds[1:], bounds[2:])]
        part(0, bounds[1])  # the first part here: one hand-over fewer
        for future in others:
            future.result()
    finally:
        with _matmul_lock:
            _matmuls_running -= 1


# Winograd's F(2×2, 3×3) (Lavin & Gray, "Fast algorithms for convolutional neural networks", 2016):
# each 2×2 block of outputs is Aᵀ[U ⊙ (Bᵀ·d·B)]A, with d the 4×4 input patch under it and U the
# filter's transform: 16 multiply-adds per block instead of 36 direct ones. G has halves, so the
# filters are transformed with 2G (integers): every value stays an integer, and the result is 4
# times the convolution, exactly. The transforms add and subtract up to 4 inputs (Bᵀ) and 9
# products (Aᵀ), so the sums are larger than the direct ones: `winograd_bound` says how large.
WINOGRAD_G2 = np.array([[2, 0, 0], [1, 1, 1], [1, -1, 1], [0, 0, 2]], np.int64)  # 2G
WINOGRAD_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.int64)  # Aᵀ
WINOGRAD_INPUT_GAIN = 4  # |Bᵀ·d·B| ≤ 4·max|d|: each row of Bᵀ adds or subtracts two inputs
WINOGRAD_SCALE = 0.25  # the result is 4x the convolution (2G, twice): a power of two, exact
WINOGRAD_KEY = "winograd"


def winograd_bound(layer: IntLayer, input_limit: int) -> int:
    """The largest magnitude any sum in `winograd_bands` can reach for inputs within ±input_limit:
    an output's 9 products (the support of its row of Aᵀ⊗Aᵀ), each at most 4·input_limit times
    the filter transform's absolute row sum."""
    u = np.abs(layer.winograd_matrices().astype(np.int64)).sum(axis=2).reshape(4, 4, -1)  # [r, s, out]
    support = np.abs(WINOGRAD_AT)
    per_output = np.einsum("ar,bs,rso->abo", support, support, u)
    return int(per_output.max()) * WINOGRAD_INPUT_GAIN * input_limit


def _input_transform(d0: np.ndarray, d1: np.ndarray, d2: np.ndarray, d3: np.ndarray, out: np.ndarray) -> None:
    """Bᵀ along one axis: out[0..3] = d0 − d2, d1 + d2, d2 − d1, d1 − d3."""
    np.subtract(d0, d2, out=out[0])
    np.add(d1, d2, out=out[1])
    np.subtract(d2, d1, out=out[2])
    np.subtract(d1, d3, out=out[3])


def _output_transform(m0: np.ndarray, m1: np.ndarray, m2: np.ndarray, m3: np.ndarray, out0: np.ndarray,
                      out1: np.ndarray) -> None:
    """Aᵀ along one axis: out0 = m0 + m1 + m2, out1 = m1 − m2 − m3."""
    np.add(m0, m1, out=out0)
    out0 += m2
    np.subtract(m1, m2, out=out1)
    out1 -= m3


def winograd_bands(x: np.ndarray, layer: IntLayer) -> Iterator[tuple[slice, np.ndarray]]:
    """A 3×3, stride-1 convolution of integer-valued float64 x [in, h, w], zero-padded as the
    layer says, by F(2×2, 3×3) (exact where `winograd_bound` is below EXACT_LIMIT): the same
    integers as `_gemm_taps`, without the bias. Computed in bands of output rows, which bound the
    memory: yields (the band's output rows, its sums [out, rows, w']), a view of this thread's
    scratch memory that the next band overwrites."""
    out_c, in_c = layer.weight.shape[:2]
    oh, ow = layer.output_size(*x.shape[1:])
    bh, bw = -(-oh // 2), -(-ow // 2)  # 2×2 output blocks; an odd edge computes one row or column more
    xp = _zero_padded(x, layer.pad_before, layer.pad_after + 1)
    u = layer.winograd_matrices()
    band = max(1, BAND_VALUES // (16 * max(in_c, out_c) * bw))
    for i0 in range(0, bh, band):
        n = min(bh, i0 + band) - i0
        rows = xp[:, 2 * i0:2 * (i0 + n) + 2]
        across = _scratch("transform", 4 * in_c * n * xp.shape[2]).reshape(4, in_c, n, xp.shape[2])
        _input_transform(*(rows[:, k:k + 2 * n:2] for k in range(4)), across)
        v = _scratch("cols", 16 * in_c * n * bw).reshape(4, 4, in_c, n, bw)
        for r in range(4):
            _input_transform(*(across[r][:, :, k:k + 2 * bw:2] for k in range(4)), v[r])
        m = _scratch("product", 16 * out_c * n * bw).reshape(4, 4, out_c, n, bw)
        _matmul_on_every_core(u, v.reshape(16, in_c, n * bw), m.reshape(16, out_c, n * bw))
        # Aᵀ along the rows, into the buffer Bᵀ used (done with), then along the columns, into
        # the band's blocks: no temporaries (a band's are ~2 MB each, too small for huge pages:
        # their page faults were most of a 12 MP photo's h_s time).
        by_row = _scratch("transform", 8 * out_c * n * bw).reshape(2, 4, out_c, n, bw)
        for s in range(4):
            _output_transform(*m[:, s], by_row[0, s], by_row[1, s])
        sums = _scratch("sums", 4 * out_c * n * bw).reshape(out_c, 2 * n, 2 * bw)
        for a in range(2):
            _output_transform(*by_row[a], sums[:, a::2, 0::2], sums[:, a::2, 1::2])
        sums *= WINOGRAD_SCALE
        stop = min(oh, 2 * (i0 + n))
        yield slice(2 * i0, stop), sums[:, :stop - 2 * i0, :ow]


def tap_weights(weight: np.ndarray, taps: list[tuple[int, int]]) -> np.ndarray:
    """weight [out, in, k, k] -> [out, len(taps)·in] float64, tap-major (what `_gemm_taps` multiplies)."""
    rows, cols = zip(*taps)
    picked = weight[:, :, list(rows), list(cols)]  # [out, in, taps]
    return np.ascontiguousarray(picked.transpose(0, 2, 1), dtype=np.float64).reshape(weight.shape[0], -1)


def _zero_padded(x: np.ndarray, before: int, after: int) -> np.ndarray:
    """x [C, h, w] with `before` and `after` rows and columns of zeros around it (np.pad's result,
    without its per-call overhead, which counted on 150x150 photos). Only the border is zeroed:
    np.zeros's memory is never given huge pages, and its page faults were a third of h_s's."""
    c, h, w = x.shape
    out = np.empty((c, before + h + after, before + w + after), x.dtype)
    out[:, :before] = 0
    out[:, before + h:] = 0
    out[:, before:before + h, :before] = 0
    out[:, before:before + h, before + w:] = 0
    out[:, before:before + h, before:before + w] = x
    return out


def conv_exact(x: np.ndarray, layer: IntLayer, winograd: bool = False) -> np.ndarray:
    """The layer's convolution (before bias scaling) of integer-valued float64 [in, h, w];
    `winograd`: by `winograd_bands` (a 3×3 stride-1 layer whose bound the caller has checked).

    A transposed convolution is, by definition, a convolution over the input upsampled with
    zeros; it is computed per output phase with only the taps that meet non-zero inputs (a
    quarter of them at stride 2), which gives the same sums without the multiplications by zero.
    """
    out_c, in_c, k, _ = layer.weight.shape
    if in_c != x.shape[0]:
        raise ModelError("integer hyper-synthesis layer does not match its input")
    acc = np.empty((out_c, *layer.output_size(*x.shape[1:])), np.float64)
    if winograd:
        for rows, sums in winograd_bands(x, layer):
            acc[:, rows] = sums
    elif layer.upsample == 1:
        taps = [(i, j) for i in range(k) for j in range(k)]
        _gemm_taps(_zero_padded(x, layer.pad_before, layer.pad_after), taps, layer.tap_matrix(taps), acc, layer.stride)
    else:
        s, pb = layer.upsample, layer.pad_before
        # Output row s·m + a reads input row m + (a + i - pb) // s through tap i (_phase_taps). Pad x
        # so every such read is in range.
        margin = k + 1
        xp = _zero_padded(x, margin, margin + k)
        for n, taps in enumerate(layer.tap_sets()):
            a, b = divmod(n, s)
            phase = acc[:, a::s, b::s]
            if phase.size:
                reads = [((a + i - pb) // s + margin, (b + j - pb) // s + margin) for i, j in taps]
                _gemm_taps(xp, reads, layer.tap_matrix(taps), phase, 1)
    acc += layer.bias.astype(np.float64)[:, None, None]
    return acc


def _activated(x: np.ndarray, layer: IntLayer) -> np.ndarray:
    """A layer's sums (bias added) back to ACT_BITS, through its activation and clamp, in place."""
    x *= layer.output_scales()  # powers of two: exact, as the division by them
    np.floor(x, out=x)
    if layer.leaky:  # ⌊x·655/2^16⌋ below 0 and x above: the larger of the two either way
        np.maximum(x, np.floor(x * (LEAKY_NUM / (1 << LEAKY_SHIFT))), out=x)
    elif layer.relu:
        np.maximum(x, 0.0, out=x)
    np.clip(x, -ACT_LIMIT, ACT_LIMIT, out=x)
    return x


def _biased(bands: Iterator[tuple[slice, np.ndarray]], layer: IntLayer) -> Iterator[tuple[slice, np.ndarray]]:
    """`winograd_bands`'s bands with the layer's bias added."""
    bias = layer.bias.astype(np.float64)[:, None, None]
    for rows, sums in bands:
        sums += bias
        yield rows, sums


@dataclass(frozen=True)
class IntHyperSynthesis:
    layers: tuple[IntLayer, ...]
    z_median_fixed: np.ndarray  # int64 [N]: ẑ = symbol + median, at ACT_BITS
    scale_thresholds: np.ndarray  # int64 [K-1]: table k covers scales in [T[k-1], T[k])
    scale_only: bool = False  # h_s predicts scales only (ScaleHyperprior): every mean is 0
    _lookup: np.ndarray | None = field(init=False, repr=False, compare=False)  # table_indexes()

    def __post_init__(self) -> None:
        t = self.scale_thresholds
        span = int(t[-1]) - int(t[0]) + 2 if len(t) else 0
        lookup = np.searchsorted(t, np.arange(int(t[0]) - 1, int(t[-1]) + 1), side="right").astype(self.index_dtype) \
            if 0 < span <= LOOKUP_LIMIT else None
        object.__setattr__(self, "_lookup", lookup)

    def table_indexes(self, scales: np.ndarray, consume: bool = False) -> np.ndarray:
        """searchsorted(scale_thresholds, scales, side="right") as `index_dtype`: the table of each scale.

        Read from a table of that result for every value from just below the first threshold to
        the last (64 k entries for the shipped tables), every other value clamped to its end:
        the same answer, 10x faster than a binary search per latent (11 ms of a Kodak photo's
        h_s). Thresholds too far apart for such a table are searched. `scales`: integers, as
        int64 or as float64 (exact below 2**53); `consume`: they may be overwritten."""
        if self._lookup is None:
            return np.searchsorted(self.scale_thresholds, scales, side="right").astype(self.index_dtype)
        low = int(self.scale_thresholds[0]) - 1
        offsets = np.clip(scales, low, int(self.scale_thresholds[-1]), out=scales if consume else None)
        offsets -= low
        return self._lookup[offsets.astype(np.intp, copy=False)]

    @property
    def index_dtype(self) -> np.dtype:
        """The smallest unsigned type that holds every table index (uint8 for the shipped tables)."""
        return np.min_scalar_type(len(self.scale_thresholds))

    def prepare(self) -> None:
        """Build every layer's tap matrices now (ImageCodec does it on a thread of its own while
        the rest of the model loads), not in the first photo's h_s."""
        for layer, winograd in zip(self.layers, self._winograd_layers):
            for taps in [] if winograd else layer.tap_sets():
                layer.tap_matrix(taps)

    @cached_property
    def _winograd_layers(self) -> tuple[bool, ...]:
        """Per layer: run it by winograd_bands, a 3×3 stride-1 convolution whose Winograd sums
        provably stay below EXACT_LIMIT for its inputs (those of the shipped models do)."""
        return tuple(layer.is_winograd_shaped and winograd_bound(layer, limit) < EXACT_LIMIT
                     for layer, limit in zip(self.layers, self._input_limits()))

    def _input_limits(self) -> list[int]:
        """The largest magnitude of each layer's inputs: ẑ's (clamped), then ACT_LIMIT."""
        first = max(ACT_LIMIT, (Z_SYMBOL_LIMIT << ACT_BITS) + int(np.abs(self.z_median_fixed).max(initial=0)))
        return [first] + [ACT_LIMIT] * (len(self.layers) - 1)

    def run(self, z_symbols: np.ndarray, gains: QualityRow | None = None) -> tuple[np.ndarray, np.ndarray]:
        """z symbols int [N, h, w] -> (table indexes [M, 4h, 4w] as `index_dtype`, means μ̂ float32): μ̂ is
        the integer mean (at ACT_BITS) over 2**ACT_BITS, rounded to float32 once.

        With `gains` (a variable-rate model's quality), ẑ is ungained before h_s and the
        predicted scale and mean are gained after it, all in integer arithmetic.
        """
        z = np.clip(z_symbols.astype(np.int64), -Z_SYMBOL_LIMIT, Z_SYMBOL_LIMIT)
        x = z * (1 << ACT_BITS) + self.z_median_fixed[:, None, None]
        if gains is not None:
            z_limit = Z_SYMBOL_LIMIT << ACT_BITS  # keeps check_exactness()'s input bound
            x = np.clip((x * gains.hyper_inv_gain[:, None, None]) >> GAIN_BITS, -z_limit, z_limit)
        x = x.astype(np.float64)
        *hidden, (last, last_winograd) = zip(self.layers, self._winograd_layers)
        for layer, winograd in hidden:
            x = _activated(conv_exact(x, layer, winograd), layer)
        # The last layer's output (2M channels of float64: 53 MB for a tile of a 12 MP photo) is
        # turned into tables and means band by band as Winograd computes it, never whole.
        bands = _biased(winograd_bands(x, last), last) if last_winograd else [(slice(None), conv_exact(x, last))]
        m = last.weight.shape[0] if self.scale_only else last.weight.shape[0] // 2
        indexes = np.empty((m, *last.output_size(*x.shape[1:])), self.index_dtype)
        mu = np.zeros(indexes.shape, np.float32)
        for rows, sums in bands:
            _activated(sums, last)
            scales, means = sums[:m], (None if self.scale_only else sums[m:])
            if gains is not None:
                # Products of integers below 2**48 (ACT_LIMIT · GAIN_LIMIT) and their floor scaled
                # by 2**-GAIN_BITS are exact in float64: the integer (x·gain) >> GAIN_BITS.
                for part in (scales,) if means is None else (scales, means):
                    part *= gains.gain[:, None, None]
                    part *= 2.0 ** -GAIN_BITS
                    np.floor(part, out=part)
            indexes[:, rows] = self.table_indexes(scales, consume=True)
            if means is not None:
                np.multiply(means, 2.0 ** -ACT_BITS, out=mu[:, rows], casting="same_kind")
        return indexes, mu

    def check_exactness(self) -> None:
        """Raise unless every accumulator provably stays below 2**52 (exact in float64)."""
        for n, (layer, limit) in enumerate(zip(self.layers, self._input_limits())):
            per_out = np.abs(layer.weight).reshape(layer.weight.shape[0], -1).sum(axis=1)
            worst = int((per_out * limit + np.abs(layer.bias)).max())
            if worst >= EXACT_LIMIT:
                raise ModelError(f"integer hyper-synthesis layer {n} could exceed exact float64 range")


def channel_weight_bits(peak: np.ndarray, limit: int = WEIGHT_LIMIT) -> np.ndarray:
    """Per output channel, the most fractional bits b with peak·2^b ≤ `limit` (so its weights
    round within ±limit: ±127 for 8-bit weights), at most MAX_WEIGHT_BITS (and that for a channel
    of zeros, whose bias then keeps the most precision); from the exponents alone (frexp), which
    every machine computes exactly."""
    limit_mantissa, limit_exponent = np.frexp(float(limit))
    mantissa, exponent = np.frexp(peak)
    bits = np.where(mantissa <= limit_mantissa, limit_exponent - exponent, limit_exponent - exponent - 1)
    return np.where(peak > 0, np.minimum(bits, MAX_WEIGHT_BITS), MAX_WEIGHT_BITS).astype(np.int64)


def integerize_h_s(h_s, z_medians: np.ndarray, scale_table: np.ndarray, scale_only: bool = False,
                   weight_limit: int | None = None) -> IntHyperSynthesis:
    """Fixed-point copy of a CompressAI h_s: the mean-scale one (deconv, leaky, deconv, leaky,
    conv) or, with `scale_only`, ScaleHyperprior's (deconv, ReLU, deconv, ReLU, conv, ReLU).
    `weight_limit` L: each output channel's weights within ±L (127: 8-bit weights), with as
    many fractional bits as that allows (`IntLayer.weight_bits`); None: WEIGHT_BITS for all.

    Deterministic given the float32 weights: scaling by powers of two and rounding are exact,
    and the thresholds use only IEEE-754 multiply and sqrt (correctly rounded everywhere).
    """
    import torch.nn as nn

    layers = []
    modules = list(h_s)
    for i, mod in enumerate(modules):
        following = modules[i + 1] if i + 1 < len(modules) else None
        leaky = isinstance(following, nn.LeakyReLU)
        relu = isinstance(following, nn.ReLU)
        if isinstance(mod, (nn.LeakyReLU, nn.ReLU)):
            continue
        w = mod.weight.detach().double().numpy()
        b = mod.bias.detach().double().numpy()
        k = w.shape[-1]
        p = mod.padding[0]
        if isinstance(mod, nn.ConvTranspose2d):
            s = mod.stride[0]
            w = np.flip(w, axis=(2, 3)).transpose(1, 0, 2, 3)  # [in,out,k,k] -> conv [out,in,k,k]
            layer_args = dict(upsample=s, stride=1, pad_before=k - 1 - p, pad_after=k - 1 - p + mod.output_padding[0])
        elif isinstance(mod, nn.Conv2d):
            layer_args = dict(upsample=1, stride=mod.stride[0], pad_before=p, pad_after=p)
        else:
            raise ModelError(f"h_s contains an unsupported layer {type(mod).__name__}")
        if weight_limit is not None:
            bits = channel_weight_bits(np.abs(w).reshape(w.shape[0], -1).max(axis=1), weight_limit)
            weight = np.round(np.ldexp(w, bits[:, None, None, None].astype(np.int32))).astype(np.int64)
            bias = np.round(np.ldexp(b, (bits + ACT_BITS).astype(np.int32))).astype(np.int64)
        else:
            bits = None
            weight = np.round(w * (1 << WEIGHT_BITS)).astype(np.int64)
            bias = np.round(b * (1 << (WEIGHT_BITS + ACT_BITS))).astype(np.int64)
        layers.append(IntLayer(weight=weight, bias=bias, leaky=leaky, relu=relu, weight_bits=bits, **layer_args))
    # Table k is used for scales nearest (in log) to scale_table[k]: thresholds at geometric midpoints.
    mids = np.sqrt(scale_table[:-1] * scale_table[1:])
    hyper = IntHyperSynthesis(
        layers=tuple(layers),
        z_median_fixed=np.round(z_medians * (1 << ACT_BITS)).astype(np.int64),
        scale_thresholds=np.ceil(mids * (1 << ACT_BITS)).astype(np.int64),
        scale_only=scale_only,
    )
    hyper.check_exactness()
    return hyper


def float_h_s(hyper: IntHyperSynthesis) -> dict[str, np.ndarray]:
    """The float h_s state dict (`h_s.<index>.weight|bias`, torch layouts, float32) that
    `integerize_h_s` makes `hyper` from, to its fixed-point precision: what a weights file that
    stores h_s only as integers gives the trainer and the torch reference paths. The weights
    are exact (integers below 2^24 scaled by powers of two), the biases within float32's 24
    significant bits; integerizing it gives the same weights back."""
    params = {}
    for i, layer in enumerate(hyper.layers):
        bits = (np.full(layer.weight.shape[0], WEIGHT_BITS) if layer.weight_bits is None else layer.weight_bits).astype(np.int32)
        w = np.ldexp(layer.weight.astype(np.float32), -bits[:, None, None, None]).astype(np.float32)
        if layer.upsample > 1:  # undo the transposed convolution's flip and [in, out] transpose
            w = np.ascontiguousarray(np.flip(w.transpose(1, 0, 2, 3), axis=(2, 3)))
        params[f"h_s.{2 * i}.weight"] = w
        params[f"h_s.{2 * i}.bias"] = np.ldexp(layer.bias.astype(np.float64), -(bits + ACT_BITS)).astype(np.float32)
    return params
