"""One timed step of a benchmark, run in its own process: `python -m imgarc.bench.worker SPEC.json`.

Steps: imgarc compress / extract (through imgarc.api, as the CLI does), and Pillow encode /
decode of a folder for the JPEG, WebP and AVIF baselines. Prints one JSON line; on a clean
imgarc error prints {"error": ...} and exits 1 (the bench reports it as a failed row).
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

from imgarc import api
from imgarc.bench.baselines import PILLOW_CODECS
from imgarc.errors import ImgarcError


def _imgarc_compress(spec: dict) -> dict:
    s = api.compress_folder(Path(spec["src"]), Path(spec["archive"]), quality=spec["quality"],
                            coder_name=spec["coder"], model_id=spec.get("model"), force=True)
    return {"seconds": s.seconds, "seconds_model": s.seconds_model, "seconds_coder": s.seconds_coder,
            "warnings": s.warnings}


def _imgarc_extract(spec: dict) -> dict:
    s = api.extract_archive(Path(spec["archive"]), Path(spec["dest"]))
    return {"seconds": s.seconds, "seconds_model": s.seconds_model, "seconds_coder": s.seconds_coder}


def _pillow_encode(spec: dict) -> dict:
    from PIL import Image

    codec = PILLOW_CODECS[spec["codec"]]
    started = time.perf_counter()
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
    coded, dest = Path(spec["coded"]), Path(spec["dest"])
    for rel in spec["files"]:
        target = dest / (rel + ".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(coded / (rel + codec.suffix)) as im:
            im.convert("RGB").save(target, format="PNG")  # the same PNG writer imgarc extract uses
    return {"seconds": time.perf_counter() - started}


STEPS = {"imgarc-compress": _imgarc_compress, "imgarc-extract": _imgarc_extract,
         "pillow-encode": _pillow_encode, "pillow-decode": _pillow_decode}


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
    sys.exit(main(sys.argv[1:]))
