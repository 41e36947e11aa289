"""The command line: instant help, clean one-line errors, a real round trip through the CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

IMGARC = [sys.executable, "-m", "imgarc.cli"]


def run(args, env=None):
    return subprocess.run(IMGARC + args, capture_output=True, text=True, env=env, timeout=300)


def test_help_does_not_import_torch():
    # The command modules import the library (numpy, Pillow: ~0.2 s); torch and CompressAI (seconds)
    # load only when a network runs.
    code = ("import sys; from imgarc.cli import app\n"
            "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = {'torch', 'compressai', 'scipy', 'matplotlib'} & set(sys.modules)\n"
            "assert not heavy, f'help imported {heavy}'")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=60)


def test_starting_a_command_loads_only_what_it_runs():
    """Every command imports the whole CLI; the library's names load on first use (lazy_names), so
    listing an archive imports neither compress's, update's, the classifiers' nor the bench's code."""
    code = ("import sys; from imgarc.cli import app\n"
            "from imgarc import api\n"
            "api.list_archive\n"
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('imgarc'))))")
    loaded = set(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                                timeout=60).stdout.split())
    assert "imgarc.api.inspect" in loaded
    unused = {"imgarc.api.compressor", "imgarc.api.update", "imgarc.api.latents", "imgarc.tasks.classify",
              "imgarc.bench.command", "imgarc.bench.runner", "imgarc.runtime.onnx_networks"}
    assert not unused & loaded, f"imported at start: {sorted(unused & loaded)}"


def test_lazy_package_names_behave_like_attributes():
    from imgarc import api, tasks

    assert api.MemberSelection is __import__("imgarc.api.members", fromlist=["x"]).MemberSelection
    assert "Extractor" in dir(api) and "read_task" in tasks.__all__
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        api.no_such_name  # noqa: B018


def test_help_lists_commands():
    out = run(["--help"]).stdout
    for cmd in ("compress", "extract", "list", "verify"):
        assert cmd in out


def assert_one_clean_error(result, *words):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("imgarc: error:"), result.stderr
    for w in words:
        assert w in lines[0]


def test_missing_source(tmp_path):
    assert_one_clean_error(run(["compress", str(tmp_path / "nope"), str(tmp_path / "a.iarc")]), "does not exist")


def test_not_an_archive(tmp_path):
    junk = tmp_path / "junk.iarc"
    junk.write_bytes(b"hello, this is not an archive at all" * 3)
    assert_one_clean_error(run(["list", str(junk)]), "not an imgarc archive")
    assert_one_clean_error(run(["extract", str(junk), str(tmp_path / "o")]))


@pytest.mark.slow
def test_round_trip_and_damage_through_the_cli(tmp_path, photo_folder, tiny_model_dir):
    env = dict(os.environ, IMGARC_MODEL_PATH=str(tiny_model_dir))
    archive = tmp_path / "p.iarc"
    r = run(["compress", str(photo_folder), str(archive), "--model", "tiny-test", "--no-progress"], env)
    assert r.returncode == 0, r.stderr
    assert "5 files (3 coded photos)" in r.stdout
    assert "broken.jpg" in r.stderr  # warned about, still archived
    r = run(["list", str(archive)], env)
    assert r.returncode == 0 and "a.png" in r.stdout and "stored" in r.stdout
    assert run(["verify", str(archive), "--no-progress"], env).returncode == 0
    r = run(["extract", str(archive), str(tmp_path / "out"), "--no-progress"], env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "notes.txt").read_bytes() == (photo_folder / "notes.txt").read_bytes()
    data = archive.read_bytes()
    (tmp_path / "cut.iarc").write_bytes(data[: len(data) - 30])
    assert_one_clean_error(run(["verify", str(tmp_path / "cut.iarc"), "--no-progress"], env))


def test_usage_mistakes_give_no_traceback(tmp_path):
    for args in ([], ["bogus"], ["list"], ["compress", str(tmp_path), str(tmp_path / "a.iarc"), "--quality", "500"]):
        r = run(args)
        assert r.returncode != 0, args
        assert "Traceback" not in r.stderr + r.stdout, args


def test_output_is_flushed_and_a_failed_write_is_an_error(tmp_path):
    """The command ends without the interpreter's teardown (cli.app.run): what it printed still
    arrives, a full disk under its output is one line and exit 1, a reader that went away
    (`imgarc list | head`) gets no traceback."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "notes.txt").write_text("hello\n" * 100)
    archive = tmp_path / "a.iarc"
    assert run(["compress", str(tmp_path / "src"), str(archive), "--no-progress"]).returncode == 0
    listed = run(["list", str(archive), "--json"])
    assert listed.returncode == 0 and '"notes.txt"' in listed.stdout and listed.stdout.rstrip().endswith("}")
    with open("/dev/full", "w") as full:
        r = subprocess.run(IMGARC + ["list", str(archive)], stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    r.stdout = ""
    assert_one_clean_error(r, "disk is full")
    reader_gone = subprocess.Popen(IMGARC + ["list", str(archive)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reader_gone.stdout.close()
    _, err = reader_gone.communicate(timeout=60)
    assert "Traceback" not in err and "internal error" not in err
