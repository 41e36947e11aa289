"""Finding the benchmark data sets: --data, then $IMGARC_DATA, then a cache folder; else download.

A data set root holds one folder per set (`kodak/`, `clic/<split>/`), as ../shared/datasets
does. A folder handed in directly (`--data .../kodak`) works too. Every file whose sha256 we
know is checked, local or downloaded: a benchmark on the wrong bytes is worse than none.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from imgarc.errors import ImgarcError

ENV_VAR = "IMGARC_DATA"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".bmp", ".tif", ".tiff", ".webp")

# Kodak Lossless True Color Image Suite, byte-identical to the widely used PNG set.
KODAK_SHA256 = {
    "kodim01.png": "6b4fbe6f3e8e0e20150d5b0c32248bf072e22b5989d415f96f796c5b7004a70f",
    "kodim02.png": "1788370471429d992750a09caf6702ac74e56962447de02520d4b161738c0369",
    "kodim03.png": "b9c800ee568f0b18c983817df08d9f7f24a7ddb3abfdc31bde9234c4fde83137",
    "kodim04.png": "0c60c62599ad33fd78b29c36013fbe4120946f6c327c0ef0ec6983297fb48d23",
    "kodim05.png": "ccf694ceb6bbf431e0009ed0d5573a8ff0915095b69ddfb527b91d8325897f5e",
    "kodim06.png": "f4212cc927d1d579c712843cf8320c7eccb571e5ea80456022ffe99d67e9cd5d",
    "kodim07.png": "7cdd6d63ae0a245f6f9d983d740e11c6808c2efc24f8351aad9b5f676c27b55a",
    "kodim08.png": "5a6a089bdb47605287c00d89ebf2a5312981eb998c94b5853d917c93a9066cdb",
    "kodim09.png": "4d8d801592aeaf446978bbd1c83b76c498242d0f684769311a4e7248289500bf",
    "kodim10.png": "7aca487dc83db732a5690b7affe8558e9dadf5bb44a4589ba2b607480a07228b",
    "kodim11.png": "c7c02bd6e942d1181518e3ce2d97cf0451e4494a5e9d6ddee276940e4875d746",
    "kodim12.png": "df571f5e66d1aefd764ea77855e81e3be61528c34962a0fd1d50557502162c1e",
    "kodim13.png": "797949ce1152ef157ff0a1231c95cb8ed7641615e0b0f5f77f851a44aee19e8d",
    "kodim14.png": "08a1898d5702f32e7d9f94a94651d74a62cb9325475775a558b388c8d98f1846",
    "kodim15.png": "416c475f39b0eb9203ce7f77d2af8824f5bffc1a86a4605865017f04c41639b9",
    "kodim16.png": "5d03303693decdf7a1e1e930b5ca6684283aa80a9e7d8d6a842a74fa5f790640",
    "kodim17.png": "19d90e98e5835efae20a6e17e22e5ac6814ee2c8efb32d188ea4359abaf9f5bd",
    "kodim18.png": "83df267dfec61e9b9d3756c422502160b2fab595650c73a8b12940540ad09ec5",
    "kodim19.png": "86560efe85a13413b228ef7e42dde0d439b25a94fb8e2d6fb1dc1631cf48853b",
    "kodim20.png": "1ae187d92b3a4483b6717f7fd08592846ffdfc340c6424f6756627a27f3d8ea7",
    "kodim21.png": "26e193795108c4b5ec47206ae4ff07a353d2492947f7a7ae8d380e042b74027b",
    "kodim22.png": "627b76fccf714b4ddffb739b2eb63ba2817cf5b5a8e222079542dcf2cfdda939",
    "kodim23.png": "85c67d7ea758cb0604fb6980ab0c65091a2eefa7b3b50cbb1bc702a60206dfe5",
    "kodim24.png": "9f1c26df52217bd49f998a720a2ffeba41a535cf826f4ae32e355fb2b0bbc0fe",
}
KODAK_URL = "http://r0k.us/graphics/kodak/kodak/{name}"

# CLIC 2020 professional validation: 41 images. These 31 are the ones whose bytes we could
# record (the other 10 are checked against nothing; the report says how many were verified):
# alberto-montalesi-176097.png from an earlier copy, the other 30 from the 30 in
# ../shared/datasets/clic/professional_valid_30of41 (its SHA256SUMS and MANIFEST.csv agree).
# That folder lacks the 11 largest files of the set (alberto-montalesi's among them).
CLIC_SHA256 = {
    "alberto-montalesi-176097.png": "16390a28cc66c30786e14f300b1904c07acf3b92c4cc13203739025076dee31d",
    "alejandro-escamilla-6.png": "9be685bf7c0a48b55cb8bc7dd35bd63fa4954944d8dbabe1efe6d7ee92f5e1ca",
    "ales-krivec-15949.png": "124feb56d7fe3d4b53eb0eb87957b91f2f6185115b24c00554e99511d442c13e",
    "amy-zhang-15940.png": "a33da2acf22c94f83856e795bdc91f1c08b95275b7893c1a77ee7f56b644bce2",
    "daniel-robert-405.png": "8cdfcf1fdec42592bf35d506006b301c1553bd7dcc37f800fa4e9040467faad9",
    "davide-ragusa-716.png": "0ff2ac0468c93dc27a8bdadfbd60405a2a648fdf12c8c71d146700e4c3ff6c06",
    "dogancan-ozturan-395.png": "4adb31af67d8143429340013c64b083f0b7a5fc219ec5d21304f4e87b2bb8b28",
    "felix-russell-saw-140699.png": "bd60b033817e1eee9ad2fef12445d903d167a577e7832c0e6d25b8676515f2ac",
    "jared-erondu-21325.png": "5a241642973a6be08e1a407ea21f10bf6fbab7915cc5dc1ff6e68ee0c178cf0b",
    "jason-briscoe-149782.png": "2114abc66efd0e1d196995edaa9df03eb80370bda92003ceacb10c2bc4b73e69",
    "jeremy-cai-1174.png": "bdf9508c13c1e70f0e727176ef52035be1638c5827237fe0fb18919b7c048821",
    "juskteez-vu-1041.png": "4edde2170e30a9c4b13a61c253f7207c1997e2e8c78ed72c78a116236ef579eb",
    "kazuend-28556.png": "2e33c59f966c074df6b8d3f75cc13d16d74b1be3f8ad6963c20f2c799bce32a1",
    "lobostudio-hamburg-75377.png": "02af14dc4d1bba8968064fe57b8e3b5bd1b19cb54b8bf8d222f310f5d3520ec6",
    "martin-wessely-211.png": "8c4791c5cb645198b3b12a884d33dac544a33763e1da0f59b86101c2af32e015",
    "michael-durana-82941.png": "7a9ad3ffd2a85fcb0cb6da024c8779eda76ded233137dd20d24a1b2540411460",
    "mullermarc-184.png": "9d7122af54918cd9b300444aa021a4825336b20e0a93c13d7b72a3d602025349",
    "nomao-saeki-33553.png": "a54f6c700580db71d75bae9298298b6315f8f51b6a474dcc0ab447e497eb17ff",
    "paul-itkin-46101.png": "f0a5cd1ea476b19e101f190212e9031dcbe956f44fac7d15fab24f243923a658",
    "philipp-reiner-207.png": "6bcd35982a9d17b0b927526efe4987587fa11c94859d8fb5ff2bdd810e47c98f",
    "roberto-nickson-48063.png": "c1f1ce1aad5699ded11843c82fd758e76bfcc00e58b006ac26503c3afa811386",
    "schicka-307.png": "04e0611bcd155a7613591504c51033a869360179b44aa51c4c0cea671563ebd5",
    "sergey-zolkin-1045.png": "c189a3366d2c4f5953910a8faecf7ed4ca54252f5075561ff5ae3e85f66b83b7",
    "sergey-zolkin-21232.png": "eb787c6f7cf15ba7c03107cb5d32e11b11b20451b5a18a5a1ae968a8a5be13a7",
    "stefan-kunze-26931.png": "7bc5878cdb8b763f2fedb2ec3674c5d2dfae95967f4d708f9f96d6607e0c88b7",
    "thong-vo-428.png": "f25a83aef7ed712d99d839127b4245e164fdce6a34cf0dfeb6fddc7aeec65357",
    "todd-quackenbush-222.png": "0c63d9210463f36d2c564dd4d12ade884b1ee819dbdebbd210839eca5f2ab508",
    "todd-quackenbush-27493.png": "8bcdb4fbc5da81d33f7bdc9446d05f587bc6c317d5e27ec41e239e9e4e63d4a7",
    "vita-vilcina-3055.png": "09f5c520e91fdd124df876a06b1ab7034ad87c4ad8087f0574bb16546a87e95f",
    "wojciech-szaturski-3611.png": "7ac37e0faae3b0802507574e576e724fc7b8dea5bf352fb95b53a75809dd81eb",
    "zugr-108.png": "8dfb79901e629e69a28223c345a6859dd57c56d485b63c795679b05bf2cb4f37",
}
CLIC_URL = "https://data.vision.ee.ethz.ch/cvl/clic/professional_valid_2020.zip"
CLIC_FULL_COUNT = 41
# Partial copies of CLIC we know, by folder name: how they were cut (for the report's caveat).
CLIC_SUBSETS = {
    "professional_valid_30of41": "a biased subset: the 11 missing images are the largest files of the set "
                                 "(each ≥ 4 MiB), so it leans towards easier photos",
}

# fetch(url, destination file): the downloader; tests swap it for one that needs no network.
Fetch = Callable[[str, Path], None]


class DatasetError(ImgarcError):
    """A benchmark data set is missing, incomplete or does not match its recorded checksums."""


@dataclass
class Dataset:
    name: str  # "kodak", "clic" or the folder's name
    folder: Path
    images: list[Path]  # sorted
    found_via: str  # "--data", "$IMGARC_DATA", "cache", "download", "folder"
    full_count: int | None = None  # images in the complete public set, when known
    verified: int = 0  # images checked against a recorded sha256
    caveat: str | None = None  # what a reader must know about the images (a biased subset ...)

    @property
    def note(self) -> str:
        """One line for reports: how many images, out of how many, how many checksum-verified, caveats."""
        n = len(self.images)
        of = f" of the {self.full_count} in the full set" if self.full_count and self.full_count != n else ""
        return f"{n} images{of}; {self.verified} verified against recorded sha256" + (f"; {self.caveat}" if self.caveat else "")


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "imgarc" / "datasets"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def image_files(folder: Path) -> list[Path]:
    """Image files under folder (recursive, by suffix), sorted by relative path; hidden files skipped."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _check(path: Path, expected: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise DatasetError(f"{path} does not match its recorded sha256 (expected {expected[:16]}…, got {actual[:16]}…); "
                           "delete it so that it is downloaded again, or replace it with the original file")


