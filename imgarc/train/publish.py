"""Training checkpoint -> inference weights file + its record in a models.json catalog."""

from __future__ import annotations

import json
from pathlib import Path

from dataclasses import replace

import torch

from imgarc.codec.architecture import Architecture, build_model
from imgarc.codec.export import export_model, float_params
from imgarc.codec.int8 import Int8Ranges, load_arrays
from imgarc.codec.registry import CATALOG_NAME, Tune
from imgarc.codec.storage_bits import StorageBits
from imgarc.codec.weights import WeightsFile, WeightStorage, load_weights, save_weights
from imgarc.fileio import write_file_atomic
from imgarc.train.trainer import TEACHER_LATENTS


def publish_checkpoint(checkpoint: Path, model_id: str, out_dir: Path, quality: int, description: str, make_default: bool,
                       half: bool = True, parent: str | None = None, storage: WeightStorage = WeightStorage.FLOAT,
                       storage_bits: StorageBits = StorageBits(), tune: Tune | None = None) -> str:
    """Export `checkpoint` as `<out_dir>/<model_id>.npz` and list it in out_dir/models.json
    (`parent`: the model a variant was made from, recorded in its weights file with the parent's
    latent channels a pruned child kept, so a later run can go on distilling it; `storage` and
    `storage_bits`: how its networks are stored, see WeightStorage; `tune`: what it is listed
    as made for, by default what its loss says, see `tune_of`). A run that
    trained only some networks of the weights it started from (an int8 g_a or g_s) exports those
    networks, and their int8 grids, into a copy of that file (`publish_network_variant`)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    cfg = state["config"]
    arch = Architecture.from_dict(cfg["architecture"])
    model = build_model(arch)
    model.load_state_dict(state["model"])
    meta = {"lambda": cfg["lmbda"], "lambdas": list(cfg.get("lambdas", ())), "steps": state["step"], "train_seconds": round(state["seconds"]),
            "train_data": str(cfg["data"]), "crop": cfg["crop"], "batch": cfg["batch"],
            "distortion": cfg.get("distortion", "mse")}
    if meta["distortion"] == "mixed":
        meta["msssim_share"] = cfg["msssim_share"]
    if parent:
        meta["parent"] = parent
        meta["distill"] = cfg.get("distill")
        if TEACHER_LATENTS in state:  # so `imgarc optimize --init` can go on distilling it
            meta[TEACHER_LATENTS] = [int(c) for c in state[TEACHER_LATENTS]]
    if cfg.get("train_only") and cfg.get("init_weights"):
        start, _ = load_weights(Path(cfg["init_weights"]))
        return publish_network_variant(start, model, tuple(cfg["train_only"]), model_id, out_dir, quality, description,
                                       {**start.meta, **meta}, load_arrays(state.get("int8_ranges", {})))
    return publish_model(model, arch, model_id, out_dir, quality, description, meta, make_default, half, storage, storage_bits,
                         tune)


def publish_model(model, arch: Architecture, model_id: str, out_dir: Path, quality: int, description: str, meta: dict,
                  make_default: bool = False, half: bool = True, storage: WeightStorage = WeightStorage.FLOAT,
                  storage_bits: StorageBits = StorageBits(), tune: Tune | None = None) -> str:
    """Export a torch model as `<out_dir>/<model_id>.npz` and list it in out_dir/models.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    filename = f"{model_id}.npz"
    sha = export_model(model, arch, model_id, out_dir / filename, meta, half=half, storage=storage, storage_bits=storage_bits)
    register_model(out_dir, model_id, filename, sha, quality, description, make_default, arch.rate_points > 1,
                   tune or tune_of(meta))
    return sha


def publish_network_variant(parent: WeightsFile, model, networks: tuple[str, ...], model_id: str, out_dir: Path,
                            quality: int, description: str, meta: dict, int8_ranges: Int8Ranges | None = None) -> str:
    """Export a variant of `parent` whose `networks` (g_a, h_a, g_s) are `model`'s, with their
    `int8_ranges`, and whose every other array is the parent's own (coding tables, integer h_s,
    gains: copied, never rebuilt, so an encoder variant's archives decode with the parent's
    decoder to the same pixels), as `<out_dir>/<model_id>.npz`, listed in out_dir/models.json.
    The parent's int8 grids of the other networks stay."""
    trained = float_params(model, half=True)
    params = parent.params.with_changes({k: v for k, v in trained.items() if k.split(".", 1)[0] in networks})
    ranges = {k: v for k, v in parent.int8_ranges.items() if k.split(".", 1)[0] not in networks}
    variant = replace(parent, model_id=model_id, params=params, meta=meta, int8_ranges={**ranges, **(int8_ranges or {})})
    out_dir.mkdir(parents=True, exist_ok=True)
    filename = f"{model_id}.npz"
    sha = save_weights(variant, out_dir / filename)
    register_model(out_dir, model_id, filename, sha, quality, description, False, parent.architecture.rate_points > 1,
                   tune_of(meta))
    return sha


def tune_of(meta: dict) -> Tune:
    """A mixed model is filed under the metric with the larger share of its distortion."""
    return Tune.MSSSIM if meta.get("distortion") == "msssim" or meta.get("msssim_share", 0) > 0.5 else Tune.PSNR


def register_model(folder: Path, model_id: str, filename: str, sha256: str, quality: int,
                   description: str, make_default: bool, variable_rate: bool = False, tune: Tune = Tune.PSNR) -> None:
    path = folder / CATALOG_NAME
    doc = json.loads(path.read_text()) if path.exists() else {"default": None, "models": []}
    doc["models"] = [m for m in doc["models"] if m["id"] != model_id]
    record = {"id": model_id, "file": filename, "sha256": sha256, "quality": quality, "description": description}
    if variable_rate:
        record["variable_rate"] = True
    if tune is not Tune.PSNR:
        record["tune"] = tune.value
    doc["models"].append(record)
    doc["models"].sort(key=lambda m: m["quality"])
    if make_default:  # never implicitly: a catalog first on IMGARC_MODEL_PATH would take over every command
        doc["default"] = model_id
    write_file_atomic(path, (json.dumps(doc, indent=2) + "\n").encode())
