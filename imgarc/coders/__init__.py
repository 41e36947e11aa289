"""Latent coders: integer symbols + per-symbol table indexes + CDF tables <-> bytes.

They know nothing of torch models; the codec hands them symbols, indexes and tables.
CODERS is the one registry: a new coder is added here and nowhere else.
"""

from imgarc.coders.base import LatentCoder
from imgarc.coders.lzma_pack import LzmaCoder
from imgarc.coders.rans import RansCoder
from imgarc.coders.ref import ReferenceCoder
from imgarc.coders.tables import CdfTables
from imgarc.errors import UsageError

# name -> coder class, in the order they are offered (the first is the default).
CODERS: dict[str, type[LatentCoder]] = {c.name: c for c in (RansCoder, LzmaCoder, ReferenceCoder)}
CODER_NAMES = tuple(CODERS)
DEFAULT_CODER = CODER_NAMES[0]


def get_coder(name: str) -> LatentCoder:
    """The coder registered under `name` (CODER_NAMES)."""
    try:
        return CODERS[name]()
    except KeyError:
        raise UsageError(f"unknown coder {name!r}; choose one of: {', '.join(CODER_NAMES)}") from None


__all__ = ["CODERS", "CODER_NAMES", "DEFAULT_CODER", "CdfTables", "LatentCoder", "get_coder"]
