"""Rate-distortion training loop with time budget, periodic checkpoints and resume.

Runs unchanged on CPU or CUDA. A checkpoint holds the model, both optimizers, the step
count and the training time spent so far; it is written atomically, so a run killed at any
moment resumes from the last complete checkpoint.
"""

from __future__ import annotations

import math
import os
import random
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from imgarc.codec.architecture import MEAN_SCALE, Architecture, build_model
from imgarc.codec.fake_quant import Int8Network, calibrated_ranges, fake_int8_weights, synthesis_ranges
from imgarc.codec.gained import GAIN_NAMES, initial_gains
from imgarc.codec.int8 import load_arrays, save_arrays
from imgarc.codec.rd_objective import DEFAULT_LAMBDA, DISTORTIONS, MSSSIM_MIN_CROP, distortion_term
from imgarc.codec.storage_bits import StorageBits, bits_limit
from imgarc.codec.weights import WeightStorage, int8_output_axis, load_weights, stored_in_int8
from imgarc.errors import ModelError, TrainingError, UsageError
from imgarc.runtime.torch_networks import TorchNetworks, torch_state
from imgarc.train.crops import CropSampler, load_photos, prefetched


CHECKPOINT_NAME = "checkpoint.pt"
# A pruned child's checkpoint, and its exported weights file's meta: the parent's latent
# channels it kept (imgarc.optimize.run).
TEACHER_LATENTS = "teacher_latents"
# How each int8 network's grids are made (keys: imgarc.codec.int8.QuantizedNetwork's values).
INT8_CALIBRATION = {"g_a": calibrated_ranges, "g_s": synthesis_ranges}
CALIBRATION_CROPS = 16  # crops an int8 network's grids are measured on (int8_network)


SLIM_PART_BYTES = 15 << 20  # a lent GPU machine sends files back at 16 MiB at most


