"""CompressAI's own rANS coder (the C++ `compressai.ans` behind its compress()/decompress()).

The reference row: a per-symbol coder fed the same symbols, the same deterministic table
indexes and the same shipped tables as the fast coders, so it is as safe across machines
as they are (its table selection is not CompressAI's float path; see docs/DETERMINISM in
the README). Escapes use CompressAI's own bypass coding.
"""

from __future__ import annotations

import numpy as np

from imgarc.coders.base import LatentCoder
from imgarc.coders.tables import CdfTables
from imgarc.errors import LatentStreamError
from imgarc.extras import require


# CompressAI's bypass coding of escaped values loops forever on magnitudes near 2**30;
# real latents stay within a few hundred, so refuse anything past this rather than hang.
MAX_MAGNITUDE = 1 << 20


def _table_lists(tables: CdfTables) -> tuple[list, list, list]:
    cdfs = [tables.cdfs[k, : tables.lengths[k]].tolist() for k in range(tables.count)]
    return cdfs, tables.lengths.tolist(), tables.offsets.tolist()


class ReferenceCoder(LatentCoder):
    name = "ref"

    def encode(self, symbols: np.ndarray, indexes: np.ndarray, tables: CdfTables) -> bytes:
        require("the ref coder (CompressAI's own)", "compressai")
        from compressai.ans import RansEncoder

        if symbols.size == 0:
            return b""  # CompressAI's encoder crashes on empty input
        if int(np.abs(symbols.astype(np.int64)).max()) > MAX_MAGNITUDE:
            raise LatentStreamError(f"latent values beyond ±{MAX_MAGNITUDE} cannot be coded by the reference coder")
        cdfs, lengths, offsets = _table_lists(tables)
        return RansEncoder().encode_with_indexes(symbols.tolist(), indexes.tolist(), cdfs, lengths, offsets)

    def decode(self, data: bytes, indexes: np.ndarray, tables: CdfTables) -> np.ndarray:
        require("the ref coder (CompressAI's own)", "compressai")
        from compressai.ans import RansDecoder

        if indexes.size == 0:
            if data:
                raise LatentStreamError("reference rANS stream has data where none is expected")
            return np.zeros(0, np.int32)
        # The C++ decoder reads whole 32-bit words without bounds checks: refuse short streams here.
        if len(data) < 4 or len(data) % 4:
            raise LatentStreamError("reference rANS stream is truncated")
        cdfs, lengths, offsets = _table_lists(tables)
        try:
            out = RansDecoder().decode_with_indexes(data, indexes.tolist(), cdfs, lengths, offsets)
        except (ValueError, RuntimeError) as e:
            raise LatentStreamError(f"reference rANS stream does not decode: {e}") from e
        return np.asarray(out, dtype=np.int32)
