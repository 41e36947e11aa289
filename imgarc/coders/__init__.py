"""Latent coders: integer symbols + per-symbol table indexes + CDF tables <-> bytes.

They know nothing of torch models; the codec hands them symbols, indexes and tables.
"""

from imgarc.coders.base import CODER_NAMES, LatentCoder, get_coder
from imgarc.coders.tables import CdfTables

__all__ = ["CODER_NAMES", "CdfTables", "LatentCoder", "get_coder"]
