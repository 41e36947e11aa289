"""`imgarc bench` without the CLI: parse the options, find the data, run, write every output."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from imgarc.api.options import check_refine_steps
from imgarc.bench.baselines import BASELINE_NAMES, PILLOW_CODECS
from imgarc.bench.datasets import resolve_dataset
from imgarc.bench.defaults import DEFAULT_STUDY_IMAGES
from imgarc.bench.methods import BenchConfig, parse_int_list, parse_name_list
from imgarc.bench.phone import phone_source
from imgarc.bench.plots import write_plots
from imgarc.bench.report import human_bytes, write_report
from imgarc.bench.results import BenchResult
from imgarc.bench.runner import Progress, run_bench
from imgarc.codec.registry import resolve_model_id
from imgarc.codec.zoo_convert import cached_zoo_model_ids
from imgarc.coders import CODER_NAMES
from imgarc.errors import UsageError
from imgarc.extras import require


@dataclass
class BenchOptions:
    """The command-line options, as text where the CLI takes lists."""

    dataset: str
    data: Path | None = None
    out: Path | None = None
    qualities: str = "10,25,50,75,95"
    coders: str = "rans,lzma,ref"
    coder_qualities: str = "75"
    baselines: str = ",".join(BASELINE_NAMES)
    jpeg_qualities: str = ",".join(map(str, PILLOW_CODECS["jpeg"].default_qualities))
    webp_qualities: str = ",".join(map(str, PILLOW_CODECS["webp"].default_qualities))
    avif_qualities: str = ",".join(map(str, PILLOW_CODECS["avif"].default_qualities))
    heic_qualities: str = ",".join(map(str, PILLOW_CODECS["heic"].default_qualities))
    jxl_qualities: str = ",".join(map(str, PILLOW_CODECS["jxl"].default_qualities))
    model: str | None = None
    models: str = ""  # more models for the same tables and plots, comma-separated
    zoo: bool = True  # also every CompressAI zoo model usable offline (cached or converted)
    jobs: int = 0  # 0: one per CPU core
    download: bool = True
    keep_work: bool = False
    study_images: int = DEFAULT_STUDY_IMAGES  # coder study and CompressAI pipeline; 0: neither
    compressai: bool = True  # CompressAI's own compress()/decompress() row
    phone: str = "auto"  # the 12 MP phone photo's source: auto, none or a file
    refine: int = 0  # also imgarc with --refine this many steps (its own curve); 0: not


def build_config(o: BenchOptions) -> BenchConfig:
    """The BenchConfig the options describe; UsageError naming the option on bad input."""
    if o.jobs < 0:
        raise UsageError(f"--jobs must be 0 (one per core) or more, not {o.jobs}")
    if o.study_images < 0:
        raise UsageError(f"--study-images must be 0 (no coder study) or more, not {o.study_images}")
    check_refine_steps(o.refine)
    coders = parse_name_list(o.coders, "--coders", CODER_NAMES)
    baselines = parse_name_list(o.baselines, "--baselines", BASELINE_NAMES) if o.baselines.strip() else []
    if not coders and not baselines:
        raise UsageError("nothing to run: give at least one of --coders and --baselines")
    return BenchConfig(
        qualities=parse_int_list(o.qualities, "--qualities"),
        coders=coders,
        coder_qualities=None if o.coder_qualities.strip().lower() == "all" else parse_int_list(o.coder_qualities, "--coder-qualities"),
        baselines=baselines,
        baseline_qualities={"jpeg": parse_int_list(o.jpeg_qualities, "--jpeg-qualities"),
                            "webp": parse_int_list(o.webp_qualities, "--webp-qualities"),
                            "avif": parse_int_list(o.avif_qualities, "--avif-qualities"),
                            "heic": parse_int_list(o.heic_qualities, "--heic-qualities"),
                            "jxl": parse_int_list(o.jxl_qualities, "--jxl-qualities")},
        model=o.model,
        extra_models=extra_models(o) if coders else [],
        jobs=o.jobs or os.cpu_count() or 1,
        study_images=o.study_images,
        compressai_pipeline=o.compressai,
        refine_steps=o.refine if coders else 0,
    )


def extra_models(o: BenchOptions) -> list[str]:
    """--models (each checked: one clear error for an unknown one) plus, with --zoo, the cached zoo models."""
    wanted = [resolve_model_id(v.strip()) for v in o.models.split(",") if v.strip()]
    if o.zoo:
        wanted += cached_zoo_model_ids()
    return [m for m in dict.fromkeys(wanted) if m != o.model]


def default_out(dataset: str) -> Path:
    return Path("runs") / "bench" / Path(dataset).name


def bench(o: BenchOptions, command: str, progress: Progress | None = None) -> tuple[BenchResult, Path]:
    """Run `imgarc bench` and write results.json, results.csv, report.md and the plots; returns (result, folder)."""
    require("imgarc bench", "torch", "pytorch_msssim", "scipy", "matplotlib")  # metrics, BD-rate, plots
    config = build_config(o)
    if o.model:
        resolve_model_id(o.model)  # an unknown model (installed or cai: zoo id): one clear error now, not one failed row per quality
    out = o.out or default_out(o.dataset)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder")
    dataset = resolve_dataset(o.dataset, o.data, download=o.download)
    source = phone_source(o.phone, dataset.images, o.data)
    config.phone = str(source) if source else None
    out.mkdir(parents=True, exist_ok=True)
    result = run_bench(dataset, config, command, work_dir=out, keep_work=o.keep_work, progress=progress)
    plots = write_plots(result, out)
    write_report(result, out, plots)
    return result, out


def summary_lines(result: BenchResult, out: Path) -> list[str]:
    """A few lines for the terminal: the best imgarc row, the baselines near it, where the report is."""
    lines = [f"{result.dataset.name}: {result.dataset.note}; {len(result.methods)} methods in {result.seconds / 60:.1f} min"]
    for m in result.methods:
        if not m.ok:
            lines.append(f"  {m.label}: {m.status} ({m.reason})")
    imgarc = [m for m in result.methods if m.ok and m.family == "imgarc" and "series" not in m.params]
    if imgarc:
        m = max(imgarc, key=lambda m: (m.params["quality"], -(m.bytes or 0)))
        lines.append(f"  {m.label}: {human_bytes(m.bytes or 0)} ({m.ratio:.1f}x), {m.bpp_mean:.3f} bpp, "
                     f"PSNR {m.psnr_mean or float('inf'):.2f} dB, MS-SSIM {m.ms_ssim_mean or 1:.4f}, {m.total_seconds:.1f} s")
    st = result.coder_study
    if st and st.get("status") == "ok" and {"arith", "rans"} <= set(st["totals"]):
        a, r = st["totals"]["arith"], st["totals"]["rans"]
        lines.append(f"  per-symbol arithmetic coder ({len(st['images'])} images): {100 * (a['bytes'] / r['bytes'] - 1):+.2f} % "
                     f"bytes vs rans; rans {a['encode_cpu_s'] / max(r['encode_cpu_s'], 1e-9):.1f}x faster to encode, "
                     f"{a['decode_cpu_s'] / max(r['decode_cpu_s'], 1e-9):.1f}x to decode")
    if result.phone:
        for m in result.phone.methods[:1]:
            if m.ok:
                lines.append(f"  one {result.phone.photo['width']}x{result.phone.photo['height']} photo, {m.label}: "
                             f"compress {m.compress.seconds:.1f} s, extract {m.decompress.seconds:.1f} s, "
                             f"peak {max(m.compress.peak_rss_bytes, m.decompress.peak_rss_bytes) / 1e6:.0f} MB")
    lines.append(f"report: {out / 'report.md'}")
    return lines
