"""Issue 2's acceptance numbers on Kodak: bpp, PSNR, MS-SSIM, times, rANS vs entropy estimate.

Runs the real `imgarc` command (compress, extract) once per coder on a folder, then compares
every extracted photo with its original. Also codes each image in-process to compare the
rANS stream size with the model's own entropy estimate (CompressAI forward() likelihoods,
eval mode, on the same ŷ and ẑ).

    python benchmarks/kodak_core.py --data ../shared/datasets/kodak --out benchmarks/results/kodak_core
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from imgarc.bench.metrics import ms_ssim, psnr


def run(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def entropy_gap(data: Path, model_id: str | None, quality: int) -> dict:
    """rANS bytes vs −log2 of forward() likelihoods, summed over the folder (a variable-rate
    model at `quality`: forward() then runs at the same rate position)."""
    import torch

    from imgarc.codec.padding import pad_to_multiple
    from imgarc.codec.quality import rate_position
    from imgarc.codec.registry import default_model_id, load_codec
    from imgarc.coders import get_coder

    codec = load_codec(model_id or default_model_id())
    rans = get_coder("rans")
    coded_bits = estimate_bits = 0.0
    forward_args = {"rate_position": rate_position(quality, codec.torch_model.rate_points)} if codec.variable_rate else {}
    for path in sorted(data.glob("*.png")):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        code = codec.analyse(rgb, quality if codec.variable_rate else None)
        idx = code.y_indexes
        coded_bits += 8 * len(rans.encode(code.z_symbols.ravel(), codec.z_indexes(code.z_symbols.shape), codec.tables.z))
        coded_bits += 8 * len(rans.encode(code.y_symbols.ravel(), idx.ravel(), codec.tables.y))
        x = torch.from_numpy(pad_to_multiple(rgb, codec.stride).transpose(2, 0, 1).copy()).float()[None] / 255
        with torch.no_grad():
            out = codec.torch_model(x, **forward_args)
        estimate_bits += float(sum(-torch.log2(l).sum() for l in out["likelihoods"].values()))
    return {"rans_bits": coded_bits, "estimate_bits": estimate_bits, "gap_percent": 100 * (coded_bits / estimate_bits - 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/datasets/kodak"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/kodak_core"))
    ap.add_argument("--coders", default="rans,lzma")
    ap.add_argument("--model", default=None)
    ap.add_argument("--quality", type=int, default=75, help="--quality for imgarc compress (the CLI's default)")
    args = ap.parse_args()
    originals = sorted(args.data.glob("*.png"))
    pixels = sum(np.prod(Image.open(p).size) for p in originals)
    imgarc = [sys.executable, "-m", "imgarc.cli"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for coder in args.coders.split(","):
            archive = Path(tmp) / f"k-{coder}.iarc"
            restored = Path(tmp) / f"out-{coder}"
            model = ["--model", args.model] if args.model else []
            t_c = run(imgarc + ["compress", str(args.data), str(archive), "--coder", coder, "--no-progress",
                             "--quality", str(args.quality), *model])
            t_x = run(imgarc + ["extract", str(archive), str(restored), "--no-progress"])
            ps, ms = [], []
            for p in originals:
                a = np.asarray(Image.open(p).convert("RGB"))
                b = np.asarray(Image.open(restored / p.name).convert("RGB"))
                assert a.shape == b.shape, p.name
                ps.append(psnr(a, b))
                ms.append(ms_ssim(a, b))
            rows.append({"coder": coder, "images": len(originals), "archive_bytes": archive.stat().st_size,
                         "bpp": archive.stat().st_size * 8 / pixels, "psnr_mean": float(np.mean(ps)),
                         "ms_ssim_mean": float(np.mean(ms)), "compress_s": t_c, "extract_s": t_x})
            shutil.rmtree(restored)
    gap = entropy_gap(args.data, args.model, args.quality)
    result = {"command": " ".join(sys.argv), "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, "
              f"{__import__('os').cpu_count()} cores", "rows": rows, "entropy_gap": gap}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Kodak, core acceptance ({len(originals)} images)", "", f"Command: `{result['command']}`  ",
             f"Machine: {result['machine']}", "",
             "| coder | archive bytes | bpp (folder) | mean PSNR dB | mean MS-SSIM | compress s | extract s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['coder']} | {r['archive_bytes']} | {r['bpp']:.4f} | {r['psnr_mean']:.2f} | "
                     f"{r['ms_ssim_mean']:.4f} | {r['compress_s']:.1f} | {r['extract_s']:.1f} |")
    lines += ["", f"rANS vs model entropy estimate (forward() likelihoods, same latents): "
              f"{gap['rans_bits'] / 8:.0f} vs {gap['estimate_bits'] / 8:.0f} bytes, **{gap['gap_percent']:+.2f} %**", ""]
    args.out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
