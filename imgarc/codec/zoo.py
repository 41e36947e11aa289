"""CompressAI's pretrained models (its "zoo") as imgarc models: names, where they are, fetching.

A zoo model is named `cai:ARCH:METRIC:Q`, e.g. `cai:mbt2018-mean:mse:3`: ARCH a CompressAI zoo
architecture, METRIC `mse` or `ms-ssim`, Q the zoo's own quality (1-8, not imgarc's 1-100).
Shorthands `cai:ARCH`, `cai:ARCH:Q` and `cai:ARCH:METRIC` mean metric `mse` and, without Q,
the zoo quality nearest the imgarc --quality (1-100 split evenly over 1-8).

Files live where CompressAI's own zoo puts them: the torch hub cache,
`$TORCH_HOME/hub/checkpoints/<file name of CompressAI's URL>` (TORCH_HOME defaults to
`$XDG_CACHE_HOME/torch`, i.e. `~/.cache/torch`). A file is verified against the sha256 prefix in
its name (torch hub's convention, checked on every load, not only on download); its full
sha256 is what an archive records. imgarc's conversion of it (zoo_convert.py) is cached in
`$XDG_CACHE_HOME/imgarc/zoo/`. `IMGARC_OFFLINE=1` forbids downloads.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from imgarc.codec.architecture import SUPPORTED_ARCHITECTURES
from imgarc.errors import ModelError
from imgarc.extras import require

ZOO_PREFIX = "cai:"
METRICS = ("mse", "ms-ssim")
SUPPORTED = SUPPORTED_ARCHITECTURES  # every architecture imgarc builds has zoo weights
_SEQUENTIAL = (
    "autoregressive context model: each latent's probability table depends on latents decoded "
    "just before it, so decoding is one network call per latent position, one after another; "
    "imgarc's coders need every table known before a stream is decoded"
)
REFUSED = {
    "mbt2018": _SEQUENTIAL,
    "cheng2020-anchor": _SEQUENTIAL,
    "cheng2020-attn": _SEQUENTIAL,
    "bmshj2018-factorized": "no hyperprior (one fixed table per channel): a model family this imgarc does not code yet",
}
OFFLINE_ENV = "IMGARC_OFFLINE"
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.pth(\.tar)?$")


def is_zoo_id(model_id: str | None) -> bool:
    return bool(model_id) and model_id.startswith(ZOO_PREFIX)


def supported_line() -> str:
    return f"supported: {', '.join(f'cai:{a}' for a in SUPPORTED)} (metrics {'/'.join(METRICS)}, qualities 1-8)"


@dataclass(frozen=True)
class ZooModel:
    architecture: str
    metric: str
    quality: int  # the zoo's own quality index

    @property
    def model_id(self) -> str:
        return f"{ZOO_PREFIX}{self.architecture}:{self.metric}:{self.quality}"

    @property
    def url(self) -> str:
        require("CompressAI's pretrained models", "compressai")
        from compressai.zoo.image import model_urls

        return model_urls[self.architecture][self.metric][self.quality]

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def hash_prefix(self) -> str:
        """The sha256 prefix CompressAI put in the file name (torch hub's check_hash convention)."""
        m = _HASH_IN_NAME.search(self.file_name)
        if not m:
            raise ModelError(f"CompressAI's file name {self.file_name!r} carries no sha256 prefix; cannot verify it")
        return m.group(1)

    @property
    def channels(self) -> tuple[int, int]:
        """(N, M) CompressAI publishes for this quality (informational: conversion reads the file)."""
        require("CompressAI's pretrained models", "compressai")
        from compressai.zoo.image import cfgs

        return tuple(cfgs[self.architecture][self.quality])  # type: ignore[return-value]


def _zoo_qualities(architecture: str, metric: str) -> list[int]:
    require("CompressAI's pretrained models", "compressai")
    from compressai.zoo.image import model_urls

    return sorted(model_urls.get(architecture, {}).get(metric, {}))


def parse_zoo_id(text: str, quality: int | None = None) -> ZooModel:
    """`cai:ARCH[:METRIC][:Q]` -> ZooModel. Without Q, `quality` (imgarc's 1-100) picks it;
    unsupported architectures are refused with the reason."""
    if not is_zoo_id(text):
        raise ModelError(f"{text!r} is not a CompressAI zoo model id (cai:ARCH:METRIC:Q)")
    parts = text[len(ZOO_PREFIX):].split(":")
    arch, rest = parts[0], parts[1:]
    if arch in REFUSED:
        raise ModelError(f"CompressAI model {arch!r} is not supported: {REFUSED[arch]}; {supported_line()}")
    if arch not in SUPPORTED:
        raise ModelError(f"unknown CompressAI zoo model {arch!r}; {supported_line()}")
    metric, zoo_quality = "mse", None
    if rest and rest[0] in METRICS:
        metric, rest = rest[0], rest[1:]
    if rest and rest[0].isdigit():
        zoo_quality, rest = int(rest[0]), rest[1:]
    if rest:
        raise ModelError(f"cannot read model id {text!r}: write cai:ARCH:METRIC:Q, e.g. cai:{arch}:mse:3")
    qualities = _zoo_qualities(arch, metric)
    if zoo_quality is None:
        if quality is None:
            raise ModelError(f"model id {text!r} names no zoo quality: write cai:{arch}:{metric}:Q with Q in "
                             f"{qualities[0]}-{qualities[-1]}")
        zoo_quality = qualities[min(len(qualities) - 1, (max(1, min(100, quality)) - 1) * len(qualities) // 100)]
    if zoo_quality not in qualities:
        raise ModelError(f"CompressAI has no {arch} {metric} model of quality {zoo_quality} "
                         f"(qualities {qualities[0]}-{qualities[-1]})")
    return ZooModel(arch, metric, zoo_quality)


def all_zoo_models() -> list[ZooModel]:
    return [ZooModel(a, m, q) for a in SUPPORTED for m in METRICS for q in _zoo_qualities(a, m)]


# --------------------------------------------------------------------------- where files are


def torch_hub_dir() -> Path:
    """torch.hub.get_dir(), computed as torch does but without importing torch."""
    home = os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
    return Path(os.path.expanduser(home)) / "hub"


def zoo_file(m: ZooModel) -> Path:
    """Where CompressAI's zoo (torch.hub.load_state_dict_from_url) keeps the file."""
    return torch_hub_dir() / "checkpoints" / m.file_name


def conversion_dir() -> Path:
    """imgarc's cache of converted zoo models (beside the bench's datasets cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imgarc" / "zoo"


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "") not in ("", "0")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise ModelError(f"cannot read {path}: {e.strerror}") from e
    return h.hexdigest()


def how_to_get(m: ZooModel) -> str:
    return (f"on a machine with internet access run `imgarc models --download {m.model_id}` "
            f"(or download {m.url} into {zoo_file(m).parent}/)")


def _download(m: ZooModel, target: Path) -> None:
    """CompressAI's zoo mechanism: torch hub's downloader into the hub cache (hash-checked, atomic)."""
    from urllib.error import URLError

    import torch.hub

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(m.url, str(target), hash_prefix=m.hash_prefix, progress=False)
    except (URLError, OSError, RuntimeError) as e:  # no network, HTTP error, full disk, hash mismatch
        reason = getattr(e, "reason", None) or e
        raise ModelError(f"model {m.model_id} is not cached and could not be downloaded ({reason}); {how_to_get(m)}") from e


def fetch_zoo_file(m: ZooModel, download: bool = True) -> tuple[Path, str]:
    """The verified CompressAI file of `m` (downloaded first if allowed) and its full sha256."""
    path = zoo_file(m)
    if not path.is_file():
        if not download or offline():
            why = f"{OFFLINE_ENV} is set" if offline() else "downloads are off"
            raise ModelError(f"model {m.model_id} is not cached (no {path}) and {why}; {how_to_get(m)}")
        _download(m, path)
    sha = sha256_file(path)
    if not sha.startswith(m.hash_prefix):
        raise ModelError(f"{path} does not match the sha256 prefix {m.hash_prefix} in CompressAI's name for "
                         f"{m.model_id} (altered or damaged); refusing it: delete it and imgarc downloads it again")
    return path, sha
