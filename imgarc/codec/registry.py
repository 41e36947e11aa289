"""Which models this imgarc can use, where their weights are, and loading them (cached).

Models are listed in a `models.json` beside their weights files: the shipped ones in the
package's `assets/`, more in folders named by the IMGARC_MODEL_PATH environment variable
(colon-separated; tests use it for tiny models). Each record gives the file's sha256: a file
that does not match is refused, never used, and may say what the model is tuned for
(`"tune": "msssim"`; absent: psnr; see Tune). A catalog names its `default` model and, optionally,
the model each `--tune` picks (`"tune_defaults": {"msssim": ID, "fast": ID}`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from pathlib import Path

from imgarc.codec.image_codec import ImageCodec
from imgarc.codec.weights import load_weights
from imgarc.codec.zoo import is_zoo_id, parse_zoo_id
from imgarc.codec.zoo_convert import load_zoo_codec, missing_model_hint
from imgarc.errors import ModelError
from imgarc.runtime import Device, Runtime, chosen_runtime

CATALOG_NAME = "models.json"


class Tune(str, Enum):
    """What a model is made for: `--tune` picks among them. PSNR and MSSSIM name the metric its
    distortion term was (MSE, or MSE mixed with MS-SSIM, judged by PSNR; MS-SSIM alone); FAST is
    a pruned variant for phone-class CPUs (`imgarc optimize`): its networks several times
    faster, its files a few percent larger at equal quality (its model card says how much)."""

    PSNR = "psnr"
    MSSSIM = "msssim"
    FAST = "fast"


TUNES = tuple(t.value for t in Tune)


@dataclass(frozen=True)
class ModelRecord:
    model_id: str
    path: Path
    sha256: str
    quality: int  # the --quality this model serves best (1-100)
    description: str
    variable_rate: bool = False  # serves every --quality itself (gain table in its weights)
    tune: Tune = Tune.PSNR


def assets_dir() -> Path:
    """`imgarc/assets` in an installed wheel, the repository's `assets/` in a source checkout."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "assets", here.parent / "assets"):
        if (candidate / CATALOG_NAME).is_file():
            return candidate
    return here.parent / "assets"


def catalog_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("IMGARC_MODEL_PATH", "").split(os.pathsep) if p]
    return extra + [assets_dir()]


def _read_catalog(folder: Path) -> tuple[dict, list[ModelRecord]]:
    """(defaults, records): defaults maps "default" and each tune's value to a model id."""
    path = folder / CATALOG_NAME
    if not path.is_file():
        return {}, []
    try:
        doc = json.loads(path.read_text())
        records = [
            ModelRecord(m["id"], folder / m["file"], m["sha256"], int(m["quality"]), m.get("description", ""),
                        bool(m.get("variable_rate", False)), Tune(m.get("tune", Tune.PSNR.value)))
            for m in doc["models"]
        ]
        defaults = {"default": doc.get("default"), **{t: doc.get("tune_defaults", {}).get(t) for t in TUNES}}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ModelError(f"model catalog {path} is unreadable ({e})") from e
    return defaults, records


def list_models() -> list[ModelRecord]:
    seen: dict[str, ModelRecord] = {}
    for folder in catalog_dirs():
        for r in _read_catalog(folder)[1]:
            seen.setdefault(r.model_id, r)
    return list(seen.values())


def default_model_id(tune: Tune | None = None) -> str | None:
    """The catalog's default model, or with `tune`, its preferred model of that tune (None if unset).
    The first catalog on IMGARC_MODEL_PATH that sets it wins over the shipped one."""
    key = tune.value if tune else "default"
    for folder in catalog_dirs():
        chosen = _read_catalog(folder)[0].get(key)
        if chosen:
            return chosen
    if tune:
        return None
    raise ModelError("no default model is installed (assets/models.json is missing); reinstall imgarc")


