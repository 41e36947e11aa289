"""`imgarc show ARCHIVE MEMBER`: one entry's header fields, or (`--stdout`) its decoded file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.markup import escape

from imgarc import api
from imgarc.cli.console import console
from imgarc.cli.listing import to_json, write_out
from imgarc.errors import UsageError


def show(
    archive: Path = typer.Argument(..., metavar="ARCHIVE", help="Archive to read."),
    member: str = typer.Argument(..., metavar="MEMBER", help="The entry: its path as `imgarc list` prints it, or a glob that matches "
                                 "only it."),
    to_stdout: bool = typer.Option(False, "--stdout", help="Write the decoded file's bytes to standard output instead "
                                   "(pipe them into a viewer or redirect them to a file; refused on a terminal). "
                                   "Only this entry's data is read and decoded."),
    as_json: bool = typer.Option(False, "--json", help="Print the entry as one JSON record (the one `list --json` "
                                 "gives it; schema: docs/CLI.md)."),
    image_format: str = typer.Option("keep", "--format", help="With --stdout: a coded photo in its source's format "
                                     "('keep') or as 'png', 'jpeg' or 'webp'. Byte-exact files never change."),
) -> None:
    """Show one entry of ARCHIVE: every header field (sizes, model, quality, metadata) without
    extracting it; or with --stdout its file, decoded, for piping."""
    if to_stdout and as_json:
        raise UsageError("give --stdout or --json, not both")
    if to_stdout:
        if sys.stdout.isatty():
            raise UsageError("--stdout writes the file's bytes, not text: pipe it (| viewer) or redirect it (> file)")
        _, data = api.entry_file_bytes(archive, member, image_format)
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    listing = api.show_entry(archive, member)
    record = api.entry_record(listing)
    if as_json:
        write_out(to_json(record))
        return
    out = console()
    assert listing.header is not None
    out.print(escape(f"{listing.header.path}: {api.describe_entry(listing.header)}"))
    for key in api.RECORD_KEYS:
        value = record[key]
        if value is not None and key != "path":
            text = json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else str(value)
            out.print(escape(f"  {key}: {text}"))
