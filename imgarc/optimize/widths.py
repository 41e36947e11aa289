"""The channel widths a pruned model keeps, group by group (no torch: the CLI reads these).

A mean-scale hyperprior has twelve channel groups (`GROUP_NAMES`, the order every widths tuple
here uses): g_a's three inner widths, the latent channels M, g_s's three inner widths, h_a's
two, the hyper-latent channels N, h_s's two. `imgarc.optimize.prune` says where each lives.
"""

from __future__ import annotations

from imgarc.codec.architecture import Architecture
from imgarc.errors import UsageError

GROUP_NAMES = ("g_a.0", "g_a.2", "g_a.4", "latents", "g_s.0", "g_s.2", "g_s.4",
               "h_a.0", "h_a.2", "hyper_latents", "h_s.0", "h_s.2")


def group_widths(arch: Architecture) -> tuple[int, ...]:
    """The width of each group, in `GROUP_NAMES` order."""
    a0, a1, a2, s0, s1, s2 = arch.inner_widths
    ha0, ha1, hs0, hs1 = arch.hyper_inner_widths
    return a0, a1, a2, arch.M, s0, s1, s2, ha0, ha1, arch.N, hs0, hs1


def architecture_of(parent: Architecture, widths: tuple[int, ...]) -> Architecture:
    """The architecture whose groups have `widths` (`GROUP_NAMES` order)."""
    a0, a1, a2, m, s0, s1, s2, ha0, ha1, n, hs0, hs1 = widths
    return Architecture(parent.name, n, m, parent.rate_points, (a0, a1, a2, s0, s1, s2), (ha0, ha1, hs0, hs1))


def widths_for(arch: Architecture, keep: float) -> tuple[int, ...]:
    """g_a's and g_s's inner widths keeping the fraction `keep` of each parent width (rounded to
    a multiple of 8, which vector units like)."""
    if not 0 < keep <= 1:
        raise UsageError(f"--keep must be a fraction in (0, 1], not {keep}")
    return tuple(max(8, int(round(w * keep / 8)) * 8) for w in arch.inner_widths)