def _kodak_in(root: Path) -> Path | None:
    for folder in (root / "kodak", root):
        if all((folder / n).is_file() for n in KODAK_SHA256):
            return folder
    return None


def _clic_in(root: Path) -> Path | None:
    """The CLIC professional validation folder with the most images under root (the full one first)."""
    candidates = [root / "clic" / "professional_valid", *sorted((root / "clic").glob("professional_valid*")), root]
    best, best_n = None, 0
    for folder in candidates:
        if folder.is_dir() and any((folder / n).is_file() for n in CLIC_SHA256):
            n = len(image_files(folder))
            if n > best_n:
                best, best_n = folder, n
    return best


def _verified(folder: Path, known: dict[str, str]) -> int:
    count = 0
    for name, expected in known.items():
        if (folder / name).is_file():
            _check(folder / name, expected)
            count += 1
    return count


def _dataset(name: str, folder: Path, via: str) -> Dataset:
    if name == "kodak":
        files = [folder / n for n in sorted(KODAK_SHA256)]
        return Dataset("kodak", folder, files, via, len(KODAK_SHA256), _verified(folder, KODAK_SHA256))
    files = image_files(folder)
    caveat = None
    if len(files) < CLIC_FULL_COUNT:
        caveat = (CLIC_SUBSETS.get(folder.name, "a subset") + "; scores on it are not comparable with "
                  f"published {CLIC_FULL_COUNT}-image numbers")
    return Dataset("clic", folder, files, via, CLIC_FULL_COUNT, _verified(folder, CLIC_SHA256), caveat)


