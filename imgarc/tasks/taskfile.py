"""The task file (.imgtask): a trained classifier and what it was made for (normative layout).

    offset  size  field
    0       8     magic b"IMGTASK\\0"
    8       2     u16 format version (1)
    10      2     u16 flags (0)
    12      4     u32 J: length of the JSON description
    16      8     u64 B: length of the array data
    24      J     JSON (UTF-8): see below
    24+J    B     array data: float32 little-endian, C order, one array after the other
    24+J+B  32    sha256 of every byte before it

The file is exactly 24 + J + B + 32 bytes. JSON keys: `kind` ("latent-classifier"; the
benchmark's pixel baseline is "rgb-classifier"), `features` (what the network reads, e.g.
imgarc.tasks.features.FEATURES), `model_id` and `weights_sha256` (the codec model whose latents it
was trained on), `classes` (label names, in output order), `network` (imgarc.tasks.network.NetSpec),
`arrays` ([{name, shape}] in data order) and `trained` (how it was trained and what it scored: free
form, for people). Integers little-endian, lengths checked against the file size before anything
is allocated; a reader refuses a version it does not know and any file whose sha256 is wrong.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imgarc.errors import DestinationError, UsageError
from imgarc.fileio import write_file_atomic
from imgarc.tasks.errors import TaskFileError
from imgarc.tasks.network import NetSpec, check_arrays

if TYPE_CHECKING:
    from imgarc.tasks.onnx_classifier import Classifier

MAGIC = b"IMGTASK\x00"
VERSION = 1
PREFIX = struct.Struct("<8sHHIQ")
DIGEST_SIZE = 32
MAX_JSON = 16 << 20
MAX_ARRAYS = 512 << 20
LATENT_CLASSIFIER = "latent-classifier"
RGB_CLASSIFIER = "rgb-classifier"
KINDS = (LATENT_CLASSIFIER, RGB_CLASSIFIER)
SUFFIX = ".imgtask"


@dataclass
class Task:
    """A trained classifier: its network and arrays, the classes, and the model it reads."""

    kind: str
    features: str
    classes: list[str]
    network: NetSpec
    arrays: dict[str, np.ndarray]
    model_id: str | None = None  # the codec model of its latents (None for a pixel classifier)
    weights_sha256: str | None = None
    trained: dict[str, Any] = field(default_factory=dict)

    def classifier(self, threads: int = 1) -> Classifier:
        """The network on ONNX Runtime (`threads` intra-op threads)."""
        # Imported here, as imgarc.runtime imports its runtimes: loading onnx costs a second.
        from imgarc.tasks.onnx_classifier import Classifier

        return Classifier(self.network, self.arrays, threads)

    def describe_model(self) -> str:
        return f"{self.model_id!r} (weights {str(self.weights_sha256)[:12]}…)"


def check_class_names(classes: Any) -> list[str]:
    """The class names, or TaskFileError: 2 or more distinct names that can each be a folder name."""
    if not isinstance(classes, list) or len(classes) < 2 or len(set(map(str, classes))) != len(classes):
        raise TaskFileError("the task file's class list is malformed (needs 2 or more distinct names)")
    for c in classes:
        if not isinstance(c, str) or not valid_class_name(c):
            raise TaskFileError(f"the task file names a class {c!r} that cannot be a folder name")
    return classes


def valid_class_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and not any(ch in name for ch in "/\\\x00") and len(name.encode()) <= 255


def task_bytes(task: Task) -> bytes:
    """The task file's bytes (layout: module docstring)."""
    check_arrays(task.network, task.arrays)
    check_class_names(task.classes)
    names = list(task.network.array_shapes())
    blob = b"".join(np.ascontiguousarray(task.arrays[n], "<f4").tobytes() for n in names)
    description = {
        "kind": task.kind, "features": task.features, "model_id": task.model_id, "weights_sha256": task.weights_sha256,
        "classes": task.classes, "network": task.network.to_json(),
        "arrays": [{"name": n, "shape": list(task.arrays[n].shape)} for n in names], "trained": task.trained,
    }
    text = json.dumps(description, ensure_ascii=False, allow_nan=False).encode("utf-8")
    body = PREFIX.pack(MAGIC, VERSION, 0, len(text), len(blob)) + text + blob
    return body + hashlib.sha256(body).digest()


