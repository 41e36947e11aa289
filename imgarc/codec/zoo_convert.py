"""A CompressAI zoo file -> an imgarc weights file, once, cached; loading it as an ImageCodec.

Why the conversion is the same on every machine (issue 11): nothing in it is float math that
could round differently.

- The CDF tables are the zoo file's own (`entropy_bottleneck._quantized_cdf/_offset/_cdf_length`,
  `gaussian_conditional._quantized_cdf/_offset/_cdf_length`): integers stored in the file, which
  is verified by sha256. CompressAI's `update()`, whose float math differs between AVX-512 and
  plain builds, is never called; a file without tables is refused, not rebuilt.
- The integer h_s comes from the float32 weights by scaling with powers of two and rounding
  (exact), its scale thresholds from the file's float32 `scale_table` by float64 multiply and
  sqrt (exact / correctly rounded under IEEE-754 on every CPU).
- Float parameters are copied as they are (fp32).

So two machines converting the same file get the same tables and the same TABLES_SHA256; the
decoder still checks that hash against the archive's and refuses a mismatch (a future imgarc
with another conversion recipe), so a difference can never become a wrong image.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from imgarc.codec.architecture import SCALE_ONLY, Architecture
from imgarc.codec.export import float_params
from imgarc.codec.image_codec import ImageCodec
from imgarc.codec.int_hyper import integerize_h_s
from imgarc.codec.weights import CodingTables, WeightsFile, load_weights, save_weights
from imgarc.coders.tables import CdfTables
from imgarc.codec.zoo import (ZooModel, all_zoo_models, conversion_dir, fetch_zoo_file, how_to_get, parse_zoo_id,
                              sha256_file, zoo_file)
from imgarc.errors import ModelError
from imgarc.extras import installed
from imgarc.runtime import Runtime, chosen_runtime
from imgarc.fileio import write_file_atomic

CONVERSION = 1  # recipe version: part of the cache file name; bump when the recipe changes
TABLE_KEYS = ("entropy_bottleneck._quantized_cdf", "gaussian_conditional._quantized_cdf", "gaussian_conditional.scale_table")


@dataclass(frozen=True)
class Conversion:
    weights: Path  # the imgarc weights file (.npz)
    record: Path  # its sidecar JSON: sha256 of the weights file, the zoo file's sha256, tables hash


def conversion_paths(m: ZooModel, zoo_sha256: str) -> Conversion:
    stem = f"{m.architecture}-{m.metric}-{m.quality}-{zoo_sha256[:16]}-r{CONVERSION}"
    folder = conversion_dir()
    return Conversion(folder / f"{stem}.npz", folder / f"{stem}.json")


def find_conversion(m: ZooModel) -> Conversion | None:
    """A cached conversion of `m`: the one of the cached zoo file if that is present, else the newest."""
    folder = conversion_dir()
    if not folder.is_dir():
        return None
    found = sorted(folder.glob(f"{m.architecture}-{m.metric}-{m.quality}-*-r{CONVERSION}.json"),
                   key=lambda p: p.stat().st_mtime_ns, reverse=True)
    found = [c for c in (Conversion(p.with_suffix(".npz"), p) for p in found) if c.weights.is_file()]
    return found[0] if found else None


def _tables_from_file(model, m: ZooModel, source: Path):
    """The zoo file's own integer tables plus an integer h_s (no update(), no float tables)."""
    eb, gc = model.entropy_bottleneck, model.gaussian_conditional

    def tables(module, what: str) -> CdfTables:
        try:
            return CdfTables(module._quantized_cdf.numpy().astype(np.int32), module._cdf_length.numpy().astype(np.int32),
                             module._offset.numpy().astype(np.int32))
        except ModelError as e:
            raise ModelError(f"{source} ({m.model_id}): its {what} coding tables are invalid ({e}); refusing it") from e

    z, y = tables(eb, "hyper-latent"), tables(gc, "latent")
    scales = gc.scale_table.detach().double().numpy()
    if z.count != eb.quantiles.shape[0] or y.count != len(scales) or len(scales) < 2 \
            or not np.all(np.diff(scales) > 0) or scales[0] <= 0:
        raise ModelError(f"{source} ({m.model_id}): its coding tables do not fit the model; refusing it")
    medians = eb.quantiles[:, 0, 1].detach().double().numpy()
    scale_only = m.architecture == SCALE_ONLY
    try:
        hyper = integerize_h_s(model.h_s, medians, scales, scale_only=scale_only)
    except ModelError as e:
        raise ModelError(f"{m.model_id}: its hyper-synthesis cannot be made integer exactly ({e})") from e
    return CodingTables(z=z, y=y, hyper=hyper)


def convert_state_dict(m: ZooModel, state_dict: dict, source: Path, zoo_sha256: str):
    """A zoo state dict (as torch.load gives it) -> WeightsFile, through CompressAI's own loader."""
    import torch
    from compressai.zoo.image import model_architectures
    from compressai.zoo.pretrained import load_pretrained

    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ModelError(f"{source} is not a CompressAI state dict; delete it and imgarc downloads it again")
    state = load_pretrained(state_dict)  # CompressAI's key renaming for its older files
    missing = [k for k in TABLE_KEYS if k not in state or state[k].numel() == 0]
    if missing:
        raise ModelError(f"{source} ({m.model_id}) carries no coding tables ({missing[0]}); imgarc does not rebuild "
                         "tables with float math (they would differ between machines)")
    try:
        model = model_architectures[m.architecture].from_state_dict(state).eval()
    except (KeyError, RuntimeError, ValueError, IndexError) as e:
        raise ModelError(f"{source} is not a CompressAI {m.architecture} model ({str(e).splitlines()[0]})") from e
    tables = _tables_from_file(model, m, source)
    arch = Architecture(m.architecture, int(model.N), int(model.M))
    meta = {"description": f"CompressAI zoo {m.architecture}, {m.metric}, quality {m.quality} (N={arch.N}, M={arch.M})",
            "zoo": {"architecture": m.architecture, "metric": m.metric, "quality": m.quality, "file": source.name,
                    "url": m.url, "sha256": zoo_sha256, "conversion": CONVERSION}}
    return WeightsFile(m.model_id, arch, float_params(model, half=False), tables, meta)