def fetch_url(url: str, dest: Path) -> None:
    """Download url to dest (through a temporary name in the same folder)."""
    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _download_kodak(cache: Path, fetch: Fetch) -> Path:
    folder = cache / "kodak"
    folder.mkdir(parents=True, exist_ok=True)
    for name, expected in sorted(KODAK_SHA256.items()):
        target = folder / name
        if target.is_file() and sha256_file(target) == expected:
            continue
        fetch(KODAK_URL.format(name=name), target)
        if sha256_file(target) != expected:
            target.unlink()
            raise DatasetError(f"{KODAK_URL.format(name=name)} did not match the recorded Kodak sha256 "
                               f"(expected {expected[:16]}…); the download was deleted. Put the original "
                               f"files in {folder} yourself, or try again later")
    return folder


def _download_clic(cache: Path, fetch: Fetch) -> Path:
    folder = cache / "clic" / "professional_valid"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        archive = Path(tmp) / "professional_valid_2020.zip"
        fetch(CLIC_URL, archive)
        unpacked = Path(tmp) / "unpacked"
        try:
            with zipfile.ZipFile(archive) as z:
                for info in z.infolist():
                    base = Path(info.filename).name
                    if not info.is_dir() and Path(base).suffix.lower() in IMAGE_SUFFIXES and not base.startswith("."):
                        unpacked.mkdir(exist_ok=True)
                        (unpacked / base).write_bytes(z.read(info))
        except zipfile.BadZipFile as e:
            raise DatasetError(f"{CLIC_URL} did not give a zip file ({e}); try again later") from e
        if unpacked.is_dir():
            for name, expected in CLIC_SHA256.items():
                if (unpacked / name).is_file() and sha256_file(unpacked / name) != expected:
                    raise DatasetError(f"{name} in {CLIC_URL} does not match its recorded sha256 "
                                       f"(expected {expected[:16]}…); nothing was kept")
        if not unpacked.is_dir() or not any((unpacked / n).is_file() for n in CLIC_SHA256):
            raise DatasetError(f"{CLIC_URL} does not hold the CLIC professional validation images; nothing was kept")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(unpacked, folder)
    return folder


