"""The latent coders side by side on the same integer latents: the per-symbol arithmetic coder
that research code used, and imgarc's vectorized coders that replace it.

Run inside one bench worker process (`coder-study` step) on a few images: each image is
analysed once, then every coder encodes and decodes the same ẑ and ŷ symbols with the same
table indexes and tables, timed one after another (wall and CPU time), and every decode is
checked to give the symbols back exactly. The entropy estimate the rates are compared with is
the project's definition (DESIGN.md): −log2 of CompressAI forward() likelihoods, eval mode,
on the same image at the same rate position.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from imgarc.bench.metrics import load_rgb
from imgarc.codec.image_codec import ImageCodec, LatentCode
from imgarc.codec.padding import pad_to_multiple, padded_size
from imgarc.codec.quality import rate_position
from imgarc.coders import get_coder
from imgarc.coders.arith import ArithmeticCoder
from imgarc.coders.base import LatentCoder

ARITH = ArithmeticCoder.name


def study_coder(name: str) -> LatentCoder:
    """A coder by name: the bench-only `arith`, or one of the archive coders (CODERS)."""
    return ArithmeticCoder() if name == ARITH else get_coder(name)


def sample_names(names: list[str], count: int) -> list[str]:
    """`count` names spread evenly over `names` (first and last included); all of them if fewer."""
    if count <= 0:
        return []
    if count >= len(names):
        return list(names)
    if count == 1:
        return [names[len(names) // 2]]
    picks = sorted({round(i * (len(names) - 1) / (count - 1)) for i in range(count)})
    return [names[i] for i in picks]


def latent_symbol_count(codec_n: int, codec_m: int, width: int, height: int, stride: int = 64) -> int:
    """How many ẑ + ŷ symbols an image of this size has (for scaling a per-symbol time)."""
    ph, pw = padded_size(height, width, stride)
    return codec_n * (ph // 64) * (pw // 64) + codec_m * (ph // 16) * (pw // 16)


def _streams(codec: ImageCodec, code: LatentCode) -> list[tuple[np.ndarray, np.ndarray, object]]:
    z_idx = codec.z_indexes(code.z_symbols.shape)
    return [(code.z_symbols.ravel(), z_idx, codec.tables.z),
            (code.y_symbols.ravel(), code.y_indexes.ravel(), codec.tables.y)]


def time_coder(coder: LatentCoder, streams: list) -> dict:
    """Encode then decode every stream with `coder`: bytes, wall and CPU seconds each way, exactness."""
    t, c = time.perf_counter(), time.process_time()
    data = [coder.encode(symbols, indexes, tables) for symbols, indexes, tables in streams]
    enc_s, enc_cpu = time.perf_counter() - t, time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
    decoded = [coder.decode(d, indexes, tables) for d, (_, indexes, tables) in zip(data, streams)]
    dec_s, dec_cpu = time.perf_counter() - t, time.process_time() - c
    exact = all(np.array_equal(out, symbols) for out, (symbols, _, _) in zip(decoded, streams))
    return {"bytes": sum(len(d) for d in data), "encode_s": enc_s, "decode_s": dec_s,
            "encode_cpu_s": enc_cpu, "decode_cpu_s": dec_cpu, "exact": exact}


def entropy_estimate_bits(codec: ImageCodec, rgb: np.ndarray, quality: int) -> float:
    """−log2 of CompressAI forward() likelihoods (eval mode) of ẑ and ŷ for one image, in bits."""
    import torch  # only for the estimate: the coders themselves never load torch

    model = codec.torch_model
    kwargs = {"rate_position": rate_position(quality, model.rate_points)} if codec.variable_rate else {}
    x = torch.from_numpy(pad_to_multiple(rgb, codec.stride).transpose(2, 0, 1).copy()).float()[None] / 255
    with torch.no_grad():
        out = model(x, **kwargs)
    return float(sum(-torch.log2(lik).sum() for lik in out["likelihoods"].values()))


def study_coders(codec: ImageCodec, src: Path, files: list[str], quality: int, coders: list[str],
                 estimate: bool = True) -> dict:
    """Every coder on every image's latents; per image and in total (see the module docstring)."""
    per_image = []
    for rel in files:
        rgb = load_rgb(src / rel)
        code = codec.analyse(rgb, quality)
        streams = _streams(codec, code)
        row = {"name": rel, "width": int(rgb.shape[1]), "height": int(rgb.shape[0]),
               "symbols": int(sum(s.size for s, _, _ in streams)),
               "coders": {name: time_coder(study_coder(name), streams) for name in coders}}
        row["estimate_bits"] = entropy_estimate_bits(codec, rgb, quality) if estimate else None
        per_image.append(row)
    totals = {}
    for name in coders:
        rows = [im["coders"][name] for im in per_image]
        totals[name] = {k: sum(r[k] for r in rows) for k in ("bytes", "encode_s", "decode_s", "encode_cpu_s", "decode_cpu_s")}
        totals[name]["exact"] = all(r["exact"] for r in rows)
    estimates = [im["estimate_bits"] for im in per_image]
    return {"model": codec.model_id, "quality": quality, "images": per_image, "totals": totals,
            "symbols": sum(im["symbols"] for im in per_image),
            "estimate_bits": sum(estimates) if estimates and None not in estimates else None}
