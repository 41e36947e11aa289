"""Issue 11's numbers: Kodak decodes identically across CPU code paths and threads, and what that costs.

    python benchmarks/determinism.py --data ../shared/datasets/kodak --model ID --out benchmarks/results/determinism_ID

1. Identical decoding. For every ATEN_CPU_CAPABILITY this CPU has (default/avx2/avx512), an
   encoder subprocess codes every image at every quality with every coder and records its own
   latent code and the pixels that code synthesizes to (its intent). Then, for every
   capability × 1/2/4 torch threads, a decoder subprocess decodes the payloads of *every*
   encoder (so every ordered pair of capabilities, same one included) and counts the images
   whose pixels equal the encoder's intent byte for byte.
   Cost-aware but exact: entropy decoding and the integer h_s are cheap, g_s is not and depends
   only on the decoded latent code. So each decoder entropy-decodes every coder's payload and
   checks that ẑ and ŷ (and the table indexes and means from the integer h_s) are *identical* to
   the encoder's; the integer h_s runs once per distinct ẑ and quality, and g_s once per distinct
   latent code, in each decode configuration. An image counts as identical only when its
   latent code and its pixels both match.
2. What determinism costs, in one process (no capability override, default threads): the same
   ẑ with the plain float path — torch h_s in float32, float gains, the table index by float
   comparison of σ against the same scale table (geometric midpoints), the same coder and
   tables — against imgarc's integer h_s: payload bits at every quality × coder, and the whole
   per-image compress + decompress time (PNG decode, g_a/h_a, quantize, h_s, coder, and back:
   coder, h_s, g_s, PNG encode), alternating the order of the two paths image by image.
   The machine may be shared (training jobs, other work): absolute times move with the load;
   ratios measured within one run, pair by pair, are what count.
3. Why it matters, measured: each decoder also runs the float h_s on the same ẑ and counts the
   latents whose float table index differs from the one the encoder's float h_s picked (one such
   flip desynchronises the entropy decoder), and the encoder reports how close float scales come
   to a table threshold.
4. Other kinds of CPU: ATEN_CPU_CAPABILITY does not reach oneDNN, which runs torch's float
   convolutions (g_s) with kernels chosen by CPU kind. One decoder per older ISA this CPU has
   (ONEDNN_MAX_CPU_ISA=SSE41/AVX/...) decodes the default-capability encoder's payloads and
   reports whether the latent code is identical and how many pixel values differ (--no-isa skips).

Coding and decoding go through the library: `ImageCodec.quantize` (its `select` hook swaps the
integer h_s for the float path, or for a memoized integer h_s) and `imgarc.api.EntryDecoder`
(`latents`, `pixels`) on the payloads, with the entry header `imgarc compress` would write.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgarc.api import EntryDecoder
from imgarc.archive import KIND_IMAGE, EntryHeader
from imgarc.codec.padding import padded_size

from common import array_digest, first_files, load_rgb, machine_line  # benchmarks/common.py

THREADS = (1, 2, 4)
DEFAULT_QUALITIES = (10, 35, 60, 85)
TIME_QUALITY = 60


def capabilities() -> list[str]:
    """The ATEN_CPU_CAPABILITY values this CPU can run."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return ["default"] + [c for c, f in (("avx2", " avx2"), ("avx512", " avx512f")) if f in flags]


