"""What one bench run measures: the list of methods, each a technique at one setting."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from imgarc.bench.baselines import ARCHIVERS, BASELINE_NAMES, PILLOW_CODECS
from imgarc.bench.defaults import DEFAULT_CODER_QUALITIES, DEFAULT_QUALITIES, DEFAULT_STUDY_IMAGES
from imgarc.bench.phone import PHONE_SIZE
from imgarc.codec.zoo import is_zoo_id, parse_zoo_id
from imgarc.coders import CODER_NAMES, DEFAULT_CODER
from imgarc.coders.arith import ArithmeticCoder
from imgarc.errors import UsageError

DEFAULT_CODERS = CODER_NAMES
# The coder study: the per-symbol arithmetic coder, then every archive coder, on the same latents.
STUDY_CODERS = (ArithmeticCoder.name, *CODER_NAMES)


@dataclass
class BenchConfig:
    """The settings of one bench run (every field is recorded in the report)."""

    qualities: list[int] = field(default_factory=lambda: list(DEFAULT_QUALITIES))
    coders: list[str] = field(default_factory=lambda: list(DEFAULT_CODERS))
    # Qualities the coders after the first run at; None: every quality in `qualities`.
    coder_qualities: list[int] | None = field(default_factory=lambda: list(DEFAULT_CODER_QUALITIES))
    baselines: list[str] = field(default_factory=lambda: list(BASELINE_NAMES))
    baseline_qualities: dict[str, list[int]] = field(
        default_factory=lambda: {k: list(c.default_qualities) for k, c in PILLOW_CODECS.items()})
    model: str | None = None  # None: the model --quality picks, as `imgarc compress` does
    # More models to put in the same tables and plots, each with the first coder: installed ids
    # (at every quality) and CompressAI zoo ids cai:ARCH:METRIC:Q (one point each: a zoo model has one rate).
    extra_models: list[str] = field(default_factory=list)
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)  # processes for the quality metrics
    # Images (spread evenly over the set) for the coder study and CompressAI's pipeline; 0: neither.
    study_images: int = DEFAULT_STUDY_IMAGES
    study_coders: list[str] = field(default_factory=lambda: list(STUDY_CODERS))
    compressai_pipeline: bool = True
    # The phone photo's source file (imgarc.bench.phone; the CLI resolves 'auto'), or None for no phone table.
    phone: str | None = None
    phone_size: tuple[int, int] = PHONE_SIZE
    refine_steps: int = 0  # > 0: imgarc with --refine this many steps too, first coder, every quality

    @property
    def study_quality(self) -> int:
        """The quality of the coder study, CompressAI's pipeline and the phone photo: the
        quality the other coders run at (the first of --coder-qualities), else 75."""
        return (self.coder_qualities or [75])[0]


@dataclass
class Method:
    id: str  # unique in a run, e.g. "imgarc-rans-q75", "webp-q35", "7z-mx9"
    family: str  # "imgarc", "jpeg", "webp", "avif", "heic", "jxl", "7z", "tar"
    label: str
    params: dict
    lossless: bool = False


def parse_int_list(text: str, option: str, lo: int = 1, hi: int = 100) -> list[int]:
    """'10,25,50' -> [10, 25, 50], each within [lo, hi]; a UsageError naming the option otherwise."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise UsageError(f"{option} takes comma-separated whole numbers like 10,50,90, not {text!r}") from e
    if not values:
        raise UsageError(f"{option} needs at least one value")
    bad = [v for v in values if not lo <= v <= hi]
    if bad:
        raise UsageError(f"{option} values must be between {lo} and {hi}, not {bad[0]}")
    return sorted(set(values))


def parse_name_list(text: str, option: str, known: tuple[str, ...]) -> list[str]:
    names = [v.strip().lower() for v in text.split(",") if v.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(f"{option}: unknown {unknown[0]!r} (choose from {', '.join(known)})")
    return list(dict.fromkeys(names))


def plan_methods(config: BenchConfig) -> list[Method]:
    """Every method of a run, in the order they run (imgarc first, then the baselines)."""
    methods: list[Method] = []
    for i, coder in enumerate(config.coders):
        qualities = config.qualities if i == 0 or config.coder_qualities is None else config.coder_qualities
        for q in sorted(set(qualities)):
            params = {"quality": q, "coder": coder, "model": config.model}
            methods.append(Method(f"imgarc-{coder}-q{q}", "imgarc", f"imgarc {coder} q{q}", params))
    first_coder = config.coders[0] if config.coders else DEFAULT_CODER
    if config.refine_steps:
        n, series = config.refine_steps, f"imgarc {first_coder} --refine {config.refine_steps}"
        methods += [Method(f"imgarc-{first_coder}-refine{n}-q{q}", "imgarc", f"{series} q{q}",
                           {"quality": q, "coder": first_coder, "model": config.model, "refine_steps": n, "series": series})
                    for q in sorted(set(config.qualities))]
    for model_id in config.extra_models:
        methods += _extra_model_methods(model_id, first_coder, config.qualities)
    for name in config.baselines:
        if name in PILLOW_CODECS:
            codec = PILLOW_CODECS[name]
            for q in sorted(set(config.baseline_qualities.get(name, codec.default_qualities))):
                methods.append(Method(f"{name}-q{q}", name, f"{codec.label} q{q}",
                                      {"quality": q, **codec.fixed, "library": "Pillow"}))
        else:
            for a in ARCHIVERS.values():
                if a.family == name:
                    methods.append(Method(a.id, a.family, a.label, {"options": list(a.options)}, lossless=True))
    return methods


def phone_methods(config: BenchConfig) -> list[Method]:
    """The time-per-photo rows: imgarc with the first coder at the study quality, and each image
    codec of the run at the middle of its quality grid."""
    methods = []
    if config.coders:
        q, coder = config.study_quality, config.coders[0]
        methods.append(Method(f"phone-imgarc-{coder}-q{q}", "imgarc", f"imgarc {coder} q{q}",
                              {"quality": q, "coder": coder, "model": config.model}))
    for name in config.baselines:
        if name in PILLOW_CODECS:
            codec = PILLOW_CODECS[name]
            grid = sorted(set(config.baseline_qualities.get(name, codec.default_qualities)))
            q = grid[len(grid) // 2]
            methods.append(Method(f"phone-{name}-q{q}", name, f"{codec.label} q{q}",
                                  {"quality": q, **codec.fixed, "library": "Pillow"}))
    return methods


def _extra_model_methods(model_id: str, coder: str, qualities: list[int]) -> list[Method]:
    """Rows for a model other than the run's own; params["series"] names its curve."""
    slug = model_id.replace(":", "-")
    if is_zoo_id(model_id):
        z = parse_zoo_id(model_id)
        series = f"cai:{z.architecture}:{z.metric}"
        return [Method(f"{slug}-{coder}", "imgarc", f"{series} q{z.quality}",
                       {"quality": 75, "coder": coder, "model": model_id, "series": series})]
    return [Method(f"{slug}-{coder}-q{q}", "imgarc", f"{model_id} q{q}",
                   {"quality": q, "coder": coder, "model": model_id, "series": model_id}) for q in sorted(set(qualities))]
