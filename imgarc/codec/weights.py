"""The inference weights file (`.npz`, no pickle): float parameters, integer h_s, coding tables.

Everything that decides entropy-coding probabilities (the CDF tables, the integer
hyper-synthesis, the scale thresholds) is stored as integers and hashed together into
`tables_sha256`; loading refuses a file whose tables were altered (a file a model catalog lists
is checked by its sha256, any other by re-hashing its tables). Tables are
never rebuilt at load time.

Keys: `meta` (UTF-8 JSON as uint8), `param/<state-dict name>` (fp16 or fp32),
`hs/<layer>/weight|bias` (int64; an 8-bit h_s also `hs/<layer>/weight_bits`), `hs/z_median_fixed`,
`hs/scale_thresholds`, `tables/<z|y>/cdfs|lengths|offsets` (int32), and for variable-rate
models `gains/<gain|inv_gain|hyper_gain|hyper_inv_gain>` (int64 [100, C], see quality.py), and
for models with an int8 network its activation ranges `int8/<g_a|g_s>.<layer>.<point>` (see
int8.py). Files stored with `WeightStorage.INT8` (format version 2) hold convolution weights as
`param8/<name>` (int8) and `scale/<name>` (fp32, one per output channel, shaped to broadcast)
instead, no float h_s (`float_h_s` derives it), and every integer array in the narrowest
integer type that holds it.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import threading
import zipfile
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np

from imgarc.codec.architecture import Architecture
from imgarc.codec.int8 import (CONV_POINTS, WEIGHT_LIMIT, Int8Ranges, int8_weights, layer_ranges, load_arrays as load_int8_ranges,
                               save_arrays as save_int8_ranges, weight_limit)
from imgarc.codec.int_hyper import IntHyperSynthesis, IntLayer, float_h_s
from imgarc.codec.quality import QualityGains
from imgarc.codec.storage_bits import StorageBits, bits_limit
from imgarc.coders.tables import CdfTables
from imgarc.cores import usable_cores
from imgarc.errors import ModelError
from imgarc.fileio import write_file_atomic

FORMAT_NAME = "imgarc-weights"
FORMAT_VERSION = 1  # float storage; files an older imgarc would misread (int8 storage, 8-bit h_s) are version 2
INT8_FORMAT_VERSION = 2


class WeightStorage(Enum):
    """How a weights file stores the networks that run in float (or that an int8 graph
    quantizes when it is built)."""

    FLOAT = "float"  # learned parameters fp16 (or fp32), buffers fp32
    # The convolutions' weights of g_a, h_a and g_s (`stored_in_int8`) as int8, symmetric per
    # output channel with an fp32 scale each (loading multiplies them back: the same floats on
    # every machine), the rest fp16; h_s only as the integer network the coding tables need,
    # with 8-bit weights (the float h_s is derived from it, `float_h_s`). The default stored so:
    # 19.5 -> 5.8 MB.
    INT8 = "int8"


INT8_PREFIX, SCALE_PREFIX = "param8/", "scale/"
CHANGED = "changed"  # LazyParams.with_changes: a parameter held in memory, not read from the file
STORED_AS_INTEGERS = "h_s."  # the float parameters an int8-stored file derives from its integer h_s
# The convolutions that read and write pixels stay fp16 in int8 storage: 19,200 weights whose
# int8 rounding cost the default 0.02 dB at q95, a fifth of what int8 storage cost in all.
PIXEL_LAYERS = ("g_a.0.weight", "g_s.6.weight")


def stored_in_int8(name: str, ndim: int) -> bool:
    """Whether int8 storage keeps parameter `name` (of `ndim` dimensions) in int8: the weights of
    every convolution of g_a, h_a and g_s but the two that touch pixels."""
    return ndim == 4 and not name.startswith(STORED_AS_INTEGERS) and name not in PIXEL_LAYERS


def int8_output_axis(name: str) -> int:
    """The output-channel axis of a convolution's weights: g_s's are transposed ([in, out, k, k])."""
    return 1 if name.startswith("g_s.") else 0


LAYER_FIELDS = ("upsample", "stride", "pad_before", "pad_after", "leaky")


@dataclass(frozen=True)
class CodingTables:
    """All integer data that decides how latents are entropy-coded."""

    z: CdfTables  # one table per hyper-latent channel
    y: CdfTables  # one table per Gaussian scale level
    hyper: IntHyperSynthesis
    quality: QualityGains | None = None  # variable-rate models: fixed-point gains per --quality

    def digest(self) -> bytes:
        h = hashlib.sha256()
        h.update(self.z.digest())
        h.update(self.y.digest())
        for a in _hyper_arrays(self.hyper).values():
            h.update(np.ascontiguousarray(a, dtype="<i8").tobytes())
            h.update(str(a.shape).encode())
        h.update(json.dumps(_hyper_layout(self.hyper)).encode())
        if self.hyper.scale_only:  # absent for mean-scale h_s, whose digest predates scale-only models
            h.update(b"hyper:scale-only")
        if self.quality is not None:  # absent for single-rate models, whose digest predates gains
            for name, a in self.quality.arrays().items():
                h.update(name.encode())
                h.update(np.ascontiguousarray(a, dtype="<i8").tobytes())
        return h.digest()


@dataclass(frozen=True)
class WeightsFile:
    model_id: str
    architecture: Architecture
    params: Mapping[str, np.ndarray]  # float state dict (no CompressAI table buffers)
    tables: CodingTables
    meta: dict  # free-form provenance: lambda, steps, training data
    tables_sha256: str = ""  # the tables' digest (hex); computed when not given
    # An int8 g_a's activation ranges (empty: g_a runs in float). Encoder-side only: not part of
    # the tables' digest, as nothing a decoder computes depends on them.
    int8_ranges: Int8Ranges = field(default_factory=dict)
    storage: WeightStorage = WeightStorage.FLOAT  # how the file stores (or will store) the networks
    storage_bits: StorageBits = StorageBits()  # int8 storage: each network's weights' width

    def __post_init__(self) -> None:
        if not self.tables_sha256:
            object.__setattr__(self, "tables_sha256", self.tables.digest().hex())


class LazyParams(Mapping[str, np.ndarray]):
    """A weights file's float parameters, each decompressed when first read: a run whose network
    graphs come from imgarc's cache reads one small array of them (about 0.1 s saved per start
    with the default model). Int8-stored weights are multiplied back by their scales, and an
    int8-stored file's float h_s is derived from its integer h_s, when first read. Thread-safe:
    decode threads may read side by side."""

    PREFIX = "param/"

    def __init__(self, data: bytes, names: list[str], hyper: IntHyperSynthesis, storage: WeightStorage) -> None:
        self._npz = np.load(io.BytesIO(data), allow_pickle=False)
        self._stored = {n[len(prefix):]: n for n in names for prefix in (self.PREFIX, INT8_PREFIX) if n.startswith(prefix)}
        self._hyper = hyper
        self._derived: dict[str, np.ndarray] | None = None  # float_h_s(hyper), made when first read
        if storage is WeightStorage.INT8:  # h_s from the integer network
            self._stored.update({name: "" for name in _h_s_names(hyper)})
        self._names = list(self._stored)
        self._read: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def __getitem__(self, name: str) -> np.ndarray:
        with self._lock:
            if name not in self._read:
                key = self._stored.get(name)
                if key is None:
                    raise KeyError(name)
                if not key:
                    if self._derived is None:
                        self._derived = float_h_s(self._hyper)
                    self._read[name] = self._derived[name]
                elif key.startswith(INT8_PREFIX):
                    self._read[name] = self._npz[key].astype(np.float32) * self._npz[SCALE_PREFIX + name]
                else:
                    self._read[name] = self._npz[key]
            return self._read[name]

    def with_changes(self, changed: Mapping[str, np.ndarray]) -> "LazyParams":
        """These parameters but `changed` (a variant of this file's model: publish_network_variant);
        the others still read from this file, and int8-stored ones are copied as stored."""
        other = copy.copy(self)  # the same file and lock: one reader of the npz at a time
        other._stored = {**self._stored, **{name: CHANGED for name in changed}}
        other._read = {**self._read, **changed}
        return other

    def stored_int8(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        """An int8-stored parameter's int8 values and scales as the file holds them (a variant
        copies them rather than quantizing their product again, which could move a scale by
        one unit in the last place); None for any other."""
        key = self._stored.get(name)
        if not key or not key.startswith(INT8_PREFIX):
            return None
        with self._lock:
            return self._npz[key], self._npz[SCALE_PREFIX + name]

    def shape(self, name: str) -> tuple[int, ...]:
        """A parameter's shape, read from its header alone (nothing decompressed but that)."""
        key = self._stored.get(name)
        if key is None:
            raise KeyError(name)
        if key == CHANGED:
            return self._read[name].shape
        if not key:
            return _h_s_names(self._hyper)[name]
        with self._lock, self._npz.zip.open(f"{key}.npy") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            return tuple(read_header(f)[0])

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def _stored_arrays(params: Mapping[str, np.ndarray], storage: WeightStorage, ranges: Int8Ranges,
                   bits: StorageBits) -> dict[str, np.ndarray]:
    if storage is WeightStorage.FLOAT:
        return {f"param/{k}": v for k, v in params.items()}
    arrays = {}
    for name, value in params.items():
        if name.startswith(STORED_AS_INTEGERS):
            continue
        stored = params.stored_int8(name) if isinstance(params, LazyParams) else None
        if stored is None and stored_in_int8(name, value.ndim):
            axis = int8_output_axis(name)
            q, scale = int8_weights(value, limit=min(_storage_limit(name, ranges), bits_limit(bits.of(name))), axis=axis)
            stored = q, np.expand_dims(scale, tuple(d for d in range(4) if d != axis))
        if stored is not None:
            arrays[INT8_PREFIX + name], arrays[SCALE_PREFIX + name] = stored
        else:
            arrays[f"param/{name}"] = value
    return arrays