def onednn_isas() -> list[str]:
    """ONEDNN_MAX_CPU_ISA values below this CPU's best: oneDNN (torch's float convolutions) picks
    its kernels by CPU kind, which ATEN_CPU_CAPABILITY does not control; capping the ISA is how
    one machine can run another kind of CPU's g_s kernels."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    have = [isa for isa, f in (("SSE41", " sse4_1"), ("AVX", " avx "), ("AVX2", " avx2"), ("AVX512_CORE", " avx512f")) if f in flags]
    return have[:-1]


# ----------------------------------------------------------------------------- the float path


@dataclass
class FloatHyper:
    """The plain float path for table selection: torch h_s (float32), float gains, float thresholds."""

    codec: object
    thresholds: np.ndarray  # float64 [K-1]: geometric midpoints of the scale table (as the integer path)

    @classmethod
    def of(cls, codec) -> "FloatHyper":
        from imgarc.codec.export import scale_table

        st = scale_table()
        return cls(codec, np.sqrt(st[:-1] * st[1:]))

    def scales_and_means(self, z_symbols: np.ndarray, gains) -> tuple[np.ndarray, np.ndarray]:
        import torch

        z = z_symbols.astype(np.float32) + self.codec.medians[:, None, None]
        if gains is not None:
            z = z * gains.as_float("hyper_inv_gain")[:, None, None]
        with torch.no_grad():
            params = self.codec.torch_model.h_s(torch.from_numpy(np.ascontiguousarray(z))[None])[0].numpy()
        scales, means = np.split(params, 2)
        if gains is not None:
            g = gains.as_float("gain")[:, None, None]
            scales, means = scales * g, means * g
        return scales, means

    def indexes_and_means(self, z_symbols: np.ndarray, gains) -> tuple[np.ndarray, np.ndarray]:
        scales, means = self.scales_and_means(z_symbols, gains)
        return np.searchsorted(self.thresholds, scales, side="right").astype(np.int32), means.astype(np.float32)


def relative_distance_to_threshold(scales: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """|σ/T - 1| for the threshold T nearest each σ."""
    i = np.searchsorted(thresholds, scales)
    below = thresholds[np.clip(i - 1, 0, len(thresholds) - 1)]
    above = thresholds[np.clip(i, 0, len(thresholds) - 1)]
    return np.minimum(np.abs(scales / below - 1), np.abs(scales / above - 1))


def gain_vectors(gains) -> tuple:
    """A quality's four gain vectors (none for a single-rate model)."""
    return () if gains is None else (gains.gain, gains.inv_gain, gains.hyper_gain, gains.hyper_inv_gain)


def code_digest(code) -> str:
    """Everything that decides the pixels: symbols, table indexes, means (and the quality's gains)."""
    return array_digest(code.z_symbols, code.y_symbols, code.y_indexes, code.y_means, *gain_vectors(code.gains))


class Memo:
    """A table selection `select(z_symbols, gains)` run once per distinct ẑ and gains (`cache`)."""

    def __init__(self, select) -> None:
        self.select = select
        self.cache: dict = {}

    def __call__(self, z_symbols: np.ndarray, gains):
        key = array_digest(z_symbols, *gain_vectors(gains))
        if key not in self.cache:
            self.cache[key] = self.select(z_symbols, gains)
        return self.cache[key]


class WithSelection:
    """`codec`, but picking y's tables with `select(z_symbols, gains)`; everything else is the codec's."""

    def __init__(self, codec, select) -> None:
        self.codec = codec
        self.select = select

    def __getattr__(self, name: str):
        return getattr(self.codec, name)

    def y_indexes_and_means(self, z_symbols: np.ndarray, gains=None):
        return self.select(z_symbols, gains)


class SelectingDecoder(EntryDecoder):
    """imgarc.api's entry decoder with this process's codec and the table selection `select`
    (EntryDecoder.latents asks its codec's y_indexes_and_means for the tables: WithSelection answers)."""

    def __init__(self, codec, select) -> None:
        self.codec = WithSelection(codec, select)

    def codec_for(self, header: EntryHeader):
        return self.codec


def image_header(codec, coder: str, hw, quality: int) -> EntryHeader:
    """The header `imgarc compress` writes for an RGB photo of `hw` pixels coded at `quality`."""
    (h, w), (ph, pw) = hw, padded_size(*hw, codec.stride)
    return EntryHeader(path=f"{h}x{w}.png", kind=KIND_IMAGE, original_size=0, mtime_ns=0, mode=0o644, coder=coder,
                       model_id=codec.model_id, weights_sha256=bytes.fromhex(codec.weights_sha256),
                       tables_sha256=bytes.fromhex(codec.tables_sha256), width=w, height=h, padded_width=pw,
                       padded_height=ph, color_mode="RGB", quality=quality, source_format="PNG")


# ----------------------------------------------------------------------------- workers


def _setup(args: argparse.Namespace):
    import torch

    from imgarc.codec.registry import load_codec

    if args.threads:
        torch.set_num_threads(args.threads)
    codec = load_codec(args.model)
    return codec, FloatHyper.of(codec), torch.get_num_threads()


