"""Same bytes before and after a refactor: archive and extracted-file digests, per coder and quality.

Runs the real `imgarc` command (compress, then extract) on a folder for each coder and quality
and records the sha256 of each archive and of every extracted file. `--record` writes them;
`--compare` re-runs and reports every digest that changed (exit 1 if any did).

    python benchmarks/behaviour_check.py --data ../shared/datasets/kodak --record benchmarks/results/behaviour_kodak.json
    python benchmarks/behaviour_check.py --data ../shared/datasets/kodak --compare benchmarks/results/behaviour_kodak.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CODERS = ("rans", "lzma", "ref")
QUALITIES = (10, 50, 95)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def imgarc(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "imgarc.cli", *args, "--no-progress"], check=True, stdout=subprocess.DEVNULL)


def digests(data: Path, coder: str, quality: int) -> dict[str, str]:
    """{"archive": sha256, "<extracted relative path>": sha256, ...} for one coder and quality."""
    with tempfile.TemporaryDirectory() as work:
        archive, restored = Path(work) / "a.iarc", Path(work) / "restored"
        imgarc("compress", str(data), str(archive), "--quality", str(quality), "--coder", coder)
        imgarc("extract", str(archive), str(restored))
        out = {"archive": sha256(archive)}
        out.update({p.relative_to(restored).as_posix(): sha256(p) for p in sorted(restored.rglob("*")) if p.is_file()})
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of photos")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--record", type=Path, help="write the digests to this JSON file")
    mode.add_argument("--compare", type=Path, help="compare against digests recorded earlier")
    args = parser.parse_args()
    runs = {f"{coder}/q{q}": digests(args.data, coder, q) for coder in CODERS for q in QUALITIES}
    if args.record:
        args.record.write_text(json.dumps(runs, indent=1, sort_keys=True) + "\n")
        print(f"recorded {sum(map(len, runs.values()))} digests in {len(runs)} runs to {args.record}")
        return 0
    recorded = json.loads(args.compare.read_text())
    changed = [f"{run}: {name}" for run in recorded for name in recorded[run] if runs.get(run, {}).get(name) != recorded[run][name]]
    changed += [f"{run}: {name} (new)" for run in runs for name in runs[run] if name not in recorded.get(run, {})]
    for line in changed:
        print(f"changed: {line}")
    total = sum(map(len, recorded.values()))
    print(f"{total - len(changed)} of {total} digests identical in {len(recorded)} runs")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
