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


def bd_matrix(result: BenchResult, method: str = "pchip") -> list[str]:
    """BD-rates as one row per imgarc curve and two columns (PSNR, MS-SSIM) per codec."""
    rows = [r for r in result.bd_rates]
    if not rows:
        return []
    anchors = list(dict.fromkeys(r["anchor"] for r in rows))
    tests = list(dict.fromkeys(r["test"] for r in rows))
    got = {(r["test"], r["anchor"], r["quality"]): r[method] for r in rows}
    head = "| imgarc curve | " + " | ".join(f"vs {a} ({QUALITY_NAMES[q].split(' ')[0]})" for a in anchors
                                            for q in ("psnr", "ms_ssim_db")) + " |"
    lines = [head, "|---|" + "---:|" * (2 * len(anchors))]
    for t in tests:
        cells = [got.get((t, a, q)) for a in anchors for q in ("psnr", "ms_ssim_db")]
        if all(c is None for c in cells):
            continue
        lines.append(f"| {t} | " + " | ".join("n/a" if c is None else f"{c:+.1f} %" for c in cells) + " |")
    return lines if len(lines) > 2 else []


def _bd_sections(result: BenchResult) -> list[str]:
    matrix = bd_matrix(result)
    if not matrix:
        return [*bd_table(result), ""]
    return ["In one table (pchip; MS-SSIM on its dB scale, −10·log10(1 − MS-SSIM)):", "", *matrix, "",
            "Every pair, both fits:", "", *bd_table(result), ""]


def _per_image(total: float, n: int) -> float:
    return total / n if n else 0.0


def coder_study_lines(result: BenchResult) -> list[str]:
    """The per-symbol arithmetic coder against imgarc's coders, on the same latents (Markdown lines)."""
    st = result.coder_study
    if not st:
        return []
    if st.get("status") != "ok":
        return [f"Not measured: {st.get('reason')}."]
    n, totals = len(st["images"]), st["totals"]
    names = list(totals)
    ref = totals.get("rans")
    arith = totals.get("arith")
    est = st.get("estimate_bits")
    lines = [
        f"{n} of the {st['sample_of']} images ({', '.join(im['name'] for im in st['images'])}), model {st['model']}, "
        f"quality {st['quality']}: each image analysed once, then every coder encodes and decodes the same "
        f"{st['symbols']:,} integer latents (ẑ and ŷ) with the same table indexes and tables, one after another in one "
        "process. Times are CPU seconds per image (one thread each; wall times are in results.json). "
        "Entropy estimate: −log2 of CompressAI forward() likelihoods, eval mode, same images.", "",
        "| coder | bytes | vs rans | vs entropy estimate | encode (s/image) | decode (s/image) | "
        "speed-up over arith: encode / decode | decodes exactly |",
        "|---|---:|---:|---:|---:|---:|---:|---|"]
    for name in names:
        t = totals[name]
        vs_rans = f"{100 * (t['bytes'] / ref['bytes'] - 1):+.2f} %" if ref and ref["bytes"] else "–"
        vs_est = f"{100 * (t['bytes'] * 8 / est - 1):+.2f} %" if est else "–"
        speed = (f"{arith['encode_cpu_s'] / t['encode_cpu_s']:.1f}× / {arith['decode_cpu_s'] / t['decode_cpu_s']:.1f}×"
                 if arith and name != "arith" and t["encode_cpu_s"] > 0 and t["decode_cpu_s"] > 0 else "1×" if name == "arith" else "–")
        label = CODER_LABELS.get(name, name)
        lines.append(f"| {label} | {t['bytes']:,} | {vs_rans} | {vs_est} | {_per_image(t['encode_cpu_s'], n):.3f} | "
                     f"{_per_image(t['decode_cpu_s'], n):.3f} | {speed} | {'yes' if t['exact'] else '**no**'} |")
    if arith and st.get("folder_symbols") and st["symbols"]:
        scale = st["folder_symbols"] / st["symbols"]
        lines += ["", f"Scaled up by the number of latents (the folder has {st['folder_symbols']:,}, {scale:.1f}× the "
                  f"{st['symbols']:,} measured): the arithmetic coder would take ≈ {arith['encode_cpu_s'] * scale:.0f} s to "
                  f"encode and ≈ {arith['decode_cpu_s'] * scale:.0f} s to decode the whole folder's latents, "
                  + ", ".join(f"{CODER_LABELS.get(k, k)} ≈ {totals[k]['encode_cpu_s'] * scale:.1f} s / "
                              f"{totals[k]['decode_cpu_s'] * scale:.1f} s" for k in names if k != "arith") + "."]
    return lines


