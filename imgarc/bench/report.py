"""Writing a bench result: results.json (the schema), results.csv, report.md (tables + plots)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from imgarc.bench.process import LAUNCHER_FLOOR_BYTES
from imgarc.bench.plots import write_plots
from imgarc.bench.results import BenchResult, MethodResult, result_from_json
from imgarc import units
from imgarc.fileio import write_file_atomic

JSON_NAME, CSV_NAME, MARKDOWN_NAME = "results.json", "results.csv", "report.md"


def human_bytes(n: float) -> str:
    return units.human_bytes(n, kilo="kB", table=True)


def _mb(n: int) -> str:
    """Peak memory in MB; readings at the launcher's floor say so rather than claim a number."""
    return f"< {LAUNCHER_FLOOR_BYTES / 1e6:.0f}" if n < LAUNCHER_FLOOR_BYTES else f"{n / 1e6:.0f}"


def _f(x: float | None, fmt: str, none: str = "–") -> str:
    return none if x is None else format(x, fmt)


CSV_COLUMNS = ["id", "family", "label", "status", "reason", "quality", "coder", "lossless", "bytes", "ratio", "bpp",
               "bpp_mean", "psnr_mean", "ms_ssim_mean", "identical_images", "compress_s", "decompress_s", "total_s",
               "compress_cpu_s", "decompress_cpu_s", "compress_peak_rss_bytes", "decompress_peak_rss_bytes", "compress_model_s", "compress_coder_s",
               "compress_other_s", "compress_startup_s", "decompress_model_s", "decompress_coder_s",
               "decompress_other_s", "decompress_startup_s", "images"]


def _csv_row(m: MethodResult) -> dict:
    row = {"id": m.id, "family": m.family, "label": m.label, "status": m.status, "reason": m.reason or "",
           "quality": m.params.get("quality", ""), "coder": m.params.get("coder", ""), "lossless": m.lossless,
           "bytes": m.bytes, "ratio": m.ratio, "bpp": m.bpp, "bpp_mean": m.bpp_mean, "psnr_mean": m.psnr_mean,
           "ms_ssim_mean": m.ms_ssim_mean, "identical_images": m.identical_images, "total_s": m.total_seconds,
           "images": len(m.images)}
    for name, step in (("compress", m.compress), ("decompress", m.decompress)):
        if step:
            row[f"{name}_s"] = step.seconds
            row[f"{name}_cpu_s"] = step.cpu_seconds
            row[f"{name}_peak_rss_bytes"] = step.peak_rss_bytes
            for k in ("model", "coder", "other", "startup"):
                if k in step.split:
                    row[f"{name}_{k}_s"] = step.split[k]
    return {k: ("" if row.get(k) is None else row.get(k)) for k in CSV_COLUMNS}


def write_csv(result: BenchResult, path: Path) -> None:
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for m in result.methods:
        w.writerow(_csv_row(m))
    write_file_atomic(path, buf.getvalue().encode())


def _quality_table(result: BenchResult) -> list[str]:
    lines = ["| technique | avg bpp | avg MS-SSIM | avg PSNR (dB) | total time (s) |", "|---|---:|---:|---:|---:|"]
    for m in result.methods:
        if not m.ok:
            continue
        if m.lossless:
            lines.append(f"| {m.label} | {_f(m.bpp, '.3f')} | 1 (lossless) | ∞ (lossless) | {_f(m.total_seconds, '.1f')} |")
        else:
            psnr = _f(m.psnr_mean, ".2f") + (f" ({m.identical_images} identical)" if m.identical_images else "")
            lines.append(f"| {m.label} | {_f(m.bpp_mean, '.3f')} | {_f(m.ms_ssim_mean, '.4f')} | {psnr} | "
                         f"{_f(m.total_seconds, '.1f')} |")
    return lines


