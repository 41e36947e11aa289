"""The verbs people know from 7-Zip and tar: extract some members, show one, list and verify for scripts."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pytest

from imgarc import api
from imgarc.archive import ArchiveReader
from imgarc.cli.app import main
from imgarc.errors import UsageError

PHOTOS = ("a.png", "nested/b.jpg", "nested/deeper/gray ç.png")  # photo_folder's coded photos


def cli(monkeypatch, capsysbinary, *args: str) -> tuple[int, str, str]:
    """Run `imgarc ARGS` in this process as the console script does: (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["imgarc", *args])
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsysbinary.readouterr()
    return code, out.decode(), err.decode()


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("imgarc: error:"), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def photos(tmp_path, photo_folder, tiny_model) -> Path:
    out = tmp_path / "photos.iarc"
    api.compress_folder(photo_folder, out, model_id=tiny_model)
    return out


@pytest.fixture
def files(tmp_path) -> Path:
    """Byte-exact entries only (no codec): a few folders of small files."""
    src = tmp_path / "files"
    for name in ("a.txt", "b.jpg", "docs/c.txt", "docs/d.md", "docs/old/e.txt", "x[1].txt"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(name.encode() * 10)
    out = tmp_path / "files.iarc"
    api.compress_folder(src, out, keep_originals=True)
    return out


@pytest.mark.parametrize("pattern, selected", [
    ("a.txt", {"a.txt"}),
    ("./a.txt", {"a.txt"}),
    ("*.txt", {"a.txt", "x[1].txt"}),  # '*' stays in one folder
    ("**/*.txt", {"a.txt", "x[1].txt", "docs/c.txt", "docs/old/e.txt"}),  # '**/' spans folders, or none
    ("docs", {"docs/c.txt", "docs/d.md", "docs/old/e.txt"}),  # a folder: everything under it
    ("docs/", {"docs/c.txt", "docs/d.md", "docs/old/e.txt"}),
    ("docs/*", {"docs/c.txt", "docs/d.md", "docs/old/e.txt"}),  # docs/old, and so what is under it
    ("docs/?.txt", {"docs/c.txt"}),
    ("docs/[a-c].*", {"docs/c.txt"}),
    ("docs/[!c].*", {"docs/d.md"}),
    ("x[[]1].txt", {"x[1].txt"}),
    ("doc", set()),  # never a prefix of a name
    ("A.TXT", set()),  # case matters, as in the archive
])
def test_member_patterns(pattern, selected):
    names = ["a.txt", "b.jpg", "docs/c.txt", "docs/d.md", "docs/old/e.txt", "x[1].txt"]
    chosen = api.MemberSelection((pattern,))
    assert {n for n in names if chosen.matches(n)} == selected


def test_exclude_wins_over_include():
    chosen = api.MemberSelection(("docs",), ("**/*.md", "docs/old"))
    assert [n for n in ("docs/c.txt", "docs/d.md", "docs/old/e.txt") if chosen.matches(n)] == ["docs/c.txt"]


@pytest.mark.parametrize("bad", ["", "./", "a\x00b"])
def test_empty_or_nul_pattern_is_a_usage_error(bad):
    with pytest.raises(UsageError, match="not a member name or glob"):
        api.MemberSelection((bad,))


def test_selective_extract_reads_and_decodes_only_the_chosen_entry(tmp_path, photos, monkeypatch):
    reads: list[tuple[int, int]] = []
    real_read_at = ArchiveReader._read_at

    def recording_read_at(self, offset, size, *args):
        reads.append((offset, offset + size))
        return real_read_at(self, offset, size, *args)

    class RecordingDecoder(api.EntryDecoder):
        def __init__(self) -> None:
            self.decoded: list[str] = []

        def file_bytes(self, header, payload, image_format="keep", timings=None):
            self.decoded.append(header.path)
            return super().file_bytes(header, payload, image_format, timings)

    with ArchiveReader(photos) as reader:
        extents = {reader.header(i).path: reader.extent(i) for i in range(len(reader))}
    monkeypatch.setattr(ArchiveReader, "_read_at", recording_read_at)
    decoder = RecordingDecoder()
    summary = api.Extractor(tmp_path / "out", decoder=decoder).extract(photos, api.MemberSelection(("nested/b.jpg",)))

    assert [e.path for e in summary.entries] == ["nested/b.jpg"] and decoder.decoded == ["nested/b.jpg"]
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file()) \
        == ["nested/b.jpg"]
    chosen = extents.pop("nested/b.jpg")
    assert any(start <= chosen.payload_start and chosen.end <= end for start, end in reads)  # its payload was read
    for name, extent in extents.items():  # the others' payloads never were, not even a byte
        assert not any(start < extent.end and extent.payload_start < end for start, end in reads), name


