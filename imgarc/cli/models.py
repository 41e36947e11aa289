"""`imgarc models`."""

from __future__ import annotations

from typing import Optional

import typer

from imgarc import api
from rich.markup import escape

from imgarc.cli.console import console
from imgarc.extras import TRAIN_EXTRA


def models(
    download: Optional[str] = typer.Option(None, "--download", help="Download and convert a CompressAI zoo model "
                                           "(cai:ARCH:METRIC:Q) now, so it works offline later."),
    zoo: bool = typer.Option(True, "--zoo/--no-zoo", help="Also list CompressAI's pretrained models."),
) -> None:
    """List the models: embedded (shipped or under IMGARC_MODEL_PATH) and CompressAI's pretrained ones
    (cached: ready offline; downloaded: converted at first use; downloadable: needs internet once)."""
    out = console()
    if download:
        model_id, sha = api.download_zoo_model(download)
        out.print(escape(f"{model_id}: cached (CompressAI file sha256 {sha})"))
        return
    for m in api.installed_models():
        r = m.record
        mark = " (default)" if m.is_default else f" (--tune {m.tune_default})" if m.tune_default else ""
        rates = "quality 1-100" if r.variable_rate else f"quality {r.quality}"
        out.print(f"{escape(f'{r.model_id}{mark}  embedded  {rates}  tuned for {r.tune}  {r.description}')}  [dim]{escape(str(r.path))}[/]")
    if not zoo:
        return
    listing = api.zoo_models()
    if not listing.entries:
        out.print(f"[dim]CompressAI's pretrained models (cai:ARCH:METRIC:Q) come with imgarc's training extra: {escape(TRAIN_EXTRA)}[/]")
        return
    for e in listing.entries:
        n, m = e.model.channels
        out.print(f"{e.model.model_id}  {e.state}  CompressAI {e.model.architecture} {e.model.metric} "
                  f"quality {e.model.quality} (N={n}, M={m})")
    for arch, why in listing.refused.items():
        out.print(f"[dim]cai:{arch}  not supported: {why}[/]")
    out.print(f"[dim]{escape(f'CompressAI files: {listing.compressai_files}; imgarc conversions: {listing.conversions}')}[/]")
