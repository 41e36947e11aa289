"""`imgarc latents ARCHIVE [MEMBER|GLOB ...]`: every coded photo's ŷ, σ̂ and μ̂, without pixels."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from imgarc import api
from imgarc.cli.console import console, progress_bar, sigterm_as_interrupt, warn
from imgarc.cli.listing import to_json, write_out
from imgarc.errors import ArchiveError, UsageError


def latents(
    archive: Path = typer.Argument(..., metavar="ARCHIVE", help="Archive to read."),
    members: Optional[List[str]] = typer.Argument(None, metavar="MEMBER|GLOB", show_default=False,
                                                  help="Only these entries (as for extract); each must be a coded photo."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write every photo's latents to this .npz file "
                                       "(np.load reads it; layout: docs/TASKS.md) instead of printing a summary."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace --out if it exists."),
    strict: bool = typer.Option(False, "--strict", help="Fail (exit 1) if a selected entry is not a coded photo, "
                                "instead of skipping it with a warning."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON record per photo (sizes, quality, latent "
                                 "shape, statistics; no arrays)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Entropy-decode the latents of every coded photo in ARCHIVE: ŷ, the hyperprior's σ̂ and μ̂,
    the symbols and their coding tables, with each entry's name, size and quality.

    The synthesis network never runs (no pixels are made), so this is several times cheaper than
    extracting. Entries that are not coded photos are skipped (--strict: exit 1).
    """
    if out is not None and as_json:
        raise UsageError("give --out or --json, not both")
    selection = api.MemberSelection(tuple(members or ()))
    with sigterm_as_interrupt(), progress_bar("decoding latents", progress) as bar:
        reader = api.ArchiveLatents(archive, None if selection.everything else selection, strict, progress=bar)
        if out is not None:
            count = api.write_latents_npz(iter(reader), out, force)
            records = []
        else:
            records = [_record(p) for p in reader]
            count = len(records)
    if out is not None:
        console().print(f"{out}: latents of {count} photos (ŷ, σ̂, μ̂, symbols, table indexes) in {reader.seconds:.1f} s")
    elif as_json:
        write_out(to_json({"archive": str(archive), "photos": records,
                           "skipped": [{"path": s.path, "reason": s.reason} for s in reader.skipped]}))
    else:
        _print_table(records, reader.seconds)
    warn_skipped(reader.skipped)
    raise_damaged(reader.damaged, archive, count)


def warn_skipped(skipped: list[api.SkippedEntry]) -> None:
    """One warning line for the entries that are not coded photos (they have no latents)."""
    if skipped:
        names = ", ".join(s.path for s in skipped[:3]) + (f" and {len(skipped) - 3} more" if len(skipped) > 3 else "")
        warn(f"{len(skipped)} {'entry is' if len(skipped) == 1 else 'entries are'} not coded photos (kept byte-exact) and have no latents; skipped: {names}")


def _record(p: api.PhotoLatents) -> dict:
    return {"path": p.path, "width": p.width, "height": p.height, "quality": p.quality, "model_id": p.model_id,
            "original_size": p.original_size, "payload_size": p.payload_size, "bpp": round(p.bpp, 4),
            "latent_shape": list(p.y_hat.shape), "photo_rows": p.rows, "photo_cols": p.cols,
            "nonzero_symbols": round(float(np.count_nonzero(p.y_symbols)) / max(1, p.y_symbols.size), 4),
            "mean_abs_y_hat": round(float(np.abs(p.y_hat).mean()), 4),
            "median_sigma": round(float(np.median(p.scales)), 4)}


def _print_table(records: list[dict], seconds: float) -> None:
    table = Table(box=None, header_style="bold")
    for col in ("entry", "size", "quality", "bpp", "latents", "nonzero", "median σ̂"):
        table.add_column(col, justify="left" if col == "entry" else "right")
    for r in records:
        table.add_row(escape(r["path"]), f"{r['width']}x{r['height']}", str(r["quality"] or "-"), f"{r['bpp']:.3f}",
                      "x".join(map(str, r["latent_shape"])), f"{r['nonzero_symbols']:.1%}", f"{r['median_sigma']:.3g}")
    out = console()
    out.print(table)
    out.print(f"{len(records)} photos, latents decoded in {seconds:.1f} s (no pixels)")


def raise_damaged(damaged: list[api.Damaged], archive: Path, done: int) -> None:
    if not damaged:
        return
    err = console(stderr=True)
    for name, detail in damaged:
        err.print(f"[red]damaged:[/] {escape(name)}: {escape(detail)}")
    raise ArchiveError(f"{len(damaged)} damaged entries of {archive} could not be read (the other {done} photos were)")