CODER_LABELS = {"arith": "arith: per-symbol arithmetic (range) coder, pure Python", "rans": "rans (imgarc default, vectorized rANS)",
                "lzma": "lzma (sorted by table, LZMA2)", "ref": "ref (CompressAI's C++ rANS, same tables)"}


def compressai_lines(result: BenchResult) -> list[str]:
    """CompressAI's own compress()/decompress() against imgarc on the same weights and images."""
    c = result.compressai
    if not c:
        return []
    if c.get("status") != "ok":
        return [f"Not measured: {c.get('reason')}."]
    ims = c["images"]
    n = len(ims)
    first = c["decodes"][0] if c["decodes"] else {}
    dec_rows = {row["name"]: row for row in first.get("images", [])}
    cai_bytes, own_bytes = sum(im["bytes"] for im in ims), sum(im["imgarc_bytes"] for im in ims)
    cai_c = _per_image(sum(im["compress_s"] for im in ims), n)
    own_c = _per_image(sum(im["imgarc_compress_s"] for im in ims), n)
    cai_d = _per_image(sum(r.get("decompress_s", 0.0) for r in dec_rows.values()), n)
    own_d = _per_image(sum(r.get("imgarc_decompress_s", 0.0) for r in dec_rows.values()), n)
    cai_psnr = [r["psnr"] for r in dec_rows.values() if "psnr" in r]
    own_psnr = [r["imgarc_psnr"] for r in dec_rows.values() if "imgarc_psnr" in r]
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    versions = result.machine.get("versions", {})
    lines = [
        f"{n} of the {c['sample_of']} images ({', '.join(im['name'] for im in ims)}), model {c['model']} at quality "
        f"{c['quality']}: CompressAI {versions.get('compressai', '')} `compress()` / `decompress()` of mbt2018-mean on imgarc's "
        "weights (gained units at the same fixed-point gains imgarc uses), its float CDF tables rebuilt by `update()` "
        f"in each process ({c['update_s']:.2f} s), against imgarc's own path on the same images in the same process "
        "(g_a/g_s in imgarc's runtime, integer h_s, rans). Seconds are wall time per image, models already loaded.", "",
        "| pipeline | bytes | vs imgarc | compress (s/image) | decompress (s/image) | PSNR (dB) | decoded exactly |",
        "|---|---:|---:|---:|---:|---:|---|",
        f"| CompressAI compress()/decompress() | {cai_bytes:,} | {100 * (cai_bytes / own_bytes - 1):+.2f} % | {cai_c:.2f} | "
        f"{cai_d:.2f} | {mean(cai_psnr):.2f} | {first.get('exact_images', 0)}/{n} |",
        f"| imgarc (rans) | {own_bytes:,} | – | {own_c:.2f} | {own_d:.2f} | {mean(own_psnr):.2f} | {n}/{n} (by design; "
        "checked by the determinism benchmark) |", ""]
    diffs = [r["max_diff_vs_imgarc"] for r in dec_rows.values() if "max_diff_vs_imgarc" in r]
    if diffs:
        lines.append(f"CompressAI's decoded pixels against imgarc's: at most {max(diffs)} levels apart, "
                     f"{mean([r['mean_diff_vs_imgarc'] for r in dec_rows.values()]):.3f} on average (float h_s means and "
                     "runtimes differ slightly; both decode the same integer latents when CompressAI's decode is exact).")
        lines.append("")
    lines.append("Is CompressAI's decode correct in another process? Each decode ran in a fresh process that rebuilt the "
                 "tables with `update()`, and was compared symbol by symbol with what the encoder coded:")
    lines.append("")
    for d in c["decodes"]:
        if d.get("status") == "failed":
            lines.append(f"- {d['name']}: the decoding process failed ({d.get('reason')}).")
            continue
        wrong = [r for r in d["images"] if not r.get("exact")]
        detail = ""
        if wrong:
            bad = [r.get("wrong_y_symbols") for r in wrong if r.get("wrong_y_symbols") is not None]
            errors = [r["error"] for r in wrong if r.get("error")]
            detail = (f"; wrong: {', '.join(r['name'] for r in wrong)}"
                      + (f" ({min(bad):,}–{max(bad):,} of {wrong[0].get('y_symbols', 0):,} ŷ symbols wrong, "
                         f"PSNR {mean([r['psnr'] for r in wrong if 'psnr' in r]):.2f} dB)" if bad else "")
                      + (f" (decoder error: {errors[0]})" if errors else ""))
        same = d.get("tables_sha256") == c.get("tables_sha256")
        lines.append(f"- {d['name']} (torch CPU capability {d.get('cpu_capability')}; the tables `update()` built "
                     f"{'equal' if same else '**differ from**'} the encoder's, built under {c.get('cpu_capability')}): "
                     f"{d.get('exact_images', 0)}/{len(d['images'])} images decoded exactly{detail}.")
    return lines


