"""The result records of a bench run: one schema for every method, and its JSON form."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

SCHEMA = "imgarc-bench/1"


@dataclass
class Step:
    """One timed step (compress or decompress the whole folder) of one method."""

    seconds: float  # wall time of the process, start to exit
    peak_rss_bytes: int  # peak resident memory of the process (and what it waited for)
    cpu_seconds: float = 0.0  # its user + system CPU time: less sensitive to other load than wall time
    # Where the time went, when the process can tell: imgarc: model / coder / other (file I/O,
    # PNG/JPEG reading and writing, model loading) / startup (interpreter, imports, exit);
    # Pillow: work / startup.
    split: dict[str, float] = field(default_factory=dict)


@dataclass
class ImageResult:
    name: str  # relative path in the source folder
    width: int
    height: int
    original_bytes: int
    bytes: int | None = None  # this image's coded bytes; None where a method codes the folder as a whole
    psnr: float | None = None  # dB; None when identical to the original
    ms_ssim: float | None = None  # None below 161 px per side
    identical: bool = False

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def bpp(self) -> float | None:
        return None if self.bytes is None else self.bytes * 8 / self.pixels


@dataclass
class MethodResult:
    id: str
    family: str
    label: str
    params: dict
    lossless: bool
    status: str  # "ok", "skipped" or "failed"
    reason: str | None = None  # why skipped or failed
    bytes: int | None = None  # archive bytes, or the sum of the coded files
    compress: Step | None = None
    decompress: Step | None = None
    images: list[ImageResult] = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # binary and version, models and qualities used ...
    # Filled in by summarize():
    ratio: float | None = None  # source folder bytes / bytes
    bpp: float | None = None  # bytes * 8 / all pixels of the folder
    bpp_mean: float | None = None  # mean over images of each image's bpp (= bpp for archivers)
    psnr_mean: float | None = None  # mean over images that differ from their original
    ms_ssim_mean: float | None = None
    identical_images: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def total_seconds(self) -> float | None:
        return self.compress.seconds + self.decompress.seconds if self.compress and self.decompress else None

    def summarize(self, source_bytes: int, pixels: int) -> None:
        """Folder-level numbers from the per-image ones."""
        if not self.ok or self.bytes is None:
            return
        self.ratio = source_bytes / self.bytes if self.bytes else None
        self.bpp = self.bytes * 8 / pixels
        per_image = [im.bpp for im in self.images if im.bpp is not None]
        self.bpp_mean = sum(per_image) / len(per_image) if len(per_image) == len(self.images) else self.bpp
        self.identical_images = sum(im.identical for im in self.images)
        ps = [im.psnr for im in self.images if im.psnr is not None and not im.identical]
        ms = [im.ms_ssim for im in self.images if im.ms_ssim is not None]
        self.psnr_mean = sum(ps) / len(ps) if ps else None
        self.ms_ssim_mean = sum(ms) / len(ms) if len(ms) == len(self.images) else None


@dataclass
class DatasetInfo:
    name: str
    folder: str
    images: int
    full_count: int | None
    verified: int
    found_via: str
    pixels: int
    source_bytes: int
    note: str


@dataclass
class PhoneResult:
    """The time-per-photo table: one 12 MP photo, each method on a folder holding only it."""

    photo: dict  # how it was made (imgarc.bench.phone.PhonePhoto as a dict)
    methods: list[MethodResult] = field(default_factory=list)


@dataclass
class BenchResult:
    dataset: DatasetInfo
    config: dict
    command: str
    machine: dict
    started: str  # ISO time
    seconds: float  # wall time of the whole run
    methods: list[MethodResult]
    bd_rates: list[dict] = field(default_factory=list)
    cpu_seconds: float = 0.0  # CPU time of the whole run, every process it started included
    # The latent coders on the same latents of a few images, the per-symbol arithmetic coder
    # included (imgarc.bench.coder_study; None when not run). Keys: status, reason, model,
    # quality, images (per image: name, size, symbols, estimate_bits, coders), totals,
    # symbols, estimate_bits, folder_symbols, sample_of, process (the step's Step as a dict).
    coder_study: dict | None = None
    # CompressAI's compress()/decompress() on the same weights and images (imgarc.bench.compressai_pipeline;
    # None when not run). Keys: status, reason, model, quality, images (per image: bytes, seconds
    # each way, imgarc's bytes and seconds, decodes), update_s, decodes (per decoding process:
    # its name, ATEN_CPU_CAPABILITY, images decoded exactly), process steps.
    compressai: dict | None = None
    phone: PhoneResult | None = None
    schema: str = SCHEMA

    def method(self, method_id: str) -> MethodResult:
        return next(m for m in self.methods if m.id == method_id)

    def to_json(self) -> dict:
        """Plain JSON data (infinities never appear: identical images have psnr null)."""
        doc = asdict(self)
        _method_extras(self.methods, doc["methods"])
        if self.phone is not None:
            _method_extras(self.phone.methods, doc["phone"]["methods"])
        return _finite(doc)


def _method_extras(methods: list[MethodResult], docs: list[dict]) -> None:
    """The derived numbers a reader of results.json wants without recomputing them."""
    for m, md in zip(methods, docs):
        md["total_seconds"] = m.total_seconds
        for im, imd in zip(m.images, md["images"]):
            imd["bpp"] = im.bpp


def _finite(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


def result_from_json(doc: dict) -> BenchResult:
    """The BenchResult a results.json holds (for re-drawing reports without re-running)."""
    if doc.get("schema") != SCHEMA:
        raise ValueError(f"not an {SCHEMA} results file (schema {doc.get('schema')!r})")
    rest = {k: v for k, v in doc.items() if k not in ("dataset", "methods", "phone")}
    phone = doc.get("phone")
    if phone is not None:
        phone = PhoneResult(phone["photo"], [_method_from_json(md) for md in phone["methods"]])
    return BenchResult(dataset=DatasetInfo(**doc["dataset"]), methods=[_method_from_json(md) for md in doc["methods"]],
                       phone=phone, **rest)


def _method_from_json(md: dict) -> MethodResult:
    md = {k: v for k, v in md.items() if k != "total_seconds"}
    md["images"] = [ImageResult(**{k: v for k, v in im.items() if k != "bpp"}) for im in md["images"]]
    md["compress"] = Step(**md["compress"]) if md["compress"] else None
    md["decompress"] = Step(**md["decompress"]) if md["decompress"] else None
    return MethodResult(**md)
