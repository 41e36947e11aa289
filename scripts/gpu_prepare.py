"""Prepare one call of `scripts/gpu_train.sh` on a lent GPU machine: run it here, just before.

A call carries the working tree and the paths it names in `carry`, 64 MiB in all, and nothing
beside the repository (not ../shared): the training photos (69 MB) do not fit beside the
tree (~29 MB, most of it the shipped weights). So each call carries one part of them, a fixed
split by file name; calls take the parts in turn (`--part` = the call's number modulo
`--parts`), so a chain of calls sees every photo.

    python scripts/gpu_prepare.py --part K --parts P [--resume RUN_DIR] [--data DIR]

writes, all ignored by git:

    .whl/       the wheels the GPU image lacks, for its Python 3.12 (CompressAI, pytorch-msssim,
                typer at the versions installed here)
    .gpu-data/  part K of P of the training photos
    .gpu-seed/  RUN_DIR's checkpoint, weights only (fp16), in parts `gpu_train.sh` joins and
                resumes from (none: the call starts as its options say, e.g. `--init`)

then prints what will travel and the `carry` list, or exits 2 when it is over the limit
(more parts, or a smaller seed).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from imgarc.train.crops import PHOTO_SUFFIXES
from imgarc.train.trainer import SLIM_PART_BYTES, slim_checkpoint_parts

REPO = Path(__file__).resolve().parent.parent
TRAVEL_LIMIT = 64 << 20
WHEELS = ("compressai", "pytorch-msssim", "typer")
# The GPU image's Python; pip matches the manylinux tag exactly (CompressAI 1.2.8: 2_34).
WHEEL_TARGET = ["--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:", "--no-deps",
                *(a for tag in ("manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64",
                                "manylinux2014_x86_64") for a in ("--platform", tag))]


def in_part(name: str, part: int, parts: int) -> bool:
    """The fixed split: a photo's part follows from its name alone."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % parts == part


def copy_part(data: Path, out: Path, part: int, parts: int) -> int:
    """Part `part` of the photos under `data` into `out` (emptied first); returns the count."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    count = 0
    for path in sorted(p for p in data.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES):
        name = path.relative_to(data).as_posix()
        if in_part(name, part, parts):
            target = out / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            count += 1
    return count


def write_seed(checkpoint: Path, out: Path, part_bytes: int = SLIM_PART_BYTES) -> None:
    """`out` (emptied first) holds just the checkpoint's weights-only copy, in parts."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    slim_checkpoint_parts(checkpoint, out, part_bytes)


def fetch_wheels(out: Path) -> None:
    out.mkdir(exist_ok=True)
    for name in WHEELS:
        stem = name.replace("-", "_")
        if not any(out.glob(f"{stem}-*.whl")):
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", *WHEEL_TARGET, "-d", str(out),
                            f"{name}=={version(name)}"], check=True)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def tree_bytes() -> int:
    """What travels besides the carried paths: tracked files and untracked ones git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.split(b"\0")
    return sum((REPO / n.decode()).stat().st_size for n in listed if n and (REPO / n.decode()).is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", type=int, required=True)
    parser.add_argument("--parts", type=int, required=True)
    parser.add_argument("--resume", type=Path, help="run folder whose checkpoint.pt the call continues")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "train")
    parser.add_argument("--no-wheels", action="store_true", help="leave .whl/ as it is (no download)")
    args = parser.parse_args()
    if not 0 <= args.part < args.parts:
        print(f"--part must be 0 … {args.parts - 1}", file=sys.stderr)
        return 2
    if not args.data.is_dir():
        print(f"no training photos at {args.data}", file=sys.stderr)
        return 2
    wheels, data, seed = REPO / ".whl", REPO / ".gpu-data", REPO / ".gpu-seed"
    if not args.no_wheels:
        fetch_wheels(wheels)
    photos = copy_part(args.data, data, args.part, args.parts)
    if args.resume is not None:
        checkpoint = args.resume / "checkpoint.pt"
        if not checkpoint.is_file():
            print(f"no checkpoint at {checkpoint}", file=sys.stderr)
            return 2
        write_seed(checkpoint, seed)
    else:
        shutil.rmtree(seed, ignore_errors=True)
    carry = [p for p in (wheels, data, seed) if p.exists()]
    sizes = {"tree": tree_bytes(), **{p.name: folder_bytes(p) for p in carry}}
    total = sum(sizes.values())
    print(f"part {args.part} of {args.parts}: {photos} photos; " +
          ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in sizes.items()) + f"; {total / 2**20:.1f} of 64 MiB")
    print("carry:", " ".join(p.name for p in carry))
    if total > TRAVEL_LIMIT:
        print("over the 64 MiB a call carries: use more --parts", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
