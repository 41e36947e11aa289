"""`imgarc list ARCHIVE` (a table for people; `--json`, `--csv` for scripts)."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from imgarc import api
from imgarc.archive import KIND_IMAGE
from imgarc.cli.console import console
from imgarc.units import human_bytes as human
from imgarc.errors import ArchiveError, UsageError


def write_out(text: str) -> None:
    """Machine-readable output: UTF-8 whatever the locale, untouched by rich's markup and wrapping."""
    sys.stdout.flush()
    sys.stdout.buffer.write(text.encode("utf-8"))
    sys.stdout.buffer.flush()


def to_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def to_csv(records: list[dict[str, Any]]) -> str:
    """One header row (api.RECORD_KEYS), one row per entry; null is an empty cell, objects are JSON."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(api.RECORD_KEYS)
    for r in records:
        writer.writerow(_cell(r[k]) for k in api.RECORD_KEYS)
    return out.getvalue()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False) if isinstance(value, dict) else value


def list_(
    archive: Path = typer.Argument(..., metavar="ARCHIVE", help="Archive to list."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document: every entry with every header field "
                                 "a script needs (schema: docs/CLI.md)."),
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV: a header row, then one row per entry (the keys of --json)."),
) -> None:
    """List the entries of ARCHIVE: how each is stored, its size and bits per pixel (exit 1 if any is damaged)."""
    if as_json and as_csv:
        raise UsageError("give --json or --csv, not both")
    entries = api.list_archive(archive)
    damaged = sum(e.header is None for e in entries)
    if as_json or as_csv:
        document = api.listing_document(archive, entries)
        write_out(to_json(document) if as_json else to_csv(document["entries"]))
    else:
        _print_table(entries)
    if damaged:
        raise ArchiveError(f"{damaged} of {len(entries)} entries in {archive} are damaged; {api.SALVAGE_HINT}")


def _print_table(entries: list[api.EntryListing]) -> None:
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
            table.add_row(escape(h.path), "photo", human(h.original_size), human(h.payload_size),
                          f"{h.payload_size * 8 / px:.3f}", escape(api.describe_entry(h)))
        else:
            table.add_row(escape(h.path), "stored", human(h.original_size), human(h.payload_size), "", escape(api.describe_entry(h)))
    out = console()
    out.print(table)
    total = f"{len(entries)} entries, {human(original)} -> {human(archived)} of entry data"
    if pixels:
        total += f"; photos {image_bytes * 8 / pixels:.3f} bpp"
    if damaged:
        total += f"; {damaged} damaged"
    out.print(total)
