"""Process-wide memory settings for the `imgarc` command and the bench's worker processes (not
applied when imgarc is a library).

glibc's malloc serves large blocks from its heaps once they have been freed a few times: its
mmap threshold grows with every large free, up to 32 MB. Photos are coded on pool threads, each
with its own heap, and a large photo's latents, tables and pixels are arrays of tens to
hundreds of MB: freed into those heaps they stay resident. A fixed 1 MB threshold hands every
larger block back to the system when it is freed; a 48-megapixel compress then peaked at
1.39 GB instead of 1.58 GB, at the same speed (measured with /usr/bin/time -v).
"""

from __future__ import annotations

import ctypes
import ctypes.util

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
MMAP_THRESHOLD_BYTES = 1 << 20
NEVER_TRIM_BYTES = 1 << 40


def return_large_blocks_to_system() -> bool:
    """Fix glibc's mmap threshold at 1 MB; False where the C library is not glibc (nothing done)."""
    return _mallopt((M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


def keep_freed_memory() -> bool:
    """The opposite, for `compress --refine`: no block is mmapped or trimmed, so what is freed stays
    in the heaps for the next step. Each refinement step allocates and frees g_s's activations and
    their gradients (hundreds of MB); handed back and faulted in again every step, they took more
    kernel than user time: a Kodak photo refined for 10 steps took 24.0 s (12.5 s of it in the
    kernel) instead of 14.0 s (3.6 s), peaking at 1.65 GB instead of 1.34 GB."""
    return _mallopt((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, NEVER_TRIM_BYTES))


def _mallopt(*settings: tuple[int, int]) -> bool:
    """mallopt() each (parameter, value); False where the C library is not glibc (nothing done)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
    except OSError:
        return False
    return bool(mallopt) and all(mallopt(parameter, value) == 1 for parameter, value in settings)
