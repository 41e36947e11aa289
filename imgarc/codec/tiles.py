"""Running a fully convolutional network tile by tile, with a halo, so memory is bounded by the
tile and not the photo, and tiles can run side by side on every core.

Each tile is computed with a margin (the halo) at least as wide as the network's receptive
field, and only its centre is kept. The convolutions between tiles see the same inputs as in
one piece, so the result is the one-piece result up to float summation order (measured in
benchmarks/tiles.py); no seam, no rate cost, and nothing in the file format depends on it.
Pointwise layers (GDN/IGDN) do not widen the receptive field.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

Network = Callable[[np.ndarray], np.ndarray]  # [1, C, h, w] -> [1, C', h·scale, w·scale]
Reader = Callable[[slice, slice], np.ndarray]  # (rows, cols) of the input -> [1, C, h, w] float32
Finish = Callable[[np.ndarray], np.ndarray]  # a part of the output -> what is kept of it


@dataclass(frozen=True)
class TileGrid:
    """How to cut an input of one network: tiles of at most `tile` units with a `halo` of units
    around them, both multiples of `align` (the network's total stride, so every tile samples the
    same phase as the whole image); along each axis the tiles are as even as `align` allows.
    `scale` is output units per input unit (1/16 for g_a, 16 for g_s). Inputs of at most
    `whole` units (h·w) run in one piece: for a photo that small, a tiled run's halos cost more
    time than its memory saves."""

    tile: int
    halo: int
    align: int
    scale: float
    whole: int = 0

    def fits_whole(self, h: int, w: int) -> bool:
        return h * w <= self.whole or (h <= self.tile + 2 * self.halo and w <= self.tile + 2 * self.halo)

    def spans(self, n: int) -> Iterator[tuple[int, int, int, int]]:
        """(start, stop) of each tile's kept part and (start, stop) of what it reads, along one axis:
        ceil(n / tile) tiles of (nearly) equal length, so no thin last tile pays a whole halo."""
        count = -(-n // self.tile)
        step = -(-n // (count * self.align)) * self.align  # the even share, rounded up to `align`
        for start in range(0, n, step):
            stop = min(start + step, n)
            yield start, stop, max(0, start - self.halo), min(n, stop + self.halo)

    def tile_inputs(self, h: int, w: int) -> int:
        """Input positions (h·w) of the largest tile with its halo: what bounds memory."""
        longest = [max(read_stop - read_start for _, _, read_start, read_stop in self.spans(n)) for n in (h, w)]
        return longest[0] * longest[1]


@dataclass(frozen=True)
class Tile:
    """One tile of an input: what it reads (with its halo) and where its kept centre goes."""

    read_rows: slice  # of the input
    read_cols: slice
    keep_rows: slice  # of the tile's output: its centre, without the halo
    keep_cols: slice
    rows: slice  # of the whole output, where the centre goes
    cols: slice


def tile_layout(size: tuple[int, int], grid: TileGrid) -> list[Tile]:
    """The tiles of an input of `size` (h, w) units, row by row; one for an input that fits whole."""
    h, w = size
    if grid.fits_whole(h, w):
        return [Tile(slice(0, h), slice(0, w), slice(None), slice(None), slice(0, round(h * grid.scale)),
                     slice(0, round(w * grid.scale)))]
    if h % grid.align or w % grid.align:
        raise ValueError(f"input {h}x{w} is not a multiple of {grid.align}")
    s = grid.scale
    return [Tile(slice(ry0, ry1), slice(rx0, rx1),
                 slice(round((y0 - ry0) * s), round((y1 - ry0) * s)), slice(round((x0 - rx0) * s), round((x1 - rx0) * s)),
                 slice(round(y0 * s), round(y1 * s)), slice(round(x0 * s), round(x1 * s)))
            for y0, y1, ry0, ry1 in grid.spans(h) for x0, x1, rx0, rx1 in grid.spans(w)]


def tiles_of(network: Network, read: Reader, size: tuple[int, int], grid: TileGrid, workers: int = 1,
             finish: Finish = lambda a: a) -> Iterator[tuple[slice, slice, np.ndarray]]:
    """(rows, cols, part) for each tile, in order: `part` is finish(network(input)) of the tile
    without its halo, [1, C', h, w], and (rows, cols) where it goes in the output. An input that
    fits whole is one part. `workers` tiles are computed at once (`network` must be thread-safe)."""
    tiles = tile_layout(size, grid)

    def run(tile: Tile) -> np.ndarray:
        return finish(network(read(tile.read_rows, tile.read_cols))[:, :, tile.keep_rows, tile.keep_cols])

    if len(tiles) == 1:  # on this thread
        yield tiles[0].rows, tiles[0].cols, run(tiles[0])
        return
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for tile, centre in zip(tiles, pool.map(run, tiles)):
            yield tile.rows, tile.cols, centre


def for_each_tile(work: Callable[[Tile], None], size: tuple[int, int], grid: TileGrid, workers: int = 1) -> None:
    """work(tile) for every tile of an input of `size`, `workers` at once: for work that writes
    each tile's centre into its own part of one output (which makes them safe side by side).
    An input that fits whole is worked on this thread."""
    tiles = tile_layout(size, grid)
    if len(tiles) == 1:
        work(tiles[0])
        return
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for _ in pool.map(work, tiles):
            pass


def run_tiled(network: Network, read: Reader, size: tuple[int, int], grid: TileGrid, workers: int = 1,
              finish: Finish = lambda a: a, channels_last: bool = False) -> np.ndarray:
    """finish(network(input)) for an input of `size` (h, w) units, computed tile by tile
    (tiles_of). `read(rows, cols)` gives a part of the input as [1, C, h, w] float32, so the
    whole input never needs to exist as floats; `finish` turns a part of the output into what is
    kept (e.g. uint8 pixels). The result is [1, C, H, W], or with `channels_last` [H, W, C]
    (pixels as images hold them, no extra copy)."""
    h, w = size
    if grid.fits_whole(h, w):  # the network's own output, not a copy of it
        out = finish(network(read(slice(0, h), slice(0, w))))
        return np.ascontiguousarray(out[0].transpose(1, 2, 0)) if channels_last else out
    result: np.ndarray | None = None
    for rows, cols, centre in tiles_of(network, read, size, grid, workers, finish):
        if result is None:
            c, oh, ow = centre.shape[1], round(h * grid.scale), round(w * grid.scale)
            result = np.empty((oh, ow, c) if channels_last else (1, c, oh, ow), centre.dtype)
        if channels_last:
            result[rows, cols] = centre[0].transpose(1, 2, 0)
        else:
            result[:, :, rows, cols] = centre
    assert result is not None
    return result
