"""Smaller weights files (issue 22, item 2): what int8 storage costs in rate-distortion.

Rows: the parent as shipped (float storage: fp16 networks, h_s both as fp16 and as the 14-bit
integer network), then each --variant ID=WEIGHTS, typically the same model exported with
`imgarc optimize --keep 1 --minutes 0 --storage int8` (g_a's, h_a's and g_s's convolutions in
int8 per output channel, h_s only as an 8-bit integer network), or a pruned child stored
either way. For each: the weights file's size and what it holds (bytes per parameter, the
largest parts), and Kodak's rate-distortion curve (24 photos at --qualities, coded as an
archive codes them: rANS), BD-rate in PSNR and MS-SSIM vs the parent and vs WebP and AVIF (their
curves from the committed `imgarc bench kodak` results, the same photos).

    python benchmarks/weight_storage.py --variant msh128-mixed-vr1-w8=runs/w8/export/msh128-mixed-vr1-w8.npz
        [--qualities 10,25,50,75,95] [--out benchmarks/results/weight_storage]
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import zipfile
from collections import Counter
from pathlib import Path

from common import first_files, machine_line
from int8_g_a import KODAK, bd_rates, codec_rate_distortion, curve_table, write_results
from network_compression import CLASSICAL, classical_curves

from imgarc.codec.image_codec import ImageCodec
from imgarc.codec.registry import default_model_id, find_model, load_codec
from imgarc.codec.weights import load_weights


def file_parts(path: Path) -> dict[str, int]:
    """Compressed bytes of each kind of array in a weights file (`param`, `param8`, `hs`, ...)."""
    parts: Counter[str] = Counter()
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            parts[info.filename.split("/")[0].removesuffix(".npy")] += info.compress_size
    return dict(parts.most_common())


def row(codec: ImageCodec, path: Path, photos: list[Path], qualities: list[int]) -> dict:
    params = codec.weights.params  # a LazyParams: shapes from the file's headers
    parameters = sum(math.prod(params.shape(name)) for name in params)
    curve = codec_rate_distortion(codec, photos, qualities)
    print(codec.model_id, f"{path.stat().st_size / 1e6:.2f} MB", flush=True)
    return {"weights": str(path), "bytes": path.stat().st_size, "parameters": parameters, "parts": file_parts(path),
            "curve": curve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", action="append", default=[], help="ID=WEIGHTS of a variant to compare")
    parser.add_argument("--qualities", default="10,25,50,75,95")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/weight_storage"))
    args = parser.parse_args()
    qualities = [int(q) for q in args.qualities.split(",")]
    photos = first_files(KODAK, "*.png")
    parent_id = default_model_id()
    rows = {parent_id: row(load_codec(parent_id), find_model(parent_id).path, photos, qualities)}
    for spec in args.variant:
        variant_id, _, path = spec.partition("=")
        weights, sha = load_weights(Path(path))
        rows[variant_id] = row(ImageCodec(weights, sha), Path(path), photos, qualities)
    classical = classical_curves()
    for r in rows.values():
        r["bd_rate_vs_parent"] = bd_rates(r["curve"], rows[parent_id]["curve"])
        r["bd_rate_vs"] = {name: bd_rates(r["curve"], classical[name]) for name in CLASSICAL}
    document = {"parent": parent_id, "machine": machine_line(), "qualities": qualities, "photos": len(photos),
                "command": " ".join(["python benchmarks/weight_storage.py", *sys.argv[1:]]), "results": rows}
    write_results(args.out, document, report(document))


def report(d: dict) -> str:
    out = io.StringIO()
    out.write(f"# Weights storage: file size against rate-distortion\n\nCommand: `{d['command']}`  \n"
              f"Machine: {d['machine']}  \nParent `{d['parent']}`; Kodak ({d['photos']} photos) at --quality "
              f"{', '.join(map(str, d['qualities']))}, coded with rANS as an archive codes them.\n\n")
    out.write("| model | weights MB | parameters | bytes per parameter | largest parts (MB) | BD-rate vs parent, PSNR | MS-SSIM "
              f"| {' | '.join(f'vs {name}, PSNR / MS-SSIM' for name in CLASSICAL)} |\n|---|---|---|---|---|---|---|"
              f"{'---|' * len(CLASSICAL)}\n")
    for name, r in d["results"].items():
        parts = ", ".join(f"{k} {v / 1e6:.2f}" for k, v in list(r["parts"].items())[:4])
        bd = r["bd_rate_vs_parent"]
        out.write(f"| {name} | {r['bytes'] / 1e6:.2f} | {r['parameters']:,} | {r['bytes'] / r['parameters']:.2f} | {parts} | "
                  f"{bd['psnr']:+.2f} % | {bd['ms_ssim']:+.2f} % | "
                  f"{' | '.join(pair(r.get('bd_rate_vs', {}).get(name)) for name in CLASSICAL)} |\n")
    out.write("\n" + curve_table("model", {name: r["curve"] for name, r in d["results"].items()}, d["qualities"], 4))
    return out.getvalue()


def pair(bd: dict | None) -> str:
    """A BD-rate pair as "PSNR / MS-SSIM"; – where the curves do not overlap (or an older run has none)."""
    if not bd:
        return "–"
    return " / ".join("–" if bd[m] is None else f"{bd[m]:+.1f} %" for m in ("psnr", "ms_ssim"))


if __name__ == "__main__":
    main()
