"""The report's sections for the coder study, CompressAI's pipeline and the phone photo, from known numbers."""

from __future__ import annotations

import pytest

from imgarc.bench.report import coder_study_lines, compressai_lines, markdown, phone_lines
from imgarc.bench.results import BenchResult, DatasetInfo, ImageResult, MethodResult, PhoneResult, Step, result_from_json


def _coder(bytes_: int, enc: float, dec: float) -> dict:
    return {"bytes": bytes_, "encode_s": enc * 1.5, "decode_s": dec * 1.5, "encode_cpu_s": enc, "decode_cpu_s": dec,
            "exact": True}


def _result() -> BenchResult:
    totals = {"arith": _coder(10_040, 0.8, 1.0), "rans": _coder(10_000, 0.2, 0.1), "lzma": _coder(11_000, 1.6, 0.1)}
    study = {"status": "ok", "reason": None, "model": "m", "quality": 75, "sample_of": 24, "symbols": 600_000,
             "folder_symbols": 3_600_000, "estimate_bits": 79_600.0, "totals": totals,
             "images": [{"name": "a.png", "coders": totals}, {"name": "b.png", "coders": totals}]}
    images = [{"name": n, "bytes": 5_050, "compress_s": 1.0, "imgarc_bytes": 5_000, "imgarc_compress_s": 0.5} for n in "ab"]
    decoded = [{"name": n, "exact": True, "decompress_s": 2.0, "psnr": 31.0, "imgarc_decompress_s": 1.0,
                "imgarc_psnr": 31.0, "max_diff_vs_imgarc": 3, "mean_diff_vs_imgarc": 0.5} for n in "ab"]
    garbage = [{"name": "a", "exact": True, "psnr": 31.0},
               {"name": "b", "exact": False, "wrong_y_symbols": 1234, "y_symbols": 9999, "psnr": 9.5}]
    cai = {"status": "ok", "reason": None, "model": "m", "quality": 75, "sample_of": 24, "update_s": 1.1,
           "tables_sha256": "aa", "cpu_capability": "AVX512", "images": images,
           "decodes": [{"name": "as this machine runs", "tables_sha256": "aa", "cpu_capability": "AVX512",
                        "images": decoded, "exact_images": 2},
                       {"name": "ATEN_CPU_CAPABILITY=default", "tables_sha256": "bb", "cpu_capability": "DEFAULT",
                        "images": garbage, "exact_images": 1}]}
    photo = {"source": "s.png", "source_width": 2000, "source_height": 1500, "crop": [0, 0, 2000, 1500], "width": 4000,
             "height": 3000, "bytes": 10_000_000, "sha256": "0" * 64, "how": "s.png (2000×1500) resized"}
    row = MethodResult("phone-imgarc-rans-q75", "imgarc", "imgarc rans q75", {"quality": 75, "coder": "rans"}, False, "ok",
                       bytes=400_000, compress=Step(30.0, 700_000_000, 25.0), decompress=Step(31.0, 1_100_000_000, 26.0),
                       images=[ImageResult("phone-12mp.png", 4000, 3000, 10_000_000, 400_000, 37.0, 0.98)])
    row.summarize(10_000_000, 12_000_000)
    skipped = MethodResult("phone-heic-q30", "heic", "HEIC q30", {"quality": 30}, False, "skipped", "pillow-heif is not installed")
    info = DatasetInfo("kodak", "/k", 24, 24, 24, "--data", 9_437_184, 14_830_000, "24 images")
    return BenchResult(info, {"jobs": 1, "qualities": [75], "coders": ["rans"], "coder_qualities": [75]}, "cmd",
                       {"versions": {}}, "now", 1.0, [], coder_study=study, compressai=cai,
                       phone=PhoneResult(photo, [row, skipped]))


def test_coder_study_section_numbers():
    md = "\n".join(coder_study_lines(_result()))
    assert "2 of the 24 images (a.png, b.png)" in md and "600,000 integer latents" in md
    arith = next(line for line in md.splitlines() if line.startswith("| arith"))
    assert "| 10,040 | +0.40 % | +0.90 % | 0.400 | 0.500 | 1× | yes |" in arith
    rans = next(line for line in md.splitlines() if line.startswith("| rans"))
    assert "| 10,000 | +0.00 % | +0.50 % | 0.100 | 0.050 | 4.0× / 10.0× | yes |" in rans
    lzma = next(line for line in md.splitlines() if line.startswith("| lzma"))
    assert "0.5× / 10.0×" in lzma  # slower to encode than the arithmetic coder: said as it is
    assert "≈ 5 s to encode and ≈ 6 s to decode the whole folder" in md  # 6x the measured latents


def test_compressai_section_says_which_decodes_were_wrong():
    md = "\n".join(compressai_lines(_result()))
    assert "| CompressAI compress()/decompress() | 10,100 | +1.00 % | 1.00 | 2.00 | 31.00 | 2/2 |" in md
    assert "| imgarc (rans) | 10,000 | – | 0.50 | 1.00 | 31.00 |" in md
    assert "at most 3 levels apart" in md
    assert "- as this machine runs (torch CPU capability AVX512; the tables `update()` built equal the encoder's" in md
    bad = next(line for line in md.splitlines() if line.startswith("- ATEN_CPU_CAPABILITY=default"))
    assert "**differ from**" in bad and "1/2 images decoded exactly; wrong: b (1,234–1,234 of 9,999" in bad


def test_phone_section_and_round_trip():
    result = _result()
    md = "\n".join(phone_lines(result))
    assert "One 4000×3000 photo (12.0 MP): s.png (2000×1500) resized" in md
    assert "| imgarc rans q75 | 400.0 kB | 0.267 | 37.00 | 0.9800 | 30.0 | 31.0 | 700 / 1100 |" in md
    assert "| HEIC q30 | skipped: pillow-heif is not installed |" in md
    doc = result.to_json()
    assert doc["phone"]["methods"][0]["total_seconds"] == pytest.approx(61.0)
    assert result_from_json(doc).to_json() == doc
    full = markdown(result, [])
    assert full.index("## The per-symbol arithmetic coder") < full.index("## CompressAI's own pipeline") < full.index(
        "## Time per phone photo")


def test_sections_not_run_say_why():
    result = _result()
    result.coder_study = {"status": "failed", "reason": "coder study failed: exit 1: boom"}
    result.compressai = {"status": "skipped", "reason": "a scale-only model"}
    assert coder_study_lines(result) == ["Not measured: coder study failed: exit 1: boom."]
    assert compressai_lines(result) == ["Not measured: a scale-only model."]
    result.coder_study = result.compressai = result.phone = None
    assert "## The per-symbol" not in markdown(result, []) and "## Time per phone" not in markdown(result, [])
