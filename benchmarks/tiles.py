"""Tiled vs one-piece coding of large photos: bytes, PSNR, and PSNR along tile borders (seams).

Each photo is coded at each quality twice in one process: with the shipped tile grids
(imgarc.codec.image_codec) and with every network forced to run in one piece. Reports the
payload size and PSNR of both, the pixels that differ between the two decodes, the PSNR of
the tiled decode on the 8-pixel bands along g_s's tile borders against the rest of the photo
and against the one-piece decode's same pixels (the seam's own cost), the BD-rate of tiled
against one piece per folder (PSNR, over the qualities), and a crop around the first photo's
first tile corner from each decode, for the eye.

    python benchmarks/tiles.py --data ../shared/datasets/kodak ../shared/datasets/clic/professional_valid_30of41 \
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

from imgarc.bench.bdrate import bd_rate
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


def tile_borders(n: int) -> list[int]:
    """Pixel positions of g_s's tile borders along an axis of n pixels (16 per latent), for a
    photo that is tiled at all (see border_mask)."""
    return [start * 16 for start, _, _, _ in image_codec.SYNTHESIS_TILES.spans(-(-n // 64) * 4)][1:]


def border_mask(h: int, w: int) -> np.ndarray:
    """Pixels within BAND of a g_s tile border."""
    mask = np.zeros((h, w), bool)
    padded = (-(-h // 64) * 4, -(-w // 64) * 4)
    if image_codec.SYNTHESIS_TILES.fits_whole(*padded):
        return mask
    for y in tile_borders(h):
        mask[max(0, y - BAND):y + BAND] = True
    for x in tile_borders(w):
        mask[:, max(0, x - BAND):x + BAND] = True
    return mask


def code(codec, coder, rgb: np.ndarray, quality: int) -> tuple[int, np.ndarray, float]:
    t = time.perf_counter()
    latents = codec.quantize(codec.transform(rgb), quality)
    payload = pack_latents(codec, coder, latents)
    return len(payload), codec.synthesize(latents, *rgb.shape[:2]), time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, nargs="+", required=True, help="folders of photos (each gets its own BD-rate)")
    ap.add_argument("--limit", type=int, default=0, help="photos per folder (0: all)")
    ap.add_argument("--qualities", default="10,25,50,75,95")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    codec, coder = load_codec(default_model_id()), get_coder("rans")
    qualities = [int(q) for q in args.qualities.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    rows, folders = [], {}
    for folder in args.data:
        photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg"))[: args.limit or None]
        for path in photos:
            rgb = np.asarray(Image.open(path).convert("RGB"))
            h, w = rgb.shape[:2]
            mask = border_mask(h, w)
            for q in qualities:
                tiled_bytes, tiled, tiled_s = code(codec, coder, rgb, q)
                with one_piece():
                    whole_bytes, whole, whole_s = code(codec, coder, rgb, q)
                gap = np.abs(tiled.astype(int) - whole.astype(int))
                rows.append({"folder": folder.name, "photo": path.name, "size": f"{w}x{h}", "quality": q,
                             "bytes_tiled": tiled_bytes, "bytes_one_piece": whole_bytes, "psnr_tiled": psnr(rgb, tiled),
                             "psnr_one_piece": psnr(rgb, whole), "pixels_differing": float((gap > 0).mean()),
                             "max_difference": int(gap.max()),
                             "psnr_borders": psnr(rgb[mask], tiled[mask]) if mask.any() else None,
                             "psnr_borders_one_piece": psnr(rgb[mask], whole[mask]) if mask.any() else None,
                             "psnr_elsewhere": psnr(rgb[~mask], tiled[~mask]), "seconds_tiled": tiled_s,
                             "seconds_one_piece": whole_s})
                print(json.dumps(rows[-1]), flush=True)
                if folder.name not in folders and q == qualities[len(qualities) // 2] and mask.any():
                    y, x = (tile_borders(h) or [h // 2])[0], (tile_borders(w) or [w // 2])[0]
                    box = (max(0, x - 96), max(0, y - 96), min(w, x + 96), min(h, y + 96))
                    for name, pixels in (("tiled", tiled), ("one_piece", whole)):
                        Image.fromarray(pixels).crop(box).save(args.out / f"crop_{folder.name}_{path.stem}_q{q}_{name}.png")
                    folders[folder.name] = f"{path.name} q{q}, around ({x}, {y})"
    (args.out / "tiles.json").write_text(json.dumps({"model": codec.model_id, "rows": rows, "crops": folders}, indent=1) + "\n")
    lines = ["| folder | photos | tiled bytes / one piece | BD-rate tiled vs one piece (PSNR) | PSNR borders: tiled / one piece "
             "(mean) | PSNR borders / elsewhere, tiled (mean) | photos with any pixel differing |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name in dict.fromkeys(r["folder"] for r in rows):
        mine = [r for r in rows if r["folder"] == name]
        ratio = sum(r["bytes_tiled"] for r in mine) / sum(r["bytes_one_piece"] for r in mine)
        bds = []
        for photo in dict.fromkeys(r["photo"] for r in mine):
            curve = sorted((r for r in mine if r["photo"] == photo), key=lambda r: r["quality"])
            bds.append(bd_rate([r["bytes_tiled"] for r in curve], [r["psnr_tiled"] for r in curve],
                               [r["bytes_one_piece"] for r in curve], [r["psnr_one_piece"] for r in curve]))
        bordered = [r for r in mine if r["psnr_borders"] is not None]
        seam = (f"{np.mean([r['psnr_borders'] for r in bordered]):.3f} / {np.mean([r['psnr_borders_one_piece'] for r in bordered]):.3f}"
                if bordered else "–")
        versus = (f"{np.mean([r['psnr_borders'] for r in bordered]):.2f} / {np.mean([r['psnr_elsewhere'] for r in bordered]):.2f}"
                  if bordered else "–")
        differing = len({r["photo"] for r in mine if r["pixels_differing"] > 0})
        lines.append(f"| {name} | {len(bds)} | {ratio:.5f} | {np.mean(bds):+.3f} % (worst {max(bds):+.3f} %) | {seam} | {versus} | "
                     f"{differing} |")
    lines += ["", f"Model {codec.model_id}, qualities {qualities}; BD-rate: mean over photos of each photo's cubic BD-rate "
              "(bytes vs PSNR). Crops (tiled and one-piece decode, 192x192 around a tile corner): "
              + "; ".join(f"{k}: {v}" for k, v in folders.items()) + ".", "",
              "| photo | q | bytes tiled / one piece | PSNR tiled / one piece | differing pixels (max) | PSNR borders / elsewhere |",
              "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        borders = f"{r['psnr_borders']:.2f}" if r["psnr_borders"] is not None else "–"
        lines.append(f"| {r['photo']} ({r['size']}) | {r['quality']} | {r['bytes_tiled']} / {r['bytes_one_piece']} | "
                     f"{r['psnr_tiled']:.3f} / {r['psnr_one_piece']:.3f} | {r['pixels_differing']:.4%} ({r['max_difference']}) | "
                     f"{borders} / {r['psnr_elsewhere']:.2f} |")
    (args.out / "tiles.md").write_text("# Tiled vs one-piece coding\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines[:6]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
