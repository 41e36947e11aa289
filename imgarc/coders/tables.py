"""Integer CDF tables shared by every coder.

The layout is CompressAI's (so its own rANS coder, the `ref` row, can use them unchanged):
table k has `lengths[k]` CDF entries `cdfs[k, :lengths[k]]`, starting at 0 and ending at
2**16; it codes `lengths[k] - 1` symbols, of which the last is the *escape* symbol for
values outside `[offsets[k], offsets[k] + lengths[k] - 3]`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from imgarc.errors import ModelError

PRECISION = 16


@dataclass(frozen=True)
class CdfTables:
    cdfs: np.ndarray  # int32 [K, max_length]
    lengths: np.ndarray  # int32 [K]
    offsets: np.ndarray  # int32 [K]
    _pmf_cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        K = len(self.lengths)
        if self.cdfs.ndim != 2 or self.cdfs.shape[0] != K or self.offsets.shape != (K,):
            raise ModelError("coding tables have inconsistent shapes")
        for k in range(K):
            n = int(self.lengths[k])
            if not 3 <= n <= self.cdfs.shape[1]:
                raise ModelError(f"coding table {k} has an invalid length {n}")
            cdf = self.cdfs[k, :n]
            if cdf[0] != 0 or cdf[-1] != 1 << PRECISION or np.any(np.diff(cdf) <= 0):
                raise ModelError(f"coding table {k} is not a valid CDF")

    @property
    def count(self) -> int:
        return len(self.lengths)

    def frequencies(self, k: int) -> np.ndarray:
        """Integer frequencies (summing to 2**16) of table k's symbols, escape last."""
        if k not in self._pmf_cache:
            self._pmf_cache[k] = np.diff(self.cdfs[k, : self.lengths[k]]).astype(np.int64)
        return self._pmf_cache[k]

    def digest(self) -> bytes:
        """sha256 over the exact integers, so any altered entry changes it."""
        h = hashlib.sha256()
        for a in (self.cdfs, self.lengths, self.offsets):
            h.update(np.ascontiguousarray(a, dtype="<i4").tobytes())
            h.update(str(a.shape).encode())
        return h.digest()