def test_selected_extract_is_what_a_full_extract_gives(tmp_path, photos):
    api.extract_archive(photos, tmp_path / "all")
    api.extract_archive(photos, tmp_path / "some", members=api.MemberSelection(("**/*.png",), ("nested/deeper",)))
    assert [p.name for p in (tmp_path / "some").rglob("*") if p.is_file()] == ["a.png"]
    assert (tmp_path / "some" / "a.png").read_bytes() == (tmp_path / "all" / "a.png").read_bytes()


def test_extract_members_and_excludes_through_the_cli(tmp_path, files, monkeypatch, capsysbinary):
    code, out, err = cli(monkeypatch, capsysbinary, "extract", str(files), str(tmp_path / "o"), "**/*.txt", "b.jpg",
                         "--exclude", "docs/old", "-x", "x*", "--no-progress")
    assert code == 0, err
    assert "3 files extracted" in out
    got = sorted(p.relative_to(tmp_path / "o").as_posix() for p in (tmp_path / "o").rglob("*") if p.is_file())
    assert got == ["a.txt", "b.jpg", "docs/c.txt"]
    assert (tmp_path / "o" / "docs" / "c.txt").read_bytes() == b"docs/c.txt" * 10


def test_a_member_that_matches_nothing_is_one_line_exit_1_and_nothing_extracted(tmp_path, files, monkeypatch,
                                                                                  capsysbinary):
    dest = tmp_path / "o"
    code, _, err = cli(monkeypatch, capsysbinary, "extract", str(files), str(dest), "a.txt", "docs/c.text", "*.png",
                       "--no-progress")
    line = one_error_line(err)
    assert code == 1
    assert "'docs/c.text', '*.png'" in line and "did you mean 'docs/c.txt'" in line and "nothing was extracted" in line
    assert not dest.exists() or not any(dest.iterdir())


def test_salvage_takes_members_too(tmp_path, files):
    data = bytearray(files.read_bytes())
    cut = tmp_path / "cut.iarc"
    cut.write_bytes(bytes(data[:-40]))  # index and footer gone: entries found by scanning
    summary = api.Extractor(tmp_path / "o").salvage(cut, api.MemberSelection(("docs/*.txt",)))
    assert summary.index_rebuilt and [e.path for e in summary.entries] == ["docs/c.txt"]
    with pytest.raises(api.MemberNotFoundError, match="'nope'"):
        api.Extractor(tmp_path / "o2").salvage(cut, api.MemberSelection(("nope",)))