def _storage_limit(name: str, ranges: Int8Ranges) -> int:
    """A stored weight's int8 limit: that of the int8 graph where the layer runs in int8 (g_s's
    7 bits), so the graph quantizes the stored weights back to the same integers instead of
    rounding them twice; ±127 elsewhere."""
    network, layer, _ = name.split(".", 2)
    quantized = layer_ranges(ranges, network, int(layer), CONV_POINTS) is not None
    return weight_limit(network) if quantized else WEIGHT_LIMIT


def _h_s_names(hyper: IntHyperSynthesis) -> dict[str, tuple[int, ...]]:
    """The float h_s parameters `float_h_s` derives from `hyper`, and their shapes (torch layouts)."""
    shapes = {}
    for i, layer in enumerate(hyper.layers):
        out, inp, kh, kw = layer.weight.shape
        shapes[f"h_s.{2 * i}.weight"] = (inp, out, kh, kw) if layer.upsample > 1 else (out, inp, kh, kw)
        shapes[f"h_s.{2 * i}.bias"] = (out,)
    return shapes


def _hyper_arrays(h: IntHyperSynthesis) -> dict[str, np.ndarray]:
    arrays = {"hs/z_median_fixed": h.z_median_fixed, "hs/scale_thresholds": h.scale_thresholds}
    for i, layer in enumerate(h.layers):
        arrays[f"hs/{i}/weight"] = layer.weight
        arrays[f"hs/{i}/bias"] = layer.bias
        if layer.weight_bits is not None:  # an 8-bit h_s; absent from older models' files and digests
            arrays[f"hs/{i}/weight_bits"] = layer.weight_bits
    return arrays


