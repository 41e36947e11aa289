"""Subprocess side of tests/test_determinism.py: encode or decode many archives in one interpreter.

Run as `python tests/determinism_worker.py encode|decode JOB.json OUT.json` with the
ATEN_CPU_CAPABILITY (and BLAS thread) setting under test in the environment: the CPU code
path is fixed when torch loads, so each setting needs its own process; the torch thread count
is not, so one decode process loops over 1/2/4 threads.

Encode: the real `api.compress_folder` per (model, coder, quality). It records, per entry, the
encoder's own LatentCode (captured from `ImageCodec.quantize`) and the pixels it meant: the
digest of `codec.synthesize` of that code. g_a runs once per (model, image): `transform` is
memoized, since it depends on neither coder nor quality.

Decode: the real `api.extract_archive`, then the written PNGs' pixels are hashed; each entry's
latent code is recorded by its path (extract decodes entries side by side). g_s and h_s
are the slow parts and depend only on their integer inputs, so both are memoized per (thread
count, exact input): the archives of the other coders, whose entropy-decoded ẑ and ŷ are
byte-identical, reuse them (their code digest is still recorded and compared). It also runs
the boundary cases of the integer h_s (see `boundary_cases`), unmemoized.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Scales are placed at T-1, T, T+1 for every threshold T (integer rule: table = #{T <= s}).
BOUNDARY_OFFSETS = (-1, 0, 1)


def code_digest(code) -> str:
    """sha256 of everything that decides the pixels: symbols, table indexes, means, gains."""
    h = hashlib.sha256()
    for a in (code.z_symbols, code.y_symbols, code.y_indexes, code.y_means):
        if a is None:  # g_s is handed no table indexes (EntryDecoder.pixels)
            continue
        h.update(np.ascontiguousarray(a).tobytes())
        h.update(str((a.dtype, a.shape)).encode())
    if code.gains is not None:
        for a in (code.gains.gain, code.gains.inv_gain, code.gains.hyper_gain, code.gains.hyper_inv_gain):
            h.update(np.ascontiguousarray(a, dtype="<i8").tobytes())
    return h.hexdigest()


def pixels_digest(rgb: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(rgb, dtype=np.uint8).tobytes() + str(rgb.shape).encode()).hexdigest()


# ----------------------------------------------------------------------------- boundary cases


@dataclass(frozen=True)
class BoundaryCase:
    """An integer h_s whose scale outputs sit exactly on table thresholds, and what it must pick."""

    hyper: object  # IntHyperSynthesis
    z_symbols: np.ndarray
    gains: object | None  # QualityRow
    scales: np.ndarray  # int64 [M']: the (gained) fixed-point scale each output channel must produce
    expected_indexes: np.ndarray  # int32 [M']: the integer rule applied in Python integers


def boundary_cases(weights_path: Path) -> dict[str, BoundaryCase]:
    """Boundary stress cases built from a real weights file's h_s (deterministically, from integers).

    The real layers run unchanged (so their convolutions, BLAS and threads are exercised);
    the last layer is replaced by one with zero weights whose biases put each scale channel
    at T-1, T or T+1 for every threshold T. Without gains the bias is the target itself; with
    gains g (fixed point) the bias is chosen so that (s*g) >> GAIN_BITS lands on the target:
    for g <= 1 every target is reachable (s = ceil(t * 2^16 / g)); for g > 1 the nearest
    reachable values below and above T are used, and the test checks which they are.
    """
    from imgarc.codec.int_hyper import ACT_BITS, WEIGHT_BITS, IntHyperSynthesis, IntLayer
    from imgarc.codec.quality import GAIN_BITS, QualityRow
    from imgarc.codec.weights import load_weights

    weights, _ = load_weights(weights_path)
    base = weights.tables.hyper
    thresholds = base.scale_thresholds
    n_in = base.layers[0].weight.shape[1]
    hidden = base.layers[-1].weight.shape[1]
    targets = np.array([int(t) + d for t in thresholds for d in BOUNDARY_OFFSETS], dtype=np.int64)
    m = len(targets)
    rng = np.random.default_rng(11)
    z = rng.integers(-8, 9, size=(n_in, 3, 4)).astype(np.int32)
    cases = {}
    one = 1 << GAIN_BITS
    for name in ("plain", "gain-below-1", "gain-above-1"):
        if name == "plain":
            gains, pre = None, targets
        else:
            lo, hi = (0.2, 1.0) if name == "gain-below-1" else (1.0, 6.0)
            g = np.round(rng.uniform(lo, hi, m) * one).astype(np.int64)
            g[0] = one if name == "gain-below-1" else g[0]  # include an exact 1.0
            if name == "gain-below-1":
                pre = -(-targets * one // g)  # ceil(t * 2^16 / g): (pre*g) >> 16 == t exactly
            else:
                # largest s with (s*g)>>16 <= t, and t+1 for the +1 offset: nearest reachable points
                pre = ((targets + 1) * one - 1) // g
            hyper_g = np.round(rng.uniform(0.5, 2.0, n_in) * one).astype(np.int64)
            gains = QualityRow(gain=g, inv_gain=np.full(m, one, np.int64), hyper_gain=hyper_g,
                               hyper_inv_gain=(one * one) // hyper_g)
        means = rng.integers(-(50 << ACT_BITS), 50 << ACT_BITS, m)
        bias = np.concatenate([pre, means]) << WEIGHT_BITS  # bias is at ACT_BITS + WEIGHT_BITS
        last = IntLayer(weight=np.zeros((2 * m, hidden, 3, 3), np.int64), bias=bias, upsample=1, stride=1,
                        pad_before=1, pad_after=1, leaky=False)
        hyper = IntHyperSynthesis(base.layers[:-1] + (last,), base.z_median_fixed, thresholds)
        hyper.check_exactness()
        scales = pre if gains is None else (pre * gains.gain) >> GAIN_BITS
        # The rule in plain Python integers: table k covers [T[k-1], T[k]), so the index is #{T <= s}.
        t_list = [int(t) for t in thresholds]
        expected = np.array([sum(t <= int(s) for t in t_list) for s in scales], dtype=np.int32)
        cases[name] = BoundaryCase(hyper, z, gains, scales, expected)
    return cases


def boundary_digests(weights_path: Path, run=None) -> dict[str, str]:
    """Digest of (indexes, means) of every boundary case, as computed in this process."""
    out = {}
    for name, case in boundary_cases(weights_path).items():
        indexes, means = (run or type(case.hyper).run)(case.hyper, case.z_symbols, case.gains)
        out[name] = hashlib.sha256(indexes.tobytes() + means.tobytes()).hexdigest()
    return out


# ----------------------------------------------------------------------------- encode / decode


def encode(job: dict) -> dict:
    """{archive: {entry path: {"code": digest, "pixels": digest}}} for every job in `job["jobs"]`."""
    import torch

    from imgarc import api, ordered_pool
    from imgarc.archive.layout import KIND_IMAGE
    from imgarc.codec.image_codec import ImageCodec

    torch.set_num_threads(job["threads"])
    # Photos coded one after another, so the codings captured below come in archive order
    # (the pool's size changes no byte: test_compress_pool_size_changes_no_byte).
    ordered_pool.usable_cores = lambda: 1
    transform, quantize = ImageCodec.transform, ImageCodec.quantize
    analysed_cache: dict = {}
    intended: dict = {}
    captured: list = []

    def memo_transform(self, rgb):
        key = (self.weights_sha256, hashlib.sha256(rgb.tobytes()).hexdigest(), rgb.shape)
        if key not in analysed_cache:
            analysed_cache[key] = transform(self, rgb)
        return analysed_cache[key]

    def capture_quantize(self, analysed, quality, select=None, consume=False):
        code = quantize(self, analysed, quality, select)  # never consumed: memo_transform keeps it for reuse
        captured.append((self, code))
        return code

    ImageCodec.transform, ImageCodec.quantize = memo_transform, capture_quantize
    out: dict = {}
    for spec in job["jobs"]:
        captured.clear()
        archive = Path(spec["archive"])
        api.compress_folder(Path(spec["src"]), archive, quality=spec["quality"], coder_name=spec["coder"],
                            model_id=spec["model"])
        images = [e.header for e in api.list_archive(archive) if e.header.kind == KIND_IMAGE]
        if len(images) != len(captured) or not images:
            raise SystemExit(f"{archive}: {len(images)} image entries but {len(captured)} codings")
        out[archive.name] = {}
        for header, (codec, code) in zip(images, captured):
            digest = code_digest(code)
            key = (codec.weights_sha256, digest, header.height, header.width)
            if key not in intended:  # the same code from another coder's archive: same pixels
                intended[key] = pixels_digest(codec.synthesize(code, header.height, header.width))
            out[archive.name][header.path] = {"code": digest, "pixels": intended[key]}
    return out


def decode(job: dict) -> dict:
    """{threads: {"archives": {archive: {entry: {"code", "pixels"}}}, "boundary": {...}}}."""
    import torch
    from PIL import Image

    from imgarc import api
    from imgarc.archive.layout import KIND_IMAGE
    from imgarc.codec.image_codec import ImageCodec
    from imgarc.codec.int_hyper import IntHyperSynthesis

    synthesize = ImageCodec.synthesize
    pixels_cache: dict = {}
    seen_codes: dict[str, str] = {}  # entry path -> its latent code (extract decodes entries side by side)

    class RecordingDecoder(api.EntryDecoder):
        def latents(self, header, payload, timings=None):
            decoded = super().latents(header, payload, timings)
            seen_codes[header.path] = code_digest(decoded.code)
            return decoded

    def memo_synthesize(self, code, height, width):
        digest = code_digest(code)
        key = (torch.get_num_threads(), self.weights_sha256, digest, height, width)
        if key not in pixels_cache:
            pixels_cache[key] = synthesize(self, code, height, width)
        return pixels_cache[key]

    run_hyper = IntHyperSynthesis.run
    hyper_cache: dict = {}

    def memo_run(self, z_symbols, gains=None):
        gains_key = None if gains is None else hashlib.sha256(gains.gain.tobytes() + gains.hyper_inv_gain.tobytes()).hexdigest()
        key = (torch.get_num_threads(), id(self), hashlib.sha256(z_symbols.tobytes()).hexdigest(), z_symbols.shape, gains_key)
        if key not in hyper_cache:
            hyper_cache[key] = run_hyper(self, z_symbols, gains)
        return hyper_cache[key]

    ImageCodec.synthesize = memo_synthesize
    IntHyperSynthesis.run = memo_run
    dest = Path(job["dest"])
    result: dict = {}
    for threads in job["threads"]:
        torch.set_num_threads(threads)
        archives: dict = {}
        for archive in map(Path, job["archives"]):
            seen_codes.clear()
            out = dest / f"t{threads}" / archive.stem
            api.Extractor(out, decoder=RecordingDecoder()).extract(archive)
            images = [e.header for e in api.list_archive(archive) if e.header.kind == KIND_IMAGE]
            if set(seen_codes) != {h.path for h in images}:
                raise SystemExit(f"{archive}: decoded {sorted(seen_codes)}, expected {[h.path for h in images]}")
            archives[archive.name] = {
                h.path: {"code": seen_codes[h.path], "pixels": pixels_digest(np.asarray(Image.open(out / h.path).convert("RGB")))}
                for h in images
            }
        result[str(threads)] = {"archives": archives, "boundary": boundary_digests(Path(job["boundary_weights"]), run_hyper)}
    result["g_s_runs"], result["h_s_runs"] = len(pixels_cache), len(hyper_cache)
    return result


def main(argv: list[str]) -> None:
    mode, job_path, out_path = argv
    job = json.loads(Path(job_path).read_text())
    result = encode(job) if mode == "encode" else decode(job)
    Path(out_path).write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
