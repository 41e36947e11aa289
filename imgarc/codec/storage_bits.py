"""How many bits int8 storage gives the weights of each network (`imgarc optimize --storage-bits`).

Narrower weights are the same int8 arrays with values within ±(2^(bits−1) − 1), which zip packs
tighter; nothing that reads them changes, so a file may give each network its own width. The
networks differ in what a bit buys: g_s's weights show in every pixel (the default stored in
6 bits lost 0.56 dB at q95), the integer h_s's only in rate (6 bits: +0.12 %), and h_s holds
most of a pruned model's parameters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from imgarc.errors import UsageError

STORAGE_BITS = range(5, 9)


def bits_limit(bits: int) -> int:
    """The symmetric limit of `bits`-bit weights: 127 for 8, 31 for 6."""
    return (1 << (bits - 1)) - 1


@dataclass(frozen=True)
class StorageBits:
    """The stored width of each network's convolution weights (h_s: its integer network's)."""

    g_a: int = 8
    h_a: int = 8
    g_s: int = 8
    h_s: int = 8

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) not in STORAGE_BITS:
                raise ValueError(f"{f.name} weights of {getattr(self, f.name)} bits "
                                 f"(only {STORAGE_BITS.start}–{STORAGE_BITS.stop - 1})")

    @classmethod
    def uniform(cls, bits: int) -> StorageBits:
        return cls(bits, bits, bits, bits)

    @property
    def is_uniform(self) -> bool:
        return len(set(asdict(self).values())) == 1

    def of(self, parameter: str) -> int:
        """The width of parameter `parameter` (a state-dict name such as "g_s.2.weight")."""
        return getattr(self, parameter.split(".", 1)[0])

    def __str__(self) -> str:
        """As `--storage-bits` takes it: "6", or "g_a=7,h_a=5,g_s=8,h_s=5"."""
        if self.is_uniform:
            return str(self.g_a)
        return ",".join(f"{n}={bits}" for n, bits in asdict(self).items())

    @classmethod
    def parse(cls, text: str) -> StorageBits:
        """`--storage-bits`: one width for every network ("6"), or some networks' widths and one
        for the rest ("g_s=8,g_a=7,5"; networks not named and no bare width: 8)."""
        named: dict[str, int] = {}
        rest = 8
        try:
            for part in (p.strip() for p in text.split(",")):
                network, equals, value = part.rpartition("=")
                if not equals:
                    rest = int(value)
                elif network in NETWORKS:
                    named[network] = int(value)
                else:
                    raise UsageError(f"--storage-bits names {network!r}: the networks are {', '.join(NETWORKS)}")
            return cls(**{n: named.get(n, rest) for n in NETWORKS})
        except ValueError:
            raise UsageError(f"--storage-bits must be {STORAGE_BITS.start}–{STORAGE_BITS.stop - 1} "
                             f"(one width, or e.g. g_s=8,6), not {text!r}") from None

    def to_meta(self) -> int | dict[str, int]:
        """As a weights file's meta records it: one width as a number (as files before
        per-network widths did), else {network: width}."""
        return self.g_a if self.is_uniform else asdict(self)

    @classmethod
    def from_meta(cls, value: int | dict[str, int]) -> StorageBits:
        """Raises ValueError for widths outside 5–8 or a record of another shape."""
        if isinstance(value, dict):
            if set(value) - set(NETWORKS):
                raise ValueError(f"storage widths for unknown networks {sorted(set(value) - set(NETWORKS))}")
            return cls(**{n: int(value.get(n, 8)) for n in NETWORKS})
        return cls.uniform(int(value))


NETWORKS = tuple(f.name for f in fields(StorageBits))  # g_a, h_a, g_s, h_s: what --storage-bits may name