def test_list_json_round_trips_with_every_documented_key(photos, monkeypatch, capsysbinary):
    code, out, err = cli(monkeypatch, capsysbinary, "list", str(photos), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["schema"] == api.RECORD_SCHEMA == 1 and doc["entry_count"] == 5 and doc["damaged"] == 0
    records = {r["path"]: r for r in doc["entries"]}
    assert all(list(r) == list(api.RECORD_KEYS) for r in doc["entries"])
    assert [r["entry"] for r in doc["entries"]] == [1, 2, 3, 4, 5]
    a = records["a.png"]
    assert (a["kind"], a["width"], a["height"], a["source_format"], a["model_id"], a["storage"]) == \
        ("image", 90, 70, "PNG", "tiny-test", None)
    assert a["bpp"] == pytest.approx(a["payload_size"] * 8 / (90 * 70), abs=1e-5)
    assert len(a["weights_sha256"]) == 64 and len(a["payload_crc32"]) == 8 and a["mtime"].endswith("Z")
    notes = records["notes.txt"]
    assert (notes["kind"], notes["storage"], notes["width"], notes["bpp"]) == ("stored", "lzma", None, None)
    assert notes["original_size"] == 600 and notes["mode"] == "0644" and notes["error"] is None
    assert records["broken.jpg"]["note"]  # why it was not coded
    with ArchiveReader(photos) as r:
        assert [h["mtime_ns"] for h in doc["entries"]] == [r.header(i).mtime_ns for i in range(len(r))]


def test_list_csv_has_a_header_row_and_one_row_per_entry(photos, monkeypatch, capsysbinary):
    code, out, _ = cli(monkeypatch, capsysbinary, "list", str(photos), "--csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == list(api.RECORD_KEYS)
    assert [r["path"] for r in rows] == ["a.png", "broken.jpg", "notes.txt", "nested/b.jpg", "nested/deeper/gray ç.png"]
    b = next(r for r in rows if r["path"] == "nested/b.jpg")
    assert b["kind"] == "image" and b["width"] == "64" and b["storage"] == "" and json.loads(b["source_info"])
    code, _, err = cli(monkeypatch, capsysbinary, "list", str(photos), "--csv", "--json")
    assert code == 2 and "not both" in one_error_line(err)


def damage_first_header(archive: Path, out: Path) -> Path:
    data = bytearray(archive.read_bytes())
    data[16 + 12] ^= 0xFF  # inside entry #1's header: its CRC fails
    out.write_bytes(bytes(data))
    return out


def test_list_and_verify_json_report_damage_and_exit_1(tmp_path, photos, monkeypatch, capsysbinary):
    bad = damage_first_header(photos, tmp_path / "bad.iarc")
    code, out, err = cli(monkeypatch, capsysbinary, "list", str(bad), "--json")
    doc = json.loads(out)
    assert code == 1 and "1 of 5 entries" in one_error_line(err)
    assert doc["damaged"] == 1 and doc["entries"][0]["path"] is None and "damaged" in doc["entries"][0]["error"]

    code, out, err = cli(monkeypatch, capsysbinary, "verify", str(bad), "--json", "--no-progress")
    doc = json.loads(out)
    assert code == 1 and doc["ok"] is False and doc["checked"] == 5 and one_error_line(err)
    assert [d["entry"] for d in doc["damaged"]] == ["#1"] and "checksum" in doc["damaged"][0]["detail"]

    code, out, _ = cli(monkeypatch, capsysbinary, "verify", str(photos), "--json", "--no-progress")
    assert code == 0 and json.loads(out) == {"schema": 1, "archive": str(photos), "checked": 5, "ok": True, "damaged": []}


def test_show_prints_the_header_and_json_is_the_list_record(photos, monkeypatch, capsysbinary):
    code, out, _ = cli(monkeypatch, capsysbinary, "show", str(photos), "nested/b.jpg")
    assert code == 0
    assert out.startswith("nested/b.jpg: coded: JPEG RGB 64x64") and "  quality: 75" in out and "  coder: rans" in out
    code, out, _ = cli(monkeypatch, capsysbinary, "show", str(photos), "**/b.*", "--json")
    record = json.loads(out)
    listed = json.loads(cli(monkeypatch, capsysbinary, "list", str(photos), "--json")[1])["entries"]
    assert code == 0 and record == next(r for r in listed if r["path"] == "nested/b.jpg")


def test_show_stdout_gives_the_bytes_extract_writes(tmp_path, photos, monkeypatch, capsysbinary):
    api.extract_archive(photos, tmp_path / "all")
    for name in ("nested/deeper/gray ç.png", "notes.txt"):
        monkeypatch.setattr(sys, "argv", ["imgarc", "show", str(photos), name, "--stdout"])
        main()
        assert capsysbinary.readouterr().out == (tmp_path / "all" / name).read_bytes()


def test_show_errors(photos, monkeypatch, capsysbinary):
    code, _, err = cli(monkeypatch, capsysbinary, "show", str(photos), "nested")
    assert code == 2 and "matches 2 entries" in one_error_line(err)
    code, _, err = cli(monkeypatch, capsysbinary, "show", str(photos), "a.jpg")
    assert code == 1 and "did you mean 'a.png'" in one_error_line(err)
    code, _, err = cli(monkeypatch, capsysbinary, "show", str(photos), "a.png", "--stdout", "--format", "gif")
    assert code == 2 and "--format" in one_error_line(err)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, _, err = cli(monkeypatch, capsysbinary, "show", str(photos), "a.png", "--stdout")
    assert code == 2 and "pipe it" in one_error_line(err)


def test_library_show_and_bytes(photos):
    listing = api.show_entry(photos, "notes.txt")
    assert listing.header is not None and listing.header.path == "notes.txt" and listing.index == 2
    listing, data = api.entry_file_bytes(photos, "notes.txt")
    assert data == b"not a photo\n" * 50
    with pytest.raises(UsageError, match="does not exist"):
        api.show_entry(photos.with_name("missing.iarc"), "x")


@pytest.mark.parametrize("command", ["show", "extract", "list", "verify"])
def test_help_names_the_new_options(command, monkeypatch, capsysbinary):
    code, out, _ = cli(monkeypatch, capsysbinary, command, "--help")
    assert code == 0
    expected = {"show": ["--stdout", "--json", "member"], "extract": ["--exclude", "member|glob"],
                "list": ["--json", "--csv"], "verify": ["--json"]}[command]
    assert all(word in out.lower() for word in expected)