def phone_lines(result: BenchResult) -> list[str]:
    """The time-per-photo table for the 12 MP phone photo."""
    ph = result.phone
    if ph is None:
        return []
    photo = ph.photo
    lines = [f"One {photo['width']}×{photo['height']} photo ({photo['width'] * photo['height'] / 1e6:.1f} MP): {photo['how']} "
             f"({human_bytes(photo['bytes'])}). An upscaled photo is smoother than a camera's, so every codec's bytes here "
             "are lower than on a real phone photo: read this table for time and memory. Each step is its own process on a "
             "folder holding only this photo (imgarc's times include starting Python and loading the model).", "",
             "| technique | size | bpp | PSNR (dB) | MS-SSIM | compress (s) | extract (s) | peak memory (MB): compress / extract |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for m in ph.methods:
        if not m.ok:
            lines.append(f"| {m.label} | {m.status}: {m.reason} | | | | | | |")
            continue
        lines.append(f"| {m.label} | {human_bytes(m.bytes or 0)} | {_f(m.bpp, '.3f')} | {_f(m.psnr_mean, '.2f')} | "
                     f"{_f(m.ms_ssim_mean, '.4f')} | {m.compress.seconds:.1f} | {m.decompress.seconds:.1f} | "
                     f"{_mb(m.compress.peak_rss_bytes)} / {_mb(m.decompress.peak_rss_bytes)} |")
    return lines


def _machine_line(result: BenchResult) -> str:
    mc = result.machine
    v = mc.get("versions", {})
    return (f"{mc.get('cpu')}, {mc.get('cores')} cores, {mc.get('memory_gib')} GiB, {mc.get('os')}; "
            f"load average (1/5/15 min) at start {mc.get('load_average_at_start')}, at end {mc.get('load_average_at_end')}; "
            f"imgarc {v.get('imgarc')} (git {mc.get('git_commit')}), Python {v.get('python')}, "
            f"torch {v.get('torch')}, CompressAI {v.get('compressai')}, imgarc runtime {v.get('runtime')} "
            f"(onnxruntime {v.get('onnxruntime')}), Pillow {v.get('pillow')}, pillow-heif {v.get('pillow-heif')}, "
            f"pillow-jxl-plugin {v.get('pillow-jxl-plugin')}")


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
        "Size: the archive file (imgarc, 7-Zip, TAR) or the sum of the coded files (JPEG, WebP, AVIF, HEIC, JPEG XL). "
        "Ratio: source folder bytes / size.", "",
        *_size_table(result), "",
        "## BD-rate of imgarc against the image codecs", "",
        "Average bit-rate difference at equal quality over the quality range both curves cover; "
        "negative = imgarc needs fewer bits.", "",
        *_bd_sections(result),
        "## Where imgarc's time goes", "",
        "Model and coder seconds are summed over photos; extract decodes several photos side by side, so "
        "there they can add up to more than the step's wall time (other is then 0).", "",
        *_split_table(result), "",
    ]
    if result.coder_study:
        lines += ["## The per-symbol arithmetic coder that rans and lzma replace", "", *coder_study_lines(result), ""]
    if result.compressai:
        lines += ["## CompressAI's own pipeline on the same weights", "", *compressai_lines(result), ""]
    if result.phone:
        lines += ["## Time per phone photo (12 MP)", "", *phone_lines(result), ""]
    if skipped:
        lines += ["## Skipped or failed", ""] + [f"- {m.label}: {m.status}, {m.reason}" for m in skipped] + [""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    lines += ["## How this was measured", "", *MEASURED, ""]
    return "\n".join(lines)


MEASURED = [
    "- Every method reads a private copy of the same folder (the images only). Each step runs as its own "
    "process, one at a time: imgarc through `python -m imgarc.bench.worker` (which calls `imgarc.api` as "
    "`imgarc compress` / `imgarc extract` do), the Pillow codecs likewise (HEIC through pillow-heif, JPEG XL "
    "through pillow-jxl-plugin, both at their defaults), 7-Zip and TAR as their real binaries. The coder study, "
    "CompressAI's pipeline and the phone photo run after them, also one process at a time.",
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
