"""The bench's PNG plots: bpp-PSNR, bpp-MS-SSIM, and size ratio vs MS-SSIM with time as bubbles."""

from __future__ import annotations

from pathlib import Path

from imgarc.bench.curves import rate_quality_curves
from imgarc.bench.results import BenchResult
from imgarc.coders import CODER_NAMES

RD_PSNR, RD_MSSSIM, BUBBLE = "rd_psnr.png", "rd_msssim.png", "bubble_ratio_msssim.png"
COLORS = {"imgarc": "#d62728", "jpeg": "#7f7f7f", "webp": "#1f77b4", "avif": "#2ca02c", "heic": "#17becf", "jxl": "#bcbd22",
          "7z": "#9467bd", "tar": "#8c564b"}
CODER_STYLE = dict(zip(CODER_NAMES, (("o", "-"), ("s", "--"), ("D", ":"))))  # marker, line per coder
EXTRA_MODEL_COLORS = ("#ff7f0e", "#e377c2", "#000000", "#8c564b", "#7f7f00")  # curves of --models / zoo models


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
    extra = 0
    for c in rate_quality_curves(result.methods):
        ys = c.psnr if quality == "psnr" else c.ms_ssim
        own = c.name.startswith("imgarc ")
        marker, line = CODER_STYLE.get(c.name.split()[-1], ("o", "-")) if own else ("o", "-")
        color = COLORS.get(c.family, "black")
        if c.family == "imgarc" and not own:
            color, extra = EXTRA_MODEL_COLORS[extra % len(EXTRA_MODEL_COLORS)], extra + 1
        ax.plot(c.bpp, ys, marker=marker, linestyle=line, color=color, label=c.name,
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


def _bubble_groups(result: BenchResult) -> list[tuple[str, float, float, float, str]]:
    """(family, ratio, MS-SSIM, seconds, label) per bubble; rows of one family at the same point share one."""
    groups: dict[tuple, list] = {}
    for m in result.methods:
        if not (m.ok and m.ratio and m.total_seconds is not None and (m.lossless or m.ms_ssim_mean is not None)):
            continue
        y = 1.0 if m.lossless else m.ms_ssim_mean
        tag = (m.label if m.lossless else m.label.replace("imgarc ", "") if m.family == "imgarc"
               else f"q{m.params.get('quality')}")
        key = (m.family, round(m.ratio, 2), round(y, 4), m.params.get("coder"))
        groups.setdefault(key, [m.family, m.ratio, y, [], []])
        groups[key][3].append(m.total_seconds)
        groups[key][4].append(tag)
    out = []
    for family, x, y, times, tags in groups.values():
        if len(tags) > 1 and family == "imgarc":  # "rans q10", "rans q25" -> "rans q10/q25 (same point)"
            coder = tags[0].split()[0]
            tags = [f"{coder} " + "/".join(t.split()[-1] for t in tags) + " (same point)"]
        out.append((family, x, y, sum(times) / len(times), ", ".join(tags)))
    return out


def _bubble_plot(result: BenchResult, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9.5, 6.5), dpi=110)
    bubbles = _bubble_groups(result)
    if not bubbles:
        ax.text(0.5, 0.5, "no method ran", ha="center", transform=ax.transAxes)
    longest = max((b[3] for b in bubbles), default=1.0) or 1.0
    scale = 1400 / longest  # bubble area in pt² per second: the slowest gets 1400 pt²
    names = {"imgarc": "imgarc", "7z": "7-Zip", "tar": "TAR", "jpeg": "JPEG", "webp": "WebP", "avif": "AVIF",
             "heic": "HEIC", "jxl": "JPEG XL"}
    seen: set[str] = set()
    for family, x, y, seconds, _ in sorted(bubbles, key=lambda b: -b[3]):  # big ones first, small ones on top
        label = names.get(family, family)
        ax.scatter(x, y, s=max(seconds * scale, 15), color=COLORS.get(family, "black"), alpha=0.45,
                   edgecolors="black", linewidths=0.6, label=None if label in seen else label, zorder=3)
        seen.add(label)
    ax.set_xscale("log")
    if bubbles:
        ys = [b[2] for b in bubbles]
        lo = min(ys)
        ax.set_ylim(lo - (1 - lo) * 0.12 - 1e-3, 1 + (1 - lo) * 0.1 + 1e-3)
        xs = [b[1] for b in bubbles]
        ax.set_xlim(min(xs) / 1.6, max(xs) * 2.2)
    # Labels right of each bubble; one that would overlap an earlier label moves down, with a leader line.
    fig.canvas.draw()
    placed: list[tuple[float, float]] = []
    for family, x, y, _, text in sorted(bubbles, key=lambda b: (b[0] != "imgarc", -b[2], b[1])):
        px, py = ax.transData.transform((x, y))
        ly = py
        while any(abs(ly - qy) < 9 and abs(px - qx) < 90 for qx, qy in placed):
            ly -= 9
        placed.append((px, ly))
        moved = abs(ly - py) > 1
        tx, ty = ax.transData.inverted().transform((px + (14 if moved else 6), ly))
        ax.annotate(text, (x, y), xytext=(tx, ty), textcoords="data", fontsize=6.5, va="center", zorder=4,
                    color="black" if family == "imgarc" or moved is False else "#333333",
                    arrowprops={"arrowstyle": "-", "color": "#999999", "lw": 0.5} if moved else None)
    ax.set_xlabel("compression ratio (source folder bytes / size; log scale)")
    ax.set_ylabel("MS-SSIM (mean over images; lossless = 1)")
    ax.set_title(_title(result, "Ratio vs MS-SSIM, bubble area = compress + decompress time"))
    ax.grid(True, alpha=0.3, which="both")
    handles, labels = ax.get_legend_handles_labels()
    order = list(names.values())
    pairs = sorted(zip(handles, labels), key=lambda hl: order.index(hl[1]) if hl[1] in order else 99)
    handles, labels = [h for h, _ in pairs], [lb for _, lb in pairs]
    for h in handles:  # legend markers of one size, whatever the bubble
        h.set_sizes([60])
    refs = [t for t in (1, 10, 60, 300) if t <= longest * 1.5][-2:] or [round(longest, 1)]
    for t in refs:
        handles.append(ax.scatter([], [], s=t * scale, color="white", edgecolors="black", linewidths=0.6))
        labels.append(f"{t:g} s")
    ax.legend(handles, labels, loc="lower left", fontsize=8, labelspacing=1.5, borderpad=1.0)
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
