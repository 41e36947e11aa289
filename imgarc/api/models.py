"""The models this imgarc can code with: installed ones, and CompressAI's pretrained zoo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imgarc.codec.registry import ModelRecord, default_model_id, list_models
from imgarc.codec.zoo import REFUSED, conversion_dir, parse_zoo_id, torch_hub_dir
from imgarc.codec.zoo_convert import ZooEntry, list_zoo, load_zoo_codec


@dataclass(frozen=True)
class InstalledModel:
    record: ModelRecord
    is_default: bool
    tune_default: str | None  # "msssim": what `--tune msssim` picks (None: not a --tune choice)


@dataclass(frozen=True)
class ZooListing:
    entries: list[ZooEntry]
    refused: dict[str, str]  # zoo architecture -> why imgarc cannot code with it
    compressai_files: Path  # where CompressAI's downloads are kept
    conversions: Path  # where imgarc keeps its conversions of them


def installed_models() -> list[InstalledModel]:
    """Every installed model (shipped, or under IMGARC_MODEL_PATH), with its role."""
    default = default_model_id()
    return [InstalledModel(r, r.model_id == default,
                           r.tune if r.model_id != default and r.model_id == default_model_id(r.tune) else None)
            for r in list_models()]


def zoo_models() -> ZooListing:
    return ZooListing(list_zoo(), REFUSED, torch_hub_dir() / "checkpoints", conversion_dir())


def download_zoo_model(model_id: str) -> tuple[str, str]:
    """Fetch and convert a CompressAI zoo model now (so it works offline): (canonical id, file sha256)."""
    canonical = parse_zoo_id(model_id).model_id
    return canonical, load_zoo_codec(canonical).weights_sha256