def _narrowest(a: np.ndarray) -> np.ndarray:
    """Integers in the narrowest type that holds them (an 8-bit h_s's weights: int8, so the file
    stores one byte each); loading widens them back to int64 (the digest hashes them as int64)."""
    for dtype in (np.int8, np.int16, np.int32):
        if a.size and np.iinfo(dtype).min <= a.min() and a.max() <= np.iinfo(dtype).max:
            return a.astype(dtype)
    return a


def _hyper_layout(h: IntHyperSynthesis) -> list[dict]:
    # "relu" only where set, so the layouts (and digests) of leaky-ReLU models stay as they were.
    return [{f: int(getattr(layer, f)) for f in LAYER_FIELDS} | ({"relu": 1} if layer.relu else {}) for layer in h.layers]


def save_weights(w: WeightsFile, path: Path) -> str:
    """Write atomically, the networks as `w.storage` says; returns the file's sha256 (hex)."""
    storage = w.storage
    # Version 2 where an older imgarc would misread the file: int8 storage, or an 8-bit h_s.
    newer = storage is WeightStorage.INT8 or any(layer.weight_bits is not None for layer in w.tables.hyper.layers)
    meta = {
        "format": FORMAT_NAME,
        "format_version": INT8_FORMAT_VERSION if newer else FORMAT_VERSION,
        **({"weight_storage": storage.value} if storage is not WeightStorage.FLOAT else {}),
        **({"storage_bits": w.storage_bits.to_meta()} if w.storage_bits != StorageBits() else {}),
        "model_id": w.model_id,
        "architecture": w.architecture.to_dict(),
        "hyper_layout": _hyper_layout(w.tables.hyper),
        **({"hyper_scale_only": True} if w.tables.hyper.scale_only else {}),
        "tables_sha256": w.tables_sha256,
        **w.meta,
    }
    arrays: dict[str, np.ndarray] = {"meta": np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)}
    arrays.update(_stored_arrays(w.params, storage, w.int8_ranges, w.storage_bits))
    integers = _hyper_arrays(w.tables.hyper) | ({f"gains/{k}": v for k, v in w.tables.quality.arrays().items()}
                                                if w.tables.quality is not None else {})
    arrays.update({k: _narrowest(v) for k, v in integers.items()} if storage is WeightStorage.INT8 else integers)
    arrays.update(save_int8_ranges(w.int8_ranges))
    for name, t in (("z", w.tables.z), ("y", w.tables.y)):
        arrays.update({f"tables/{name}/cdfs": t.cdfs, f"tables/{name}/lengths": t.lengths, f"tables/{name}/offsets": t.offsets})
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    data = buf.getvalue()
    write_file_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def _read_arrays(data: bytes, names: list[str]) -> dict[str, np.ndarray]:
    """Arrays `names` of the .npz file `data` (one reader per thread: a reader is not thread-safe)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in names}


def load_weights(path: Path, known_sha256: str | None = None) -> tuple[WeightsFile, str]:
    """Read and check a weights file; returns it and its sha256 (hex).

    `known_sha256`: what a model catalog records for this file. A file that hashes to it is the
    file export wrote (and checked), so its tables' digest is taken from its record instead of
    being recomputed (~0.05 s of every command's start with the default model); any other file's
    tables are re-hashed and checked against its record.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelError(f"cannot read weights file {path}: {e.strerror}") from e
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            names = z.files
            sizes = {info.filename.removesuffix(".npy"): info.file_size for info in z.zip.infolist()}
        eager = sorted((k for k in names if not k.startswith((LazyParams.PREFIX, INT8_PREFIX, SCALE_PREFIX))),
                       key=lambda k: -sizes.get(k, 0))
        # The hash and the decompression (zlib and hashlib let go of the GIL) on every core:
        # ~0.04 s of every command that codes or decodes a photo.
        with ThreadPoolExecutor(max_workers=usable_cores()) as pool:
            hashed = pool.submit(lambda: hashlib.sha256(data).hexdigest())
            parts = [pool.submit(_read_arrays, data, eager[n::usable_cores()]) for n in range(usable_cores())]
            arrays = {k: v for part in parts for k, v in part.result().items()}
            sha256 = hashed.result()
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except (ValueError, OSError, KeyError, UnicodeDecodeError, zipfile.BadZipFile) as e:
        raise ModelError(f"{path} is not a readable imgarc weights file ({e})") from e
    if meta.get("format") != FORMAT_NAME or meta.get("format_version") not in (FORMAT_VERSION, INT8_FORMAT_VERSION):
        raise ModelError(f"{path} is not an imgarc weights file of format version {FORMAT_VERSION} or "
                         f"{INT8_FORMAT_VERSION} (a newer imgarc may read it)")
    model_id = str(meta.get("model_id"))
    try:
        layers = tuple(
            IntLayer(weight=np.asarray(arrays[f"hs/{i}/weight"], np.int64), bias=np.asarray(arrays[f"hs/{i}/bias"], np.int64),
                     upsample=lay["upsample"], stride=lay["stride"], pad_before=lay["pad_before"],
                     pad_after=lay["pad_after"], leaky=bool(lay["leaky"]), relu=bool(lay.get("relu", 0)),
                     weight_bits=np.asarray(arrays[f"hs/{i}/weight_bits"], np.int64) if f"hs/{i}/weight_bits" in arrays else None)
            for i, lay in enumerate(meta["hyper_layout"])
        )
        hyper = IntHyperSynthesis(layers, np.asarray(arrays["hs/z_median_fixed"], np.int64),
                                  np.asarray(arrays["hs/scale_thresholds"], np.int64),
                                  scale_only=bool(meta.get("hyper_scale_only", False)))
        tables = CodingTables(
            *(CdfTables(np.asarray(arrays[f"tables/{n}/cdfs"], np.int32), np.asarray(arrays[f"tables/{n}/lengths"], np.int32),
                        np.asarray(arrays[f"tables/{n}/offsets"], np.int32)) for n in ("z", "y")),
            hyper=hyper,
            quality=QualityGains(*(np.asarray(arrays[f"gains/{n}"], np.int64) for n in QualityGains.NAMES))
            if "gains/gain" in arrays else None,
        )
    except (KeyError, TypeError) as e:
        raise ModelError(f"weights file for model {model_id!r} is incomplete ({e})") from e
    except ModelError as e:
        raise ModelError(f"weights file for model {model_id!r} ({path}) has invalid coding tables: {e}") from e
    recorded = str(meta.get("tables_sha256"))
    if sha256 != known_sha256:
        if tables.digest().hex() != recorded:
            raise ModelError(
                f"the coding tables in the weights file for model {model_id!r} ({path}) were altered "
                "(their hash does not match); refusing to use them — reinstall imgarc or re-export the model"
            )
        hyper.check_exactness()
    arch = Architecture.from_dict(meta.get("architecture", {}))
    if hyper.scale_only != arch.scale_only:
        raise ModelError(f"weights file for model {model_id!r} ({path}): integer h_s and architecture disagree")
    if (tables.quality is not None) != (arch.rate_points > 1):
        raise ModelError(f"weights file for model {model_id!r} ({path}): gain table and architecture disagree")
    if tables.quality is not None:
        tables.quality.check(arch.N, arch.M)
    try:
        storage = WeightStorage(meta.get("weight_storage", WeightStorage.FLOAT.value))
    except ValueError as e:
        raise ModelError(f"weights file for model {model_id!r} ({path}) has an unknown storage {meta.get('weight_storage')!r}") from e
    params = LazyParams(data, names, hyper, storage)
    provenance = {k: v for k, v in meta.items() if k not in ("format", "format_version", "model_id", "architecture", "hyper_layout",
                                                             "hyper_scale_only", "tables_sha256", "weight_storage",
                                                             "storage_bits")}
    try:
        storage_bits = StorageBits.from_meta(meta.get("storage_bits", 8))
    except (ValueError, TypeError) as e:
        raise ModelError(f"weights file for model {model_id!r} ({path}): {e}") from e
    return WeightsFile(model_id, arch, params, tables, provenance, recorded, load_int8_ranges(arrays), storage,
                       storage_bits), sha256
