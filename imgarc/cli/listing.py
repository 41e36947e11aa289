"""`imgarc list ARCHIVE`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from imgarc import api
from imgarc.archive import KIND_IMAGE
from imgarc.cli.console import console
from imgarc.units import human_bytes as human
from imgarc.errors import ArchiveError


def list_(archive: Path = typer.Argument(..., help="Archive to list.")) -> None:
    """List the entries of ARCHIVE: how each is stored, its size and bits per pixel (exit 1 if any is damaged)."""
    entries = api.list_archive(archive)
    table = Table(box=None, header_style="bold")
    for col, justify in (("entry", "left"), ("kind", "left"), ("original", "right"), ("archived", "right"),
                         ("bpp", "right"), ("details", "left")):
        table.add_column(col, justify=justify)
    original = archived = pixels = image_bytes = damaged = 0
    for e in entries:
        h = e.header
        if h is None:
            damaged += 1
            table.add_row(f"#{e.index + 1}", "[red]damaged", "", "", "", e.error or "")
            continue
        original += h.original_size
        archived += h.payload_size
        if h.kind == KIND_IMAGE:
            px = max(h.width * h.height, 1)  # a damaged header may say 0; never divide by it
            pixels += px
            image_bytes += h.payload_size
            table.add_row(h.path, "photo", human(h.original_size), human(h.payload_size),
                          f"{h.payload_size * 8 / px:.3f}", escape(api.describe_entry(h)))
        else:
            table.add_row(h.path, "stored", human(h.original_size), human(h.payload_size), "", escape(api.describe_entry(h)))
    out = console()
    out.print(table)
    total = f"{len(entries)} entries, {human(original)} -> {human(archived)} of entry data"
    if pixels:
        total += f"; photos {image_bytes * 8 / pixels:.3f} bpp"
    if damaged:
        total += f"; {damaged} damaged"
    out.print(total)
    if damaged:
        raise ArchiveError(f"{damaged} of {len(entries)} entries in {archive} are damaged; {api.SALVAGE_HINT}")
