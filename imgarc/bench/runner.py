"""Running a bench: every method on a private copy of the same folder, then the quality metrics.

Phase 1 runs the methods one after another, each step (compress the folder, restore it) in
its own process, timed and measured (imgarc.bench.process). Nothing else runs meanwhile.
Then, still one process at a time: the coder study (the per-symbol arithmetic coder against
imgarc's coders on a few images), CompressAI's own pipeline on the same images, and the
phone photo (one 12 MP photo, compressed and restored by imgarc and the image codecs).
Phase 2, with no timing running, compares every decoded image with its original (PSNR,
MS-SSIM) in a few worker processes; identical decoded files are scored once.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

from imgarc import api
from imgarc.archive import KIND_IMAGE
from imgarc.bench.baselines import ARCHIVERS, PILLOW_CODECS
from imgarc.bench.curves import bd_rate_table
from imgarc.bench.datasets import Dataset, sha256_file
from imgarc.bench.machine import describe_machine, load_average
from imgarc.bench.coder_study import sample_names
from imgarc.bench.methods import BenchConfig, Method, phone_methods, plan_methods
from imgarc.bench.metrics import file_pair_metrics
from imgarc.bench.phone import make_phone_photo
from imgarc.bench.process import Measured, python_worker, run_measured
from imgarc.bench.results import BenchResult, DatasetInfo, ImageResult, MethodResult, PhoneResult, Step

# progress(done, total, label)
Progress = Callable[[int, int, str], None]


class _Work:
    """The private folders of one run: src (the copy every method reads), outputs, specs."""

    def __init__(self, root: Path):
        self.root = root
        self.src = root / "src"
        self.out = root / "out"
        self.decoded = root / "decoded"
        self.specs = root / "specs"
        for p in (self.src, self.out, self.decoded, self.specs):
            p.mkdir(parents=True)

    def spec(self, name: str, spec: dict) -> list[str]:
        path = self.specs / f"{name}.json"
        path.write_text(json.dumps(spec))
        return python_worker(path)


def _copy_source(dataset: Dataset, work: _Work) -> list[ImageResult]:
    """Copy the images (mtimes kept, folder mtimes fixed) so every run archives identical bytes."""
    from PIL import Image

    images = []
    latest = 0
    for path in dataset.images:
        rel = path.relative_to(dataset.folder).as_posix()
        target = work.src / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        latest = max(latest, target.stat().st_mtime_ns)
        with Image.open(target) as im:
            w, h = im.size
        images.append(ImageResult(rel, w, h, target.stat().st_size))
    for folder in sorted({p.parent for p in work.src.rglob("*")} | {work.src}, reverse=True):
        os.utime(folder, ns=(latest, latest))
    return images


def _worker_json(m: Measured) -> dict:
    lines = [line for line in m.stdout.splitlines() if line.strip()]
    try:
        return json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        return {}


def _failed(result: MethodResult, step: str, m: Measured) -> MethodResult:
    detail = _worker_json(m).get("error") or m.failure()
    result.status, result.reason = "failed", f"{step} failed: {detail}"
    return result


def _python_split(m: Measured, report: dict, keys: tuple[str, ...] = ()) -> dict[str, float]:
    """The step's wall time split into the reported parts (`keys`), the rest, and start-up. The
    parts are thread-seconds summed over photos coded side by side: where they add up to more
    than the wall time, they are scaled down to it, so the split always adds up to the step."""
    inner = float(report.get("seconds", 0.0))
    split = {k: float(report[f"seconds_{k}"]) for k in keys}
    if sum(split.values()) > inner > 0:
        scale = inner / sum(split.values())
        split = {k: v * scale for k, v in split.items()}
    split["work" if not keys else "other"] = max(inner - sum(split.values()), 0.0)
    split["startup"] = max(m.seconds - inner, 0.0)
    return split


def _run_imgarc(method: Method, work: _Work, images: list[ImageResult], decoded: dict) -> MethodResult:
    r = MethodResult(method.id, method.family, method.label, method.params, method.lossless, "ok")
    archive = work.out / f"{method.id}.iarc"
    dest = work.decoded / method.id
    p = method.params
    c = run_measured(work.spec(f"{method.id}-c", {"step": "imgarc-compress", "src": str(work.src), "archive": str(archive),
                                                 "quality": p["quality"], "coder": p["coder"], "model": p["model"],
                                                 "refine_steps": p.get("refine_steps", 0)}))
    if not c.ok:
        return _failed(r, "compress", c)
    d = run_measured(work.spec(f"{method.id}-d", {"step": "imgarc-extract", "archive": str(archive), "dest": str(dest)}))
    if not d.ok:
        return _failed(r, "extract", d)
    r.compress = Step(c.seconds, c.peak_rss_bytes, c.cpu_seconds, _python_split(c, _worker_json(c), ("model", "coder")))
    r.decompress = Step(d.seconds, d.peak_rss_bytes, d.cpu_seconds, _python_split(d, _worker_json(d), ("model", "coder")))
    r.bytes = archive.stat().st_size
    headers = {e.header.path: e.header for e in api.list_archive(archive) if e.header is not None}
    coded = [h for h in headers.values() if h.kind == KIND_IMAGE]
    r.extra = {"models": sorted({h.model_id for h in coded}), "entry_qualities": sorted({h.quality for h in coded}),
               "stored_images": sum(1 for im in images if im.name in headers and headers[im.name].kind != KIND_IMAGE)}
    r.images = [ImageResult(im.name, im.width, im.height, im.original_bytes,
                            headers[im.name].payload_size if im.name in headers else None) for im in images]
    decoded[method.id] = {im.name: dest / im.name for im in images}
    archive.unlink()
    return r


def _run_pillow(method: Method, work: _Work, images: list[ImageResult], decoded: dict) -> MethodResult:
    codec = PILLOW_CODECS[method.family]
    r = MethodResult(method.id, method.family, method.label, method.params, method.lossless, "ok")
    why = codec.unavailable()
    if why:
        r.status, r.reason = "skipped", why
        return r
    r.extra = {"encoder": codec.version()}
    coded, dest = work.out / method.id, work.decoded / method.id
    files = [im.name for im in images]
    c = run_measured(work.spec(f"{method.id}-c", {"step": "pillow-encode", "codec": codec.name, "src": str(work.src),
                                                 "out": str(coded), "files": files, "quality": method.params["quality"]}))
    if not c.ok:
        return _failed(r, "encode", c)
    d = run_measured(work.spec(f"{method.id}-d", {"step": "pillow-decode", "codec": codec.name, "coded": str(coded),
                                                 "dest": str(dest), "files": files}))
    if not d.ok:
        return _failed(r, "decode", d)
    r.compress = Step(c.seconds, c.peak_rss_bytes, c.cpu_seconds, _python_split(c, _worker_json(c)))
    r.decompress = Step(d.seconds, d.peak_rss_bytes, d.cpu_seconds, _python_split(d, _worker_json(d)))
    r.images = [ImageResult(im.name, im.width, im.height, im.original_bytes,
                            (coded / (im.name + codec.suffix)).stat().st_size) for im in images]
    r.bytes = sum(im.bytes or 0 for im in r.images)
    decoded[method.id] = {im.name: dest / (im.name + ".png") for im in images}
    shutil.rmtree(coded)
    return r


def _run_archiver(method: Method, work: _Work, images: list[ImageResult]) -> MethodResult:
    a = ARCHIVERS[method.id]
    r = MethodResult(method.id, method.family, method.label, method.params, method.lossless, "ok")
    binary = a.binary()
    if binary is None:
        r.status = "skipped"
        r.reason = f"no {' / '.join(a.binaries)} on PATH" + (" (install 7-Zip: apt-get install 7zip)" if a.family == "7z" else "")
        return r
    r.extra = {"binary": binary, "version": a.version(binary)}
    archive, dest = work.out / (method.id + a.suffix), work.decoded / method.id
    dest.mkdir()
    c = run_measured(a.compress_argv(binary, work.src, archive), cwd=work.src)
    if not c.ok:
        return _failed(r, "compress", c)
    d = run_measured(a.extract_argv(binary, archive, dest))
    if not d.ok:
        return _failed(r, "extract", d)
    r.compress, r.decompress = Step(c.seconds, c.peak_rss_bytes, c.cpu_seconds), Step(d.seconds, d.peak_rss_bytes, d.cpu_seconds)
    r.bytes = archive.stat().st_size
    changed = [im.name for im in images
               if not (dest / im.name).is_file() or sha256_file(dest / im.name) != sha256_file(work.src / im.name)]
    if changed:
        r.status, r.reason = "failed", f"extracted files differ from the originals: {', '.join(changed[:3])}"
        return r
    r.images = [ImageResult(im.name, im.width, im.height, im.original_bytes, None, None, 1.0, True) for im in images]
    archive.unlink()
    shutil.rmtree(dest)
    return r


def _init_metric_worker() -> None:
    import warnings

    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)


def _score(pairs: list[tuple[Path, Path]], jobs: int, tick: Callable[[], None]) -> list[tuple[float, float | None]]:
    """file_pair_metrics over all pairs, in `jobs` processes (each on one thread: same values for any jobs)."""
    if jobs <= 1 or len(pairs) <= 1:
        out = []
        for ref, dec in pairs:
            out.append(file_pair_metrics(ref, dec))
            tick()
        return out
    with ProcessPoolExecutor(max_workers=min(jobs, len(pairs)), mp_context=get_context("spawn"),
                             initializer=_init_metric_worker) as pool:
        futures = [pool.submit(file_pair_metrics, ref, dec) for ref, dec in pairs]
        out = []
        for f in futures:
            out.append(f.result())
            tick()
        return out


def _cpu_seconds() -> float:
    """CPU time of this process and every child it has waited for (launchers, their commands, metric workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _run_one(method: Method, work: _Work, images: list[ImageResult], decoded: dict) -> MethodResult:
    if method.family == "imgarc":
        r = _run_imgarc(method, work, images, decoded)
    elif method.family in PILLOW_CODECS:
        r = _run_pillow(method, work, images, decoded)
    else:
        r = _run_archiver(method, work, images)
    missing = [name for name, path in decoded.get(method.id, {}).items() if not path.is_file()]
    if r.ok and missing:
        r.status, r.reason = "failed", f"decompress gave no {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
    if not r.ok:
        decoded.pop(method.id, None)
    return r


def _score_methods(results: list[MethodResult], decoded: dict[str, dict[str, Path]], work: _Work, jobs: int,
                   progress: Progress | None, done: int) -> None:
    """PSNR and MS-SSIM for every decoded image, once per distinct (original, decoded file bytes)."""
    keys: dict[tuple[str, str], tuple[Path, Path]] = {}
    wanted: dict[str, dict[str, tuple[str, str]]] = {}
    for mid, files in decoded.items():
        wanted[mid] = {}
        for name, path in files.items():
            key = (name, sha256_file(path))
            keys.setdefault(key, (work.src / name, path))
            wanted[mid][name] = key
    total, count = done + len(keys), [done]

    def tick() -> None:
        count[0] += 1
        if progress:
            progress(count[0], total, "quality metrics")

    if progress:
        progress(done, total, "quality metrics")
    scores = dict(zip(keys, _score(list(keys.values()), jobs, tick)))
    for r in results:
        for im in r.images if r.id in wanted else []:
            p, m = scores[wanted[r.id][im.name]]
            im.identical = p == float("inf")
            im.psnr, im.ms_ssim = (None if im.identical else p), m


def _step(m: Measured) -> dict:
    return asdict(Step(m.seconds, m.peak_rss_bytes, m.cpu_seconds))


def _not_run(status: str, reason: str, **known) -> dict:
    return {"status": status, "reason": reason, **known}


def _run_coder_study(config: BenchConfig, work: _Work, images: list[ImageResult]) -> dict:
    """Every coder, the per-symbol arithmetic coder first, on the latents of a few images (one process)."""
    names = sample_names([im.name for im in images], config.study_images)
    spec = {"step": "coder-study", "src": str(work.src), "files": names, "quality": config.study_quality,
            "model": config.model, "coders": config.study_coders, "sizes": [[im.width, im.height] for im in images]}
    m = run_measured(work.spec("coder-study", spec))
    if not m.ok:
        return _not_run("failed", f"coder study failed: {_worker_json(m).get('error') or m.failure()}")
    return {"status": "ok", "reason": None, **_worker_json(m), "sample_of": len(images), "process": _step(m)}


# Where CompressAI's decode is tried: the machine as it runs, and torch's plain kernels (as on
# a CPU without AVX2/AVX-512, or in a build that does not dispatch to them).
CAI_DECODES = (("as this machine runs", None), ("ATEN_CPU_CAPABILITY=default", "default"))


def _run_compressai(config: BenchConfig, work: _Work, images: list[ImageResult]) -> dict:
    """CompressAI compress() in one process, decompress() in others (see CAI_DECODES)."""
    names = sample_names([im.name for im in images], config.study_images)
    folder = work.root / "compressai"
    folder.mkdir()
    base = {"src": str(work.src), "files": names, "quality": config.study_quality, "model": config.model,
            "work": str(folder)}
    c = run_measured(work.spec("cai-compress", {"step": "cai-compress", **base}))
    out = _worker_json(c)
    if not c.ok:
        return _not_run("failed", f"CompressAI compress() failed: {out.get('error') or c.failure()}")
    if out.get("skipped"):
        return _not_run("skipped", out["skipped"])
    result = {"status": "ok", "reason": None, "model": out["model"], "quality": config.study_quality,
              "sample_of": len(images), "update_s": out["update_s"], "tables_sha256": out["tables_sha256"],
              "cpu_capability": out["cpu_capability"], "images": out["images"],
              "compress_process": _step(c), "decodes": []}
    for i, (name, capability) in enumerate(CAI_DECODES):
        env = None if capability is None else dict(os.environ, ATEN_CPU_CAPABILITY=capability)
        d = run_measured(work.spec(f"cai-decompress-{i}", {"step": "cai-decompress", **base, "imgarc": i == 0}), env=env)
        decode = {"name": name, "process": _step(d)}
        if d.ok:
            decode.update(_worker_json(d))
            decode["exact_images"] = sum(1 for row in decode["images"] if row.get("exact"))
        else:
            decode.update(status="failed", reason=_worker_json(d).get("error") or d.failure(), images=[], exact_images=0)
        result["decodes"].append(decode)
    shutil.rmtree(folder, ignore_errors=True)
    return result


def _run_phone(config: BenchConfig, root: Path, jobs: int, progress: Callable[[str], None]) -> PhoneResult:
    """The phone photo made from config.phone, then each phone method on a folder holding only it."""
    work = _Work(root / "phone")
    photo = make_phone_photo(Path(config.phone), work.src / "phone-12mp.png", tuple(config.phone_size))
    images = [ImageResult("phone-12mp.png", photo.width, photo.height, photo.bytes)]
    decoded: dict[str, dict[str, Path]] = {}
    results = []
    for method in phone_methods(config):
        progress(f"phone photo: {method.label}")
        results.append(_run_one(method, work, images, decoded))
    progress("phone photo: quality metrics")
    _score_methods(results, decoded, work, jobs, None, 0)
    for r in results:
        r.summarize(photo.bytes, photo.width * photo.height)
    return PhoneResult(asdict(photo), results)


def run_bench(dataset: Dataset, config: BenchConfig, command: str, work_dir: Path | None = None,
              keep_work: bool = False, progress: Progress | None = None) -> BenchResult:
    """Run every method of `config` on `dataset` and score it; the result, ready to report.

    Work files go to a temporary folder inside `work_dir` (removed unless `keep_work`).
    """
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    started, cpu_start = time.perf_counter(), _cpu_seconds()
    machine = describe_machine()
    methods = plan_methods(config)
    studies = bool(config.coders and config.study_images > 0)
    extra_steps = int(studies) * (1 + int(config.compressai_pipeline)) + (len(phone_methods(config)) + 1 if config.phone else 0)
    total = len(methods) + extra_steps
    step = [0]

    def tick(label: str) -> None:
        if progress:
            progress(step[0], total, label)
        step[0] += 1

    coder_study = compressai = phone = None
    # Absolute: the archivers run inside the source copy, so relative paths would point elsewhere.
    root = Path(tempfile.mkdtemp(prefix="imgarc-bench-", dir=work_dir)).resolve()
    # The work folder sits in --out, often inside a git checkout, for as long as the run takes
    # (hours for CLIC): keep its gigabytes of decoded images out of anyone's `git add -A`.
    (root / ".gitignore").write_text("*\n")
    try:
        work = _Work(root)
        images = _copy_source(dataset, work)
        decoded: dict[str, dict[str, Path]] = {}
        results = []
        for method in methods:  # phase 1: timed, one at a time
            tick(method.label)
            results.append(_run_one(method, work, images, decoded))
        if studies:
            tick("coder study (per-symbol arithmetic coder)")
            coder_study = _run_coder_study(config, work, images)
            if config.compressai_pipeline:
                tick("CompressAI compress()/decompress()")
                compressai = _run_compressai(config, work, images)
        if config.phone:
            phone = _run_phone(config, root, config.jobs, tick)
        _score_methods(results, decoded, work, config.jobs, progress, total)  # phase 2: untimed
    finally:
        if not keep_work:
            shutil.rmtree(root, ignore_errors=True)
    source_bytes, pixels = sum(im.original_bytes for im in images), sum(im.pixels for im in images)
    for r in results:
        r.summarize(source_bytes, pixels)
    info = DatasetInfo(dataset.name, str(dataset.folder), len(images), dataset.full_count, dataset.verified,
                       dataset.found_via, pixels, source_bytes, dataset.note)
    result = BenchResult(info, asdict(config), command, machine, started_at, time.perf_counter() - started, results,
                         coder_study=coder_study, compressai=compressai, phone=phone)
    result.bd_rates = bd_rate_table(results)
    result.cpu_seconds = _cpu_seconds() - cpu_start
    result.machine["load_average_at_end"] = load_average()
    if keep_work:
        result.machine["work_dir"] = str(root)
    return result
