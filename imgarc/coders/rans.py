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


class RansCoder(LatentCoder):
    name = "rans"

    # Symbols are coded grouped by table (a fixed model per group), in position order within a
    # group, groups in table order. Each group is gathered on its own through a boolean mask
    # (one byte per symbol; positions would be eight) so that memory stays a few bytes per
    # symbol: a 100-megapixel photo has 75 M latents.

    def encode(self, symbols: np.ndarray, indexes: np.ndarray, tables: CdfTables) -> bytes:
        import constriction

        coder = constriction.stream.stack.AnsCoder()
        escaped_symbols: list[np.ndarray] = []
        # A stack coder decodes in reverse order of encoding: encode the last group first.
        for k in _tables_used(indexes)[0][::-1]:
            values = symbols[indexes == k].astype(np.int32, copy=False) - tables.offsets[k]
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
        present, counts = _tables_used(indexes)
        # Each group goes to its positions as soon as it is decoded (a 100-megapixel photo's
        # groups would hold another 300 MB). Escaped symbols are marked in place and filled in
        # once their count, and so the varints' length, is known; the varints come in group
        # order, positions ascending within a group.
        symbols = np.empty(len(indexes), dtype=np.int32)
        escaped = np.zeros(len(indexes), dtype=bool)
        try:
            coder = constriction.stream.stack.AnsCoder(words)
            for k, count in zip(present, counts):
                group = coder.decode(_model(tables, k), int(count)).astype(np.int32, copy=False)
                in_group = indexes == k
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
