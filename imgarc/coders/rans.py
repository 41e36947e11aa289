"""Vectorized rANS (constriction's stack ANS coder), one fixed model per table.

Symbols are grouped by table (stable order); each group is coded with one call on a whole
array, so there is no Python loop per symbol. Escaped values (outside a table's range) are
appended as varints after the rANS words. Layout: u32 word count, words (u32 LE), varints.
"""

from __future__ import annotations

import struct

import numpy as np

from imgarc.coders.base import LatentCoder
from imgarc.coders.tables import CdfTables
from imgarc.coders.varint import decode_varints, encode_varints
from imgarc.errors import LatentStreamError


def _model(tables: CdfTables, k: int):
    import constriction

    # The integer frequencies are exact in float64; constriction rescales them to its own
    # fixed point with a deterministic (perfect=False) rule, identically in encoder and decoder.
    return constriction.stream.model.Categorical(tables.frequencies(int(k)).astype(np.float64), perfect=False)


COUNT_CHUNK = 1 << 22  # symbols counted at once: np.bincount works on an int64 copy of its input


def _tables_used(indexes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The table indexes present, ascending, and how many symbols each codes: what np.unique
    gives, by counting instead of sorting a copy (36 M latents of a 48-megapixel photo: seconds
    and 144 MB saved), in chunks so that bincount's int64 copy stays small."""
    counts = np.zeros(0, np.int64)
    for start in range(0, len(indexes), COUNT_CHUNK):
        part = np.bincount(indexes[start:start + COUNT_CHUNK])
        counts = np.pad(counts, (0, max(0, len(part) - len(counts))))
        counts[:len(part)] += part
    present = np.flatnonzero(counts)
    return present, counts[present]


SORT_LATENTS = 1 << 24  # up to this many symbols (a ~22 MP photo), groups are found by sorting


class _Groups:
    """Where each table's symbols are, in position order. Up to SORT_LATENTS symbols: slices of
    one stable sort of the indexes (a radix sort for uint8 indexes: a 12 MP photo's 113 groups in
    0.2 s instead of 0.8 s through masks); above, a boolean mask per table, one byte per symbol
    instead of the sort's eight (a 100-megapixel photo has 75 M latents)."""

    def __init__(self, indexes: np.ndarray) -> None:
        self.indexes = indexes
        self.present, self.counts = _tables_used(indexes)
        self.order = np.argsort(indexes, kind="stable") if len(indexes) <= SORT_LATENTS else None
        self.starts = np.concatenate([[0], np.cumsum(self.counts)])

    def where(self, n: int) -> np.ndarray:
        """The positions of the n-th table present (an index array or a mask: either selects them in order)."""
        if self.order is not None:
            return self.order[self.starts[n]:self.starts[n + 1]]
        return self.indexes == self.present[n]


class RansCoder(LatentCoder):
    name = "rans"

    # Symbols are coded grouped by table (a fixed model per group), in position order within a
    # group, groups in table order (_Groups finds them).

    def encode(self, symbols: np.ndarray, indexes: np.ndarray, tables: CdfTables) -> bytes:
        import constriction

        coder = constriction.stream.stack.AnsCoder()
        escaped_symbols: list[np.ndarray] = []
        groups = _Groups(indexes)
        # A stack coder decodes in reverse order of encoding: encode the last group first.
        for n in reversed(range(len(groups.present))):
            k = groups.present[n]
            values = symbols[groups.where(n)].astype(np.int32, copy=False) - tables.offsets[k]
            escape = tables.lengths[k] - 2
            escaped = (values < 0) | (values >= escape)
            escaped_symbols.append(values[escaped].astype(np.int64) + tables.offsets[k])
            values[escaped] = escape
            coder.encode_reverse(values, _model(tables, k))
        words = coder.get_compressed().astype("<u4")
        escaped_in_order = np.concatenate(escaped_symbols[::-1]) if escaped_symbols else np.zeros(0, np.int64)
        return struct.pack("<I", len(words)) + words.tobytes() + encode_varints(escaped_in_order)

    def decode(self, data: bytes, indexes: np.ndarray, tables: CdfTables) -> np.ndarray:
        import constriction

        if len(data) < 4:
            raise LatentStreamError("rANS stream is truncated")
        (n_words,) = struct.unpack_from("<I", data)
        if 4 + 4 * n_words > len(data):
            raise LatentStreamError("rANS stream is truncated")
        words = np.frombuffer(data, dtype="<u4", count=n_words, offset=4).astype(np.uint32)
        groups = _Groups(indexes)
        # Each group goes to its positions as soon as it is decoded (a 100-megapixel photo's
        # groups would hold another 300 MB). Escaped symbols are marked in place and filled in
        # once their count, and so the varints' length, is known; the varints come in group
        # order, positions ascending within a group.
        symbols = np.empty(len(indexes), dtype=np.int32)
        escaped = np.zeros(len(indexes), dtype=bool)
        try:
            coder = constriction.stream.stack.AnsCoder(words)
            for n, (k, count) in enumerate(zip(groups.present, groups.counts)):
                group = coder.decode(_model(tables, k), int(count)).astype(np.int32, copy=False)
                in_group = groups.where(n)
                escapes = group == tables.lengths[k] - 2
                if escapes.any():
                    escaped[in_group] = escapes
                group += tables.offsets[k]
                symbols[in_group] = group
            leftover = not coder.is_empty()
        except (ValueError, RuntimeError, AssertionError) as e:
            raise LatentStreamError(f"rANS stream does not decode: {e}") from e
        if leftover:  # constriction decodes garbage without complaint; a valid stream ends exactly
            raise LatentStreamError("rANS stream does not match its symbol count")
        at = np.flatnonzero(escaped)
        at = at[np.argsort(indexes[at], kind="stable")]  # group order
        symbols[at] = decode_varints(data[4 + 4 * n_words :], len(at))
        return symbols
