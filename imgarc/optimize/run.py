"""`imgarc optimize`: prune a model, or give it an int8 g_a or g_s, and fine-tune the result
with distillation from it.

The run lives in one folder, like `imgarc train`'s: the pruned child is written there as the
first checkpoint (step 0), then the trainer runs from it, so an interrupted or time-budgeted
run resumes where it stopped (the pruning is done once), or it starts from an earlier child's
exported weights (`--init`: the shipped fast model), going on where that run stopped. The child
trains on the parent's own objective (its λs, distortion and MS-SSIM share, read from the
parent's weights file; `--msssim-share` may move the last).

An int8 variant (`int8_config`) is not pruned: it starts from the parent's weights, and only
the quantized network (g_a or g_s) trains, through its int8 grid (quantization-aware
training), so its coding tables and integer h_s stay the parent's. With an int8 g_a, the
parent also decodes its archives; with an int8 g_s, it decodes them to slightly other pixels.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from imgarc.codec.architecture import Architecture
from imgarc.codec.gained import GainedMeanScaleHyperprior
from imgarc.codec.registry import find_model
from imgarc.codec.weights import WeightsFile, load_weights
from imgarc.errors import UsageError
from imgarc.optimize.prune import prune_model
from imgarc.optimize.widths import group_widths
from imgarc.train.crops import CropSampler, load_photos
from imgarc.runtime.torch_networks import TorchNetworks
from imgarc.train.trainer import CHECKPOINT_NAME, TEACHER_LATENTS, TrainConfig, save_atomic

IMPORTANCE_CROPS = 16  # crops the channel ranking sees (a few seconds on a CPU)


def parent_architecture(parent_id: str) -> Architecture:
    return load_weights(find_model(parent_id).path)[0].architecture


def child_config(parent_id: str, data: Path, run_dir: Path, architecture: Architecture, lambdas: tuple[float, ...] = (),
                 msssim_share: float | None = None, **training) -> TrainConfig:
    """The trainer's settings for a child of `parent_id` of `architecture` (pruned, or the
    parent's own): its objective and λs as the parent's weights file records them (`lambdas`
    for a parent that records none; `msssim_share` instead of a mixed-distortion parent's)."""
    parent = find_model(parent_id)
    weights, _ = load_weights(parent.path)
    meta, arch = weights.meta, weights.architecture
    if arch.scale_only:
        raise UsageError(f"{parent_id} is a scale-only (zoo) model; imgarc optimize prunes mean-scale models")
    lambdas = lambdas or tuple(meta.get("lambdas", ()))
    if arch.rate_points > 1 and len(lambdas) != arch.rate_points:
        raise UsageError(f"{parent_id} does not record the {arch.rate_points} λs it was trained at; give them with --lambdas")
    share = float(meta.get("msssim_share", 0.5)) if msssim_share is None else msssim_share
    return TrainConfig(data=data, run_dir=run_dir, architecture=architecture,
                       lmbda=float(meta.get("lambda", lambdas[len(lambdas) // 2] if lambdas else 0.025)), lambdas=lambdas,
                       distortion=str(meta.get("distortion", "mse")), msssim_share=share, teacher=parent.path, **training)


def int8_config(parent_id: str, network: str, data: Path, run_dir: Path, lambdas: tuple[float, ...] = (),
                **training) -> TrainConfig:
    """The trainer's settings for quantization-aware training of an int8 `network` (g_a or g_s)
    for `parent_id`."""
    config = child_config(parent_id, data, run_dir, parent_architecture(parent_id), lambdas, **training)
    return dataclasses.replace(config, init_weights=config.teacher, train_only=(network,), int8_network=network)


def start_pruned_run(config: TrainConfig, init: WeightsFile | None = None) -> Path:
    """Write the pruned child as the run's first checkpoint unless the run already has one: the
    parent pruned, or with `init`, an earlier pruned variant's weights (`continued_child`).
    The checkpoint records which of the parent's latent channels the child kept: distillation
    compares ŷ on those."""
    path = config.run_dir / CHECKPOINT_NAME
    if path.exists():
        return path
    state = continued_child(init, config.architecture) if init is not None else pruned_child(config)
    config.run_dir.mkdir(parents=True, exist_ok=True)
    save_atomic({**state, "config": config.record()}, path)
    return path


def pruned_child(config: TrainConfig) -> dict:
    """The parent pruned to `config.architecture`, its channels ranked on a few training crops."""
    assert config.teacher is not None
    weights, _ = load_weights(config.teacher)
    parent, parent_arch = TorchNetworks(weights.architecture, weights.params, weights.model_id).model, weights.architecture
    sampler = CropSampler(load_photos(config.data, config.crop), config.crop, seed=config.seed)
    crops = torch.from_numpy(sampler.batch(IMPORTANCE_CROPS)).permute(0, 3, 1, 2).float().div_(255)
    # Rank channels at the middle rate point: every point shares the channels.
    middle = (parent_arch.rate_points - 1) / 2 if isinstance(parent, GainedMeanScaleHyperprior) else None
    child, child_arch, kept = prune_model(parent, parent_arch, group_widths(config.architecture), crops, middle)
    if child_arch != config.architecture:
        raise UsageError(f"pruning gave {child_arch}, not the {config.architecture} asked for")
    return {"model": child.state_dict(), "step": 0, "seconds": 0.0, TEACHER_LATENTS: kept.latents}


def continued_child(weights: WeightsFile, architecture: Architecture) -> dict:
    """A pruned variant's exported weights as a run's first checkpoint, its step count and time
    carried on, so training goes on from a shipped model when the run that made it is gone
    (checkpoints live in ignored folders, weights files in the package). Adam restarts; an
    int8-stored file gives its weights as stored, which is what training through the same
    rounding uses anyway."""
    if weights.architecture != architecture:
        raise UsageError(f"{weights.model_id} is a model of other widths ({weights.architecture}) than this run's ({architecture})")
    kept = weights.meta.get(TEACHER_LATENTS)
    if kept is None:
        raise UsageError(f"{weights.model_id} does not record which of its parent's latent channels it kept "
                         "(a variant exported before imgarc recorded them): prune the parent again instead")
    model = TorchNetworks(weights.architecture, weights.params, weights.model_id).model
    return {"model": model.state_dict(), "step": int(weights.meta.get("steps", 0)),
            "seconds": float(weights.meta.get("train_seconds", 0)), TEACHER_LATENTS: [int(c) for c in kept]}
