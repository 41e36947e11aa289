"""Latent refinement (`imgarc compress --refine N`) on Kodak: BD-rate against plain coding in the
same run, and against JPEG, WebP and AVIF on the same photos from a bench run's own rows.

For each photo and quality: g_a once, then the integer latents plain (`ImageCodec.quantize`) and
refined (`LatentRefiner.refine`), each packed by the rANS coder exactly as an archive entry's
payload (its bytes give the bpp) and decoded by `ImageCodec.synthesize` as `extract` decodes it
(PSNR, MS-SSIM with imgarc.bench.metrics). Curves are per-quality means over the photos, as the
bench's; BD-rates by the bench's `bd_rate` (cubic and pchip). The classical codecs' rows come
from --bench (an `imgarc bench kodak` results.json: libavif, libwebp and libjpeg are deterministic
on a given build), restricted to the same photos; the plain rows are checked against the bench's
imgarc rows on the same photos (same model and coder: identical bytes).

    python benchmarks/refine.py [--steps 30] [--every 1] [--qualities 10,25,50,75,95] \
        [--bench benchmarks/results/bench_kodak/results.json] [--out benchmarks/results/refine_kodak]
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from common import load_rgb, machine_line

from imgarc.bench.bdrate import bd_rate, ms_ssim_db
from imgarc.bench.metrics import ms_ssim, psnr
from imgarc.codec.rate_control import pack_latents
from imgarc.codec.refine import LEARNING_RATE, LatentRefiner
from imgarc.codec.registry import load_codec
from imgarc.coders import get_coder

KODAK = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "kodak"
ANCHORS = {"JPEG": "jpeg", "WebP": "webp", "AVIF": "avif"}  # name: the bench's family


def curve(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    """(mean bpp, mean quality) per quality setting, as the bench's curves: MS-SSIM's mean in dB."""
    out = []
    for q in sorted({r["q"] for r in rows}):
        at = [r for r in rows if r["q"] == q]
        mean = float(np.mean([r[key] for r in at]))
        out.append((float(np.mean([r["bpp"] for r in at])), mean if key == "psnr" else ms_ssim_db(mean)))
    return [o[0] for o in out], [o[1] for o in out]


def anchor_rows(bench: dict, family: str, names: set[str]) -> list[dict]:
    """A classical codec's per-photo rows of the bench run, on `names` only."""
    rows = []
    for method in bench["methods"]:
        if method["family"] == family and method["status"] == "ok":
            for image in method["images"]:
                if image["name"] in names:
                    rows.append({"q": method["params"]["quality"], "bpp": image["bpp"], "psnr": image["psnr"],
                                 "ms_ssim": image["ms_ssim"]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="msh128-mixed-vr1")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--lr", type=float, default=LEARNING_RATE)
    ap.add_argument("--every", type=int, default=1, help="every k-th Kodak photo")
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2, help="photos coded side by side")
    ap.add_argument("--qualities", default="10,25,50,75,95")
    ap.add_argument("--bench", type=Path, default=Path("benchmarks/results/bench_kodak/results.json"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/refine_kodak"))
    a = ap.parse_args()

    codec = load_codec(a.model)
    coder = get_coder("rans")
    refiner = LatentRefiner(codec, a.steps, a.lr)
    qualities = [int(q) for q in a.qualities.split(",")]
    photos = sorted(KODAK.glob("*.png"))[a.offset::a.every]
    started = time.time()

    def code_photo(path: Path) -> list[dict]:
        rgb = load_rgb(path)
        h, w = rgb.shape[:2]
        analysed = codec.transform(rgb)
        out = []
        for q in qualities:
            for kind in ("plain", "refined"):
                t = time.perf_counter()
                code = codec.quantize(analysed, q) if kind == "plain" else refiner.refine(rgb, analysed, q)
                seconds = time.perf_counter() - t
                payload = pack_latents(codec, coder, code)
                decoded = codec.synthesize(code, h, w)
                out.append({"name": path.name, "q": q, "kind": kind, "bytes": len(payload), "bpp": len(payload) * 8 / (h * w),
                            "psnr": psnr(rgb, decoded), "ms_ssim": ms_ssim(rgb, decoded), "seconds": seconds})
            p, r = out[-2], out[-1]
            print(f"{path.name} q{q}: plain {p['bpp']:.4f} bpp {p['psnr']:.3f} dB {p['ms_ssim']:.5f}, refined "
                  f"{r['bpp']:.4f} bpp {r['psnr']:.3f} dB {r['ms_ssim']:.5f} in {r['seconds']:.1f} s", flush=True)
        return out

    # Photos side by side, each refined on one thread (as compress codes a folder).
    with ThreadPoolExecutor(a.workers) as pool:
        rows = [row for photo_rows in pool.map(code_photo, photos) for row in photo_rows]

    names = {p.name for p in photos}
    plain = [r for r in rows if r["kind"] == "plain"]
    refined = [r for r in rows if r["kind"] == "refined"]
    bench = json.loads(a.bench.read_text())
    bench_plain = {(image["name"], m["params"]["quality"]): image["bytes"] for m in bench["methods"]
                   if m["family"] == "imgarc" and m["params"].get("coder") == "rans" and not m["params"].get("model")
                   for image in m["images"]}
    matches = sum(bench_plain.get((r["name"], r["q"])) == r["bytes"] for r in plain)
    bd = {}
    for anchor_name, anchor in [("plain", plain)] + [(n, anchor_rows(bench, f, names)) for n, f in ANCHORS.items()]:
        for key in ("psnr", "ms_ssim"):
            for method in ("cubic", "pchip"):
                bd[f"refined vs {anchor_name}, {key}, {method}"] = bd_rate(*curve(refined, key), *curve(anchor, key), method=method)
                if anchor_name != "plain":
                    bd[f"plain vs {anchor_name}, {key}, {method}"] = bd_rate(*curve(plain, key), *curve(anchor, key), method=method)
    seconds = {kind: float(np.mean([r["seconds"] for r in rows if r["kind"] == kind])) for kind in ("plain", "refined")}
    result = {"command": "python benchmarks/refine.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(a).items()),
              "machine": machine_line(), "photos": sorted(names), "steps": a.steps, "lr": a.lr, "bf16": refiner.bf16,
              "plain_rows_identical_to_bench": f"{matches} of {len(plain)}", "bd_rates": bd,
              "mean_seconds_per_photo": seconds, "wall_seconds": time.time() - started, "rows": rows}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    lines = [f"# Latent refinement on Kodak ({len(photos)} photos, {a.steps} steps)", "",
             f"Command: `{result['command']}`  ", f"Machine: {result['machine']}  ",
             f"g_s in bf16: {refiner.bf16}; plain rows byte-identical to the bench's: {result['plain_rows_identical_to_bench']}; "
             f"latent stage per photo and quality: plain {seconds['plain']:.2f} s, refined {seconds['refined']:.1f} s (one thread, "
             f"{a.workers} photos side by side); wall {result['wall_seconds']:.0f} s.", "",
             "| BD-rate (negative: fewer bits at equal quality) | PSNR cubic | PSNR pchip | MS-SSIM cubic | MS-SSIM pchip |",
             "|---|---|---|---|---|"]
    for test, anchor in [("refined", "plain")] + [(t, f) for f in ANCHORS for t in ("plain", "refined")]:
        cells = [f"{bd[f'{test} vs {anchor}, {k}, {m}']:+.2f} %" for k in ("psnr", "ms_ssim") for m in ("cubic", "pchip")]
        lines.append(f"| {test} vs {anchor} | " + " | ".join(cells) + " |")
    lines += ["", "| quality | plain bpp / PSNR / MS-SSIM | refined bpp / PSNR / MS-SSIM |", "|---|---|---|"]
    for q in qualities:
        p = [r for r in plain if r["q"] == q]
        r = [x for x in refined if x["q"] == q]
        cell = lambda rs: f"{np.mean([x['bpp'] for x in rs]):.4f} / {np.mean([x['psnr'] for x in rs]):.2f} / {np.mean([x['ms_ssim'] for x in rs]):.4f}"  # noqa: E731
        lines.append(f"| {q} | {cell(p)} | {cell(r)} |")
    a.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
