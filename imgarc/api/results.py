"""What the front door hands back: typed results of compress, extract, salvage, list and verify."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

from imgarc.archive import EntryHeader

# progress(done, total, label): called after each entry.
Progress = Callable[[int, int, str], None]


class EntryKind(str, enum.Enum):
    """How an entry is kept. A str enum: it compares equal to its value ("image", "stored")."""

    PHOTO = "image"  # coded by the learned codec
    STORED = "stored"  # byte-exact


@dataclass
class Timings:
    """Seconds spent in the networks (g_a/h_a/h_s/g_s) and in latent entropy coding."""

    model: float = 0.0
    coder: float = 0.0

    def add(self, other: Timings) -> None:
        self.model += other.model
        self.coder += other.coder


@dataclass
class EntryResult:
    path: str
    kind: EntryKind
    original_bytes: int
    archived_bytes: int  # payload bytes in the archive
    pixels: int = 0  # coded photos only
    note: str | None = None

    @property
    def bpp(self) -> float | None:
        return self.archived_bytes * 8 / self.pixels if self.pixels else None


class Damaged(NamedTuple):
    """An entry (or byte range) that could not be read or extracted, and what is wrong with it."""

    name: str
    detail: str


class LeftOut(NamedTuple):
    """A source file (or folder) compress could not read, so it is not in the archive."""

    path: str
    reason: str


@dataclass
class CompressSummary:
    archive: Path
    archive_bytes: int
    entries: list[EntryResult]
    warnings: list[str]
    seconds: float
    seconds_model: float = 0.0  # g_a/h_a/h_s
    seconds_coder: float = 0.0  # latent entropy coding
    left_out: list[LeftOut] = field(default_factory=list)  # unreadable: not in the archive


@dataclass
class ExtractSummary:
    entries: list[EntryResult]
    seconds: float
    seconds_model: float = 0.0
    seconds_coder: float = 0.0


@dataclass
class SalvageSummary:
    entries: list[EntryResult]  # extracted, byte-identical to what an undamaged archive gives
    damaged: list[Damaged]  # each one not extracted
    warnings: list[str]  # damage that cost no entry (a damaged footer or index)
    index_rebuilt: bool  # the index was unusable: entries were found by scanning for entry headers
    seconds: float


@dataclass
class EntryListing:
    index: int
    header: EntryHeader | None
    error: str | None = None  # set when the entry header itself is damaged


@dataclass
class VerifyReport:
    checked: int
    damaged: list[Damaged] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.damaged
