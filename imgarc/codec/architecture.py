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

    WIDTHS = 6

    def __post_init__(self) -> None:
        if self.widths and (len(self.widths) != self.WIDTHS or min(self.widths) < 1):
            raise ModelError(f"an architecture's widths are {self.WIDTHS} positive channel counts, not {self.widths!r}")

    @property
    def inner_widths(self) -> tuple[int, ...]:
        """g_a's and g_s's inner widths (N each unless pruned)."""
        return self.widths or (self.N,) * self.WIDTHS

    @property
    def stride(self) -> int:
        return 64

    @property
    def scale_only(self) -> bool:
        """ScaleHyperprior: h_a reads |y| and h_s predicts scales only (zero means)."""
        return self.name == SCALE_ONLY

    def to_dict(self) -> dict:
        d = asdict(self)
        if not self.widths:  # unpruned models' records stay as they were before widths existed
            del d["widths"]
        else:
            d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Architecture":
        try:
            return cls(name=str(d["name"]), N=int(d["N"]), M=int(d["M"]), rate_points=int(d.get("rate_points", 1)),
                       widths=tuple(int(w) for w in d.get("widths", ())))
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"weights file has a malformed architecture record: {d!r}") from e


MEAN_SCALE = "mbt2018-mean"  # CompressAI MeanScaleHyperprior: what imgarc trains and ships
SCALE_ONLY = "bmshj2018-hyperprior"  # CompressAI ScaleHyperprior: zoo models only
SUPPORTED_ARCHITECTURES = (MEAN_SCALE, SCALE_ONLY)

# CompressAI buffers that hold coding tables it rebuilds with float math; imgarc ships its own
# integer tables instead, so these are neither exported nor expected when loading.
COMPRESSAI_TABLE_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table", "scale_bound")


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
    if arch.widths:
        from imgarc.codec.pruned import analysis_transform, synthesis_transform

        model.g_a = analysis_transform(arch.widths[:3], arch.M)
        model.g_s = synthesis_transform(arch.M, arch.widths[3:])
    return model