def encode_worker(args: argparse.Namespace) -> dict:
    """Code every image at every quality with every coder (the integer path, as `imgarc compress`),
    save the payloads, and record each latent code and the pixels it synthesizes to."""
    from imgarc.codec.rate_control import pack_latents
    from imgarc.coders import get_coder

    codec, floaty, threads = _setup(args)
    out = Path(args.workdir) / f"enc-{args.cap}"
    out.mkdir(parents=True, exist_ok=True)
    coders = {name: get_coder(name) for name in args.coders}
    records: dict = {}
    near = {"symbols": 0, "within_1e-6": 0, "within_1e-5": 0, "min_relative_distance": 1.0}
    for path in first_files(Path(args.data), "*.png", args.limit):
        rgb = load_rgb(path)
        analysed = codec.transform(rgb)
        records[path.stem] = {"hw": list(rgb.shape[:2]), "q": {}}
        for q in args.qualities:
            code = codec.quantize(analysed, q)
            for name, coder in coders.items():
                (out / f"{path.stem}-q{q}-{name}.bin").write_bytes(pack_latents(codec, coder, code))
            pixels = codec.synthesize(code, *rgb.shape[:2])
            if args.cap == "default":  # the oneDNN ISA probe compares values with these
                np.save(out / f"{path.stem}-q{q}-pixels.npy", pixels)
            scales, _ = floaty.scales_and_means(code.z_symbols, code.gains)
            float_indexes = np.searchsorted(floaty.thresholds, scales, side="right")
            np.save(out / f"{path.stem}-q{q}-float-indexes.npy", float_indexes.astype(np.int16))
            rel = relative_distance_to_threshold(scales.ravel().astype(np.float64), floaty.thresholds)
            near["symbols"] += rel.size
            near["within_1e-6"] += int((rel < 1e-6).sum())
            near["within_1e-5"] += int((rel < 1e-5).sum())
            near["min_relative_distance"] = min(near["min_relative_distance"], float(rel.min()))
            records[path.stem]["q"][str(q)] = {"code": code_digest(code), "z": array_digest(code.z_symbols),
                                               "pixels": array_digest(pixels)}
    return {"capability": args.cap, "threads": threads, "images": records, "float_near_thresholds": near}


def decode_worker(args: argparse.Namespace) -> dict:
    """Decode every encoder's payloads under this capability and thread count; count identical images."""
    codec, floaty, threads = _setup(args)
    integer = Memo(codec.y_indexes_and_means)  # the integer h_s, once per distinct ẑ and quality here
    floats = Memo(floaty.indexes_and_means)
    decoder = SelectingDecoder(codec, integer)
    work = Path(args.workdir)
    rows = []
    gs_cache: dict = {}
    for enc_cap in args.encoders:
        enc = json.loads((work / f"encode-{enc_cap}.json").read_text())
        payloads = work / f"enc-{enc_cap}"
        for q in args.qualities:
            for name in args.coders:
                row = {"encoder": enc_cap, "decoder": args.cap, "threads": threads, "quality": q, "coder": name,
                       "images": 0, "same_code": 0, "identical": 0, "float_index_flips": 0, "float_images_lost": 0}
                for stem, rec in enc["images"].items():
                    intent = rec["q"][str(q)]
                    payload = (payloads / f"{stem}-q{q}-{name}.bin").read_bytes()
                    code = decoder.latents(image_header(codec, name, rec["hw"], q), payload).code
                    digest = code_digest(code)
                    if digest not in gs_cache:  # g_s once per distinct latent code here
                        gs_cache[digest] = array_digest(codec.synthesize(code, *rec["hw"]))
                    same_code = digest == intent["code"]
                    row["images"] += 1
                    row["same_code"] += same_code
                    row["identical"] += same_code and gs_cache[digest] == intent["pixels"]
                    if name == args.coders[0]:  # the float path's fragility: once per image and quality
                        float_indexes = floats(code.z_symbols, code.gains)[0]
                        flips = int((float_indexes != np.load(payloads / f"{stem}-q{q}-float-indexes.npy")).sum())
                        row["float_index_flips"] += flips
                        row["float_images_lost"] += flips > 0
                rows.append(row)
    return {"capability": args.cap, "threads": threads, "rows": rows, "h_s_runs": len(integer.cache), "g_s_runs": len(gs_cache)}


