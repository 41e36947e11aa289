"""Fault injection on a real Kodak archive: is every damage detected, and is everything intact salvaged?

    python benchmarks/fault_injection.py --data ../shared/datasets/kodak --out benchmarks/results/fault_injection

Method
------
1. `api.compress_folder` (what `imgarc compress --coder rans` runs) archives the folder; a plain
   `api.Extractor.extract` of the undamaged archive gives the reference files.
2. Cases (fixed seed): single-byte corruptions (the byte XOR a random non-zero mask) and
   truncations. Corruption positions are stratified: half uniform over the whole file (which is
   almost all payload), half on the bytes that are *not* payload: a region drawn uniformly
   (file header, entry markers and lengths, entry headers, header CRCs, index, footer), then a
   byte in it, so every structure is hit many times. Truncations: uniform cut lengths, plus a cut at every entry start, at the
   index and inside the footer.
3. Each case runs, in-process, what the CLI runs: `api.Extractor.extract` (`imgarc extract`) and
   `api.Extractor.salvage` (`imgarc extract --salvage`). Detected = the plain extract raised an
   ImgarcError (the CLI's one red line and non-zero exit). Crash = any other exception (a
   traceback). Each region is classified from the undamaged archive's layout, as its reader
   gives it (`ArchiveReader.extent(i)`, `index_offset`, `footer_offset`); an entry is *touched*
   when the damaged byte lies in its bytes (marker to end of payload) or the cut falls before
   its end. Salvaged = the file salvage wrote is byte-identical to the reference.
4. Decoding 24 photos per case would take hours, so the pure decode step
   (`EntryDecoder.file_bytes`: entry header + payload -> file bytes) is memoized on (header,
   sha256 of payload) by an EntryDecoder subclass handed to the Extractor (`DecodeMemo`): each
   distinct entry is really decoded once, by the clean extraction; a damaged entry (which never
   passes its CRC) would be a cache miss and be decoded for real. Everything else (reading,
   CRC checks, index rebuilding, path checks, writing the files) runs for every case. To show
   the memo changes nothing, the salvage of a few cases (from different regions) is rerun
   in-process without it, and a truncation and a payload corruption go through the real
   `imgarc extract` and `imgarc extract --salvage` commands; their files must be identical to
   the memoized run's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from imgarc import api
from imgarc.archive import ArchiveReader, EntryHeader
from imgarc.archive.layout import FILE_HEADER
from imgarc.archive.reader import EntryExtent
from imgarc.errors import ImgarcError

from common import files_digest, files_under, first_files, machine_line  # benchmarks/common.py

REGIONS = ("file header", "entry marker+length", "entry header", "entry header CRC", "entry payload", "index", "footer")


@dataclass(frozen=True)
class Layout:
    size: int
    entries: dict[str, EntryExtent]  # by path, in file order
    index_start: int
    footer_start: int

    def region(self, pos: int) -> tuple[str, str | None]:
        """The region byte `pos` lies in, and the path of the entry it belongs to (None: no entry)."""
        if pos < FILE_HEADER.size:
            return "file header", None
        if pos >= self.footer_start:
            return "footer", None
        if pos >= self.index_start:
            return "index", None
        for path, e in self.entries.items():
            if e.start <= pos < e.end:
                if pos < e.header_start:
                    return "entry marker+length", path
                if pos < e.header_end:
                    return "entry header", path
                if pos < e.payload_start:
                    return "entry header CRC", path
                return "entry payload", path
        raise ValueError(f"byte {pos} is in no region")


def layout_of(path: Path) -> Layout:
    with ArchiveReader(path) as r:
        entries = {r.header(i).path: r.extent(i) for i in range(len(r))}
        return Layout(r.file_size, entries, r.index_offset, r.footer_offset)


class DecodeMemo(api.EntryDecoder):
    """EntryDecoder whose file_bytes (a pure function of header and payload) is memoized; counts real decodes."""

    def __init__(self) -> None:
        self.cache: dict[tuple, bytes] = {}
        self.misses = 0
        self.hits = 0
        self.lock = threading.Lock()  # extract and salvage decode entries on several threads

    def file_bytes(self, header: EntryHeader, payload: bytes, image_format: str = "keep",
                   timings: api.Timings | None = None) -> bytes:
        key = (repr(header), hashlib.sha256(payload).digest(), image_format)
        with self.lock:
            cached = self.cache.get(key)
            self.hits += cached is not None
            self.misses += cached is None
        if cached is None:
            cached = self.cache[key] = super().file_bytes(header, payload, image_format, timings)
        return cached


def make_cases(layout: Layout, corruptions: int, truncations: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    structural: dict[str, list[int]] = defaultdict(list)  # every byte that is not payload, by region
    for a, b in [(0, FILE_HEADER.size), (layout.index_start, layout.size)] + [(e.start, e.payload_start) for e in layout.entries.values()]:
        for p in range(a, b):
            structural[layout.region(p)[0]].append(p)
    regions = sorted(structural)
    cases = []
    for k in range(corruptions):
        pos = rng.randrange(layout.size) if k % 2 == 0 else rng.choice(structural[rng.choice(regions)])
        cases.append({"kind": "corruption", "pos": pos, "mask": rng.randrange(1, 256)})
    cuts = [rng.randrange(layout.size) for _ in range(truncations)]
    cuts += [e.start for e in layout.entries.values()] + [layout.index_start, layout.footer_start + 10]
    cases += [{"kind": "truncation", "pos": c} for c in cuts]
    return cases


def damaged_bytes(clean: bytes, case: dict) -> bytes:
    if case["kind"] == "truncation":
        return clean[: case["pos"]]
    b = bytearray(clean)
    b[case["pos"]] ^= case["mask"]
    return bytes(b)


def run_case(case: dict, clean: bytes, layout: Layout, reference: dict[str, bytes], work: Path,
             decoder: api.EntryDecoder | None, plain: bool = True) -> dict:
    """Plain extract (unless `plain` is False) and salvage of one damaged archive, in-process, decoding
    with `decoder` (None: the library's own); the outcome."""
    archive = work / "damaged.iarc"
    archive.write_bytes(damaged_bytes(clean, case))
    region, hit = layout.region(min(case["pos"], layout.size - 1))
    if case["kind"] == "truncation":
        touched = {p for p, e in layout.entries.items() if case["pos"] < e.end}
    else:
        touched = {hit} if hit else set()
    out = {"kind": case["kind"], "pos": case["pos"], "region": region, "touched": sorted(touched)}
    shutil.rmtree(work / "plain", ignore_errors=True)
    shutil.rmtree(work / "salvaged", ignore_errors=True)
    try:
        if plain:
            api.Extractor(work / "plain", decoder=decoder).extract(archive)
        out["detected"] = False
    except ImgarcError as e:
        out["detected"] = True
        out["plain_error"] = str(e)[:300]
    except Exception:  # noqa: BLE001 - a crash is what this benchmark counts
        out["crash"] = traceback.format_exc()
        return out
    try:
        s = api.Extractor(work / "salvaged", decoder=decoder).salvage(archive)
    except ImgarcError as e:  # the whole archive unusable (e.g. not an archive at all any more)
        out["salvage_error"] = str(e)[:300]
        s = None
    except Exception:  # noqa: BLE001
        out["crash"] = traceback.format_exc()
        return out
    got = files_under(work / "salvaged")
    intact = [p for p in layout.entries if p not in touched]
    out["intact"] = len(intact)
    out["intact_salvaged"] = sum(got.get(p) == reference[p] for p in intact)
    out["touched_extracted_wrong"] = sum(p in got and got[p] != reference[p] for p in touched)
    out["touched_extracted_identical"] = sum(got.get(p) == reference[p] for p in touched)
    if s is not None:
        out["damaged_items"] = [f"{n}: {d}"[:200] for n, d in s.damaged]
        out["warnings"] = [w[:200] for w in s.warnings]
        out["index_rebuilt"] = s.index_rebuilt
        out["salvage_reported"] = bool(s.damaged or s.warnings)
        out["salvage_exit_nonzero"] = bool(s.damaged)
    out["output_sha256"] = files_digest(got)
    return out


def run_cli_case(case: dict, clean: bytes, reference: dict[str, bytes], work: Path, env: dict) -> dict:
    """The same case through the real command (no memo): exit codes, no traceback, identical files."""
    archive = work / "cli.iarc"
    archive.write_bytes(damaged_bytes(clean, case))
    shutil.rmtree(work / "cli-plain", ignore_errors=True)
    shutil.rmtree(work / "cli-salvaged", ignore_errors=True)
    cmd = [sys.executable, "-m", "imgarc.cli", "extract", str(archive)]
    plain = subprocess.run(cmd + [str(work / "cli-plain"), "--no-progress"], capture_output=True, text=True, env=env)
    salv = subprocess.run(cmd + [str(work / "cli-salvaged"), "--salvage", "--no-progress"], capture_output=True,
                          text=True, env=env)
    got = files_under(work / "cli-salvaged")
    return {"pos": case["pos"], "kind": case["kind"], "plain_exit": plain.returncode, "salvage_exit": salv.returncode,
            "traceback": "Traceback" in plain.stderr + salv.stderr, "salvage_stderr": salv.stderr.strip()[-600:],
            "output_sha256": files_digest(got),
            "identical_to_reference": sum(got[p] == reference.get(p) for p in got), "files": len(got)}


def pct(a: int, b: int) -> float | None:
    return round(100 * a / b, 2) if b else None


def summarize(results: list[dict]) -> dict:
    by_region: dict[str, Counter] = defaultdict(Counter)
    for r in results:
        c = by_region[f"{r['kind']}: {r['region']}"]
        c["cases"] += 1
        c["detected"] += r.get("detected", False)
        c["crashes"] += "crash" in r
        c["salvage_reported"] += r.get("salvage_reported", False)
        c["salvage_exit_nonzero"] += r.get("salvage_exit_nonzero", False)
        c["index_rebuilt"] += r.get("index_rebuilt", False)
        c["intact"] += r.get("intact", 0)
        c["intact_salvaged"] += r.get("intact_salvaged", 0)
        c["touched"] += len(r["touched"])
        c["touched_extracted_wrong"] += r.get("touched_extracted_wrong", 0)
    total = Counter()
    for c in by_region.values():
        total.update(c)
    rows = {k: dict(v, detected_pct=pct(v["detected"], v["cases"]), intact_salvaged_pct=pct(v["intact_salvaged"], v["intact"]))
            for k, v in sorted(by_region.items())}
    entry_data = [r for r in results if r["kind"] == "corruption" and r["region"].startswith("entry")]
    return {
        "cases": total["cases"],
        "corruptions": sum(r["kind"] == "corruption" for r in results),
        "truncations": sum(r["kind"] == "truncation" for r in results),
        "detected_pct": pct(total["detected"], total["cases"]),
        "entry_data_or_header_corruptions": len(entry_data),
        "entry_data_or_header_detected_pct": pct(sum(r.get("detected", False) for r in entry_data), len(entry_data)),
        "crashes": total["crashes"],
        "intact_entries": total["intact"],
        "intact_entries_salvaged_identical": total["intact_salvaged"],
        "intact_salvaged_pct": pct(total["intact_salvaged"], total["intact"]),
        "touched_entries": total["touched"],
        "touched_entries_extracted_wrong": total["touched_extracted_wrong"],
        "salvage_reported_pct": pct(total["salvage_reported"], total["cases"]),
        "by_region": rows,
    }


def write_markdown(path: Path, report: dict) -> None:
    s = report["summary"]
    lines = [
        "# Fault injection on a Kodak archive",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']}  ",
        f"Archive: {report['archive']['entries']} entries ({report['archive']['photos']} photos coded with "
        f"`{report['archive']['coder']}`, model `{report['archive']['model']}`), {report['archive']['bytes']:,} bytes; "
        f"seed {report['seed']}; {report['seconds']:.0f} s.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| cases | {s['cases']} ({s['corruptions']} single-byte corruptions, {s['truncations']} truncations) |",
        f"| detected (plain `extract` exits non-zero) | {s['detected_pct']} % |",
        f"| corruptions of entry headers or data detected | {s['entry_data_or_header_detected_pct']} % of "
        f"{s['entry_data_or_header_corruptions']} |",
        f"| crashes (tracebacks) | {s['crashes']} |",
        f"| intact entries salvaged byte-identical | {s['intact_salvaged_pct']} % ({s['intact_entries_salvaged_identical']:,} "
        f"of {s['intact_entries']:,}) |",
        f"| damaged entries extracted with wrong content | {s['touched_entries_extracted_wrong']} of {s['touched_entries']:,} touched |",
        f"| salvage reported the damage (warning or damaged line) | {s['salvage_reported_pct']} % |",
        "",
        "By region hit (a truncation's region is where the cut falls):",
        "",
        "| case: region | cases | detected | salvage exit ≠ 0 | index rebuilt | intact salvaged | crashes |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, v in s["by_region"].items():
        lines.append(f"| {k} | {v['cases']} | {v['detected_pct']} % | {v['salvage_exit_nonzero']} | {v['index_rebuilt']} | "
                     f"{v['intact_salvaged_pct']} % ({v['intact_salvaged']}/{v['intact']}) | {v['crashes']} |")
    u, c = report["unmemoized_sample"], report["cli_sample"]
    lines += [
        "",
        f"Memo check: {u['cases']} cases rerun in-process without the decode memo gave identical salvaged files in "
        f"{u['identical']} of {u['cases']}; {len(c)} cases through the real `imgarc extract` / `imgarc extract --salvage` "
        f"command: identical files in {sum(x['same_as_in_process'] for x in c)} of {len(c)}, exit codes "
        f"{sorted(set((x['plain_exit'], x['salvage_exit']) for x in c))} (plain, salvage), tracebacks "
        f"{sum(x['traceback'] for x in c)}. Real decodes during the damaged cases: {report['decode_memo']['misses_in_cases']}.",
        "",
        "Salvage exits 0 when no entry can have been lost: damage confined to the footer with an intact index behind it "
        "(a warning is printed). A damaged index, or a truncation, makes it exit non-zero even when every entry came back: "
        "without an intact index it cannot rule out entries after the last one found.",
        "",
        "Method: see the docstring of `benchmarks/fault_injection.py`.",
    ]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/datasets/kodak"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/fault_injection"))
    ap.add_argument("--corruptions", type=int, default=1000)
    ap.add_argument("--truncations", type=int, default=100)
    ap.add_argument("--seed", type=int, default=6)
    ap.add_argument("--coder", default="rans")
    ap.add_argument("--unmemoized", type=int, default=3, help="cases whose salvage is rerun in-process without the decode memo")
    ap.add_argument("--cli", type=int, default=2, help="cases rerun through the real imgarc command")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N files of --data (sorted)")
    args = ap.parse_args()
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="imgarc-fault-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    try:
        src = args.data
        if args.limit:
            src = root / "src"
            src.mkdir()
            for p in first_files(args.data, limit=args.limit):
                shutil.copy2(p, src / p.name)
        archive = root / "kodak.iarc"
        t = time.perf_counter()
        summary = api.compress_folder(src, archive, coder_name=args.coder)
        print(f"compressed {len(summary.entries)} files into {archive.stat().st_size:,} bytes in {time.perf_counter() - t:.0f} s",
              flush=True)
        memo = DecodeMemo()
        t = time.perf_counter()
        api.Extractor(root / "reference", decoder=memo).extract(archive)
        reference = files_under(root / "reference")
        print(f"reference extraction in {time.perf_counter() - t:.0f} s ({memo.misses} real decodes)", flush=True)
        misses_before = memo.misses
        clean = archive.read_bytes()
        layout = layout_of(archive)
        cases = make_cases(layout, args.corruptions, args.truncations, args.seed)
        work = root / "work"
        work.mkdir()
        results = []
        t = time.perf_counter()
        for k, case in enumerate(cases):
            results.append(run_case(case, clean, layout, reference, work, memo))
            if (k + 1) % 100 == 0:
                print(f"{k + 1}/{len(cases)} cases, {time.perf_counter() - t:.0f} s", flush=True)
        misses_in_cases = memo.misses - misses_before

        # The memo check: a spread of cases (one per region where possible) without the memo.
        rng = random.Random(args.seed + 1)
        by_region: dict[str, list[int]] = defaultdict(list)
        for k, r in enumerate(results):
            by_region[f"{r['kind']}: {r['region']}"].append(k)
        picks = [rng.choice(v) for _, v in sorted(by_region.items())]
        rng.shuffle(picks)
        sample = picks[: args.unmemoized]
        identical = 0
        for k in sample:
            again = run_case(cases[k], clean, layout, reference, work, None, plain=False)
            identical += again.get("output_sha256") == results[k].get("output_sha256")
            print(f"unmemoized case {k} ({results[k]['region']}): identical={again.get('output_sha256') == results[k].get('output_sha256')}",
                  flush=True)
        cli = []
        env = dict(os.environ)
        # A truncation first (plain extract stops at once), then an entry corruption (it decodes the rest).
        cli_picks = [k for k in picks if results[k]["kind"] == "truncation"][:1]
        cli_picks += [k for k in picks if results[k]["region"] == "entry payload" and k not in cli_picks][:1]
        cli_picks += [k for k in picks if k not in cli_picks]
        for k in cli_picks[: args.cli]:
            r = run_cli_case(cases[k], clean, reference, work, env)
            r["region"] = results[k]["region"]
            r["same_as_in_process"] = r["output_sha256"] == results[k].get("output_sha256")
            cli.append(r)
            print(f"cli case {k} ({r['region']}): exit {r['plain_exit']}/{r['salvage_exit']}, same={r['same_as_in_process']}",
                  flush=True)

        report = {
            "command": "python " + " ".join([sys.argv[0], *sys.argv[1:]]),
            "machine": machine_line(),
            "seed": args.seed,
            "seconds": time.perf_counter() - started,
            "archive": {"entries": len(layout.entries), "photos": sum(e.kind == "image" for e in summary.entries),
                        "bytes": layout.size, "coder": args.coder, "data": str(args.data),
                        "model": sorted({h.header.model_id for h in api.list_archive(archive) if h.header and h.header.model_id})[0]},
            "summary": summarize(results),
            "decode_memo": {"real_decodes_reference": misses_before, "misses_in_cases": misses_in_cases, "hits": memo.hits},
            "unmemoized_sample": {"cases": len(sample), "identical": identical, "case_numbers": sample},
            "cli_sample": cli,
            "crashes": [r for r in results if "crash" in r],
            "examples": {region: results[v[0]] for region, v in sorted(by_region.items())},
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str) + "\n")
        write_markdown(args.out.with_suffix(".md"), report)
        print(json.dumps(report["summary"], indent=1))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
