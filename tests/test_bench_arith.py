"""The per-symbol arithmetic coder the bench times against rANS: exact, close to rANS in bytes, clean on damage."""

from __future__ import annotations

import numpy as np
import pytest

from imgarc.coders import CODERS, CdfTables, get_coder
from imgarc.coders.arith import ArithmeticCoder, RangeDecoder, RangeEncoder
from imgarc.errors import LatentStreamError
from tests.test_coders import gaussian_tables


@pytest.fixture(scope="module")
def latents():
    rng = np.random.default_rng(11)
    scales = np.exp(np.linspace(np.log(0.15), np.log(30), 16))
    tables = gaussian_tables(scales)
    indexes = rng.integers(0, len(scales), 30000).astype(np.int32)
    symbols = np.round(rng.normal(0, scales[indexes])).astype(np.int32)
    return symbols, indexes, tables


def test_round_trip_exact_escapes_and_extremes_included(latents):
    symbols, indexes, tables = latents
    s = symbols.copy()
    s[[0, 7, 99, 1000, 1001, 2000]] = [4000, -70000, 300000, 2**31 - 1, -(2**31), 0]
    coder = ArithmeticCoder()
    np.testing.assert_array_equal(coder.decode(coder.encode(s, indexes, tables), indexes, tables), s)


def test_bytes_within_one_percent_of_rans_and_of_the_ideal(latents):
    symbols, indexes, tables = latents
    arith = len(ArithmeticCoder().encode(symbols, indexes, tables))
    rans = len(get_coder("rans").encode(symbols, indexes, tables))
    ideal_bits = 0.0
    for k in range(tables.count):
        freq = tables.frequencies(k)
        v = symbols[indexes == k] - tables.offsets[k]
        assert ((v >= 0) & (v < len(freq) - 1)).all()  # no escapes in this sample
        ideal_bits += -np.log2(freq[v] / 65536).sum()
    assert abs(arith / rans - 1) < 0.01
    assert ideal_bits / 8 <= arith < ideal_bits / 8 * 1.005 + 8


def test_empty_and_single_symbol(latents):
    _, _, tables = latents
    coder = ArithmeticCoder()
    empty = np.zeros(0, np.int32)
    assert coder.decode(coder.encode(empty, empty, tables), empty, tables).size == 0
    one, idx = np.array([-3], np.int32), np.array([5], np.int32)
    np.testing.assert_array_equal(coder.decode(coder.encode(one, idx, tables), idx, tables), one)


def test_symbols_are_coded_in_their_own_order_with_their_own_tables(latents):
    """Not grouped by table (that is the vectorized coders' trick): the same symbols in another
    order with their indexes give another stream that decodes to that order."""
    symbols, indexes, tables = latents
    order = np.random.default_rng(3).permutation(len(symbols))
    coder = ArithmeticCoder()
    a = coder.encode(symbols, indexes, tables)
    b = coder.encode(symbols[order], indexes[order], tables)
    assert a != b
    np.testing.assert_array_equal(coder.decode(b, indexes[order], tables), symbols[order])


def test_carries_and_long_pending_runs_round_trip():
    """Intervals at the very top of the range, many in a row, push `low` against 2**32: the
    carry has to ripple through a run of pending 0xFF bytes."""
    rng = np.random.default_rng(5)
    cdf = list(range(0, (1 << 16) + 1))  # 65536 symbols, one frequency each
    seq = [65535] * 3000 + rng.integers(0, 65536, 3000).tolist() + [65535, 0] * 500 + [32768] * 100
    enc = RangeEncoder()
    for s in seq:
        enc.encode(cdf[s], 1)
    data = enc.finish()
    dec = RangeDecoder(data)
    assert [dec.decode(cdf) for s in seq] == seq and dec.at_end()
    assert b"\xff\xff\xff" in data  # the run of 0xFF bytes the carry logic has to hold back happened


def test_skewed_tables_round_trip():
    """Tables with probabilities of 1/65536 next to near-certain symbols, every kind of interval."""
    lengths = np.array([3, 5, 4], np.int32)
    cdfs = np.zeros((3, 5), np.int32)
    cdfs[0, :3] = [0, 65535, 65536]
    cdfs[1, :5] = [0, 1, 2, 65534, 65536]
    cdfs[2, :4] = [0, 30000, 65535, 65536]
    tables = CdfTables(cdfs, lengths, np.array([0, -1, 5], np.int32))
    rng = np.random.default_rng(9)
    indexes = rng.integers(0, 3, 5000).astype(np.int32)
    symbols = (tables.offsets[indexes] + rng.integers(-2, 4, 5000)).astype(np.int32)
    coder = ArithmeticCoder()
    np.testing.assert_array_equal(coder.decode(coder.encode(symbols, indexes, tables), indexes, tables), symbols)


def test_damaged_streams_are_clean_errors(latents):
    symbols, indexes, tables = latents
    coder = ArithmeticCoder()
    stream = coder.encode(symbols[:2000], indexes[:2000], tables)
    for bad in (b"", stream[:4], b"\x01" + stream[1:], stream[: len(stream) // 2], stream + b"\x00"):
        with pytest.raises(LatentStreamError):
            coder.decode(bad, indexes[:2000], tables)
    with pytest.raises(LatentStreamError):
        coder.decode(stream, indexes[:1000], tables)  # fewer symbols than coded: bytes left over


def test_garbage_never_hangs_or_crashes(latents):
    """Random bytes either decode to some symbols or fail cleanly; the escape prefix is bounded."""
    _, indexes, tables = latents
    rng = np.random.default_rng(1)
    coder = ArithmeticCoder()
    for _ in range(20):
        junk = b"\x00" + rng.integers(0, 256, 200, dtype=np.uint8).tobytes()
        try:
            coder.decode(junk, indexes[:300], tables)
        except LatentStreamError:
            pass
    zeros = b"\x00" * 400  # decodes as the first symbol of each table, and as endless gamma zeros after an escape
    try:
        coder.decode(zeros, indexes[:300], tables)
    except LatentStreamError:
        pass


def test_not_an_archive_coder():
    assert ArithmeticCoder.name == "arith" and "arith" not in CODERS
