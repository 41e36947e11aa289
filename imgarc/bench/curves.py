"""Rate-quality curves out of a bench's rows, and BD-rates of imgarc against the image codecs."""

from __future__ import annotations

from dataclasses import dataclass

from imgarc.bench.bdrate import BDRateError, bd_rate, ms_ssim_db
from imgarc.bench.results import MethodResult

ANCHORS = ("jpeg", "webp", "avif", "heic", "jxl")


@dataclass
class Curve:
    name: str  # "imgarc rans", "WebP" ...
    family: str
    bpp: list[float]  # mean per-image bpp, ascending
    psnr: list[float]
    ms_ssim: list[float]
    methods: list[str]  # method ids, same order


def series_key(m: MethodResult) -> str:
    """The curve a row belongs to: 'imgarc <coder>' for the run's own model, the model's name for
    extra imgarc models (params["series"]), the codec's name for the baselines."""
    if m.family == "imgarc":
        return m.params.get("series") or f"imgarc {m.params['coder']}"
    return m.label.rsplit(" q", 1)[0]


def rate_quality_curves(methods: list[MethodResult]) -> list[Curve]:
    """One curve per lossy technique (each imgarc coder separately), points sorted by bpp."""
    groups: dict[str, list[MethodResult]] = {}
    for m in methods:
        if m.ok and not m.lossless and m.bpp_mean is not None and m.psnr_mean is not None:
            groups.setdefault(series_key(m), []).append(m)
    curves = []
    for name, ms in groups.items():
        ms.sort(key=lambda m: (m.bpp_mean, m.psnr_mean))
        curves.append(Curve(name, ms[0].family, [m.bpp_mean for m in ms], [m.psnr_mean for m in ms],
                            [m.ms_ssim_mean if m.ms_ssim_mean is not None else float("nan") for m in ms],
                            [m.id for m in ms]))
    return curves


def _bd(test: Curve, anchor: Curve, quality: str, method: str) -> tuple[float | None, str | None]:
    qa = test.psnr if quality == "psnr" else [ms_ssim_db(v) for v in test.ms_ssim]
    qb = anchor.psnr if quality == "psnr" else [ms_ssim_db(v) for v in anchor.ms_ssim]
    try:
        return bd_rate(test.bpp, qa, anchor.bpp, qb, method), None
    except BDRateError as e:
        return None, str(e)


def bd_rate_table(methods: list[MethodResult]) -> list[dict]:
    """BD-rate (%, negative = imgarc needs fewer bits) of each imgarc curve vs JPEG, WebP, AVIF, HEIC, JPEG XL.

    On PSNR and on MS-SSIM in dB (-10·log10(1 - MS-SSIM)), with the cubic VCEG-M33 fit and
    the pchip variant. A pair that cannot be compared carries the reason instead of a number.
    """
    curves = rate_quality_curves(methods)
    tests = [c for c in curves if c.family == "imgarc"]
    anchors = [c for c in curves if c.family in ANCHORS]
    rows = []
    for t in tests:
        for a in anchors:
            for quality in ("psnr", "ms_ssim_db"):
                cubic, why = _bd(t, a, quality, "cubic")
                pchip, why_p = _bd(t, a, quality, "pchip")
                rows.append({"test": t.name, "anchor": a.name, "quality": quality, "cubic": cubic, "pchip": pchip,
                             "note": why if cubic is None else None, "note_pchip": why_p if pchip is None else None})
    return rows
