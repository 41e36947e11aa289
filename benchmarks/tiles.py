"""Tiled vs one-piece coding of large photos: bytes, PSNR, and PSNR along tile borders (seams).

Each photo is coded at each quality twice in one process: with the shipped tile grids
(imgarc.codec.image_codec) and with every network forced to run in one piece. Reports the
payload size and PSNR of both, the pixels that differ between the two decodes, and the PSNR of
the tiled decode on the 8-pixel bands along g_s's tile borders against the rest of the photo.

    python benchmarks/tiles.py --data ../shared/datasets/clic/professional_valid_30of41 --limit 6 \
        --out benchmarks/results/tiles
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from imgarc.codec import image_codec
from imgarc.codec.registry import default_model_id, load_codec
from imgarc.codec.rate_control import pack_latents
from imgarc.coders import get_coder

GRIDS = ("ANALYSIS_TILES", "HYPER_ANALYSIS_TILES", "HYPER_SYNTHESIS_TILES", "SYNTHESIS_TILES")
BAND = 8  # pixels either side of a tile border


@contextmanager
def one_piece() -> Iterator[None]:
    saved = {name: getattr(image_codec, name) for name in GRIDS}
    for name, grid in saved.items():
        setattr(image_codec, name, replace(grid, whole=1 << 40))
    try:
        yield
    finally:
        for name, grid in saved.items():
            setattr(image_codec, name, grid)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255**2 / max(mse, 1e-12))


def border_mask(h: int, w: int) -> np.ndarray:
    """Pixels within BAND of a g_s tile border (tiles of SYNTHESIS_TILES.tile latents, 16 px each)."""
    step = image_codec.SYNTHESIS_TILES.tile * 16
    mask = np.zeros((h, w), bool)
    for y in range(step, h, step):
        mask[max(0, y - BAND):y + BAND] = True
    for x in range(step, w, step):
        mask[:, max(0, x - BAND):x + BAND] = True
    return mask


def code(codec, coder, rgb: np.ndarray, quality: int) -> tuple[int, np.ndarray, float]:
    t = time.perf_counter()
    latents = codec.quantize(codec.transform(rgb), quality)
    payload = pack_latents(codec, coder, latents)
    return len(payload), codec.synthesize(latents, *rgb.shape[:2]), time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=6)
    ap.add_argument("--qualities", default="25,75")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    codec, coder = load_codec(default_model_id()), get_coder("rans")
    photos = sorted(p for p in args.data.iterdir() if p.suffix.lower() in (".png", ".jpg"))[: args.limit]
    rows = []
    for path in photos:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        h, w = rgb.shape[:2]
        mask = border_mask(h, w)
        for q in map(int, args.qualities.split(",")):
            tiled_bytes, tiled, tiled_s = code(codec, coder, rgb, q)
            with one_piece():
                whole_bytes, whole, whole_s = code(codec, coder, rgb, q)
            gap = np.abs(tiled.astype(int) - whole.astype(int))
            rows.append({"photo": path.name, "size": f"{w}x{h}", "quality": q, "bytes_tiled": tiled_bytes,
                         "bytes_one_piece": whole_bytes, "psnr_tiled": psnr(rgb, tiled), "psnr_one_piece": psnr(rgb, whole),
                         "pixels_differing": float((gap > 0).mean()), "max_difference": int(gap.max()),
                         "psnr_borders": psnr(rgb[mask], tiled[mask]) if mask.any() else None,
                         "psnr_elsewhere": psnr(rgb[~mask], tiled[~mask]), "seconds_tiled": tiled_s,
                         "seconds_one_piece": whole_s})
            print(json.dumps(rows[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tiles.json").write_text(json.dumps({"model": codec.model_id, "rows": rows}, indent=1) + "\n")
    bytes_ratio = sum(r["bytes_tiled"] for r in rows) / sum(r["bytes_one_piece"] for r in rows)
    lines = ["| photo | q | bytes tiled / one piece | PSNR tiled / one piece | differing pixels (max) | PSNR borders / elsewhere |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        borders = f"{r['psnr_borders']:.2f}" if r["psnr_borders"] is not None else "–"
        lines.append(f"| {r['photo']} ({r['size']}) | {r['quality']} | {r['bytes_tiled']} / {r['bytes_one_piece']} | "
                     f"{r['psnr_tiled']:.3f} / {r['psnr_one_piece']:.3f} | {r['pixels_differing']:.4%} ({r['max_difference']}) | "
                     f"{borders} / {r['psnr_elsewhere']:.2f} |")
    lines.append(f"\nAll photos: tiled bytes / one-piece bytes = {bytes_ratio:.5f}.")
    (args.out / "tiles.md").write_text("\n".join(lines) + "\n")
    print(lines[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
