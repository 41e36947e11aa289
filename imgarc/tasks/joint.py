"""Joint fine-tuning: a codec's encoder and a task's classifier trained together (needs torch).

The loss is the codec's own, rate + λ·distortion, plus γ·cross-entropy of the classifier on the
latents the encoder makes, so the encoder learns to put what the task needs where the classifier
reads it (Singh et al. 2020; Qi et al. 2023). Only the encoder side trains: g_a and h_a. g_s,
h_s, the entropy models and the gains stay the parent's, so the variant's coding tables and
integer h_s are the parent's very numbers and its archives decode with the parent's decoder;
the variant is still a whole model of its own id (what archives name), recording its parent.

Training sees each photo as `compress` codes it: edge-replicated to the codec's padded size,
quantized at a quality drawn from the task's (the gains interpolated as `--quality` does),
ŷ rounded with a straight-through gradient, the rate from the entropy models' noisy likelihoods
(as in training the codec), and the classifier reading imgarc.tasks.features' ŷ and log σ̂ on
the latents that cover the photo. λ at a quality is the parent's λs interpolated geometrically,
like the gains. The distortion is the parent's (MSE, MS-SSIM or the mix) when the training
crops are large enough for MS-SSIM's five scales, else its MSE part alone.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from imgarc.api.latents import Y_DOWNSCALE
from imgarc.codec.export import SCALE_MAX, SCALE_MIN
from imgarc.codec.gained import GainedMeanScaleHyperprior
from imgarc.codec.padding import padded_size
from imgarc.codec.quality import rate_position
from imgarc.codec.rd_objective import ModelObjective
from imgarc.codec.weights import WeightsFile
from imgarc.errors import UsageError
from imgarc.photo import Photo, read_photo
from imgarc.runtime.torch_networks import TorchNetworks
from imgarc.tasks.features import DIHEDRAL
from imgarc.tasks.taskfile import Task
from imgarc.tasks.train import TorchClassifier, TrainConfig

MAX_CROP = 256  # larger photos train on random crops of this side (the classifier pools over the grid)
HELD_LIMIT = 4 << 30  # bytes of training photos held in memory
ENCODER = ("g_a", "h_a")  # the networks that train; everything else is the parent's


@dataclass
class JointConfig:
    seconds: float = 1800.0  # wall-time budget
    gamma: float = 1.0  # weight of the task loss (nats per photo) against the rate (bits per pixel)
    qualities: tuple[int, ...] = (25, 50, 75, 95)
    batch: int = 8
    lr: float = 1e-4  # the encoder's (what fine-tuning the codec itself uses)
    classifier_lr: float = 2e-4
    # The classifier's regularisation, as imgarc.tasks.train trained it: its dropout, AdamW's decay.
    dropout: float = TrainConfig.dropout
    weight_decay: float = TrainConfig.weight_decay
    threads: int = 0  # 0: torch's default
    seed: int = 0

    def check(self) -> None:
        if self.seconds <= 0:
            raise UsageError("the joint fine-tuning budget must be positive")
        if self.gamma < 0:
            raise UsageError(f"--gamma must be 0 or more, not {self.gamma}")


@dataclass
class JointLog:
    step: int
    seconds: float
    bpp: float  # running means since the last log
    psnr: float
    task_loss: float
    accuracy: float  # on the training batches


@dataclass
class JointResult:
    model: nn.Module  # the parent's network with the fine-tuned encoder (export it as the variant)
    arrays: dict[str, np.ndarray]  # the fine-tuned classifier (its normalization the plain task's)
    steps: int
    seconds: float
    history: list[JointLog] = field(default_factory=list)


@dataclass
class JointTerms:
    """One batch's parts of the loss."""

    bits: torch.Tensor  # of ŷ and ẑ, the whole batch
    mse: torch.Tensor
    distortion: torch.Tensor  # in the parent's units (ModelObjective.distortion_of)
    features: torch.Tensor  # what the classifier read (imgarc.tasks.features), before normalization
    logits: torch.Tensor