@dataclass
class TrainConfig:
    data: Path
    run_dir: Path
    architecture: Architecture = field(default_factory=lambda: Architecture(MEAN_SCALE, 64, 96))
    lmbda: float = DEFAULT_LAMBDA  # weight of the distortion term (see `distortion_term`)
    distortion: str = "mse"  # "mse" (loss λ·255²·MSE), "msssim" (loss λ·(1 − MS-SSIM)), as in CompressAI, or "mixed"
    msssim_share: float = 0.5  # "mixed" only: the MS-SSIM part's share of the distortion (see `distortion_term`)
    # Variable-rate: one λ per rate point (ascending; architecture.rate_points == len). Each step
    # trains one point, chosen at random; `lmbda` is then only the λ the init weights were trained at.
    lambdas: tuple[float, ...] = ()
    lr: float = 3e-4
    lr_final: float = 7.5e-5  # used for the last `lr_drop_fraction` of the time budget
    lr_drop_fraction: float = 0.2
    aux_lr: float = 1e-3
    batch: int = 8
    crop: int = 128
    scale_jitter: float = 1.0  # crops cut from up to this many times their side, scaled down (CropSampler)
    # bf16 autocast of g_a and g_s (93 % of the multiply-adds), for CUDA and CPUs with bf16
    # matrix units (AMX); h_a, h_s and the entropy models, which make the rate term, stay
    # float32 (see `bf16_transforms`).
    amp: bool = False
    minutes: float = 60.0
    checkpoint_minutes: float = 5.0
    seed: int = 0
    threads: int = 0  # 0: torch default
    device: str = "cpu"
    init_weights: Path | None = None  # an exported weights file to start from when no checkpoint exists
    # Distillation (imgarc optimize): the parent's weights file; its x̂ and ŷ are matched with
    # weight `distill` (see `distillation_term`). The parent must have the same rate points; a
    # child with fewer latent channels names the parent's it kept in its checkpoint (TEACHER_LATENTS).
    teacher: Path | None = None
    distill: float = 1.0
    # The parent's forward pass is 46 % of a CPU step of a small child (py-spy, 192 px crops):
    # consulting it on every Nth step only leaves more steps per minute for the rate-distortion loss.
    distill_every: int = 1
    # Networks that train (g_a, h_a, g_s, h_s, entropy_bottleneck, ...); empty: all of them.
    # Anything else keeps the weights the run started from.
    train_only: tuple[str, ...] = ()
    # Quantization-aware training of an int8 g_a or g_s (imgarc.codec.fake_quant): its grids
    # are calibrated on the first crops, kept in the checkpoint, and exported with the weights.
    int8_network: str | None = None
    # "int8": the run's model will be exported with int8 storage (WeightStorage.INT8), so its
    # forward pass sees those weights rounded as the file will hold them (from the float32
    # weights; export rounds their fp16 copy, which moves a few values at a rounding tie; straight
    # through for the gradient): a pruned child fine-tunes for the weights it will ship with.
    weight_storage: str = "float"
    storage_bits: StorageBits = StorageBits()  # int8 storage: each network's weights' width

    def record(self) -> dict:
        """The settings as a checkpoint stores them (paths as strings)."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    def __post_init__(self) -> None:
        """Refuse a configuration training cannot run, naming the option a user sets."""
        if self.scale_jitter < 1.0:
            raise UsageError(f"--scale-jitter must be 1 (off) or more, not {self.scale_jitter}")
        if self.distill_every < 1:
            raise UsageError(f"--distill-every must be 1 or more, not {self.distill_every}")
        if self.crop % 64:
            raise UsageError(f"--crop must be a multiple of 64, not {self.crop}")
        if self.storage_bits != StorageBits() and self.weight_storage != WeightStorage.INT8.value:
            raise UsageError("--storage-bits goes with --storage int8")
        if self.weight_storage not in {s.value for s in WeightStorage}:
            raise UsageError(f"--storage must be one of {', '.join(s.value for s in WeightStorage)}, not {self.weight_storage!r}")
        if self.distortion not in DISTORTIONS:
            raise UsageError(f"--distortion must be one of {', '.join(DISTORTIONS)}, not {self.distortion!r}")
        if self.distortion != "mse" and self.crop < MSSSIM_MIN_CROP:
            raise UsageError(f"--distortion {self.distortion} needs --crop 192 or more (MS-SSIM's 5 scales), not {self.crop}")
        if self.lambdas and (len(self.lambdas) < 2 or list(self.lambdas) != sorted(set(self.lambdas)) or self.lambdas[0] <= 0):
            raise UsageError("--lambdas needs at least two distinct positive values in ascending order")
        if self.architecture.rate_points > 1 and len(self.lambdas) != self.architecture.rate_points:
            raise UsageError("a variable-rate model needs one λ per rate point (--lambdas)")
        if self.int8_network and (self.int8_network not in INT8_CALIBRATION or self.train_only != (self.int8_network,)
                                  or self.init_weights is None):
            # Its grids are exported only into a copy of the weights it started from (train.publish).
            raise UsageError("an int8 network (g_a or g_s) trains alone, from exported weights (imgarc optimize --int8)")


def parse_channels(text: str) -> tuple[int, int]:
    """`--channels N,M` -> (N, M)."""
    try:
        n, m = (int(v) for v in text.split(","))
    except ValueError as e:
        raise UsageError(f"--channels must be two integers like 64,96, not {text!r}") from e
    return n, m


def parse_lambdas(text: str | None) -> tuple[float, ...]:
    """`--lambdas 0.0018,0.0035,...` -> the λs (empty: a single-rate model)."""
    try:
        return tuple(float(v) for v in text.split(",")) if text else ()
    except ValueError as e:
        raise UsageError(f"--lambdas must be numbers separated by commas, not {text!r}") from e


@dataclass
class TrainStatus:
    step: int
    seconds: float
    loss: float
    bpp: float
    psnr: float
    aux: float
    lr: float
    per_point: tuple[tuple[float, float], ...] = ()  # variable-rate: (bpp, PSNR) per rate point
    steps_per_second: float = 0.0  # since the previous report




def bf16_transforms(model: torch.nn.Module, device_type: str) -> None:
    """Run `model`'s g_a and g_s under bf16 autocast, their outputs back in float32.

    Only the transforms: h_s's means and scales (bf16 would round a mean of 40 to a quarter
    step) and the entropy models' likelihoods make the rate term, which stays float32. The
    parameters and their gradients stay float32; the weights and checkpoints do not change.
    """
    for name in ("g_a", "g_s"):
        network = getattr(model, name)
        forward = network.forward

        def autocast_forward(x, forward=forward):
            with torch.autocast(device_type, dtype=torch.bfloat16):
                return forward(x).float()

        network.forward = autocast_forward


def distillation_term(out: dict, teacher_out: dict, lmbda: float, teacher_latents: list[int] | None = None) -> torch.Tensor:
    """How far a (pruned) child's outputs are from its parent's, in the distortion term's units:
    λ·255²·(MSE(x̂, x̂_parent) + MSE(ŷ, ŷ_parent)/256), ŷ in quantization steps (its gained
    value) spread over the 256 pixels one latent covers, compared on the parent's channels
    `teacher_latents` (None: all). Variable-rate models only give ŷ."""
    term = torch.mean((out["x_hat"] - teacher_out["x_hat"]) ** 2)
    if "y_gained" in out and "y_gained" in teacher_out:
        parent_y = teacher_out["y_gained"] if teacher_latents is None else teacher_out["y_gained"][:, teacher_latents]
        term = term + torch.mean((out["y_gained"] - parent_y) ** 2) / 256
    return lmbda * 255**2 * term


def load_teacher(path: Path, device: torch.device):
    """The parent model of a distillation, frozen, from its weights file."""
    weights, _ = load_weights(path)
    teacher = TorchNetworks(weights.architecture, weights.params, weights.model_id).model.to(device)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def stored_weights(model: torch.nn.Module, bits: StorageBits = StorageBits()) -> dict[str, torch.Tensor]:
    """The parameters int8 storage rounds, rounded as it will to their network's `bits` (gradients
    pass straight through): what the forward pass of a run for an int8-stored export uses
    instead of the float ones. (The integer h_s's rounding is not mimicked: 8 bits cost it
    +0.03 % in rate, 6 bits +0.12 %.)"""
    return {name: fake_int8_weights(p, bits_limit(bits.of(name)), int8_output_axis(name))[0]
            for name, p in model.named_parameters() if stored_in_int8(name, p.dim())}


def _psnr(mse: float) -> float:
    return 10 * math.log10(1 / max(mse, 1e-12))


def save_atomic(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # Ctrl-C mid-save included: the last checkpoint stays, no temp file is left
        tmp.unlink(missing_ok=True)
        raise


def _load_exported(model, path: Path, lambdas: tuple[float, ...]) -> None:
    """Start from shipped inference weights (fp16 -> fp32); optimizer state starts fresh.

    A single-rate model can seed a variable-rate one: its gains start at √(λ_k/λ_init).
    """
    weights, _ = load_weights(path)
    missing, unexpected = torch.nn.Module.load_state_dict(model, torch_state(weights.params), strict=False)
    missing_gains = [k for k in missing if k in GAIN_NAMES]
    if unexpected or any(not k.rsplit(".", 1)[-1].startswith(("_", "scale")) for k in missing if k not in GAIN_NAMES):
        raise ModelError(f"{path} does not fit the architecture being trained")
    if missing_gains:
        reference = float(weights.meta.get("lambda", lambdas[len(lambdas) // 2]))
        model.set_initial_gains(initial_gains(list(lambdas), reference))


def _refuse_divergence(model, step: int, ckpt_path: Path) -> None:
    """Stop before non-finite weights (a diverged run) replace the last good checkpoint."""
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        kept = f"{ckpt_path} is kept from before" if ckpt_path.exists() else "no checkpoint was written"
        raise TrainingError(f"training diverged (weights are not finite by step {step}); {kept}. Try a lower --lr.")


def slim_checkpoint(path: Path, out: Path) -> None:
    """Write `path` without its optimizer state and with the learned parameters in fp16: a sixth
    of the size, for moving a run between machines (a GPU lent for a while, then this one).
    Resuming from it restarts Adam. Buffers stay exact: some are tiny bounds (GDN's pedestal
    2⁻³⁶, the likelihood floor 1e-9) that fp16 rounds to zero, which turns training into NaNs."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    model = build_model(Architecture.from_dict(state["config"]["architecture"]))
    learned = {name for name, _ in model.named_parameters()}
    weights = {k: v.half() if k in learned else v for k, v in state["model"].items()}
    save_atomic({k: v for k, v in state.items() if k not in ("opt", "aux_opt")} | {"model": weights}, out)


