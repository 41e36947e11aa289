"""Networks run tile by tile with a halo give the one-piece result (imgarc.codec.tiles)."""

from __future__ import annotations

import numpy as np
import pytest

from imgarc.codec import image_codec
from imgarc.codec.registry import load_codec
from imgarc.codec.tiles import TileGrid, for_each_tile, run_tiled, tile_layout
from imgarc.runtime import Runtime
from tests.conftest import noise_rgb


def test_spans_cover_the_input_once_and_read_within_it():
    grid = TileGrid(tile=10, halo=3, align=1, scale=1)
    spans = list(grid.spans(25))
    assert [(a, b) for a, b, _, _ in spans] == [(0, 9), (9, 18), (18, 25)]  # as even as can be
    assert [(r0, r1) for _, _, r0, r1 in spans] == [(0, 12), (6, 21), (15, 25)]
    assert grid.fits_whole(16, 16) and not grid.fits_whole(17, 16)
    aligned = TileGrid(tile=512, halo=32, align=16, scale=1 / 16)
    assert [(a, b) for a, b, _, _ in aligned.spans(1200)] == [(0, 400), (400, 800), (800, 1200)]
    assert all(a % 16 == 0 for a, _, _, _ in aligned.spans(1030))


def test_tile_centres_cover_the_output_once_from_what_each_tile_read():
    grid = TileGrid(tile=4, halo=2, align=1, scale=4)
    tiles = tile_layout((9, 11), grid)
    covered = np.zeros((36, 44), int)
    for tile in tiles:
        covered[tile.rows, tile.cols] += 1
        read_h = tile.read_rows.stop - tile.read_rows.start
        kept = np.arange(4 * read_h)[tile.keep_rows]  # output rows of what the tile read
        assert tile.read_rows.start * 4 + kept[0] == tile.rows.start and len(kept) == tile.rows.stop - tile.rows.start
    assert len(tiles) == 9 and (covered == 1).all()
    whole = tile_layout((5, 6), grid)
    assert len(whole) == 1 and (whole[0].rows, whole[0].cols) == (slice(0, 20), slice(0, 24))


def test_for_each_tile_writes_every_centre_side_by_side():
    grid = TileGrid(tile=4, halo=2, align=1, scale=2)
    x = np.arange(12 * 10, dtype=np.float64).reshape(12, 10)
    out = np.full((24, 20), np.nan)

    def work(tile):
        part = x[tile.read_rows, tile.read_cols].repeat(2, axis=0).repeat(2, axis=1)
        out[tile.rows, tile.cols] = part[tile.keep_rows, tile.keep_cols]

    for_each_tile(work, (12, 10), grid, workers=2)
    np.testing.assert_array_equal(out, x.repeat(2, axis=0).repeat(2, axis=1))


def test_each_tile_is_computed_on_its_part_and_only_its_centre_kept():
    grid = TileGrid(tile=4, halo=2, align=1, scale=2)
    x = np.arange(2 * 12 * 10, dtype=np.float32).reshape(1, 2, 12, 10)
    upsample = lambda a: a.repeat(2, axis=2).repeat(2, axis=3)  # noqa: E731 - pointwise: tiles are exact
    reads = []

    def read(rows, cols):
        reads.append((rows, cols))
        return x[:, :, rows, cols]

    out = run_tiled(upsample, read, (12, 10), grid, workers=2)
    np.testing.assert_array_equal(out, upsample(x))
    assert len(reads) == 9 and max(r.stop - r.start for r, _ in reads) <= 4 + 2 * 2


@pytest.mark.parametrize("runtime", list(Runtime))
def test_tiled_codec_matches_one_piece(tiny_model, monkeypatch, runtime):
    """The tiny model's g_a and g_s in small tiles (halos as the shipped grids') against one piece."""
    monkeypatch.setenv("IMGARC_RUNTIME", runtime.value)
    codec = load_codec(tiny_model)
    rgb = noise_rgb(320, 448, 3)
    whole = codec.transform(rgb)
    monkeypatch.setattr(image_codec, "ANALYSIS_TILES", TileGrid(tile=128, halo=32, align=16, scale=1 / 16))
    tiled = codec.transform(rgb)
    np.testing.assert_allclose(tiled.y, whole.y, atol=1e-4)
    np.testing.assert_allclose(tiled.z, whole.z, atol=1e-4)
    code = codec.quantize(whole, None)
    one_piece = codec.synthesize(code, 320, 448)
    monkeypatch.setattr(image_codec, "SYNTHESIS_TILES", TileGrid(tile=8, halo=2, align=1, scale=16))
    in_tiles = codec.synthesize(code, 320, 448)
    gap = np.abs(in_tiles.astype(int) - one_piece.astype(int))
    assert gap.max() <= 1 and (gap > 0).mean() < 1e-3


def test_integer_hyper_synthesis_in_tiles_is_exactly_one_piece(tiny_model, monkeypatch):
    codec = load_codec(tiny_model)
    z = np.random.default_rng(1).integers(-6, 7, (codec.architecture.N, 20, 28)).astype(np.int32)
    whole_indexes, whole_means = codec.y_indexes_and_means(z)
    monkeypatch.setattr(image_codec, "HYPER_SYNTHESIS_TILES", TileGrid(tile=4, halo=2, align=1, scale=4))
    indexes, means = codec.y_indexes_and_means(z)
    np.testing.assert_array_equal(indexes, whole_indexes)
    np.testing.assert_array_equal(means, whole_means)
    assert indexes.dtype == np.uint8 and means.dtype == np.float32


def test_hyper_analysis_in_tiles_matches_one_piece(tiny_model, monkeypatch):
    codec = load_codec(tiny_model)
    rgb = noise_rgb(512, 640, 5)
    whole = codec.transform(rgb)
    monkeypatch.setattr(image_codec, "HYPER_ANALYSIS_TILES", TileGrid(tile=8, halo=8, align=4, scale=1 / 4))
    np.testing.assert_allclose(codec.transform(rgb).z, whole.z, atol=1e-4)