def _ste_round(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


class JointObjective(nn.Module):
    """The codec (encoder trainable) and the classifier; forward gives the loss's three parts."""

    def __init__(self, parent: WeightsFile, task: Task, dropout: float = 0.0) -> None:
        super().__init__()
        arch = parent.architecture
        if arch.scale_only:
            raise UsageError(f"{parent.model_id} is a scale-only (zoo) model: it has no means for the latent features")
        if task.network.in_channels != 2 * arch.M:
            raise UsageError(f"the task reads {task.network.in_channels} channels, not the 2×{arch.M} of {parent.model_id}")
        self.codec = TorchNetworks(arch, parent.params, parent.model_id).model
        for name, p in self.codec.named_parameters():
            p.requires_grad_(name.split(".", 1)[0] in ENCODER)
        self.classifier = TorchClassifier.from_arrays(task.network, task.arrays, dropout)
        self.register_buffer("norm_mean", torch.from_numpy(task.arrays["norm.mean"])[None, :, None, None])
        self.register_buffer("norm_scale", torch.from_numpy(task.arrays["norm.scale"])[None, :, None, None])
        self.objective = ModelObjective.of(parent)
        self.stride = arch.stride  # ImageCodec pads photos to multiples of it

    def encoder_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.codec.parameters() if p.requires_grad]

    def _gains(self, quality: int) -> tuple[torch.Tensor, ...]:
        if isinstance(self.codec, GainedMeanScaleHyperprior):
            return tuple(g[None, :, None, None] for g in self.codec.gains_at(rate_position(quality, self.codec.rate_points)))
        return (torch.ones(()),) * 4

    def lmbda(self, quality: int) -> float:
        """The parent's λ at `quality` (ModelObjective.lmbda)."""
        return self.objective.lmbda(quality)

    def forward(self, x: torch.Tensor, quality: int) -> JointTerms:
        """The loss's parts for a batch [B, 3, h, w] in [0, 1] coded at `quality`."""
        h, w = x.shape[2:]
        ph, pw = padded_size(h, w, self.stride)
        padded = F.pad(x, (0, pw - w, 0, ph - h), mode="replicate")
        gain, inv_gain, hyper_gain, hyper_inv_gain = self._gains(quality)
        m = self.codec
        y = m.g_a(padded)
        z_hat, z_likelihoods = m.entropy_bottleneck(m.h_a(y) * hyper_gain)
        scales, means = m.h_s(z_hat * hyper_inv_gain).chunk(2, 1)
        y_gained, scales_gained, means_gained = y * gain, scales * gain, means * gain
        _, y_likelihoods = m.gaussian_conditional(y_gained, scales_gained, means=means_gained)
        y_hat = (_ste_round(y_gained - means_gained) + means_gained) * inv_gain  # what the archive holds
        x_hat = m.g_s(y_hat)[:, :, :h, :w]
        bits = -(torch.log2(y_likelihoods).sum() + torch.log2(z_likelihoods).sum())
        mse = torch.mean((x_hat - x) ** 2)
        rows, cols = -(-h // Y_DOWNSCALE), -(-w // Y_DOWNSCALE)
        log_sigma = torch.log(scales_gained.clamp(SCALE_MIN, SCALE_MAX)) + torch.log(inv_gain)
        features = torch.cat([y_hat, log_sigma], 1)[:, :, :rows, :cols]
        logits = self.classifier((features - self.norm_mean) * self.norm_scale)
        return JointTerms(bits, mse, self.objective.distortion_of(x_hat, x), features, logits)


def held_photo(rgb: np.ndarray) -> np.ndarray:
    """What training keeps of a photo: its central square of at most 2·MAX_CROP a side (a copy),
    so a folder of large photos stays in memory; crops are drawn from it."""
    h, w = rgb.shape[:2]
    side_h, side_w = min(h, 2 * MAX_CROP), min(w, 2 * MAX_CROP)
    y0, x0 = (h - side_h) // 2, (w - side_w) // 2
    return np.ascontiguousarray(rgb[y0:y0 + side_h, x0:x0 + side_w])


def load_photos(paths: list[Path]) -> list[np.ndarray | None]:
    """Each photo as training holds it (held_photo), None for one that no longer reads as a photo;
    UsageError if they would take more than HELD_LIMIT bytes."""
    out: list[np.ndarray | None] = []
    total = 0
    for path in paths:
        try:
            photo = read_photo(path.read_bytes())
        except OSError:
            photo = None
        held = held_photo(photo.rgb) if isinstance(photo, Photo) else None
        total += 0 if held is None else held.nbytes
        if total > HELD_LIMIT:
            raise UsageError(f"joint fine-tuning holds its training photos in memory and these take over "
                             f"{HELD_LIMIT >> 30} GiB; train on fewer photos")
        out.append(held)
    return out


def training_batch(photos: list[np.ndarray], picks: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """Square crops [B, 3, side, side] in [0, 1] under random flips/rotations; the side is the
    batch's smallest photo side, at most MAX_CROP (one thumbnail shrinks its batch only)."""
    side = min(MAX_CROP, min(min(photos[i].shape[:2]) for i in picks))
    out = []
    for i in picks:
        p = photos[i]
        y0, x0 = rng.integers(0, p.shape[0] - side + 1), rng.integers(0, p.shape[1] - side + 1)
        crop = p[y0:y0 + side, x0:x0 + side]
        turns, mirror = DIHEDRAL[rng.integers(0, len(DIHEDRAL))]
        crop = np.rot90(crop, turns, axes=(0, 1))
        out.append(crop[:, ::-1] if mirror else crop)
    return torch.from_numpy(np.ascontiguousarray(np.stack(out))).permute(0, 3, 1, 2).float().div_(255)


def joint_finetune(parent: WeightsFile, task: Task, photos: list[np.ndarray], labels: np.ndarray, config: JointConfig,
                   log: Callable[[JointLog], None] | None = None, log_every: float = 30.0) -> JointResult:
    """Fine-tune `parent`'s encoder and `task`'s classifier together on labeled photos (uint8
    [H, W, 3]) for `config.seconds`; the learning rates follow a cosine to zero over the budget."""
    config.check()
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    objective = JointObjective(parent, task, config.dropout)
    objective.codec.train()  # the entropy models' noisy likelihoods; g_a, h_a have no batch statistics
    objective.classifier.dropout.train()  # batch norm stays in eval mode: the identity it was folded into
    optimizer = torch.optim.AdamW([{"params": objective.encoder_parameters(), "lr": config.lr, "weight_decay": 0.0},
                                   {"params": list(objective.classifier.parameters()), "lr": config.classifier_lr,
                                    "weight_decay": config.weight_decay}])
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    labels_t = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    n = len(photos)
    batch = min(config.batch, n)
    result = JointResult(objective.codec, {}, 0, 0.0)
    sums = np.zeros(4)  # bpp, MSE, task loss, correct predictions
    seen, steps_since = 0, 0
    started = last_log = time.perf_counter()
    order, pos = rng.permutation(n), 0
    while (spent := time.perf_counter() - started) < config.seconds:
        factor = 0.5 * (1 + math.cos(math.pi * spent / config.seconds))
        for group, base in zip(optimizer.param_groups, base_lrs):
            group["lr"] = base * factor
        if pos + batch > n:
            order, pos = rng.permutation(n), 0
        picks = order[pos:pos + batch]
        pos += batch
        x = training_batch(photos, picks, rng)
        quality = int(config.qualities[rng.integers(0, len(config.qualities))])
        terms = objective(x, quality)
        bpp = terms.bits / x[:, 0].numel()
        task_loss = F.cross_entropy(terms.logits, labels_t[picks])
        loss = bpp + objective.lmbda(quality) * terms.distortion + config.gamma * task_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(objective.encoder_parameters(), 1.0)
        optimizer.step()
        result.steps += 1
        steps_since += 1
        sums += (float(bpp.detach()), float(terms.mse.detach()), float(task_loss.detach()),
                 float((terms.logits.argmax(1) == labels_t[picks]).sum()))
        seen += len(picks)
        now = time.perf_counter()
        if now - last_log >= log_every:
            entry = JointLog(result.steps, now - started, sums[0] / steps_since,
                             10 * math.log10(1 / max(sums[1] / steps_since, 1e-12)), sums[2] / steps_since, sums[3] / seen)
            result.history.append(entry)
            if log:
                log(entry)
            sums[:], seen, steps_since, last_log = 0, 0, 0, now
    objective.classifier.eval()
    result.arrays = {"norm.mean": task.arrays["norm.mean"], "norm.scale": task.arrays["norm.scale"],
                     **objective.classifier.arrays()}
    result.seconds = time.perf_counter() - started
    objective.codec.eval()
    return result