WHERE = {
    "kodak": "kodim01.png … kodim24.png in <root>/kodak/",
    "clic": "the CLIC 2020 professional validation PNGs in <root>/clic/professional_valid/",
}


def resolve_dataset(name: str, data: Path | None = None, cache_dir: Path | None = None,
                    download: bool = True, fetch: Fetch = fetch_url) -> Dataset:
    """The data set `name` ("kodak", "clic", or a folder of images), found or downloaded and verified.

    Looks in `data`, then $IMGARC_DATA, then the cache folder; downloads into the cache when
    allowed and the set is missing. Raises DatasetError with where to put the files otherwise.
    """
    if name not in WHERE:
        folder = Path(name)
        if not folder.is_dir():
            raise DatasetError(f"{name!r} is neither 'kodak', 'clic' nor a folder of images")
        files = image_files(folder)
        if not files:
            raise DatasetError(f"{folder} has no image files ({', '.join(IMAGE_SUFFIXES)})")
        return Dataset(folder.resolve().name, folder, files, "folder")
    cache = cache_dir or default_cache_dir()
    find = _kodak_in if name == "kodak" else _clic_in
    env = os.environ.get(ENV_VAR)
    places = [(p, via) for p, via in ((data, "--data"), (Path(env) if env else None, f"${ENV_VAR}"), (cache, "cache")) if p]
    for root, via in places:
        folder = find(root) if root.is_dir() else None
        if folder is not None:
            return _dataset(name, folder, via)
    if data is not None and not data.is_dir():
        raise DatasetError(f"--data {data} is not a folder")
    looked = ", ".join(str(p) for p, _ in places)
    if download:
        try:
            folder = (_download_kodak if name == "kodak" else _download_clic)(cache, fetch)
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", None) or e
            raise DatasetError(f"{name} is not here and could not be downloaded ({reason}); put {WHERE[name]} "
                               f"with <root> one of: --data DIR, ${ENV_VAR}, {cache} (looked in: {looked})") from e
        return _dataset(name, folder, "download")
    raise DatasetError(f"{name} was not found (looked in: {looked}); put {WHERE[name]} with <root> one of: "
                       f"--data DIR, ${ENV_VAR}, {cache}; or allow --download")