def model_for_quality(quality: int, tune: Tune | str | None = None) -> ModelRecord:
    """The model that codes at `quality`, among those tuned for `tune` (default: what the default
    model is tuned for). For the default model's tune: the default model if it is variable-rate.
    For another tune: the catalog's choice for it (`tune_defaults`), else the newest
    variable-rate model of that tune. Otherwise the single-rate model whose nominal quality is
    nearest (ties: the higher)."""
    models = list_models()
    if not models:
        raise ModelError("no models are installed; reinstall imgarc")
    by_id = {r.model_id: r for r in models}
    default = by_id.get(default_model_id())
    if tune is not None and tune not in TUNES:
        raise ModelError(f"--tune must be one of {', '.join(TUNES)}, not {tune!r}")
    wanted = Tune(tune) if tune else (default.tune if default else Tune.PSNR)
    candidates = [r for r in models if r.tune is wanted]
    if not candidates:
        raise ModelError(f"no installed model is tuned for {wanted.value} (see `imgarc models`)")
    if default in candidates:
        if default.variable_rate:
            return default
    else:  # another tune than the default's
        preferred = by_id.get(default_model_id(wanted) or "")
        if preferred in candidates:
            return preferred
        variable = [r for r in candidates if r.variable_rate]
        if variable:
            return variable[-1]  # listed last: the newest
    single = [r for r in candidates if not r.variable_rate] or candidates
    return min(single, key=lambda r: (abs(r.quality - quality), -r.quality))


def find_model(model_id: str) -> ModelRecord:
    for r in list_models():
        if r.model_id == model_id:
            return r
    retired = retired_models().get(model_id)
    if retired:
        raise ModelError(f"model {model_id!r} is no longer shipped: it was last in imgarc {retired.last_version} "
                         f"(git {retired.commit}), which reads this archive: pip install imgarc=={retired.last_version}")
    known = ", ".join(r.model_id for r in list_models()) or "none"
    raise ModelError(f"model {model_id!r} is not installed (installed: {known}); install the imgarc version that made the archive")


@dataclass(frozen=True)
class RetiredModel:
    """A model new archives are no longer made with, removed from the package to keep it small."""

    last_version: str  # the last imgarc version that ships it (and so reads its archives)
    commit: str


def retired_models() -> dict[str, RetiredModel]:
    """Models that earlier imgarc versions shipped ("retired" in the shipped catalog)."""
    path = assets_dir() / CATALOG_NAME
    try:
        doc = json.loads(path.read_text())
        return {k: RetiredModel(str(v["last_version"]), str(v["commit"])) for k, v in doc.get("retired", {}).items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ModelError(f"model catalog {path} is unreadable ({e})") from e


@lru_cache(maxsize=4)
def _load(path: Path, sha256: str, runtime: Runtime, device: Device):  # runtime and device: a codec holds its networks
    if not path.is_file():
        raise ModelError(f"weights file {path} is missing; reinstall imgarc")
    mismatch = ModelError(f"weights file {path} does not match its recorded sha256 (altered or damaged); reinstall imgarc")
    try:
        weights, actual = load_weights(path, sha256)  # parsed and hashed from one read of the file
    except ModelError:
        if hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
            raise mismatch from None  # damaged: say so, not what the damage broke
        raise
    if actual != sha256:
        raise mismatch
    return ImageCodec(weights, actual, device)


def load_codec(model_id: str, device: Device = Device.CPU):
    """The ImageCodec for an installed model (weights verified against the catalog), or for a
    CompressAI zoo model `cai:ARCH:METRIC:Q` (fetched and converted at first use: codec/zoo.py),
    its networks on `device` (CPU or CUDA, resolved: runtime.device; zoo models run on the CPU)."""
    if is_zoo_id(model_id):
        return load_zoo_codec(model_id)
    r = find_model(model_id)
    return _load(r.path, r.sha256, chosen_runtime(), device)


def resolve_model_id(model_id: str, quality: int | None = None) -> str:
    """The canonical id of what --model names: installed ids as they are; zoo shorthands
    (`cai:ARCH`, `cai:ARCH:Q`, ...) completed, the zoo quality from `quality` (1-100) if absent.
    Raises ModelError for an unknown or unsupported model."""
    if is_zoo_id(model_id):
        return parse_zoo_id(model_id, quality).model_id
    return find_model(model_id).model_id


def how_to_get_model(model_id: str) -> str:
    """What a user can do to obtain model `model_id` in the version an archive needs."""
    if is_zoo_id(model_id):
        return missing_model_hint(model_id)
    return "install the imgarc version that made the archive"