def _size_table(result: BenchResult) -> list[str]:
    d = result.dataset
    lines = ["| technique | size | ratio | time (s): compress + decompress = total | CPU (s) | peak memory (MB): compress / decompress |",
             "|---|---:|---:|---:|---:|---:|",
             f"| source folder | {human_bytes(d.source_bytes)} | 1.00× | – | – | – |"]
    for m in result.methods:
        if not m.ok:
            continue
        c, x = m.compress, m.decompress
        lines.append(f"| {m.label} | {human_bytes(m.bytes or 0)} | {_f(m.ratio, '.2f')}× | "
                     f"{c.seconds:.1f} + {x.seconds:.1f} = {m.total_seconds:.1f} | {c.cpu_seconds + x.cpu_seconds:.1f} | "
                     f"{_mb(c.peak_rss_bytes)} / {_mb(x.peak_rss_bytes)} |")
    return lines


def _split_table(result: BenchResult) -> list[str]:
    lines = ["| technique | step | total | model | coder | other (file I/O, PNG, model load) | process start-up |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for m in result.methods:
        if m.ok and m.family == "imgarc":
            for name, s in (("compress", m.compress), ("extract", m.decompress)):
                sp = s.split
                lines.append(f"| {m.label} | {name} | {s.seconds:.1f} | {sp.get('model', 0):.1f} | {sp.get('coder', 0):.1f} "
                             f"| {sp.get('other', 0):.1f} | {sp.get('startup', 0):.1f} |")
    return lines


QUALITY_NAMES = {"psnr": "PSNR", "ms_ssim_db": "MS-SSIM (dB)"}


def bd_table(result: BenchResult) -> list[str]:
    """The BD-rate section of the report as Markdown lines: one table row per (imgarc curve,
    codec curve, quality metric), with a note for the pairs whose BD-rate could not be computed."""
    if not result.bd_rates:
        return ["No BD-rates: the run has no imgarc curve and codec curve to compare."]
    lines = ["| imgarc curve | against | quality | BD-rate (cubic, VCEG-M33) | BD-rate (pchip) |", "|---|---|---|---:|---:|"]
    notes: dict[str, str] = {}
    for r in result.bd_rates:
        if r["cubic"] is None and r["pchip"] is None:
            notes.setdefault(r["test"], r["note"])
            continue
        cells = ["n/a" if r[k] is None else f"{r[k]:+.1f} %" for k in ("cubic", "pchip")]
        lines.append(f"| {r['test']} | {r['anchor']} | {QUALITY_NAMES[r['quality']]} | {cells[0]} | {cells[1]} |")
    if len(lines) == 2:
        lines = []
    elif any("n/a" in line for line in lines):
        lines += ["", "n/a: the cubic fit needs 4 points of distinct quality per curve, pchip 2."]
    if notes:
        lines += ([""] if lines else []) + [f"- {test}: no BD-rate against any codec ({why})." for test, why in notes.items()]
    return lines


def _machine_line(result: BenchResult) -> str:
    mc = result.machine
    v = mc.get("versions", {})
    return (f"{mc.get('cpu')}, {mc.get('cores')} cores, {mc.get('memory_gib')} GiB, {mc.get('os')}; "
            f"load average (1/5/15 min) at start {mc.get('load_average_at_start')}, at end {mc.get('load_average_at_end')}; "
            f"imgarc {v.get('imgarc')} (git {mc.get('git_commit')}), Python {v.get('python')}, "
            f"torch {v.get('torch')}, Pillow {v.get('pillow')}")


def markdown(result: BenchResult, plots: list[str]) -> str:
    d = result.dataset
    models = sorted({mid for m in result.methods if m.family == "imgarc" for mid in m.extra.get("models", [])})
    skipped = [m for m in result.methods if not m.ok]
    cfg = result.config
    lines = [
        f"# imgarc bench: {d.name}", "",
        f"**{d.note}**; {d.pixels / 1e6:.2f} Mpixel, {human_bytes(d.source_bytes)} of source files "
        f"(found via {d.found_via}: `{d.folder}`).", "",
        f"- Command: `{result.command}`",
        f"- Machine: {_machine_line(result)}",
        f"- Started {result.started}; the whole run took {result.seconds / 60:.1f} min wall time and "
        f"{result.cpu_seconds / 60:.1f} min of CPU time (methods run one at a time; metrics afterwards on {cfg['jobs']} processes).",
        f"- imgarc models used: {', '.join(models) or 'none'}; qualities {cfg['qualities']}, coders {cfg['coders']} "
        f"(coders after the first at qualities {cfg['coder_qualities'] or 'all'}).",
        "", "## Quality and time", "",
        "avg bpp: mean over images of each image's coded bits per pixel (archivers: the whole archive). "
        "avg MS-SSIM / PSNR: mean over images, RGB, against the original pixels.", "",
        *_quality_table(result), "",
        "## Size and time", "",
        "Size: the archive file (imgarc, 7-Zip, TAR) or the sum of the coded files (JPEG, WebP, AVIF). "
        "Ratio: source folder bytes / size.", "",
        *_size_table(result), "",
        "## BD-rate of imgarc against the image codecs", "",
        "Average bit-rate difference at equal quality over the quality range both curves cover; "
        "negative = imgarc needs fewer bits.", "",
        *bd_table(result), "",
        "## Where imgarc's time goes", "",
        *_split_table(result), "",
    ]
    if skipped:
        lines += ["## Skipped or failed", ""] + [f"- {m.label}: {m.status}, {m.reason}" for m in skipped] + [""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    lines += ["## How this was measured", "", *MEASURED, ""]
    return "\n".join(lines)


MEASURED = [
    "- Every method reads a private copy of the same folder (the images only). Each step runs as its own "
    "process, one at a time: imgarc through `python -m imgarc.bench.worker` (which calls `imgarc.api` as "
    "`imgarc compress` / `imgarc extract` do), the Pillow codecs likewise, 7-Zip and TAR as their real binaries.",
    "- Time: wall time of that process from start to exit, so imgarc's includes starting Python and importing "
    "torch (the start-up column). Compress = the folder to an archive or coded files; decompress = back to "
    "image files (imgarc extracts PNG/JPEG as the sources were; the codecs decode and write PNG with the same "
    "Pillow writer; the archivers extract).",
    "- CPU: user + system time of the process and its children, from the same wait4 call; it moves less "
    "than wall time when other work shares the machine.",
    "- Peak memory: the process's maximum resident set size from the kernel (wait4 ru_maxrss), including any "
    "child it waited for (xz under `tar -J`). Each command is started by a minimal Python launcher (~7 MB), "
    "so readings below 8 MB are shown as < 8.",
    "- Quality: PSNR and MS-SSIM (pytorch-msssim, float64, 5 scales) per image on RGB, averaged; computed after "
    "all timing, so they never compete with a timed step. 7-Zip and TAR rows are checked to give back "
    "byte-identical files.",
    "- Timings vary from run to run and with other load on the machine (see the load averages above); "
    "bytes, bpp, PSNR and MS-SSIM are the same on every re-run.",
]


def write_report(result: BenchResult, out: Path, plots: list[str]) -> list[Path]:
    """Write results.json, results.csv and report.md into out; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / JSON_NAME, out / CSV_NAME, out / MARKDOWN_NAME]
    write_file_atomic(paths[0], (json.dumps(result.to_json(), indent=1, ensure_ascii=False) + "\n").encode())
    write_csv(result, paths[1])
    write_file_atomic(paths[2], markdown(result, plots).encode())
    return paths


def redraw(out: Path) -> list[Path]:
    """Rewrite report.md, results.csv and the plots of a finished run from its results.json."""
    result = result_from_json(json.loads((out / JSON_NAME).read_text()))
    return write_report(result, out, write_plots(result, out))


if __name__ == "__main__":  # python -m imgarc.bench.report OUT: redraw a finished run
    import sys

    for path in redraw(Path(sys.argv[1])):
        print(path)