def convert(m: ZooModel, source: Path, zoo_sha256: str) -> Conversion:
    """Convert a verified zoo file into imgarc's cache (atomic writes; the record last)."""
    import torch

    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as e:
        raise ModelError(f"{source} does not load as a torch state dict ({type(e).__name__}); "
                         "delete it and imgarc downloads it again") from e
    w = convert_state_dict(m, state, source, zoo_sha256)
    c = conversion_paths(m, zoo_sha256)
    try:
        c.weights.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ModelError(f"cannot create imgarc's cache folder {c.weights.parent} ({e.strerror}); "
                         "set XDG_CACHE_HOME to a writable folder") from e
    weights_sha = save_weights(w, c.weights)
    record = {"model_id": m.model_id, "zoo_file": source.name, "zoo_sha256": zoo_sha256, "weights_sha256": weights_sha,
              "tables_sha256": w.tables_sha256, "conversion": CONVERSION}
    write_file_atomic(c.record, json.dumps(record, indent=1).encode())
    return c


def _read_record(c: Conversion, m: ZooModel) -> dict:
    try:
        record = json.loads(c.record.read_text())
        if record["model_id"] != m.model_id or record["conversion"] != CONVERSION:
            raise ValueError("it names another model")
        _ = record["zoo_sha256"], record["weights_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelError(f"the cached conversion record {c.record} is unreadable ({e}); delete it and imgarc "
                         "converts the CompressAI file again") from e
    return record


def _stamp(path: Path) -> tuple:
    try:
        st = path.stat()
        return (str(path), st.st_size, st.st_mtime_ns)
    except OSError:
        return (str(path),)


@lru_cache(maxsize=4)
def _load(model_id: str, c: Conversion, stamps: tuple, runtime: Runtime):  # runtime: a codec holds its networks
    m = parse_zoo_id(model_id)
    record = _read_record(c, m)
    if sha256_file(c.weights) != record["weights_sha256"]:
        raise ModelError(f"the cached conversion {c.weights} of {m.model_id} was altered or damaged (sha256 mismatch); "
                         "refusing it: delete it and imgarc converts the CompressAI file again")
    weights, _ = load_weights(c.weights)  # re-hashes the tables against their recorded hash
    zoo = weights.meta.get("zoo", {})
    if weights.model_id != m.model_id or zoo.get("sha256") != record["zoo_sha256"]:
        raise ModelError(f"the cached conversion {c.weights} does not belong to {m.model_id}; delete it")
    # An archive records the *zoo file's* sha256: the same on every machine, unlike the .npz's bytes.
    return ImageCodec(weights, record["zoo_sha256"])


def load_zoo_codec(model_id: str, download: bool = True):
    """The ImageCodec of zoo model `model_id` (canonical `cai:ARCH:METRIC:Q`).

    Uses the cached conversion; else converts the CompressAI file from the torch cache; else
    downloads it (unless offline) and converts it. Every file is verified before use.
    """
    m = parse_zoo_id(model_id)
    if m.model_id != model_id:
        raise ModelError(f"{model_id!r} is not a full zoo model id; write {m.model_id}")
    if zoo_file(m).is_file():
        source, sha = fetch_zoo_file(m, download=False)
        c = conversion_paths(m, sha)
        if not (c.weights.is_file() and c.record.is_file()):
            c = convert(m, source, sha)
    else:
        found = find_conversion(m)
        if found is None:
            source, sha = fetch_zoo_file(m, download=download)
            found = convert(m, source, sha)
        c = found
    return _load(m.model_id, c, (_stamp(c.weights), _stamp(c.record)), chosen_runtime())


def forget_loaded() -> None:
    """Drop the loaded conversions (a test that swaps the cache folder calls this)."""
    _load.cache_clear()


def missing_model_hint(model_id: str) -> str:
    """What to do when an archive needs zoo model `model_id` with other weights than the local ones."""
    try:
        m = parse_zoo_id(model_id)
    except ModelError:
        return "this imgarc cannot use that model"
    return f"the archive needs CompressAI's file {m.file_name} as it was when the archive was written; {how_to_get(m)}"


# --------------------------------------------------------------------------- state


@dataclass(frozen=True)
class ZooEntry:
    model: ZooModel
    state: str  # "cached" (imgarc conversion present), "downloaded" (CompressAI file only), "downloadable"


def zoo_state(m: ZooModel) -> str:
    if find_conversion(m) is not None:
        return "cached"
    return "downloaded" if zoo_file(m).is_file() else "downloadable"


def list_zoo() -> list[ZooEntry]:
    """CompressAI's pretrained models and where each is (none without the [train] extra)."""
    return [ZooEntry(m, zoo_state(m)) for m in all_zoo_models()] if installed("compressai") else []


def cached_zoo_model_ids() -> list[str]:
    """Ids of zoo models usable without network (converted, or their CompressAI file cached):
    what `imgarc bench` may add to its runs as `model` ids."""
    return [e.model.model_id for e in list_zoo() if e.state != "downloadable"]
