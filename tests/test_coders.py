"""Every coder round-trips symbols exactly, escapes included, and rejects damaged streams cleanly."""

from __future__ import annotations

import numpy as np
import pytest

from imgarc.coders import CODER_NAMES, CdfTables, get_coder, rans
from imgarc.coders.varint import decode_varints, encode_varints
from imgarc.errors import LatentStreamError, ModelError, UsageError


def gaussian_tables(scales: np.ndarray) -> CdfTables:
    """Small CDF tables built by the same integer rules as the real ones (escape last)."""
    from math import erf, sqrt

    lengths, offsets, cdfs = [], [], []
    for s in scales:
        half = int(np.ceil(6 * s)) + 1
        edges = np.arange(-half, half + 2) - 0.5
        cum = np.array([0.5 * (1 + erf(e / (s * sqrt(2)))) for e in edges])
        pmf = np.append(np.diff(cum), 1e-9)
        freq = np.maximum(1, np.round(pmf / pmf.sum() * ((1 << 16) - len(pmf)))).astype(np.int64)
        freq[np.argmax(freq)] += (1 << 16) - freq.sum()
        cdfs.append(np.concatenate([[0], np.cumsum(freq)]))
        lengths.append(len(freq) + 1)
        offsets.append(-half)
    width = max(lengths)
    table = np.zeros((len(scales), width), dtype=np.int32)
    for k, c in enumerate(cdfs):
        table[k, : len(c)] = c
    return CdfTables(table, np.array(lengths, np.int32), np.array(offsets, np.int32))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    scales = np.exp(np.linspace(np.log(0.2), np.log(20), 12))
    tables = gaussian_tables(scales)
    indexes = rng.integers(0, len(scales), 20000).astype(np.int32)
    symbols = np.round(rng.normal(0, scales[indexes])).astype(np.int32)
    symbols[[3, 50, 900]] = [4000, -70000, 300000]  # far outside every table: escapes
    return symbols, indexes, tables


@pytest.mark.parametrize("name", CODER_NAMES)
def test_round_trip_exact(name, data):
    symbols, indexes, tables = data
    coder = get_coder(name)
    stream = coder.encode(symbols, indexes, tables)
    np.testing.assert_array_equal(coder.decode(stream, indexes, tables), symbols)


@pytest.mark.parametrize("name", CODER_NAMES)
def test_empty_input(name, data):
    _, _, tables = data
    empty = np.zeros(0, np.int32)
    coder = get_coder(name)
    assert coder.decode(coder.encode(empty, empty, tables), empty, tables).size == 0


def test_rans_is_close_to_the_ideal_code_length(data):
    symbols, indexes, tables = data
    ideal = 0.0
    for k in range(tables.count):
        freq = tables.frequencies(k)
        sel = symbols[indexes == k] - tables.offsets[k]
        inside = (sel >= 0) & (sel < len(freq) - 1)
        ideal += -np.log2(freq[sel[inside]] / 65536).sum() + (~inside).sum() * -np.log2(freq[-1] / 65536)
    size_bits = len(get_coder("rans").encode(symbols, indexes, tables)) * 8
    assert ideal < size_bits < ideal * 1.01 + 200  # the 3 escapes cost a few varint bytes


@pytest.mark.parametrize("name", ["rans", "lzma"])
def test_damaged_stream_is_a_clean_error(name, data):
    symbols, indexes, tables = data
    coder = get_coder(name)
    stream = coder.encode(symbols, indexes, tables)
    for bad in (stream[:3], stream[: len(stream) // 2], b""):
        with pytest.raises(LatentStreamError):
            coder.decode(bad, indexes, tables)


def test_lzma_refuses_a_stream_with_too_many_symbols(data):
    symbols, indexes, tables = data
    coder = get_coder("lzma")
    stream = coder.encode(symbols, indexes, tables)
    with pytest.raises(LatentStreamError):
        coder.decode(stream, indexes[:100], tables)  # bounded: never inflates past what is expected


@pytest.mark.parametrize("name", ["rans", "lzma"])
def test_extreme_values_round_trip(name, data):
    symbols, indexes, tables = data
    extreme = symbols.copy()
    extreme[[1, 2]] = [2**30, -(2**31)]
    coder = get_coder(name)
    np.testing.assert_array_equal(coder.decode(coder.encode(extreme, indexes, tables), indexes, tables), extreme)


def test_reference_coder_refuses_values_it_cannot_code(data):
    symbols, indexes, tables = data
    extreme = symbols.copy()
    extreme[0] = 2**30
    with pytest.raises(LatentStreamError):
        get_coder("ref").encode(extreme, indexes, tables)


def test_varints_round_trip():
    values = np.array([0, 1, -1, 63, -64, 2**31 - 1, -(2**31)], dtype=np.int64)
    assert decode_varints(encode_varints(values), len(values)).tolist() == values.tolist()
    with pytest.raises(LatentStreamError):
        decode_varints(b"\x80\x80", 1)


def test_unknown_coder_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown coder"):
        get_coder("zip")


def test_invalid_tables_are_refused(data):
    _, _, tables = data
    bad = tables.cdfs.copy()
    bad[0, 2] = bad[0, 1]  # a zero-probability symbol: not a valid CDF
    with pytest.raises(ModelError):
        CdfTables(bad, tables.lengths, tables.offsets)


def test_digest_changes_with_any_entry(data):
    _, _, tables = data
    cdfs = tables.cdfs.copy()
    k = tables.count - 1  # widest table: its middle CDF steps are large, so +1 keeps it valid
    cdfs[k, tables.lengths[k] // 2] += 1
    assert CdfTables(cdfs, tables.lengths, tables.offsets).digest() != tables.digest()
    offsets = tables.offsets.copy()
    offsets[0] += 1
    assert CdfTables(tables.cdfs, tables.lengths, offsets).digest() != tables.digest()


@pytest.mark.parametrize("sort_latents", [0, 1 << 30])
def test_rans_groups_the_same_way_by_sorting_or_by_masks(data, monkeypatch, sort_latents):
    """Tables are counted a chunk at a time and groups found by sorting (small photos) or by
    masks (large ones): the stream and the round trip depend on neither, escapes in several
    groups included."""
    symbols, indexes, tables = data
    whole = get_coder("rans").encode(symbols, indexes, tables)
    monkeypatch.setattr(rans, "COUNT_CHUNK", 7)
    monkeypatch.setattr(rans, "SORT_LATENTS", sort_latents)
    assert get_coder("rans").encode(symbols, indexes, tables) == whole
    np.testing.assert_array_equal(get_coder("rans").decode(whole, indexes, tables), symbols)
    np.testing.assert_array_equal(get_coder("rans").decode(whole, indexes.astype(np.uint8), tables), symbols)
