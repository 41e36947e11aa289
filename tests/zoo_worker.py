"""One 'machine' of test_zoo's cross-machine test: converts the zoo file itself (own cache),
then encodes or decodes. Usage: python -m tests.zoo_worker encode|decode MODEL_ID URL_NAME SRC ARCHIVE DEST
Prints one JSON line: the tables hash this machine's conversion produced."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(role: str, model_id: str, url_name: str, src: str, archive: str, dest: str) -> None:
    from compressai.zoo.image import model_urls

    from imgarc import api
    from imgarc.codec.registry import load_codec

    _, arch, metric, quality = model_id.split(":")
    model_urls[arch][metric][int(quality)] = f"https://compressai.invalid/models/v1/{url_name}"
    if role == "encode":
        api.compress_folder(Path(src), Path(archive), model_id=model_id, force=True)
    api.extract_archive(Path(archive), Path(dest))
    print(json.dumps({"tables_sha256": load_codec(model_id).tables_sha256}))


if __name__ == "__main__":
    main(*sys.argv[1:])
