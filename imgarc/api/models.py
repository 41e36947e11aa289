"""The models this imgarc can code with: installed ones, and CompressAI's pretrained zoo."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from imgarc.codec.architecture import macs_per_pixel
from imgarc.codec.int8 import QuantizedNetwork, quantizes_network
from imgarc.codec.registry import ModelRecord, Tune, default_model_id, list_models, load_codec
from imgarc.codec.storage_bits import StorageBits
from imgarc.codec.weights import WeightStorage, load_weights
from imgarc.codec.zoo import REFUSED, conversion_dir, parse_zoo_id, torch_hub_dir
from imgarc.codec.zoo_convert import ZooEntry, list_zoo, load_zoo_codec


@dataclass(frozen=True)
class InstalledModel:
    record: ModelRecord
    is_default: bool
    tune_default: Tune | None  # what `--tune` picks this model for (None: not a --tune choice)


@dataclass(frozen=True)
class ModelFacts:
    """What a model costs, from its weights file: `imgarc models` prints it."""

    weights_bytes: int
    parameters: int  # in the float networks (g_a, h_a, h_s, entropy bottleneck, gains)
    macs_per_pixel: dict[str, float]  # g_a, h_a, h_s (the integer one), g_s
    parent: str | None  # the model a variant (imgarc optimize) was made from
    int8_networks: tuple[str, ...] = ()  # those that run in int8 (imgarc optimize --int8)
    storage: WeightStorage = WeightStorage.FLOAT  # how the file stores the networks (optimize --storage)
    storage_bits: StorageBits = StorageBits()  # int8 storage: each network's weights' width (optimize --storage-bits)


@dataclass(frozen=True)
class ModelSpeed:
    """One photo coded and decoded here, all cores, as the command runs it (median of runs)."""

    encode_ms_per_mp: float  # g_a, h_a, quantization, the integer h_s
    decode_ms_per_mp: float  # the integer h_s, g_s, pixels


# The photo timed: 0.79 MP, over 768x512, so g_a and g_s run in tiles on every core as
# they do for any photo that size; smooth shapes and some noise, not flat (flat costs nothing).
SPEED_PHOTO_SIZE = (768, 1024)


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


def model_facts(record: ModelRecord) -> ModelFacts:
    weights, _ = load_weights(record.path, record.sha256)
    parameters = sum(math.prod(weights.params.shape(name)) for name in weights.params)
    parent = weights.meta.get("parent")
    return ModelFacts(record.path.stat().st_size, parameters, macs_per_pixel(weights.architecture),
                      str(parent) if parent else None,
                      tuple(n.value for n in QuantizedNetwork if quantizes_network(weights.int8_ranges, n.value)),
                      weights.storage, weights.storage_bits)


def measure_speed(model_id: str, runs: int = 3) -> ModelSpeed:
    """Time coding and decoding a synthetic photo (SPEED_PHOTO_SIZE) with `model_id` here,
    after one untimed round that makes the sessions and buffers; medians of `runs`."""
    codec = load_codec(model_id)
    height, width = SPEED_PHOTO_SIZE
    rgb = speed_test_photo(height, width)
    quality = 75 if codec.variable_rate else None
    code = codec.analyse(rgb, quality)

    def decode() -> None:
        codec.y_indexes_and_means(code.z_symbols, code.gains)
        codec.synthesize(code, height, width)

    decode()
    megapixels = height * width / 1e6
    return ModelSpeed(_median_seconds(lambda: codec.analyse(rgb, quality), runs) * 1000 / megapixels,
                      _median_seconds(decode, runs) * 1000 / megapixels)


def speed_test_photo(height: int, width: int) -> np.ndarray:
    """RGB uint8: gradients, waves and a little noise (the same pixels every time)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32) / max(height, width)
    waves = [np.sin(2 * np.pi * (f * x + g * y)) for f, g in ((3, 1), (1, 7), (11, 5))]
    noise = np.random.default_rng(0).normal(0, 0.04, (height, width, 3)).astype(np.float32)
    rgb = np.stack([0.5 + 0.3 * waves[c] + 0.2 * (x if c == 0 else y) for c in range(3)], axis=-1) + noise
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def _median_seconds(work: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
