"""`imgarc classify ARCHIVE --task FILE`: a label per photo from its latents (no pixels decoded)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from imgarc import api, tasks
from imgarc.cli.console import console, progress_bar, sigterm_as_interrupt
from imgarc.cli.latents import raise_damaged, warn_skipped
from imgarc.cli.listing import to_json, write_out
from imgarc.errors import UsageError


def classify(
    archive: Path = typer.Argument(..., metavar="ARCHIVE", help="Archive to read."),
    members: Optional[List[str]] = typer.Argument(None, metavar="MEMBER|GLOB", show_default=False,
                                                  help="Only these entries (as for extract); each must be a coded photo."),
    task: Path = typer.Option(..., "--task", "-t", help="Task file written by `imgarc learn`."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document: every photo's label, confidence "
                                 "and its --top most likely classes."),
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV: path,label,confidence,quality."),
    top: int = typer.Option(3, "--top", min=1, help="How many of the most likely classes --json lists per photo."),
    extract: Optional[Path] = typer.Option(None, "--extract", help="Also extract the photos into DEST/<class>/ (this "
                                           "decodes their pixels, as extract does)."),
    force: bool = typer.Option(False, "--force", "-f", help="With --extract: into a non-empty folder, replacing files."),
    image_format: str = typer.Option("keep", "--format", help="With --extract: as for extract --format."),
    strict: bool = typer.Option(False, "--strict", help="Fail (exit 1) if a selected entry is not a coded photo, "
                                "instead of skipping it with a warning."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Label every coded photo of ARCHIVE with the classifier in --task, read from its latents:
    only the entropy decoder and the hyperprior run, never the synthesis network (no pixels).

    The task must have been trained on latents of the model the photos were coded with (refused
    otherwise). Entries that are not coded photos are skipped (--strict: exit 1).
    """
    if as_json and as_csv:
        raise UsageError("give --json or --csv, not both")
    loaded = tasks.read_task(task)
    selection = api.MemberSelection(tuple(members or ()))
    with sigterm_as_interrupt(), progress_bar("classifying", progress) as bar:
        report = tasks.classify_archive(archive, loaded, None if selection.everything else selection, strict, top,
                                  progress=bar, task_path=task)
    if as_json:
        write_out(to_json({"archive": str(archive), "task": str(task), "classes": loaded.classes,
                           "photos": [p.as_json() for p in report.predictions],
                           "skipped": [{"path": s.path, "reason": s.reason} for s in report.skipped],
                           "damaged": [{"path": d.name, "detail": d.detail} for d in report.damaged]}))
    elif as_csv:
        write_out(_csv(report))
    else:
        _print_table(report)
    warn_skipped(report.skipped)
    if extract is not None and report.predictions:
        with sigterm_as_interrupt(), progress_bar("extracting", progress) as bar:
            done = tasks.extract_by_class(archive, report.predictions, extract, force, image_format, bar)
        console(stderr=True).print(f"{extract}: {sum(len(s.entries) for s in done.values())} photos extracted into "
                                   f"{len(done)} class folders")
    raise_damaged(report.damaged, archive, len(report.predictions))


def _csv(report: tasks.ClassifyReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("path", "label", "confidence", "quality"))
    for p in report.predictions:
        writer.writerow((p.path, p.label, f"{p.confidence:.4f}", "" if p.quality is None else p.quality))
    return out.getvalue()


def _print_table(report: tasks.ClassifyReport) -> None:
    table = Table(box=None, header_style="bold")
    for col, justify in (("entry", "left"), ("label", "left"), ("confidence", "right"), ("next", "left")):
        table.add_column(col, justify=justify)
    for p in report.predictions:
        runner_up = f"{p.top[1][0]} ({p.top[1][1]:.0%})" if len(p.top) > 1 else ""
        table.add_row(escape(p.path), escape(p.label), f"{p.confidence:.1%}", escape(runner_up))
    out = console()
    out.print(table)
    n = len(report.predictions)
    out.print(f"{n} photos classified in {report.seconds:.1f} s ({report.seconds / max(n, 1) * 1000:.0f} ms per photo, "
              f"no pixels decoded)")
