"""One line per entry for `imgarc list`: how it is kept and why."""

from __future__ import annotations

from imgarc.archive import KIND_IMAGE
from imgarc.photo import STORAGE_NAMES


def _size(n: int) -> str:
    return f"{n} B" if n < 1000 else f"{n / 1000:.1f} KB"


def describe_entry(h) -> str:
    """`h` is an EntryHeader: coded photos name format, mode, size and what metadata rides along;
    stored entries name the method and the reason they were not coded."""
    if h.kind == KIND_IMAGE:
        kept = [name for name, value in (("EXIF", h.exif), ("ICC", h.icc_profile), ("XMP", h.xmp)) if value]
        if h.alpha is not None:
            kept.append(f"alpha plane ({_size(len(h.alpha))} lossless)")
        line = f"coded: {h.source_format} {h.color_mode} {h.width}x{h.height}, q{h.quality}, {h.coder}, {h.model_id}"
        return line + (f"; kept: {', '.join(kept)}" if kept else "")
    how = STORAGE_NAMES.get(h.storage, f"storage method {h.storage}")
    return f"byte-exact, {how}" + (f": {h.note}" if h.note else "")
