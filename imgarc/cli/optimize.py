"""`imgarc optimize`: a smaller, faster variant of a model (pruned, or with an int8 g_a or g_s;
fine-tuned from it; needs torch)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer

from imgarc.cli.console import console
from imgarc.cli.train import AMP, BATCH, CHECKPOINT_MINUTES, DATA, DEVICE, EXPORT_DIR, SCALE_JITTER, print_status
from imgarc.codec.architecture import Architecture, macs_per_pixel
from imgarc.codec.int8 import QuantizedNetwork
from imgarc.codec.registry import Tune, assets_dir, default_model_id, find_model
from imgarc.codec.storage_bits import StorageBits
from imgarc.codec.weights import WeightStorage, load_weights
from imgarc.errors import UsageError
from imgarc.extras import require
from imgarc.optimize.widths import architecture_of, group_widths, widths_for


INT8_LAYERS = {QuantizedNetwork.G_A: "g_a (all convolutions but the last)",
               QuantizedNetwork.G_S: "g_s (the layers from its second transposed convolution to its last IGDN)"}


@dataclass(frozen=True)
class WidthsOption:
    name: str
    count: int
    what: str  # what the option takes, for its error message

    def parse(self, text: str) -> tuple[int, ...]:
        try:
            widths = tuple(int(v) for v in text.split(","))
        except ValueError:
            widths = ()
        if len(widths) != self.count or min(widths) < 1:
            raise UsageError(f"{self.name} must be {self.what}, not {text!r}")
        return widths


WIDTHS = WidthsOption("--widths", 6, "six positive integers (g_a's three inner widths, then g_s's)")
HYPER_WIDTHS = WidthsOption("--hyper-widths", 4, "four positive integers (h_a's two inner widths, then h_s's)")


def pruned_architecture(parent: Architecture, keep: float, widths: str | None, latents: int | None,
                        hyper_widths: str | None, hyper_latents: int | None) -> Architecture:
    """The child's architecture from the options: each group the parent's unless given."""
    if parent.scale_only:
        raise UsageError("imgarc optimize prunes mean-scale models; this parent is a scale-only (zoo) model")
    inner = WIDTHS.parse(widths) if widths else widths_for(parent, keep)
    m = latents or parent.M
    ha0, ha1, hs0, hs1 = HYPER_WIDTHS.parse(hyper_widths) if hyper_widths else parent.hyper_inner_widths
    n = hyper_latents or parent.N
    child = architecture_of(parent, (*inner[:3], m, *inner[3:], ha0, ha1, n, hs0, hs1))
    if any(c > p for c, p in zip(group_widths(child), group_widths(parent))):
        raise UsageError(f"a pruned child cannot be wider than its parent ({describe(parent)}), not {describe(child)}")
    return child


def describe(arch: Architecture) -> str:
    """A pruned architecture's widths as the options name them."""
    return (f"widths {','.join(map(str, arch.inner_widths))}, {arch.M} latents, hyper widths "
            f"{','.join(map(str, arch.hyper_inner_widths))}, {arch.N} hyper-latents")