def write_task(task: Task, path: Path, force: bool = False) -> None:
    """Write the task file atomically (never over an existing file unless `force`)."""
    if path.is_dir():
        raise UsageError(f"{path} is a folder; give a file name for the task (e.g. task{SUFFIX})")
    if path.exists() and not force:
        raise UsageError(f"{path} already exists; use --force to replace it")
    try:
        write_file_atomic(path, task_bytes(task), replace=force)
    except DestinationError as e:
        raise UsageError(str(e)) from e


def read_task(path: Path) -> Task:
    """The task in `path`; TaskFileError (one line) for anything that is not an intact task file."""
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise TaskFileError(f"{path} is a folder, not a task file ({SUFFIX}, written by `imgarc learn`)")
        with open(path, "rb") as f:
            head = f.read(PREFIX.size)
            if len(head) < PREFIX.size or head[:len(MAGIC)] != MAGIC:
                raise TaskFileError(f"{path} is not a task file ({SUFFIX}, written by `imgarc learn`)")
            _, version, _flags, json_len, blob_len = PREFIX.unpack(head)
            if version > VERSION:
                raise TaskFileError(f"{path} is a task file of format version {version}, made by a newer imgarc "
                                    f"(this one reads version {VERSION}); upgrade imgarc")
            if version < 1 or json_len > MAX_JSON or blob_len > MAX_ARRAYS or \
                    PREFIX.size + json_len + blob_len + DIGEST_SIZE != size:
                raise TaskFileError(f"{path} is damaged: its lengths do not match its size ({size} bytes); "
                                    f"train it again with `imgarc learn`")
            rest = f.read()
    except FileNotFoundError as e:
        raise TaskFileError(f"task file {path} does not exist") from e
    except OSError as e:
        raise TaskFileError(f"cannot read task file {path}: {e.strerror or e}") from e
    body, digest = head + rest[:-DIGEST_SIZE], rest[-DIGEST_SIZE:]
    if hashlib.sha256(body).digest() != digest:
        raise TaskFileError(f"{path} is damaged (its sha256 does not match); train it again with `imgarc learn`")
    return _parse(path, body[PREFIX.size:PREFIX.size + json_len], body[PREFIX.size + json_len:])


def _parse(path: Path, text: bytes, blob: bytes) -> Task:
    try:
        d = json.loads(text.decode("utf-8"))
        kind = d["kind"]
        if kind not in KINDS:
            raise TaskFileError(f"{path} holds a task of kind {kind!r}, unknown to this imgarc; upgrade imgarc")
        network = NetSpec.from_json(d["network"])
        arrays, offset = {}, 0
        for a in d["arrays"]:
            shape = tuple(int(s) for s in a["shape"])
            n = int(np.prod(shape)) * 4
            if any(s < 0 for s in shape) or offset + n > len(blob):
                raise TaskFileError(f"{path} is malformed: its arrays overrun its data")
            arrays[str(a["name"])] = np.frombuffer(blob, "<f4", count=n // 4, offset=offset).astype(np.float32).reshape(shape)
            offset += n
        if offset != len(blob):
            raise TaskFileError(f"{path} is malformed: it has array data no array describes")
        check_arrays(network, arrays)
        classes = check_class_names(d["classes"])
        if len(classes) != network.classes:
            raise TaskFileError(f"{path} is malformed: {len(classes)} classes but a network for {network.classes}")
        model_id, sha = d.get("model_id"), d.get("weights_sha256")
        if kind == LATENT_CLASSIFIER and not (isinstance(model_id, str) and isinstance(sha, str) and len(sha) == 64):
            raise TaskFileError(f"{path} is malformed: it does not name the model its latents come from")
        trained = d.get("trained") if isinstance(d.get("trained"), dict) else {}
        return Task(kind, str(d["features"]), classes, network, arrays, model_id, sha, trained)
    except TaskFileError:
        raise
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise TaskFileError(f"{path} is malformed ({type(e).__name__}: {e}); train it again with `imgarc learn`") from e
