"""`imgarc verify ARCHIVE` (`--json` for scripts)."""

from __future__ import annotations

from pathlib import Path

import typer

from imgarc import api
from imgarc.cli.console import console, progress_bar
from imgarc.cli.listing import to_json, write_out
from imgarc.errors import ArchiveError


def verify(
    archive: Path = typer.Argument(..., metavar="ARCHIVE", help="Archive to check."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON document (schema: docs/CLI.md); "
                                 "the exit status is the same."),
) -> None:
    """Check every entry of ARCHIVE: CRCs, and that all data (photo latents included) decodes (exit 1 if any is damaged)."""
    with progress_bar("verifying", progress) as bar:
        report = api.verify_archive(archive, progress=bar)
    if as_json:
        write_out(to_json(api.verify_document(archive, report)))
    elif report.ok:
        console().print(f"{archive}: all {report.checked} entries OK")
    else:
        for name, detail in report.damaged:
            console(stderr=True).print(f"[red]damaged:[/] {name}: {detail}")
    if not report.ok:
        raise ArchiveError(f"{len(report.damaged)} of {report.checked} entries in {archive} are damaged")
