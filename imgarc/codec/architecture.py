"""Network architectures imgarc knows how to build (CompressAI hyperprior family)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from imgarc.errors import ModelError


@dataclass(frozen=True)
class Architecture:
    """What to build: a CompressAI model class and its channel widths.

    `stride` is the total downsampling of the analysis transform g_a times h_a,
    i.e. the multiple images are padded to.
    """

    name: str  # one of SUPPORTED_ARCHITECTURES
    N: int
    M: int
    rate_points: int = 1  # > 1: variable-rate, with learned gains per rate point (gained.py)
    # A pruned model's inner widths: the outputs of g_a's first three convolutions, then of g_s's
    # first three transposed ones (`WIDTHS` entries); empty: all N, as CompressAI builds them.
    widths: tuple[int, ...] = ()
    # A pruned model's h_a and h_s inner widths: the outputs of h_a's first two convolutions,
    # then of h_s's first two transposed ones; empty: CompressAI's (N, N, M, 3M/2). Widths equal
    # to those are recorded as empty, so the records of unpruned hyper networks stay as they were.
    hyper_widths: tuple[int, ...] = ()

    WIDTHS = 6
    HYPER_WIDTHS = 4

    def __post_init__(self) -> None:
        if self.widths and (len(self.widths) != self.WIDTHS or min(self.widths) < 1):
            raise ModelError(f"an architecture's widths are {self.WIDTHS} positive channel counts, not {self.widths!r}")
        if self.hyper_widths and (len(self.hyper_widths) != self.HYPER_WIDTHS or min(self.hyper_widths) < 1):
            raise ModelError(f"an architecture's hyper widths are {self.HYPER_WIDTHS} positive channel counts, "
                             f"not {self.hyper_widths!r}")
        if self.hyper_widths == self._compressai_hyper_widths():
            object.__setattr__(self, "hyper_widths", ())
        if (self.widths or self.hyper_widths) and self.scale_only:
            raise ModelError("a scale-only model has CompressAI's own widths (imgarc prunes mean-scale models only)")

    def _compressai_hyper_widths(self) -> tuple[int, ...]:
        if self.scale_only:
            return (self.N,) * self.HYPER_WIDTHS
        return self.N, self.N, self.M, self.M * 3 // 2

    @property
    def inner_widths(self) -> tuple[int, ...]:
        """g_a's and g_s's inner widths (N each unless pruned)."""
        return self.widths or (self.N,) * self.WIDTHS

    @property
    def hyper_inner_widths(self) -> tuple[int, ...]:
        """h_a's and h_s's inner widths (CompressAI's unless pruned)."""
        return self.hyper_widths or self._compressai_hyper_widths()

    @property
    def stride(self) -> int:
        return 64

    @property
    def scale_only(self) -> bool:
        """ScaleHyperprior: h_a reads |y| and h_s predicts scales only (zero means)."""
        return self.name == SCALE_ONLY

    def to_dict(self) -> dict:
        d = asdict(self)
        for name in ("widths", "hyper_widths"):  # unpruned models' records stay as they were before widths existed
            if d[name]:
                d[name] = list(d[name])
            else:
                del d[name]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Architecture":
        try:
            return cls(name=str(d["name"]), N=int(d["N"]), M=int(d["M"]), rate_points=int(d.get("rate_points", 1)),
                       widths=tuple(int(w) for w in d.get("widths", ())),
                       hyper_widths=tuple(int(w) for w in d.get("hyper_widths", ())))
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"weights file has a malformed architecture record: {d!r}") from e


MEAN_SCALE = "mbt2018-mean"  # CompressAI MeanScaleHyperprior: what imgarc trains and ships
SCALE_ONLY = "bmshj2018-hyperprior"  # CompressAI ScaleHyperprior: zoo models only
SUPPORTED_ARCHITECTURES = (MEAN_SCALE, SCALE_ONLY)

# CompressAI buffers that hold coding tables it rebuilds with float math; imgarc ships its own
# integer tables instead, so these are neither exported nor expected when loading.
COMPRESSAI_TABLE_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table", "scale_bound")


def macs_per_pixel(arch: Architecture) -> dict[str, float]:
    """Multiply-adds per image pixel of each network (5x5 convolutions, GDN's 1x1 ones; h_s as
    the integer network runs it, a quarter of a transposed convolution's taps per output): the
    mean-scale h_s predicts 2M channels (unpruned: through a 3M/2 one), ScaleHyperprior's M
    through N."""
    a0, a1, a2, s0, s1, s2 = arch.inner_widths
    ha0, ha1, hs0, hs1 = arch.hyper_inner_widths
    n, m = arch.N, arch.M
    g_a = (3 * a0 * 25 + a0 * a0) / 4 + (a0 * a1 * 25 + a1 * a1) / 16 + (a1 * a2 * 25 + a2 * a2) / 64 + a2 * m * 25 / 256
    g_s = (m * s0 * 25 / 4 + s0 * s0) / 64 + (s0 * s1 * 25 / 4 + s1 * s1) / 16 + (s1 * s2 * 25 / 4 + s2 * s2) / 4 + s2 * 3 * 25 / 4
    h_a = (m * ha0 * 9 + ha0 * ha1 * 25 / 4 + ha1 * n * 25 / 16) / 256
    outputs = m if arch.scale_only else 2 * m
    h_s = n * hs0 * 25 / 4 / 1024 + hs0 * hs1 * 25 / 4 / 256 + hs1 * outputs * 9 / 256
    return {"g_a": g_a, "h_a": h_a, "h_s": h_s, "g_s": g_s}


def build_model(arch: Architecture):
    """A fresh (random) torch model for `arch`. torch and CompressAI load here, on first use, so
    that reading archives' headers, listing and `--help` never pay for them."""
    if arch.name not in SUPPORTED_ARCHITECTURES or (arch.scale_only and arch.rate_points > 1):
        raise ModelError(
            f"unknown architecture {arch.name!r}; this imgarc supports {', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    if arch.scale_only:
        from compressai.models import ScaleHyperprior

        model = ScaleHyperprior(N=arch.N, M=arch.M)
    elif arch.rate_points > 1:
        from imgarc.codec.gained import GainedMeanScaleHyperprior

        model = GainedMeanScaleHyperprior(N=arch.N, M=arch.M, rate_points=arch.rate_points)
    else:
        from compressai.models import MeanScaleHyperprior

        model = MeanScaleHyperprior(N=arch.N, M=arch.M)
    if arch.widths or arch.hyper_widths:
        from imgarc.codec.pruned import analysis_transform, hyper_analysis, hyper_synthesis, synthesis_transform

        model.g_a = analysis_transform(arch.inner_widths[:3], arch.M)
        model.g_s = synthesis_transform(arch.M, arch.inner_widths[3:])
        model.h_a = hyper_analysis(arch.M, arch.hyper_inner_widths[:2], arch.N)
        model.h_s = hyper_synthesis(arch.N, arch.hyper_inner_widths[2:], arch.M)
    return model
