"""Issue 10's acceptance numbers: Kodak as a camera would save it (JPEG q90 with EXIF).

Re-encodes every Kodak PNG as JPEG quality 90 (Pillow defaults otherwise: 4:2:0) with camera-like
EXIF (make, model, DateTimeOriginal, GPS), then runs the real `imgarc` command:

- default mode (shipped default model and quality): compress, extract; the extracted JPEG folder
  vs the source folder (must be no larger), PSNR of each extracted JPEG vs its JPEG source, EXIF
  byte-identical, archive vs 7-Zip (`7zz a`, default and -mx9) on the same folder;
- `--keep-originals`: compress, extract, sha256 of every file, archive vs 7-Zip.

    python benchmarks/kodak_jpeg.py --data ../shared/datasets/kodak --out benchmarks/results/kodak_jpeg
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from imgarc.bench.metrics import psnr


def run(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def camera_exif(n: int) -> bytes:
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = "Kodak", "Photo CD", 1
    exif.get_ifd(0x8769)[0x9003] = f"1991:05:{n + 1:02d} 12:00:00"  # DateTimeOriginal
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (43.0, 9.0, 36.0), "W", (77.0, 36.0, 43.0)
    return exif.tobytes()


def make_jpeg_folder(data: Path, folder: Path, quality: int) -> list[str]:
    folder.mkdir(parents=True)
    names = []
    for n, png in enumerate(sorted(data.glob("*.png"))):
        name = png.stem + ".jpg"
        Image.open(png).convert("RGB").save(folder / name, "JPEG", quality=quality, exif=camera_exif(n))
        names.append(name)
    return names


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def seven_zip(folder: Path, out: Path, *flags: str) -> int:
    out.unlink(missing_ok=True)
    subprocess.run(["7zz", "a", *flags, str(out), "."], cwd=folder, check=True, stdout=subprocess.DEVNULL)
    return out.stat().st_size


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/datasets/kodak"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/kodak_jpeg"))
    ap.add_argument("--jpeg-quality", type=int, default=90)
    args = ap.parse_args()
    imgarc = [sys.executable, "-m", "imgarc.cli"]
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        src = tmp / "kodak-jpeg"
        names = make_jpeg_folder(args.data, src, args.jpeg_quality)
        source_bytes = folder_bytes(src)
        sz = {"7zz_default": seven_zip(src, tmp / "a.7z"), "7zz_mx9": seven_zip(src, tmp / "b.7z", "-mx9")}

        # Default mode: photos coded by the shipped default model.
        archive, restored = tmp / "coded.iarc", tmp / "coded-out"
        t_c = run(imgarc + ["compress", str(src), str(archive), "--no-progress"])
        t_x = run(imgarc + ["extract", str(archive), str(restored), "--no-progress"])
        ps, exif_same, fmt_same, larger = [], 0, 0, []
        for name in names:
            a, b = Image.open(src / name), Image.open(restored / name)
            fmt_same += (b.format, b.size, b.mode) == (a.format, a.size, a.mode)
            exif_same += a.info.get("exif") == b.info.get("exif")
            ps.append(psnr(np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB"))))
            if (restored / name).stat().st_size > (src / name).stat().st_size:
                larger.append(name)
        coded = {"archive_bytes": archive.stat().st_size, "extracted_folder_bytes": folder_bytes(restored),
                 "psnr_vs_jpeg_source_mean": float(np.mean(ps)), "psnr_min": float(np.min(ps)),
                 "exif_identical": exif_same, "same_name_format_size_mode": fmt_same,
                 "files_larger_than_source": larger, "compress_s": t_c, "extract_s": t_x}

        # --keep-originals: every file byte-exact (JPEG XL lossless recompression of the JPEGs).
        archive_k, restored_k = tmp / "keep.iarc", tmp / "keep-out"
        t_kc = run(imgarc + ["compress", str(src), str(archive_k), "--keep-originals", "--no-progress"])
        t_kx = run(imgarc + ["extract", str(archive_k), str(restored_k), "--no-progress"])
        identical = sum(sha256(src / n) == sha256(restored_k / n) for n in names)
        keep = {"archive_bytes": archive_k.stat().st_size, "sha256_identical": identical,
                "compress_s": t_kc, "extract_s": t_kx}
        models = subprocess.run(imgarc + ["models"], capture_output=True, text=True, check=True).stdout
    load_after = os.getloadavg()[0]
    default_model = next((line.split()[0] for line in models.splitlines() if "(default)" in line), "?")
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average_1min": [round(load_before, 2), round(load_after, 2)],  # other jobs slow the times
        "default_model": default_model, "images": len(names), "jpeg_quality": args.jpeg_quality,
        "source_folder_bytes": source_bytes, **sz, "coded": coded, "keep_originals": keep,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    n = len(names)
    lines = [
        f"# Kodak as camera JPEGs (q{args.jpeg_quality}, EXIF), {n} images", "",
        f"Command: `{result['command']}`  ", f"Machine: {result['machine']}; 1-min load average "
        f"{load_before:.1f} at the start, {load_after:.1f} at the end (times are wall-clock under that load)  ",
        f"Default model: `{default_model}`; 7-Zip: `7zz a` (default) and `7zz a -mx9` on the same folder.", "",
        "| mode | archive bytes | vs source folder | vs 7zz default | vs 7zz -mx9 | compress s | extract s |",
        "|---|---|---|---|---|---|---|",
        f"| source folder (24 JPEGs) | {source_bytes} | 1.00x | | | | |",
        f"| 7zz default | {sz['7zz_default']} | {source_bytes / sz['7zz_default']:.2f}x | | | | |",
        f"| 7zz -mx9 | {sz['7zz_mx9']} | {source_bytes / sz['7zz_mx9']:.2f}x | | | | |",
    ]
    for label, r in (("imgarc (coded)", coded), ("imgarc --keep-originals", keep)):
        b = r["archive_bytes"]
        lines.append(f"| {label} | {b} | {source_bytes / b:.2f}x | {sz['7zz_default'] / b:.2f}x smaller | "
                     f"{sz['7zz_mx9'] / b:.2f}x smaller | {r['compress_s']:.1f} | {r['extract_s']:.1f} |")
    lines += [
        "",
        f"Default mode, extracted: {coded['extracted_folder_bytes']} bytes of JPEGs vs {source_bytes} in the source "
        f"folder ({coded['extracted_folder_bytes'] / source_bytes:.3f}x; files larger than their source: "
        f"{len(coded['files_larger_than_source'])}); mean PSNR vs the JPEG source {coded['psnr_vs_jpeg_source_mean']:.2f} dB "
        f"(min {coded['psnr_min']:.2f}); EXIF byte-identical {coded['exif_identical']}/{n}; same name, format, size "
        f"and mode {coded['same_name_format_size_mode']}/{n}.",
        "",
        f"`--keep-originals`: sha256-identical {keep['sha256_identical']}/{n}.",
        "",
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
