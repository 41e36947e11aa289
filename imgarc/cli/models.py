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
    measure: bool = typer.Option(False, "--measure", help="Also time each embedded model here: one 0.79-megapixel "
                                 "photo coded and decoded on every core (a few seconds per model)."),
) -> None:
    """List the models: embedded (shipped or under IMGARC_MODEL_PATH) and CompressAI's pretrained ones
    (cached: ready offline; downloaded: converted at first use; downloadable: needs internet once).

    Each embedded model's second line: its weights file's size, parameters, multiply-adds per
    pixel of each network, encode and decode milliseconds per megapixel measured on this machine
    (with --measure) and the model it was made from (variants of imgarc optimize)."""
    out = console()
    if download:
        model_id, sha = api.download_zoo_model(download)
        out.print(escape(f"{model_id}: cached (CompressAI file sha256 {sha})"))
        return
    for m in api.installed_models():
        r = m.record
        mark = " (default)" if m.is_default else f" (--tune {m.tune_default.value})" if m.tune_default else ""
        rates = "quality 1-100" if r.variable_rate else f"quality {r.quality}"
        out.print(f"{escape(f'{r.model_id}{mark}  embedded  {rates}  tune {r.tune.value}  {r.description}')}  [dim]{escape(str(r.path))}[/]")
        out.print(f"    {escape(facts_line(api.model_facts(r), api.measure_speed(r.model_id) if measure else None))}")
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


def facts_line(facts: api.ModelFacts, speed: api.ModelSpeed | None) -> str:
    macs = ", ".join(f"{net} {facts.macs_per_pixel[net]:,.0f}{' (int8)' if net in facts.int8_networks else ''}"
                     for net in ("g_a", "h_a", "h_s", "g_s"))
    timed = (f"encode {speed.encode_ms_per_mp:,.0f} ms/MP, decode {speed.decode_ms_per_mp:,.0f} ms/MP here"
             if speed else "speed: imgarc models --measure")
    bits = facts.storage_bits
    width = "" if bits == api.StorageBits() else f", {bits}-bit weights" if bits.is_uniform else f", weights of {bits} bits"
    stored = f" (int8 storage{width})" if facts.storage is api.WeightStorage.INT8 else ""
    return (f"{facts.weights_bytes / 1e6:.1f} MB weights{stored}, {facts.parameters:,} parameters, multiply-adds per pixel: "
            f"{macs}; {timed}; parent: {facts.parent or 'none'}")
