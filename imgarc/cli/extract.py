"""`imgarc extract ARCHIVE DEST [MEMBER|GLOB ...]` (and `--exclude`, `--salvage`)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from imgarc import api
from imgarc.cli.console import console, progress_bar, sigterm_as_interrupt, warn
from imgarc.errors import ArchiveError
from imgarc.runtime.device import Device, resolve_device


def extract(
    archive: Path = typer.Argument(..., metavar="ARCHIVE", help="Archive to read."),
    dest: Path = typer.Argument(..., metavar="DEST", help="Folder to extract into (created if missing; must be empty unless --force)."),
    members: Optional[List[str]] = typer.Argument(None, metavar="MEMBER|GLOB", show_default=False,
                                                  help="Extract only these entries: paths as `imgarc list` prints them, "
                                                       "a folder (everything under it), or globs ('*' and '?' within a "
                                                       "folder, '**' across folders; quote them). Only their data is read "
                                                       "and decoded. One that matches nothing: exit 1, nothing extracted."),
    exclude: Optional[List[str]] = typer.Option(None, "--exclude", "-x", metavar="GLOB", show_default=False,
                                                help="Leave out entries this path or glob matches (repeatable)."),
    force: bool = typer.Option(False, "--force", "-f", help="Extract into a non-empty folder, replacing files of the same name."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    image_format: str = typer.Option("keep", "--format", help="Format of the coded photos: 'keep' (each in its source's format and "
                                     "name), 'png', 'jpeg' or 'webp' (extension replaced; alpha photos never become JPEG). "
                                     "Byte-exact files never change."),
    device: Device = typer.Option(Device.CPU, "--device", help="Where the synthesis network runs: 'cpu' (default: the "
                                  "same pixels on every machine of a kind), 'cuda' (a GPU: about 100x faster networks, "
                                  "pixels may differ by one level in rare values) or 'auto' (cuda where it can be used)."),
    salvage: bool = typer.Option(False, "--salvage", help="For a damaged or truncated archive: extract every entry whose "
                                 "checksums check out, finding entries by scanning when the index is lost; one line per "
                                 "damaged item, non-zero exit if anything was lost."),
) -> None:
    """Extract ARCHIVE (or the entries named) into DEST: photos decoded to their original names and
    formats, other files byte-exact.

    Damaged entries are skipped and named; everything intact is still extracted.
    """
    selection = api.MemberSelection(tuple(members or ()), tuple(exclude or ()))
    chosen = None if selection.everything else selection
    with sigterm_as_interrupt(), progress_bar("extracting", progress) as bar:
        extractor = api.Extractor(dest, force, image_format, api.EntryDecoder(resolve_device(device)), progress=bar)
        done = extractor.salvage(archive, chosen) if salvage else extractor.extract(archive, chosen)
    if not isinstance(done, api.SalvageSummary):
        console().print(f"{dest}: {len(done.entries)} files extracted in {done.seconds:.1f} s")
        return
    r = done
    for w in r.warnings:
        warn(w)
    err = console(stderr=True)
    for name, detail in r.damaged:
        err.print(f"[red]damaged:[/] {name}: {detail}")
    console().print(f"{dest}: {len(r.entries)} files salvaged in {r.seconds:.1f} s")
    if r.damaged:
        raise ArchiveError(f"{len(r.damaged)} damaged item(s) in {archive} could not be extracted "
                           f"(the {len(r.entries)} intact entries were)")
