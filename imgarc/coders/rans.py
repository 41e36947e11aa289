"""Vectorized rANS (constriction's stack ANS coder), one fixed model per table.

Symbols are grouped by table (stable order); each group is coded with one call on a whole
array, so there is no Python loop per symbol. Escaped values (outside a table's range) are
appended as varints after the rANS words. Layout: u32 word count, words (u32 LE), varints.
"""

from __future__ import annotations

import struct

import numpy as np

from imgarc.coders.base import LatentCoder, order_by_table
from imgarc.coders.tables import CdfTables
from imgarc.coders.varint import decode_varints, encode_varints
from imgarc.errors import LatentStreamError


def _model(tables: CdfTables, k: int):
    import constriction

    # The integer frequencies are exact in float64; constriction rescales them to its own
    # fixed point with a deterministic (perfect=False) rule, identically in encoder and decoder.
    return constriction.stream.model.Categorical(tables.frequencies(int(k)).astype(np.float64), perfect=False)


class RansCoder(LatentCoder):
    name = "rans"

    def encode(self, symbols: np.ndarray, indexes: np.ndarray, tables: CdfTables) -> bytes:
        import constriction

        order, present, starts = order_by_table(indexes)
        sorted_symbols = symbols[order].astype(np.int64)
        sorted_indexes = indexes[order]
        values = sorted_symbols - tables.offsets[sorted_indexes]
        escape = tables.lengths[sorted_indexes] - 2
        escaped = (values < 0) | (values >= escape)
        coded = np.where(escaped, escape, values).astype(np.int32)
        ends = np.append(starts[1:], len(coded))
        coder = constriction.stream.stack.AnsCoder()
        # A stack coder decodes in reverse order of encoding: encode the last group first.
        for k, start, end in reversed(list(zip(present, starts, ends))):
            coder.encode_reverse(coded[start:end], _model(tables, k))
        words = coder.get_compressed().astype("<u4")
        return struct.pack("<I", len(words)) + words.tobytes() + encode_varints(sorted_symbols[escaped])

    def decode(self, data: bytes, indexes: np.ndarray, tables: CdfTables) -> np.ndarray:
        import constriction

        if len(data) < 4:
            raise LatentStreamError("rANS stream is truncated")
        (n_words,) = struct.unpack_from("<I", data)
        if 4 + 4 * n_words > len(data):
            raise LatentStreamError("rANS stream is truncated")
        words = np.frombuffer(data, dtype="<u4", count=n_words, offset=4).astype(np.uint32)
        order, present, starts = order_by_table(indexes)
        ends = np.append(starts[1:], len(indexes))
        coded = np.empty(len(indexes), dtype=np.int64)
        try:
            coder = constriction.stream.stack.AnsCoder(words)
            for k, start, end in zip(present, starts, ends):
                coded[start:end] = coder.decode(_model(tables, k), int(end - start))
            leftover = not coder.is_empty()
        except (ValueError, RuntimeError, AssertionError) as e:
            raise LatentStreamError(f"rANS stream does not decode: {e}") from e
        if leftover:  # constriction decodes garbage without complaint; a valid stream ends exactly
            raise LatentStreamError("rANS stream does not match its symbol count")
        sorted_indexes = indexes[order]
        escape = tables.lengths[sorted_indexes] - 2
        escaped = coded == escape
        values = coded + tables.offsets[sorted_indexes]
        values[escaped] = decode_varints(data[4 + 4 * n_words :], int(escaped.sum()))
        symbols = np.empty(len(indexes), dtype=np.int32)
        symbols[order] = values
        return symbols