def slim_checkpoint_parts(path: Path, folder: Path, part_bytes: int = SLIM_PART_BYTES) -> list[Path]:
    """`slim_checkpoint(path)` cut into folder/slim.pt.part00, part01, …: how a run travels to and
    from a lent GPU machine (scripts/gpu_prepare.py, scripts/gpu_train.sh); `cat` joins them."""
    slim = folder / "slim.pt"
    slim_checkpoint(path, slim)
    data = slim.read_bytes()
    slim.unlink()
    parts = []
    for k, start in enumerate(range(0, len(data), part_bytes)):
        parts.append(folder / f"slim.pt.part{k:02d}")
        parts[-1].write_bytes(data[start : start + part_bytes])
    return parts


def train(config: TrainConfig, resume: bool, log: Callable[[TrainStatus], None] | None = None) -> Path:
    """Train for `config.minutes` of wall time (on top of what a resumed checkpoint spent).

    Returns the checkpoint path. `log` is called every few seconds with running averages.
    """
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    config.run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = config.run_dir / CHECKPOINT_NAME

    model = build_model(config.architecture).to(device)
    if config.amp:
        bf16_transforms(model, device.type)
    for name, p in model.named_parameters():
        p.requires_grad_(not config.train_only or name.split(".", 1)[0] in config.train_only)
    aux_params = [p for n, p in model.named_parameters() if n.endswith(".quantiles") and p.requires_grad]
    main_params = [p for n, p in model.named_parameters() if not n.endswith(".quantiles") and p.requires_grad]
    opt = torch.optim.Adam(main_params, lr=config.lr)
    aux_opt = torch.optim.Adam(aux_params, lr=config.aux_lr) if aux_params else None
    step, spent = 0, 0.0
    state: dict = {}
    variable_rate = config.architecture.rate_points > 1
    if resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        started = Architecture.from_dict(state["config"]["architecture"])
        if started != config.architecture:
            raise UsageError(f"{ckpt_path} holds a model of other widths ({started}) than this call's options give "
                             f"({config.architecture}): resume it with the options it started with, or give another --run-dir")
        model.load_state_dict(state["model"])
        if "opt" in state:  # a weights-only checkpoint (see `slim_checkpoint`) restarts the optimizers
            opt.load_state_dict(state["opt"])
            if aux_opt is not None:
                aux_opt.load_state_dict(state["aux_opt"])
        step, spent = state["step"], state["seconds"]
    elif config.init_weights is not None:
        _load_exported(model, config.init_weights, config.lambdas)
    elif variable_rate:
        # From scratch, spread the rate points' quantization steps apart from the first step.
        model.set_initial_gains(initial_gains(list(config.lambdas), config.lambdas[len(config.lambdas) // 2]).to(device))
    point_rng = random.Random(config.seed * 7919 + step)
    teacher = load_teacher(config.teacher, device) if config.teacher is not None and config.distill > 0 else None
    if teacher is not None and config.amp:
        bf16_transforms(teacher, device.type)
    teacher_latents = state.get(TEACHER_LATENTS)

    photos = load_photos(config.data, config.crop)
    int8_ranges = {}
    if config.int8_network:
        if "int8_ranges" in state:
            int8_ranges = load_arrays(state["int8_ranges"])
        else:
            crops = CropSampler(photos, config.crop, seed=config.seed).batch(CALIBRATION_CROPS)
            calibration = INT8_CALIBRATION[config.int8_network]
            int8_ranges = calibration(model, torch.from_numpy(crops).to(device).permute(0, 3, 1, 2).float().div_(255))
        network = config.int8_network  # the same parameters, trained through the grid
        setattr(model, network, Int8Network(getattr(model, network), int8_ranges, network))
    sampler = CropSampler(photos, config.crop, seed=config.seed + step, scale_jitter=config.scale_jitter)
    batches = prefetched(lambda: sampler.batch(config.batch))
    budget = spent + config.minutes * 60.0
    start = time.monotonic() - spent
    last_ckpt = time.monotonic()
    last_log = time.monotonic()
    # Running sums stay on the device: reading them every step would stall a GPU.
    zero = torch.zeros((), device=device)
    sums = {"loss": zero, "bpp": zero, "mse": zero, "aux": zero, "n": 0}
    point_sums = [[zero, zero, 0] for _ in config.lambdas]  # bpp, mse, count per rate point

    def checkpoint() -> None:
        _refuse_divergence(model, step, ckpt_path)
        save_atomic(
            {
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "aux_opt": aux_opt.state_dict() if aux_opt is not None else {},
                "step": step,
                "seconds": time.monotonic() - start,
                "config": config.record(),
                **({"int8_ranges": save_arrays(int8_ranges)} if int8_ranges else {}),
                **({TEACHER_LATENTS: teacher_latents} if teacher_latents is not None else {}),
            },
            ckpt_path,
        )

    # SIGTERM (kill, session end) stops the loop cleanly so the final checkpoint is written.
    stop = {"requested": False}
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.update(requested=True))
    model.train()
    while time.monotonic() - start < budget and not stop["requested"]:
        elapsed = time.monotonic() - start
        lr = config.lr_final if elapsed > budget * (1 - config.lr_drop_fraction) else config.lr
        for g in opt.param_groups:
            g["lr"] = lr
        x = torch.from_numpy(next(batches)).to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
        point = point_rng.randrange(len(config.lambdas)) if variable_rate else 0
        arguments = {"rate_position": point} if variable_rate else {}
        if config.weight_storage == WeightStorage.INT8.value:
            out = torch.func.functional_call(model, stored_weights(model, config.storage_bits), (x,), arguments)
        else:
            out = model(x, **arguments)
        num_pixels = x.shape[0] * x.shape[2] * x.shape[3]
        bpp = sum(-torch.log2(l).sum() for l in out["likelihoods"].values()) / num_pixels
        mse = torch.mean((out["x_hat"] - x) ** 2)
        lmbda = config.lambdas[point] if variable_rate else config.lmbda
        loss = lmbda * distortion_term(config.distortion, out["x_hat"], x, mse, config.msssim_share) + bpp
        if teacher is not None and step % config.distill_every == 0:
            with torch.no_grad():
                teacher_out = teacher(x, rate_position=point) if variable_rate else teacher(x)
            loss = loss + config.distill * distillation_term(out, teacher_out, lmbda, teacher_latents)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(main_params, 1.0)
        opt.step()
        if aux_opt is not None:
            aux = model.aux_loss()
            aux_opt.zero_grad(set_to_none=True)
            aux.backward()
            aux_opt.step()
        else:  # the entropy models do not train: their loss is only logged
            with torch.no_grad():
                aux = model.aux_loss()
        step += 1
        for k, v in (("loss", loss), ("bpp", bpp), ("mse", mse), ("aux", aux)):
            sums[k] = sums[k] + v.detach()
        sums["n"] += 1
        if variable_rate:
            point_sums[point][0] = point_sums[point][0] + bpp.detach()
            point_sums[point][1] = point_sums[point][1] + mse.detach()
            point_sums[point][2] += 1
        now = time.monotonic()
        if log and now - last_log > 30:
            n = sums["n"]
            per_point = tuple((float(b) / c, _psnr(float(m) / c)) for b, m, c in point_sums if c)
            log(TrainStatus(step, now - start, float(sums["loss"]) / n, float(sums["bpp"]) / n,
                            _psnr(float(sums["mse"]) / n), float(sums["aux"]) / n, lr, per_point, n / (now - last_log)))
            sums = {k: zero for k in sums} | {"n": 0}
            point_sums = [[zero, zero, 0] for _ in config.lambdas]
            last_log = now
        if now - last_ckpt > config.checkpoint_minutes * 60:
            checkpoint()
            last_ckpt = now
    checkpoint()
    signal.signal(signal.SIGTERM, previous)
    return ckpt_path
