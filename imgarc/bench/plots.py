"""The bench's PNG plots: bpp-PSNR, bpp-MS-SSIM, and size ratio vs MS-SSIM with time as bubbles."""

from __future__ import annotations

from pathlib import Path

from imgarc.bench.curves import rate_quality_curves
from imgarc.bench.results import BenchResult

RD_PSNR, RD_MSSSIM, BUBBLE = "rd_psnr.png", "rd_msssim.png", "bubble_ratio_msssim.png"
COLORS = {"imgarc": "#d62728", "jpeg": "#7f7f7f", "webp": "#1f77b4", "avif": "#2ca02c", "7z": "#9467bd", "tar": "#8c564b"}
CODER_STYLE = {"rans": ("o", "-"), "lzma": ("s", "--"), "ref": ("D", ":")}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _title(result: BenchResult, what: str) -> str:
    return f"{what} — {result.dataset.name}, {result.dataset.images} images"


def _rd_plot(result: BenchResult, path: Path, quality: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    for c in rate_quality_curves(result.methods):
        ys = c.psnr if quality == "psnr" else c.ms_ssim
        coder = c.name.split()[-1] if c.family == "imgarc" else None
        marker, line = CODER_STYLE.get(coder, ("o", "-")) if coder else ("o", "-")
        ax.plot(c.bpp, ys, marker=marker, linestyle=line, color=COLORS.get(c.family, "black"), label=c.name,
                linewidth=2.2 if c.family == "imgarc" else 1.5, markersize=6)
    lossless = [m for m in result.methods if m.ok and m.lossless]
    if lossless:
        lo = min(m.bpp for m in lossless)
        ax.text(0.99, 0.02, f"7-Zip / TAR: lossless, ≥ {lo:.1f} bpp (off the chart)", transform=ax.transAxes,
                ha="right", va="bottom", fontsize=8, color="#555555")
    ax.set_xlabel("bits per pixel (mean over images)")
    ax.set_ylabel("PSNR (dB, RGB)" if quality == "psnr" else "MS-SSIM (RGB)")
    ax.set_title(_title(result, "Rate–PSNR" if quality == "psnr" else "Rate–MS-SSIM") + " (up and left is better)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right" if not lossless else "center right", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _bubble_plot(result: BenchResult, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    rows = [m for m in result.methods if m.ok and m.ratio and (m.lossless or m.ms_ssim_mean is not None)]
    if not rows:
        ax.text(0.5, 0.5, "no method ran", ha="center")
    longest = max((m.total_seconds or 0 for m in rows), default=1.0) or 1.0
    scale = 2500 / longest  # bubble area in pt² per second; the slowest method gets 2500 pt²
    seen: set[str] = set()
    for m in rows:
        y = 1.0 if m.lossless else m.ms_ssim_mean
        label = {"imgarc": "imgarc", "7z": "7-Zip", "tar": "TAR"}.get(m.family, m.label.rsplit(" q", 1)[0])
        ax.scatter(m.ratio, y, s=max(m.total_seconds * scale, 12), color=COLORS.get(m.family, "black"), alpha=0.45,
                   edgecolors="black", linewidths=0.6, label=None if label in seen else label)
        seen.add(label)
        tag = (m.label.replace("imgarc ", "") if m.family == "imgarc" else
               m.label if m.lossless else f"q{m.params.get('quality')}")
        ax.annotate(tag, (m.ratio, y), fontsize=6.5, xytext=(4, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("compression ratio (source folder bytes / size; log scale)")
    ax.set_ylabel("MS-SSIM (mean over images; lossless = 1)")
    ax.set_title(_title(result, "Ratio vs MS-SSIM, bubble area = compress + decompress time"))
    ax.grid(True, alpha=0.3, which="both")
    handles, labels = ax.get_legend_handles_labels()
    for h in handles:  # legend markers of one size, whatever the bubble
        h.set_sizes([60])
    refs = [t for t in (1, 10, 60, 300) if t <= longest * 1.5][-2:] or [round(longest, 1)]
    for t in refs:
        handles.append(ax.scatter([], [], s=t * scale, color="white", edgecolors="black", linewidths=0.6))
        labels.append(f"{t:g} s")
    ax.legend(handles, labels, loc="lower left", fontsize=8, labelspacing=1.4, borderpad=1.0)
    if rows:
        ys = [1.0 if m.lossless else m.ms_ssim_mean for m in rows]
        lo = min(ys)
        ax.set_ylim(lo - (1 - lo) * 0.15 - 1e-3, 1 + (1 - lo) * 0.08 + 1e-3)
        xs = [m.ratio for m in rows]
        ax.set_xlim(min(xs) / 1.5, max(xs) * 1.8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_plots(result: BenchResult, out: Path) -> list[str]:
    """Write the three PNG plots into out; returns their file names."""
    out.mkdir(parents=True, exist_ok=True)
    _rd_plot(result, out / RD_PSNR, "psnr")
    _rd_plot(result, out / RD_MSSSIM, "ms_ssim")
    _bubble_plot(result, out / BUBBLE)
    return [RD_PSNR, RD_MSSSIM, BUBBLE]


__all__ = ["write_plots"]
