"""The one interface every latent coder implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from imgarc.coders.tables import CdfTables


class LatentCoder(ABC):
    """Lossless coding of integer symbols, each with the index of the table it is coded with.

    `symbols` and `indexes` are 1-D int32 arrays of equal length; the decoder is given the same
    `indexes` (it derives them from already-decoded data) and returns the symbols exactly.
    """

    name: str

    @abstractmethod
    def encode(self, symbols: np.ndarray, indexes: np.ndarray, tables: CdfTables) -> bytes: ...

    @abstractmethod
    def decode(self, data: bytes, indexes: np.ndarray, tables: CdfTables) -> np.ndarray: ...


def order_by_table(indexes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stable grouping of symbol positions by table: (order, tables present, group starts).

    Coding symbols grouped by table lets a coder use one fixed model per group (vectorized
    rANS) and puts low-variance symbols next to each other (long zero runs for LZMA).
    """
    order = np.argsort(indexes, kind="stable")
    present, starts = np.unique(indexes[order], return_index=True)
    return order, present, starts
