"""Training a task's classifier in torch (the [train] extra) under a time budget.

The network is imgarc.tasks.network's NetSpec with batch norm after each convolution and dropout
before the linear layer; at the end batch norm is folded into the convolutions and the result is
plain float32 arrays (what a task file holds and ONNX Runtime runs). AdamW, label smoothing, a
learning rate that warms up and then follows a cosine to zero over the budget (by the clock, not
by a step count, so a loaded machine trains fewer steps but always finishes the schedule).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from imgarc.tasks.network import Conv, NetSpec

BN_EPS = 1e-5
STD_FLOOR = 0.01


@dataclass
class TrainConfig:
    seconds: float = 180.0  # the budget
    clock: str = "wall"  # "wall", or "cpu": this process's CPU time (fair between runs on a shared machine)
    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    dropout: float = 0.2
    threads: int = 1
    seed: int = 0
    random_dihedral: bool = False  # flip/rotate each sample at random (pixel inputs; latents encode theirs)


@dataclass
class TrainLog:
    step: int
    epoch: float
    seconds: float
    loss: float
    accuracy: float  # on the training batches since the last log
    lr: float


@dataclass
class TrainResult:
    arrays: dict[str, np.ndarray]
    steps: int
    epochs: float
    seconds: float  # on the budget's clock
    wall_seconds: float
    history: list[TrainLog] = field(default_factory=list)


class _ConvBN(nn.Module):
    def __init__(self, c_in: int, conv: Conv) -> None:
        super().__init__()
        self.spec = conv
        self.conv = nn.Conv2d(c_in, conv.out, conv.kernel, conv.stride, conv.kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(conv.out, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        return F.relu(y + x if self.spec.residual else y)

    def unfold(self, weight: np.ndarray, bias: np.ndarray) -> None:
        """Hold a folded (weight, bias) as this layer: batch norm becomes exactly the identity
        plus `bias` in eval mode (running σ² = 1 − eps), so `folded()` gives them back."""
        with torch.no_grad():
            self.conv.weight.copy_(torch.from_numpy(weight))
            self.bn.weight.fill_(1.0)
            self.bn.bias.copy_(torch.from_numpy(bias))
            self.bn.running_mean.zero_()
            self.bn.running_var.fill_(1.0 - self.bn.eps)

    def folded(self) -> tuple[np.ndarray, np.ndarray]:
        """(weight, bias) of the convolution with batch norm folded in (eval-mode statistics)."""
        bn = self.bn
        factor = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double()
        w = self.conv.weight.detach().double() * factor[:, None, None, None]
        b = bn.bias.detach().double() - bn.running_mean.detach().double() * factor
        return w.float().numpy(), b.float().numpy()


class TorchClassifier(nn.Module):
    """The NetSpec in torch; reads normalized input (the task's `norm.*` arrays are applied outside)."""

    def __init__(self, spec: NetSpec, dropout: float = 0.0) -> None:
        super().__init__()
        self.spec = spec
        self.stems = nn.ModuleList()
        width = 0
        for stem in spec.stems:
            layers, c = nn.ModuleList(), stem.end - stem.first
            for conv in stem.convs:
                layers.append(_ConvBN(c, conv))
                c = conv.out
            self.stems.append(layers)
            width += c
        self.trunk = nn.ModuleList()
        for conv in spec.trunk:
            self.trunk.append(_ConvBN(width, conv))
            width = conv.out
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(width, spec.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = []
        for stem, layers in zip(self.spec.stems, self.stems):
            b = x[:, stem.first:stem.end]
            for layer in layers:
                b = layer(b)
            branches.append(b)
        y = torch.cat(branches, 1) if len(branches) > 1 else branches[0]
        for layer in self.trunk:
            y = layer(y)
        return self.fc(self.dropout(y.mean(dim=(2, 3))))

    @staticmethod
    def from_arrays(spec: NetSpec, arrays: dict[str, np.ndarray], dropout: float = 0.0) -> TorchClassifier:
        """A trained classifier (a task's folded arrays) to train further, in eval mode: keep batch
        norm so (the identity its weights were folded into); dropout may train."""
        model = TorchClassifier(spec, dropout)
        for i, layers in enumerate(model.stems):
            for j, layer in enumerate(layers):
                layer.unfold(arrays[f"stem{i}.{j}.weight"], arrays[f"stem{i}.{j}.bias"])
        for j, layer in enumerate(model.trunk):
            layer.unfold(arrays[f"trunk.{j}.weight"], arrays[f"trunk.{j}.bias"])
        with torch.no_grad():
            model.fc.weight.copy_(torch.from_numpy(arrays["fc.weight"]))
            model.fc.bias.copy_(torch.from_numpy(arrays["fc.bias"]))
        return model.eval()

    def arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for i, layers in enumerate(self.stems):
            for j, layer in enumerate(layers):
                out[f"stem{i}.{j}.weight"], out[f"stem{i}.{j}.bias"] = layer.folded()
        for j, layer in enumerate(self.trunk):
            out[f"trunk.{j}.weight"], out[f"trunk.{j}.bias"] = layer.folded()
        out["fc.weight"] = self.fc.weight.detach().float().numpy().copy()
        out["fc.bias"] = self.fc.bias.detach().float().numpy().copy()
        return out


def normalization(samples: list[np.ndarray] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (mean, 1/std) over every position of every sample [C, h, w] (float64 sums)."""
    c = samples[0].shape[0]
    total, squares, count = np.zeros(c), np.zeros(c), 0
    for s in samples:
        s64 = s.astype(np.float64).reshape(c, -1)
        total += s64.sum(1)
        squares += (s64 ** 2).sum(1)
        count += s64.shape[1]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean ** 2, 0))
    # A floor on σ: a channel that hardly varies (a latent its model leaves at zero) must not
    # blow float rounding up into large inputs.
    return mean.astype(np.float32), (1 / np.maximum(std, STD_FLOOR)).astype(np.float32)


def _batch(samples: list[np.ndarray] | np.ndarray, picks: np.ndarray, rng: np.random.Generator,
           random_dihedral: bool) -> np.ndarray:
    """A float32 batch [n, C, h, w]; samples of other sizes are cropped at random to the smallest."""
    chosen = [samples[i] for i in picks]
    h = min(s.shape[1] for s in chosen)
    w = min(s.shape[2] for s in chosen)
    out = []
    for s in chosen:
        y0, x0 = rng.integers(0, s.shape[1] - h + 1), rng.integers(0, s.shape[2] - w + 1)
        s = s[:, y0:y0 + h, x0:x0 + w]
        if random_dihedral:
            t = rng.integers(0, 8)
            s = np.rot90(s, t % 4, axes=(1, 2))
            s = s[:, :, ::-1] if t >= 4 else s
        out.append(s)
    if random_dihedral and h != w:  # quarter turns of non-square crops: back to one shape
        side = min(h, w)
        out = [s[:, :side, :side] for s in out]
    return np.stack(out).astype(np.float32)


def train_classifier(spec: NetSpec, samples: list[np.ndarray] | np.ndarray, labels: np.ndarray, config: TrainConfig,
                     log: Callable[[TrainLog], None] | None = None, log_every: float = 15.0) -> TrainResult:
    """Train on `samples` ([C, h, w] each, any dtype) with `labels` until the budget is spent."""
    torch.set_num_threads(max(1, config.threads))
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    clock = time.process_time if config.clock == "cpu" else time.perf_counter
    mean, scale = normalization(samples)
    model = TorchClassifier(spec, config.dropout)
    mean_t = torch.from_numpy(mean)[None, :, None, None]
    scale_t = torch.from_numpy(scale)[None, :, None, None]
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    labels_t = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    n = len(labels)
    batch = min(config.batch, n)
    result = TrainResult({}, 0, 0.0, 0.0, 0.0)
    started, wall_started = clock(), time.perf_counter()
    last_log, seen, window, correct, loss_sum, batches = 0.0, 0, 0, 0, 0.0, 0
    model.train()
    order, pos = rng.permutation(n), 0
    while True:
        spent = clock() - started
        if spent >= config.seconds:
            break
        frac = spent / config.seconds
        lr = config.lr * min(1.0, frac / 0.03) * 0.5 * (1 + math.cos(math.pi * frac))
        for group in optimizer.param_groups:
            group["lr"] = lr
        if pos + batch > n:
            order, pos = rng.permutation(n), 0
        picks = order[pos:pos + batch]
        pos += batch
        x = (torch.from_numpy(_batch(samples, picks, rng, config.random_dihedral)) - mean_t) * scale_t
        y = labels_t[picks]
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        result.steps += 1
        seen += len(picks)
        window += len(picks)
        correct += int((logits.argmax(1) == y).sum())
        loss_sum += float(loss.detach())
        batches += 1
        if clock() - started - last_log >= log_every:
            last_log = clock() - started
            entry = TrainLog(result.steps, seen / n, last_log, loss_sum / batches, correct / window, lr)
            result.history.append(entry)
            if log:
                log(entry)
            window, correct, loss_sum, batches = 0, 0, 0.0, 0
    # Batch-norm statistics were tracked during training; eval mode uses them, dropout off.
    model.eval()
    result.arrays = {"norm.mean": mean, "norm.scale": scale, **model.arrays()}
    result.epochs = seen / n
    result.seconds = clock() - started
    result.wall_seconds = time.perf_counter() - wall_started
    return result
