"""`imgarc verify ARCHIVE`."""

from __future__ import annotations

from pathlib import Path

import typer

from imgarc import api
from imgarc.cli.console import console, progress_bar
from imgarc.errors import ArchiveError


def verify(
    archive: Path = typer.Argument(..., help="Archive to check."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Check every entry of ARCHIVE: CRCs, and that all data (photo latents included) decodes."""
    with progress_bar("verifying", progress) as bar:
        report = api.verify_archive(archive, progress=bar)
    if report.ok:
        console().print(f"{archive}: all {report.checked} entries OK")
        return
    for name, detail in report.damaged:
        console(stderr=True).print(f"[red]damaged:[/] {name}: {detail}")
    raise ArchiveError(f"{len(report.damaged)} of {report.checked} entries in {archive} are damaged")
