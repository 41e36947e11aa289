"""`--storage-bits`: one width for every network, or each network its own."""

from __future__ import annotations

import pytest

from imgarc.codec.storage_bits import StorageBits
from imgarc.errors import UsageError


@pytest.mark.parametrize("text, expected", [
    ("6", StorageBits(6, 6, 6, 6)),
    ("g_s=8", StorageBits(8, 8, 8, 8)),
    ("g_s=8,g_a=7,5", StorageBits(g_a=7, h_a=5, g_s=8, h_s=5)),
    (" h_s=5 , 6 ", StorageBits(g_a=6, h_a=6, g_s=6, h_s=5)),
])
def test_parse_reads_one_width_or_each_networks(text, expected):
    assert StorageBits.parse(text) == expected


@pytest.mark.parametrize("bits", [StorageBits.uniform(6), StorageBits(g_a=7, h_a=5, g_s=8, h_s=5), StorageBits()])
def test_text_and_meta_round_trip(bits):
    assert StorageBits.parse(str(bits)) == bits
    assert StorageBits.from_meta(bits.to_meta()) == bits


def test_one_width_is_recorded_as_a_number_as_older_files_hold_it():
    assert StorageBits.uniform(6).to_meta() == 6 and str(StorageBits.uniform(6)) == "6"
    assert StorageBits(g_s=8, h_s=5).to_meta() == {"g_a": 8, "h_a": 8, "g_s": 8, "h_s": 5}


def test_of_gives_a_parameters_networks_width():
    bits = StorageBits(g_a=7, h_a=5, g_s=8, h_s=6)
    assert [bits.of(n) for n in ("g_a.0.weight", "h_a.2.weight", "g_s.4.weight", "h_s.0.weight")] == [7, 5, 8, 6]


@pytest.mark.parametrize("text, message", [
    ("9", "--storage-bits must be 5–8"),
    ("g_s=4,6", "--storage-bits must be 5–8"),
    ("six", "--storage-bits must be 5–8"),
    ("g_x=8,6", "names 'g_x'"),
])
def test_bad_widths_are_refused_with_the_option_named(text, message):
    with pytest.raises(UsageError, match=message):
        StorageBits.parse(text)


def test_a_record_of_unknown_networks_or_widths_is_refused():
    with pytest.raises(ValueError, match="unknown networks"):
        StorageBits.from_meta({"g_z": 6})
    with pytest.raises(ValueError, match="g_a weights of 4 bits"):
        StorageBits.from_meta(4)