def optimize(
    parent: Optional[str] = typer.Option(None, "--parent", help="Installed model to make a variant of (default: the default model)."),
    keep: float = typer.Option(0.5, "--keep", help="Fraction of each inner channel width of g_a and g_s to keep (rounded to "
                               "multiples of 8). Multiply-adds fall about as keep²."),
    widths: Optional[str] = typer.Option(None, "--widths", help="Exact inner widths instead of --keep: g_a's three, then g_s's, "
                                         "comma-separated."),
    latents: Optional[int] = typer.Option(None, "--latents", min=1, help="Latent channels to keep (M; default: the parent's). Fewer "
                                          "latents shrink g_a's last layer, g_s's first, and h_s's output."),
    hyper_widths: Optional[str] = typer.Option(None, "--hyper-widths", help="h_a's two inner widths, then h_s's, "
                                               "comma-separated (default: the parent's). h_a and h_s hold most of the "
                                               "parameters (the weights file's size), little of the time."),
    hyper_latents: Optional[int] = typer.Option(None, "--hyper-latents", min=1, help="Hyper-latent channels to keep (N, what h_a "
                                                "outputs and the entropy bottleneck codes; default: the parent's)."),
    init: Optional[str] = typer.Option(None, "--init", help="Go on training an earlier pruned variant (e.g. the shipped "
                                       "--tune fast model) instead of pruning the parent again: the run starts from its "
                                       "weights, widths and step count (Adam restarts); --parent defaults to the one it "
                                       "records. Ignored by a run folder that has a checkpoint (it resumes)."),
    int8: bool = typer.Option(False, "--int8", help="Instead of pruning: an int8 network (--int8-network), its activation "
                              "grids measured and searched on training crops; with --minutes, that network alone then "
                              "fine-tunes through them. The variant keeps the parent's coding tables."),
    int8_network: Optional[QuantizedNetwork] = typer.Option(None, "--int8-network", help="With --int8: g_a (the default; every "
                                                  "convolution but the last; only compress gets faster, and the parent "
                                                  "decodes the variant's archives to the same pixels) or g_s (its middle "
                                                  "layers; only extract gets faster, pixels differ a little from the "
                                                  "parent's). A variant with both: --int8-network g_s --parent an int8 g_a "
                                                  "variant."),
    data: Path = DATA,
    run_dir: Path = typer.Option(Path("runs/optimize"), "--run-dir", help="The run's folder: the pruned child's checkpoint and "
                                 "the log. A run that has a checkpoint resumes from it (the pruning is done once)."),
    minutes: Optional[float] = typer.Option(None, "--minutes", help="Fine-tuning wall-time budget for this call, on top of what "
                                            "the run spent (default: 60 when pruning; 0 with --int8: the searched grids "
                                            "alone. An int8 g_s gains from it (Kodak BD-rate +5.7 → +1.8 % after 75 CPU "
                                            "minutes); an int8 g_a measured worse after it. See docs/MODELS.md)."),
    lambdas: Optional[str] = typer.Option(None, "--lambdas", help="The parent's training λs (ascending, comma-separated), "
                                          "for a parent whose weights file does not record them."),
    distill: float = typer.Option(1.0, "--distill", help="Weight of matching the parent's x̂ and ŷ (distillation) in the loss."),
    distill_every: int = typer.Option(1, "--distill-every", help="Consult the parent on every Nth step only: its forward "
                                      "pass is about half of a CPU step of a small child, so N > 1 trains more steps "
                                      "per minute on the rate-distortion loss alone in between."),
    batch: int = BATCH,
    crop: int = typer.Option(192, "--crop", help="Square crop size (a multiple of 64; ≥ 192 for the MS-SSIM part of the loss)."),
    lr: float = typer.Option(1e-4, "--lr", help="Adam learning rate; the last 20% of the budget runs at lr/4."),
    checkpoint_minutes: float = CHECKPOINT_MINUTES,
    device: str = DEVICE,
    scale_jitter: float = SCALE_JITTER,
    amp: bool = AMP,
    export: Optional[str] = typer.Option(None, "--export", help="After fine-tuning, export the variant's weights under this model id."),
    export_dir: Optional[Path] = EXPORT_DIR,
    storage: Optional[WeightStorage] = typer.Option(None, "--storage", help="How the exported weights file stores "
                                                    "the networks: float (fp16; the default) or int8 (g_a's, h_a's and g_s's "
                                                    "convolutions in int8 per output channel, h_s only as its integer network: "
                                                    "about a third of the size; see docs/MODELS.md). With int8, fine-tuning runs "
                                                    "through the same rounding. Pruning variants only; with --init, default: "
                                                    "as that model is stored."),
    msssim_share: Optional[float] = typer.Option(None, "--msssim-share", min=0.0, max=1.0, help="Pruning variants of a "
                                                 "parent trained on --distortion mixed: MS-SSIM's share of the distortion "
                                                 "(default: the parent's); lower favours PSNR."),
    storage_bits: Optional[str] = typer.Option(None, "--storage-bits", help="With --storage int8: the stored weights' width, "
                                               "5-8 bits (default 8, or with --init that model's; the integer h_s's too), "
                                               "or per network, e.g. g_s=8,g_a=7,5 (unnamed networks: the bare width, "
                                               "else 8). 6 bits: h_s's bytes −30 % for +0.12 % in rate (the default's, "
                                               "measured); fine-tuning runs through the same rounding."),
) -> None:
    """Prune a model's networks to fewer channels (or, with --int8, quantize its g_a or g_s), then fine-tune
    the result with distillation from the parent (rate + distortion + matching the parent's
    outputs); resumable like `imgarc train`. The variant is a new model id that records its parent."""
    # torch loads only when this command runs, so the other commands and `--help` never pay for it.
    require("imgarc optimize", "torch", "compressai", "pytorch_msssim")
    from imgarc.optimize.prune import parameter_count
    from imgarc.optimize.run import child_config, int8_config, parent_architecture, start_pruned_run
    from imgarc.train.publish import publish_checkpoint
    from imgarc.train.trainer import parse_lambdas, train as run_training

    start = load_weights(find_model(init).path)[0] if init else None  # the variant --init goes on from
    start_parent = start.meta.get("parent") if start else None
    parent_id = parent or start_parent or default_model_id()
    parent_arch = parent_architecture(parent_id)
    if minutes is None:
        minutes = 0.0 if int8 else 60.0
    training = dict(distill=distill, distill_every=distill_every, batch=batch, crop=crop, lr=lr, lr_final=lr / 4, minutes=minutes,
                    checkpoint_minutes=checkpoint_minutes, device=device, scale_jitter=scale_jitter, amp=amp)
    out = console()
    storage = storage or (start.storage if start else WeightStorage.FLOAT)
    if storage_bits is not None and storage is not WeightStorage.INT8:
        raise UsageError("--storage-bits goes with --storage int8")
    bits = StorageBits.parse(storage_bits) if storage_bits else start.storage_bits if start else StorageBits()
    if int8_network and not int8:
        raise UsageError("--int8-network goes with --int8")
    if int8:
        int8_network = int8_network or QuantizedNetwork.G_A
        if widths or latents or hyper_widths or hyper_latents or init:
            raise UsageError("--int8 keeps the parent's widths: prune (--widths, --keep, --init, ...) in a separate run")
        if storage is not WeightStorage.FLOAT:
            raise UsageError("--int8 variants keep the parent's float storage: --storage int8 goes with pruning")
        if msssim_share is not None:
            raise UsageError("--int8 variants train on the parent's own objective: --msssim-share goes with pruning")
        network = int8_network.value
        config = int8_config(parent_id, network, data, run_dir, parse_lambdas(lambdas), **training)
        description = f"{parent_id} with an int8 {INT8_LAYERS[int8_network]}" + (
            f"; decodes with {parent_id}'s decoder" if int8_network == QuantizedNetwork.G_A else "")
        out.print(f"{parent_id} -> int8 {INT8_LAYERS[int8_network]}; {network} alone trains")
    else:
        if start and (widths or latents or hyper_widths or hyper_latents):
            raise UsageError("--init goes on with the widths of the model it names: leave out --widths, --latents, …")
        if start and start_parent != parent_id:
            raise UsageError(f"{init} was made from {start_parent or 'no parent'}, not {parent_id}")
        child = start.architecture if start else pruned_architecture(parent_arch, keep, widths, latents, hyper_widths,
                                                                     hyper_latents)
        config = child_config(parent_id, data, run_dir, child, parse_lambdas(lambdas), msssim_share, weight_storage=storage.value,
                              storage_bits=bits, **training)
        description = f"{parent_id} pruned to {describe(child)}, fine-tuned with distillation"
        before, after = macs_per_pixel(parent_arch), macs_per_pixel(child)
        out.print(f"{parent_id} -> {describe(child)}: g_a+h_a+g_s {sum(before.values()) - before['h_s']:,.0f} -> "
                  f"{sum(after.values()) - after['h_s']:,.0f} multiply-adds per pixel, "
                  f"{parameter_count(parent_arch):,} -> {parameter_count(child):,} parameters")
        start_pruned_run(config, start)
    checkpoint = run_training(config, resume=True, log=print_status)
    out.print(f"checkpoint: {checkpoint}")
    if export:
        folder = export_dir or assets_dir()
        sha = publish_checkpoint(checkpoint, export, folder, find_model(parent_id).quality, description,
                                 make_default=False, parent=parent_id, storage=storage, storage_bits=bits,
                                 tune=None if int8 else Tune.FAST)
        out.print(f"exported {export} to {folder} (sha256 {sha})")
