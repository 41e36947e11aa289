"""Issue 3's acceptance on Kodak: the variable-rate model's curve against WebP, in one run.

For every image: the analysis transform once, then at each quality of the curve the real
payload (z and y streams as an archive stores them, `--coder`) and the decoded pixels; WebP
(Pillow, method=6, the baseline DESIGN.md fixes) over a quality grid, kept where its mean bpp
falls in the model's range. Reports mean bpp / PSNR / MS-SSIM per point, BD-rate against WebP
in PSNR and in MS-SSIM (dB scale, -10·log10(1-MS-SSIM)), whether bpp is monotone in quality
on every image over all 100 qualities, and where `--target-bpp 0.5` lands per image.

    python benchmarks/rate_curve.py --data ../shared/datasets/kodak --out benchmarks/results/rate_curve
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import time
from pathlib import Path

import numpy as np
from PIL import Image

from imgarc.bench.bdrate import bd_rate, ms_ssim_db
from imgarc.bench.metrics import ms_ssim, psnr

CURVE_QUALITIES = (1, 10, 25, 40, 55, 70, 85, 100)
WEBP_QUALITIES = tuple(range(0, 96, 5))
TARGET_BPP = 0.5


def webp_point(rgb: np.ndarray, quality: int) -> tuple[int, np.ndarray]:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="WEBP", quality=quality, method=6)
    return len(buf.getvalue()), np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def mean_point(rows: list[dict]) -> dict:
    return {k: float(np.mean([r[k] for r in rows])) for k in ("bpp", "psnr", "ms_ssim")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="folder of Kodak PNGs")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/rate_curve"), help="output path without suffix")
    ap.add_argument("--model", default=None, help="installed model id (default: the default model)")
    ap.add_argument("--coder", default="rans")
    ap.add_argument("--every", type=int, default=1, help="use every N-th image (a quicker look; the report says how many)")
    args = ap.parse_args()

    from imgarc.codec.rate_control import code_at_quality, code_at_target_bpp
    from imgarc.codec.registry import default_model_id, load_codec
    from imgarc.coders import get_coder

    model_id = args.model or default_model_id()
    codec, coder = load_codec(model_id), get_coder(args.coder)
    if not codec.variable_rate:
        raise SystemExit(f"{model_id} is a single-rate model: there is no curve to draw")
    files = sorted(args.data.glob("*.png"))[:: args.every]
    started = time.perf_counter()
    curve: dict[int, list[dict]] = {q: [] for q in CURVE_QUALITIES}
    webp: dict[int, list[dict]] = {q: [] for q in WEBP_QUALITIES}
    not_monotone, target_rows = [], []
    for f in files:
        rgb = np.asarray(Image.open(f).convert("RGB"))
        h, w = rgb.shape[:2]
        analysed = codec.transform(rgb)
        sizes = [len(code_at_quality(codec, coder, analysed, q).payload) for q in range(1, 101)]
        if any(b < a for a, b in zip(sizes, sizes[1:])):
            not_monotone.append(f.name)
        for q in CURVE_QUALITIES:
            code = codec.quantize(analysed, q)
            decoded = codec.synthesize(code, h, w)
            curve[q].append({"image": f.name, "bpp": sizes[q - 1] * 8 / (h * w), "psnr": psnr(rgb, decoded),
                             "ms_ssim": ms_ssim(rgb, decoded)})
        hit = code_at_target_bpp(codec, coder, analysed, h * w, TARGET_BPP)
        target_rows.append({"image": f.name, "quality": hit.quality, "bpp": hit.bpp(h * w),
                            "error_pct": (hit.bpp(h * w) / TARGET_BPP - 1) * 100})
        for q in WEBP_QUALITIES:
            n, decoded = webp_point(rgb, q)
            webp[q].append({"image": f.name, "bpp": n * 8 / (h * w), "psnr": psnr(rgb, decoded), "ms_ssim": ms_ssim(rgb, decoded)})
        print(f"{f.name} done ({time.perf_counter() - started:.0f} s)", flush=True)

    ours = {q: mean_point(rows) for q, rows in curve.items()}
    lo, hi = min(p["bpp"] for p in ours.values()), max(p["bpp"] for p in ours.values())
    theirs_all = {q: mean_point(rows) for q, rows in webp.items()}
    # WebP points spanning the model's bpp range: those inside it, plus the nearest one beyond each end.
    ordered = sorted(theirs_all.items(), key=lambda kv: kv[1]["bpp"])
    inside = [i for i, (_, p) in enumerate(ordered) if lo <= p["bpp"] <= hi]
    first, last = (max(inside[0] - 1, 0), min(inside[-1] + 1, len(ordered) - 1)) if inside else (0, len(ordered) - 1)
    theirs = dict(ordered[first : last + 1])

    def bd(metric) -> float:
        return bd_rate([p["bpp"] for p in ours.values()], [metric(p) for p in ours.values()],
                       [p["bpp"] for p in theirs.values()], [metric(p) for p in theirs.values()])

    result = {
        "model": model_id, "weights_sha256": codec.weights_sha256, "coder": args.coder, "images": len(files),
        "command": "python benchmarks/rate_curve.py --data " + str(args.data) + (f" --model {args.model}" if args.model else "")
                   + (f" --every {args.every}" if args.every > 1 else ""),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}",
        "curve": {str(q): p for q, p in ours.items()}, "webp": {str(q): p for q, p in theirs.items()},
        "bd_rate_psnr_pct": bd(lambda p: p["psnr"]), "bd_rate_ms_ssim_pct": bd(lambda p: ms_ssim_db(p["ms_ssim"])),
        "bpp_not_monotone_in_quality": not_monotone, "target_bpp": TARGET_BPP, "target_rows": target_rows,
        "target_max_abs_error_pct": max(abs(r["error_pct"]) for r in target_rows),
        "per_image": {str(q): rows for q, rows in curve.items()}, "seconds": time.perf_counter() - started,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    md = [f"# Rate curve of `{model_id}` on Kodak ({len(files)} images) vs WebP", "",
          f"Command: `{result['command']}`  ", f"Machine: {result['machine']}; coder `{args.coder}`; "
          f"run took {result['seconds']:.0f} s.", "",
          "bpp = payload bits (what the archive stores for the image, container header excluded) / pixels; "
          "WebP bpp = file bits / pixels. Means over images.", "",
          "| method | quality | bpp | PSNR dB | MS-SSIM |", "|---|---|---|---|---|"]
    md += [f"| imgarc | {q} | {p['bpp']:.4f} | {p['psnr']:.2f} | {p['ms_ssim']:.4f} |" for q, p in ours.items()]
    md += [f"| WebP m6 | {q} | {p['bpp']:.4f} | {p['psnr']:.2f} | {p['ms_ssim']:.4f} |" for q, p in theirs.items()]
    md += ["", f"- BD-rate vs WebP, PSNR: **{result['bd_rate_psnr_pct']:+.1f} %** (target ≤ 0 %)",
           f"- BD-rate vs WebP, MS-SSIM (dB): **{result['bd_rate_ms_ssim_pct']:+.1f} %** (target ≤ −20 %)",
           f"- bpp monotone in quality (1…100) on every image: **{'yes' if not not_monotone else 'no: ' + ', '.join(not_monotone)}**",
           f"- `--target-bpp {TARGET_BPP}`: worst error **{result['target_max_abs_error_pct']:.2f} %** over "
           f"{len(target_rows)} images (target ±5 %)"]
    args.out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
