"""One timed step of a benchmark, run in its own process: `python -m imgarc.bench.worker SPEC.json`.

Steps: imgarc compress / extract (through imgarc.api, as the CLI does); Pillow encode /
decode of a folder for the JPEG, WebP, AVIF, HEIC and JPEG XL baselines; the coder study
(every latent coder, the per-symbol arithmetic coder included, on the same latents); and
CompressAI's own compress() and decompress() on imgarc's weights, each in its own process.
Prints one JSON line; on a clean imgarc error prints {"error": ...} and exits 1 (the bench
reports it as a failed row).
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from imgarc import api
from imgarc.bench import compressai_pipeline as cai
from imgarc.bench.baselines import PILLOW_CODECS
from imgarc.bench.coder_study import latent_symbol_count, study_coders
from imgarc.bench.metrics import load_rgb, psnr
from imgarc.codec.image_codec import ImageCodec, LatentCode
from imgarc.codec.padding import padded_size
from imgarc.codec.payload import pack_image_payload, unpack_image_payload
from imgarc.codec.registry import load_codec, model_for_quality, resolve_model_id
from imgarc.coders import get_coder
from imgarc.errors import ImgarcError
from imgarc.process_memory import keep_freed_memory


def _imgarc_compress(spec: dict) -> dict:
    if spec.get("refine_steps"):
        keep_freed_memory()  # as `imgarc compress --refine` does
    s = api.compress_folder(Path(spec["src"]), Path(spec["archive"]), quality=spec["quality"],
                            coder_name=spec["coder"], model_id=spec.get("model"), force=True,
                            refine_steps=spec.get("refine_steps", 0))
    return {"seconds": s.seconds, "seconds_model": s.seconds_model, "seconds_coder": s.seconds_coder,
            "warnings": s.warnings}


def _imgarc_extract(spec: dict) -> dict:
    s = api.extract_archive(Path(spec["archive"]), Path(spec["dest"]))
    return {"seconds": s.seconds, "seconds_model": s.seconds_model, "seconds_coder": s.seconds_coder}


def _pillow_encode(spec: dict) -> dict:
    from PIL import Image

    codec = PILLOW_CODECS[spec["codec"]]
    started = time.perf_counter()
    codec.prepare()  # HEIC, JPEG XL: register the plugin (part of the timed step, as in any program using it)
    src, out = Path(spec["src"]), Path(spec["out"])
    for rel in spec["files"]:
        target = out / (rel + codec.suffix)
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(src / rel) as im:
            im.convert("RGB").save(target, format=codec.pillow_format, **codec.options(spec["quality"]))
    return {"seconds": time.perf_counter() - started}


def _pillow_decode(spec: dict) -> dict:
    from PIL import Image

    codec = PILLOW_CODECS[spec["codec"]]
    started = time.perf_counter()
    codec.prepare()
    coded, dest = Path(spec["coded"]), Path(spec["dest"])
    for rel in spec["files"]:
        target = dest / (rel + ".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(coded / (rel + codec.suffix)) as im:
            im.convert("RGB").save(target, format="PNG")  # the same PNG writer imgarc extract uses
    return {"seconds": time.perf_counter() - started}


def _codec(spec: dict) -> ImageCodec:
    """The model `imgarc compress --quality Q [--model M]` would use."""
    q, model = spec["quality"], spec.get("model")
    return load_codec(resolve_model_id(model, q) if model else model_for_quality(q).model_id)


def _coder_study(spec: dict) -> dict:
    codec = _codec(spec)
    study = study_coders(codec, Path(spec["src"]), spec["files"], spec["quality"], spec["coders"], spec.get("estimate", True))
    a = codec.architecture
    study["folder_symbols"] = sum(latent_symbol_count(a.N, a.M, w, h, codec.stride) for w, h in spec["sizes"])
    return study


def _imgarc_encode(codec: ImageCodec, rgb, quality: int) -> tuple[bytes, int]:
    """One image to its rans payload, in process (what `imgarc compress` does per photo); also
    the bytes of its two streams alone (the payload adds 9 bytes of framing)."""
    rans = get_coder("rans")
    code = codec.analyse(rgb, quality)
    z = rans.encode(code.z_symbols.ravel(), codec.z_indexes(code.z_symbols.shape), codec.tables.z)
    y = rans.encode(code.y_symbols.ravel(), code.y_indexes.ravel(), codec.tables.y)
    return pack_image_payload(z, y), len(z) + len(y)


def _imgarc_decode(codec: ImageCodec, payload: bytes, quality: int, height: int, width: int):
    """A rans payload back to pixels, in process (what `imgarc extract` does per photo)."""
    rans = get_coder("rans")
    z_shape, y_shape = codec.latent_shapes(*padded_size(height, width, codec.stride))
    z_stream, y_stream = unpack_image_payload(payload)
    z = rans.decode(z_stream, codec.z_indexes(z_shape), codec.tables.z).reshape(z_shape)
    gains = codec.gains_for(quality)
    indexes, means = codec.y_indexes_and_means(z, gains)
    y = rans.decode(y_stream, indexes.ravel(), codec.tables.y).reshape(y_shape)
    return codec.synthesize(LatentCode(z, y, indexes, means, gains), height, width)


def _timed(fn, *args):
    t, c = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - t, time.process_time() - c


def _cai_compress(spec: dict) -> dict:
    """CompressAI compress() per image (and imgarc's in-process encode of the same image), streams kept in `work`."""
    codec = _codec(spec)
    if codec.architecture.scale_only:
        return {"skipped": f"{codec.model_id} is a scale-only hyperprior; the CompressAI row runs mbt2018-mean models"}
    model, gains = codec.torch_model, codec.gains_for(spec["quality"])
    tables_sha256, update_s, _ = _timed(cai.update_tables, model)
    work, rows = Path(spec["work"]), []
    for i, rel in enumerate(spec["files"]):
        rgb = load_rgb(Path(spec["src"]) / rel)
        streams, seconds, cpu = _timed(cai.compress, model, cai.to_tensor(rgb, codec.stride), gains)
        (payload, stream_bytes), i_seconds, i_cpu = _timed(_imgarc_encode, codec, rgb, spec["quality"])
        (work / f"{i}.cai").write_bytes(pickle.dumps(streams))
        (work / f"{i}.iarc-payload").write_bytes(payload)
        rows.append({"name": rel, "width": int(rgb.shape[1]), "height": int(rgb.shape[0]), "bytes": streams.bytes,
                     "compress_s": seconds, "compress_cpu_s": cpu, "imgarc_bytes": stream_bytes,
                     "imgarc_payload_bytes": len(payload),
                     "imgarc_compress_s": i_seconds, "imgarc_compress_cpu_s": i_cpu})
    return {"model": codec.model_id, "update_s": update_s, "tables_sha256": tables_sha256,
            "cpu_capability": _capability(), "images": rows}


def _cai_decompress(spec: dict) -> dict:
    """CompressAI decompress() per image, checked against what the encoder coded; with `imgarc`,
    also imgarc's in-process decode of its own payload, and the two decodes compared."""
    codec = _codec(spec)
    model, gains = codec.torch_model, codec.gains_for(spec["quality"])
    tables_sha256, update_s, _ = _timed(cai.update_tables, model)
    work, rows = Path(spec["work"]), []
    for i, rel in enumerate(spec["files"]):
        original = load_rgb(Path(spec["src"]) / rel)
        h, w = original.shape[:2]
        streams = pickle.loads((work / f"{i}.cai").read_bytes())
        try:
            (x_hat, symbols, z_hat), seconds, cpu = _timed(cai.decompress, model, streams, gains)
        except (RuntimeError, ValueError) as e:  # CompressAI's C++ decoder refusing its input
            rows.append({"name": rel, "exact": False, "error": str(e)[:200]})
            continue
        rgb = cai.to_rgb(x_hat, h, w)
        wrong = int(np.count_nonzero(symbols != streams.y_symbols))
        row = {"name": rel, "decompress_s": seconds, "decompress_cpu_s": cpu,
               "exact": wrong == 0 and np.array_equal(z_hat, streams.z_hat), "wrong_y_symbols": wrong,
               "y_symbols": int(symbols.size), "z_equal": bool(np.array_equal(z_hat, streams.z_hat)),
               "psnr": psnr(original, rgb)}
        if spec.get("imgarc"):
            payload = (work / f"{i}.iarc-payload").read_bytes()
            own, i_seconds, i_cpu = _timed(_imgarc_decode, codec, payload, spec["quality"], h, w)
            diff = np.abs(rgb.astype(np.int16) - own.astype(np.int16))
            row.update({"imgarc_decompress_s": i_seconds, "imgarc_decompress_cpu_s": i_cpu,
                        "imgarc_psnr": psnr(original, own), "max_diff_vs_imgarc": int(diff.max()),
                        "mean_diff_vs_imgarc": float(diff.mean())})
        rows.append(row)
    return {"update_s": update_s, "tables_sha256": tables_sha256, "capability": os.environ.get("ATEN_CPU_CAPABILITY"),
            "cpu_capability": _capability(), "images": rows}


def _capability() -> str | None:
    import torch

    try:
        return torch.backends.cpu.get_cpu_capability()
    except AttributeError:
        return None


STEPS = {"imgarc-compress": _imgarc_compress, "imgarc-extract": _imgarc_extract,
         "pillow-encode": _pillow_encode, "pillow-decode": _pillow_decode,
         "coder-study": _coder_study, "cai-compress": _cai_compress, "cai-decompress": _cai_decompress}


def main(argv: list[str]) -> int:
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
    spec = json.loads(Path(argv[0]).read_text())
    try:
        result = STEPS[spec["step"]](spec)
    except ImgarcError as e:
        print(json.dumps({"error": str(e)}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    # The end of the step without the interpreter's teardown, as the imgarc command ends
    # (cli.app.run): what it would free goes back with the process anyway, and threads that ran
    # torch's autograd (`--refine`) can abort a teardown, which would fail a finished step.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