def isa_worker(args: argparse.Namespace) -> dict:
    """Decode the default-capability encoder's payloads (first coder) with oneDNN capped to another
    ISA (another kind of CPU's g_s kernels): is the latent code identical, and how far are pixels?"""
    codec, _, threads = _setup(args)
    decoder = EntryDecoder()  # as `imgarc extract` decodes
    coder = args.coders[0]
    payloads = Path(args.workdir) / "enc-default"
    enc = json.loads((Path(args.workdir) / "encode-default.json").read_text())
    row = {"isa": args.cap, "threads": threads, "codings": 0, "same_code": 0, "identical": 0, "values": 0,
           "values_differing": 0, "max_difference": 0}
    for q in args.qualities:
        for stem, rec in enc["images"].items():
            payload = (payloads / f"{stem}-q{q}-{coder}.bin").read_bytes()
            decoded = decoder.latents(image_header(codec, coder, rec["hw"], q), payload)
            code = decoded.code
            pixels = decoded.codec.synthesize(code, *rec["hw"])
            diff = np.abs(pixels.astype(np.int16) - np.load(payloads / f"{stem}-q{q}-pixels.npy"))
            row["codings"] += 1
            row["same_code"] += code_digest(code) == rec["q"][str(q)]["code"]
            row["identical"] += array_digest(pixels) == rec["q"][str(q)]["pixels"]
            row["values"] += diff.size
            row["values_differing"] += int((diff > 0).sum())
            row["max_difference"] = max(row["max_difference"], int(diff.max()))
    return {"capability": args.cap, "threads": threads, "row": row}


def cost_worker(args: argparse.Namespace) -> dict:
    """Rate and time of the integer path against the plain float path, in this one process."""
    from imgarc.codec.rate_control import pack_latents
    from imgarc.coders import get_coder

    codec, floaty, threads = _setup(args)
    paths = {"integer": codec.y_indexes_and_means, "float": floaty.indexes_and_means}
    coders = {name: get_coder(name) for name in args.coders}
    bits = {p: {str(q): {c: 0 for c in coders} for q in args.qualities} for p in paths}
    times = []
    for n, path in enumerate(first_files(Path(args.data), "*.png", args.limit)):
        rgb = load_rgb(path)
        analysed = codec.transform(rgb)
        for q in args.qualities:
            codes = {p: codec.quantize(analysed, q, select) for p, select in paths.items()}
            for p, code in codes.items():
                for c, coder in coders.items():
                    bits[p][str(q)][c] += 8 * len(pack_latents(codec, coder, code))
        png = path.read_bytes()
        order = list(paths) if n % 2 == 0 else list(paths)[::-1]  # alternate which path runs first
        per_image = {"image": path.stem}
        for p in order:
            per_image[p] = round_trip(codec, coders[args.coders[0]], png, TIME_QUALITY, paths[p])
        times.append(per_image)
    return {"threads": threads, "bits": bits, "times": times, "time_quality": TIME_QUALITY, "time_coder": args.coders[0]}


def round_trip(codec, coder, png: bytes, quality: int, select) -> dict:
    """Seconds for one photo's whole compress + decompress with the given table selection."""
    from PIL import Image

    from imgarc.codec.rate_control import pack_latents

    hs = [0.0]

    def timed_select(z, gains):
        t = time.perf_counter()
        r = select(z, gains)
        hs[0] += time.perf_counter() - t
        return r

    t0 = time.perf_counter()
    rgb = load_rgb(png)
    payload = pack_latents(codec, coder, codec.quantize(codec.transform(rgb), quality, timed_select))
    t1 = time.perf_counter()
    pixels = SelectingDecoder(codec, timed_select).pixels(image_header(codec, coder.name, rgb.shape[:2], quality), payload)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    t2 = time.perf_counter()
    return {"compress": t1 - t0, "decompress": t2 - t1, "total": t2 - t0, "h_s": hs[0]}


# ----------------------------------------------------------------------------- driver and report


