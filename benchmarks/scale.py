"""Scale: photos/s and MB/s of whole `imgarc` processes, by backend and number of workers.

Every configuration compresses the same folder (and extracts what it wrote) as a separate
`imgarc` process, run after run in turn (A B C … A B C …) so that drift in the machine's speed
spreads over all of them; the medians are reported. Configurations:

- `one core`: the default command under `taskset -c 0` (where taskset exists);
- `in-process`: the default command (photos side by side on every core of this process);
- `shards N×W`: `--shard-files N --workers W` (a local process pool; W = 1 and 2);
- `ray W`: `--shard-files N --ray local --workers W` (skipped without Ray).

The shards of every sharded configuration are checked to be byte-identical (same manifest).
MB/s counts the source folder's bytes. A projection for a cluster follows from the per-photo
cost measured here (see benchmarks/README.md).

    python benchmarks/scale.py --data ../shared/datasets/kodak --runs 3 --out benchmarks/results/scale
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

IMGARC = [sys.executable, "-m", "imgarc.cli"]


@dataclass
class Config:
    name: str
    compress_args: list[str]
    prefix: list[str] = field(default_factory=list)  # e.g. taskset
    sharded: bool = False
    compress_s: list[float] = field(default_factory=list)
    extract_s: list[float] = field(default_factory=list)


def configs(shard_files: int) -> list[Config]:
    out = []
    if shutil.which("taskset"):
        out.append(Config("one core (taskset -c 0)", [], ["taskset", "-c", "0"]))
    out.append(Config("in-process, all cores", []))
    for workers in (1, 2):
        out.append(Config(f"shards of {shard_files}, {workers} worker process(es)",
                          ["--shard-files", str(shard_files), "--workers", str(workers)], sharded=True))
    try:
        import ray  # noqa: F401
        out.append(Config(f"shards of {shard_files}, Ray local, 2 actors",
                          ["--shard-files", str(shard_files), "--ray", "local", "--workers", "2"], sharded=True))
    except ImportError:
        pass
    return out


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--shard-files", type=int, default=6)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    photos = [p for p in sorted(args.data.iterdir()) if p.suffix.lower() in (".png", ".jpg", ".jpeg")]
    source_mb = sum(p.stat().st_size for p in args.data.iterdir() if p.is_file()) / 1e6
    chosen = configs(args.shard_files)
    manifests: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as work:
        for run in range(args.runs):
            for k, c in enumerate(chosen):
                folder = Path(work) / f"c{k}"
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir()
                archive, dest = folder / "photos.iarc", folder / "restored"
                c.compress_s.append(timed(c.prefix + IMGARC + ["compress", str(args.data), str(archive), "--no-progress"]
                                          + c.compress_args))
                c.extract_s.append(timed(c.prefix + IMGARC + ["extract", str(archive), str(dest), "--no-progress"]))
                if c.sharded:
                    manifests[c.name] = archive.read_bytes()
                print(f"run {run + 1}: {c.name}: compress {c.compress_s[-1]:.2f} s, extract {c.extract_s[-1]:.2f} s",
                      flush=True)
    identical = len(set(manifests.values())) <= 1
    rows = []
    for c in chosen:
        comp, ext = statistics.median(c.compress_s), statistics.median(c.extract_s)
        rows.append({"config": c.name, "compress_s": comp, "extract_s": ext,
                     "compress_photos_per_s": len(photos) / comp, "extract_photos_per_s": len(photos) / ext,
                     "compress_MB_per_s": source_mb / comp, "extract_MB_per_s": source_mb / ext,
                     "runs": asdict(c)})
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.processor() or platform.machine(),
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "photos": len(photos), "source_MB": round(source_mb, 2), "runs": args.runs, "shard_files": args.shard_files,
            "shards_identical": identical, "command": " ".join(sys.argv)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [f"# Scale: {meta['photos']} photos ({meta['source_MB']} MB), {meta['cores']} cores, {meta['date']}", "",
             f"Medians of {args.runs} runs, whole `imgarc` processes. Shards byte-identical across sharded runs: "
             f"{'yes' if identical else 'NO'}.", "",
             "| configuration | compress s | photos/s | MB/s | extract s | photos/s | MB/s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['compress_s']:.2f} | {r['compress_photos_per_s']:.2f} | {r['compress_MB_per_s']:.2f} | "
                     f"{r['extract_s']:.2f} | {r['extract_photos_per_s']:.2f} | {r['extract_MB_per_s']:.2f} |")
    (args.out / "scale.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