def _run_worker(kind: str, cap: str | None, args: argparse.Namespace, work: Path, extra: list[str]) -> dict:
    name = f"{kind}-{cap or 'none'}" + "".join(f"-{e}" for e in extra if e.isdigit())
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--data", str(args.data), "--model", args.model,
           "--qualities", ",".join(map(str, args.qualities)), "--coders", ",".join(args.coders), "--workdir", str(work),
           "--cap", cap or "none", *extra] + (["--limit", str(args.limit)] if args.limit else [])
    env = dict(os.environ)
    env.pop("ATEN_CPU_CAPABILITY", None)
    if kind == "isa":
        env["ONEDNN_MAX_CPU_ISA"] = cap
    elif cap:
        env["ATEN_CPU_CAPABILITY"] = cap
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{name} failed:\n{r.stderr[-4000:]}")
    result = json.loads((work / f"{name}.json").read_text())
    result["wall_s"] = round(time.perf_counter() - t, 1)
    print(f"  {name}: {result['wall_s']} s", flush=True)
    return result


def summarize(enc: dict, dec: list[dict], cost: dict, args: argparse.Namespace) -> dict:
    rows = [r for d in dec for r in d["rows"]]
    pairs: dict = {}
    for r in rows:
        key = (r["encoder"], r["decoder"], r["threads"])
        p = pairs.setdefault(key, {"encoder": key[0], "decoder": key[1], "threads": key[2], "decoded": 0, "identical": 0,
                                   "float_index_flips": 0, "float_images_lost": 0})
        p["decoded"] += r["images"]
        p["identical"] += r["identical"]
        p["float_index_flips"] += r["float_index_flips"]
        p["float_images_lost"] += r["float_images_lost"]
    bits = cost["bits"]
    rate = {q: {c: {"integer_bits": bits["integer"][q][c], "float_bits": bits["float"][q][c],
                    "cost_percent": 100 * (bits["integer"][q][c] / bits["float"][q][c] - 1)} for c in bits["integer"][q]}
            for q in bits["integer"]}
    total = {p: sum(v for q in bits[p].values() for v in q.values()) for p in bits}
    t = cost["times"]
    ratios = sorted(x["integer"]["total"] / x["float"]["total"] for x in t)
    sums = {p: sum(x[p]["total"] for x in t) for p in ("integer", "float")}
    hs = {p: float(np.median([x[p]["h_s"] for x in t])) for p in ("integer", "float")}
    return {
        "identical": list(pairs.values()),
        "all_identical": all(r["identical"] == r["images"] for r in rows),
        "rate": rate,
        "rate_cost_percent": 100 * (total["integer"] / total["float"] - 1),
        "time": {"integer_total_s": sums["integer"], "float_total_s": sums["float"],
                 "cost_percent": 100 * (sums["integer"] / sums["float"] - 1),
                 "median_pair_ratio": ratios[len(ratios) // 2],
                 "median_image_integer_s": float(np.median([x["integer"]["total"] for x in t])),
                 "median_image_float_s": float(np.median([x["float"]["total"] for x in t])),
                 "median_h_s_per_image_s": hs},
        "float_near_thresholds": {c: e["float_near_thresholds"] for c, e in enc.items()},
        "per_image_times": t,
    }


def write_report(out: Path, summary: dict, meta: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, **summary}, indent=1))
    s = summary
    lines = [
        "# Determinism: Kodak decodes identically across CPU code paths and threads",
        "",
        f"Command: `{meta['command']}`  ",
        f"Model `{meta['model']}` (tables {meta['tables_sha256'][:12]}…), qualities {meta['qualities']}, "
        f"coders {', '.join(meta['coders'])}, {meta['images']} images; capabilities {', '.join(meta['capabilities'])}; "
        f"decoder threads {', '.join(map(str, meta['threads']))}; encoders at {meta['encoder_threads']} threads.  ",
        f"Machine: {meta['machine']}; {meta['date']}; {meta['wall_s']:.0f} s wall, "
        f"{sum(meta['worker_cpu_s'].values()):.0f} CPU-seconds in the workers.",
        *([f"Model: {meta['model_note']}."] if meta.get("model_note") else []),
        "",
        "## Images decoded identically (pixels byte for byte equal to the encoder's intent, same latent code)",
        "",
        "| encoder | decoder | threads | identical / decoded | float path: latents whose table flipped (codings lost) |",
        "|---|---|---|---|---|",
    ]
    for r in s["identical"]:
        lines.append(f"| {r['encoder']} | {r['decoder']} | {r['threads']} | {r['identical']} / {r['decoded']} | "
                     f"{r['float_index_flips']} ({r['float_images_lost']}) |")
    lines += ["", f"All identical: **{s['all_identical']}** (decoded = images × qualities × coders per row).", "",
              "Last column, for contrast: the plain float h_s run by this decoder on the same ẑ, against the table "
              "indexes the encoder's float h_s chose (once per image and quality); a coding with any flipped index "
              "would desynchronise the entropy decoder, i.e. that image would be lost with a float path.", "",
              "## What determinism costs (integer h_s vs the plain float path, same ẑ, coder and tables; one run)", "",
              f"Rate: **{s['rate_cost_percent']:+.3f} %** payload bits over all qualities and coders (target ≤ 0.5 %).", "",
              "| quality | " + " | ".join(meta["coders"]) + " |", "|---|" + "---|" * len(meta["coders"])]
    for q, per in s["rate"].items():
        lines.append(f"| {q} | " + " | ".join(f"{per[c]['cost_percent']:+.3f} %" for c in meta["coders"]) + " |")
    t = s["time"]
    lines += ["", f"Time (whole per-image compress + decompress, quality {meta['time_quality']}, {meta['time_coder']}, "
              f"{meta['cost_threads']} threads, paths alternated image by image): integer {t['integer_total_s']:.1f} s vs float "
              f"{t['float_total_s']:.1f} s over {meta['images']} images: **{t['cost_percent']:+.1f} %** (target ≤ 10 %); "
              f"median per-image ratio {t['median_pair_ratio']:.3f}; median image {t['median_image_integer_s']:.2f} s vs "
              f"{t['median_image_float_s']:.2f} s, of which h_s (encoder + decoder) {t['median_h_s_per_image_s']['integer']:.3f} s "
              f"vs {t['median_h_s_per_image_s']['float']:.3f} s.",
              "The machine is shared (a training job and other work ran alongside): absolute seconds move with the load, "
              "the ratios are measured within this one run.", "",
              "## Why: how close the float path's scales come to a table threshold (encoder side)", ""]
    for cap, n in s["float_near_thresholds"].items():
        lines.append(f"- encoder {cap}: {n['within_1e-6']} of {n['symbols']} scales within 1e-6 (relative) of a threshold, "
                     f"{n['within_1e-5']} within 1e-5; nearest {n['min_relative_distance']:.2e}.")
    lines += ["", "A float scale that close to a threshold picks its table by the last bits of a float sum, which differ "
              "with summation order (CPU code path, threads, library version); one flipped index desynchronises the "
              "entropy decoder. The integer h_s decides these in exact integer arithmetic.", ""]
    if s.get("onednn_isa"):
        lines += ["", "## Other kinds of CPU: g_s kernels (oneDNN ISA capped with ONEDNN_MAX_CPU_ISA)", "",
                  "ATEN_CPU_CAPABILITY does not reach oneDNN, which runs torch's float convolutions and picks its "
                  "kernels by CPU kind. Decoding the default-capability encoder's archives "
                  f"({meta['coders'][0]}, 1 thread) with oneDNN capped to an older ISA runs another CPU kind's g_s:", "",
                  "| oneDNN ISA | same latent code | identical pixels | values differing | max difference |", "|---|---|---|---|---|"]
        for r in s["onednn_isa"]:
            lines.append(f"| {r['isa']} | {r['same_code']} / {r['codings']} | {r['identical']} / {r['codings']} | "
                         f"{r['values_differing']} of {r['values']} | {r['max_difference']} |")
        lines += ["", "Table selection (the latent code) does not depend on it; pixels from the float g_s may differ by "
                  "a level where those kernels sum in another order."]
    out.with_suffix(".md").write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/datasets/kodak"))
    ap.add_argument("--model", default=None, help="model id (default: the installed default)")
    ap.add_argument("--qualities", default=",".join(map(str, DEFAULT_QUALITIES)))
    ap.add_argument("--coders", default="rans,lzma,ref")
    ap.add_argument("--threads-list", default=",".join(map(str, THREADS)), help="decoder thread counts")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes at once (the cost run is always alone)")
    ap.add_argument("--limit", type=int, default=None, help="first N images only (development)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/determinism"))
    ap.add_argument("--rewrite-report", action="store_true", help="rewrite OUT.md from OUT.json (no run)")
    ap.add_argument("--no-isa", dest="isa", action="store_false", help="skip the oneDNN ISA probe")
    ap.add_argument("--worker", choices=("encode", "decode", "isa", "cost"), help=argparse.SUPPRESS)
    ap.add_argument("--cap", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--encoders", default="", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.qualities = [int(q) for q in args.qualities.split(",")]
    args.coders = args.coders.split(",")
    if args.rewrite_report:
        doc = json.loads(args.out.with_suffix(".json").read_text())
        meta = doc.pop("meta")
        write_report(args.out, doc, meta)
        return
    if args.worker:
        args.encoders = [e for e in args.encoders.split(",") if e]
        result = {"encode": encode_worker, "decode": decode_worker, "isa": isa_worker, "cost": cost_worker}[args.worker](args)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        result["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 1)
        suffix = f"-{args.threads}" if args.worker in ("decode", "isa") else ""
        Path(args.workdir, f"{args.worker}-{args.cap}{suffix}.json").write_text(json.dumps(result))
        return
    from imgarc.codec.registry import default_model_id, load_codec

    args.model = args.model or default_model_id()
    codec = load_codec(args.model)
    if not codec.variable_rate:
        print(f"note: {args.model} is single-rate: every quality codes the same", file=sys.stderr)
    caps = capabilities()
    threads = [int(t) for t in args.threads_list.split(",")]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="imgarc-det-") as tmp:
        work = Path(tmp)
        with ThreadPoolExecutor(args.jobs) as pool:
            print("encoding under each capability", flush=True)
            enc = dict(zip(caps, pool.map(lambda c: _run_worker("encode", c, args, work, []), caps)))
            print("decoding every encoder's payloads under each capability and thread count", flush=True)
            configs = [(c, t) for c in caps for t in threads]
            dec = pool.map(lambda ct: _run_worker("decode", ct[0], args, work,
                                                  ["--threads", str(ct[1]), "--encoders", ",".join(caps)]), configs)
            isa = pool.map(lambda i: _run_worker("isa", i, args, work, ["--threads", "1"]), onednn_isas() if args.isa else [])
            dec, isa = list(dec), list(isa)
        print("rate and time: integer vs float path", flush=True)
        cost = _run_worker("cost", None, args, work, [])
    summary = summarize(enc, dec, cost, args)
    summary["onednn_isa"] = [i["row"] for i in isa]
    model_path = os.environ.get("IMGARC_MODEL_PATH")
    meta = {
        "command": (f"IMGARC_MODEL_PATH={model_path} " if model_path else "") + "python "
                   + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "model": args.model, "tables_sha256": codec.tables_sha256, "qualities": args.qualities, "coders": args.coders,
        "images": len(first_files(args.data, "*.png", args.limit)), "capabilities": caps, "threads": threads,
        "encoder_threads": sorted({e["threads"] for e in enc.values()}), "cost_threads": cost["threads"],
        "time_quality": cost["time_quality"], "time_coder": cost["time_coder"],
        "machine": machine_line(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "wall_s": time.perf_counter() - started,
        "worker_wall_s": {**{f"encode-{c}": e["wall_s"] for c, e in enc.items()},
                          **{f"decode-{d['capability']}-{d['threads']}": d["wall_s"] for d in dec},
                          **{f"isa-{i['capability']}": i["wall_s"] for i in isa}, "cost": cost["wall_s"]},
        "worker_cpu_s": {**{f"encode-{c}": e["cpu_s"] for c, e in enc.items()},
                         **{f"decode-{d['capability']}-{d['threads']}": d["cpu_s"] for d in dec},
                         **{f"isa-{i['capability']}": i["cpu_s"] for i in isa}, "cost": cost["cpu_s"]},
        "g_s_runs_per_decoder": sorted({d["g_s_runs"] for d in dec}), "h_s_runs_per_decoder": sorted({d["h_s_runs"] for d in dec}),
    }
    write_report(args.out, summary, meta)
    print(args.out.with_suffix(".md").read_text())
    if not summary["all_identical"]:
        raise SystemExit("some images did not decode identically")


if __name__ == "__main__":
    main()
