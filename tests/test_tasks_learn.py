"""learn -> task file -> classify, with a tiny random model; the commands' one-line errors.

The library test trains for a second or two; the CLI tests start processes (marked slow).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imgarc import api
from imgarc.codec.image_codec import ImageCodec
from imgarc.codec.registry import load_codec
from imgarc.photo import read_photo
from imgarc.tasks import classify_archive, read_task, write_task
from imgarc.tasks.dataset import scan_labeled, split_holdout
from imgarc.tasks.latent_data import encode_pairs
from tests.test_tasks import labeled_folder, random_task

IMGARC = [sys.executable, "-m", "imgarc.cli"]


@pytest.fixture
def labeled(tmp_path) -> Path:
    return labeled_folder(tmp_path / "labeled", classes=("blue", "green", "red"), per_class=5, size=48)


def test_learn_then_classify_gives_the_held_out_scores(labeled, tmp_path, tiny_model, monkeypatch):
    pytest.importorskip("torch")
    from imgarc.tasks.learn import LearnOptions, learn

    options = LearnOptions(model_id=tiny_model, qualities=(40, 90), augment=2, seconds=1.5, cache=tmp_path / "cache",
                           threads=1, holdout=0.2)
    report = learn(labeled, options)
    task = report.task
    assert task.classes == ["blue", "green", "red"] and task.model_id == tiny_model
    assert (report.train_images, report.heldout_images) == (12, 3) and report.training.steps > 0
    assert set(report.heldout) == {40, 90} and report.overall.count == 6
    assert task.trained["training_samples"] == 24 and task.trained["qualities"] == [40, 90]
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 12 * 2 + 3 * 2
    write_task(task, tmp_path / "t.imgtask")

    # Held-out photos archived at quality 90 and classified from the archive: exactly the
    # probabilities of the latents learn scored them on (same numbers, same graph); no g_s.
    held = tmp_path / "held"
    held.mkdir()
    held_images = split_holdout(scan_labeled(labeled), 0.2)[1].images
    for im in held_images:
        (held / f"{task.classes[im.label]}-{im.path.name}").write_bytes(im.path.read_bytes())
    archive = tmp_path / "held.iarc"
    api.compress_folder(held, archive, model_id=tiny_model, quality=90)
    monkeypatch.setattr(ImageCodec, "synthesize", lambda *a, **k: pytest.fail("g_s ran"))
    result = classify_archive(archive, read_task(tmp_path / "t.imgtask"), top=3)
    codec, classifier = load_codec(tiny_model), task.classifier()
    for im, p in zip(held_images, result.predictions):
        features = encode_pairs(codec, read_photo(im.path.read_bytes()).rgb, [(0, 90)])[(0, 90)]
        probs = classifier.probabilities(features.astype(np.float32)[None])[0]
        assert dict(p.top) == pytest.approx({c: float(probs[k]) for k, c in enumerate(task.classes)}, abs=2e-3)
    hits = [task.classes[im.label] == p.label for im, p in zip(held_images, result.predictions)]
    assert np.mean(hits) == pytest.approx(report.heldout[90].top1)

    # Cached: a second run encodes nothing (g_a never runs).
    monkeypatch.setattr(ImageCodec, "transform", lambda *a, **k: pytest.fail("g_a ran despite the cache"))
    again = learn(labeled, LearnOptions(**{**options.__dict__, "seconds": 0.2}))
    assert again.train_images == 12


def run(args, env) -> subprocess.CompletedProcess:
    return subprocess.run(IMGARC + [str(a) for a in args], capture_output=True, text=True, env=env, timeout=300)


def one_clean_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("imgarc: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    assert not [line for line in lines if not line.startswith(("imgarc: error:", "warning:"))], result.stderr
    for w in words:
        assert w in errors[0], errors[0]


@pytest.mark.slow
def test_commands_end_to_end_and_their_errors(tmp_path, photo_folder, tiny_model, tiny_model_dir, labeled):
    env = {**os.environ, "IMGARC_MODEL_PATH": str(tiny_model_dir), "IMGARC_CACHE": str(tmp_path / "cache")}
    archive = tmp_path / "photos.iarc"
    api.compress_folder(photo_folder, archive, model_id=tiny_model)

    task = tmp_path / "t.imgtask"
    out = run(["learn", labeled, "--out", task, "--minutes", "0.02", "--augment", "1", "--qualities", "75",
               "--no-progress", "--threads", "1"], env)
    assert out.returncode == 0, out.stderr
    assert "top-1" in out.stdout and read_task(task).classes == ["blue", "green", "red"]

    out = run(["classify", archive, "--task", task, "--json", "--no-progress"], env)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert [p["path"] for p in doc["photos"]] == ["a.png", "nested/b.jpg", "nested/deeper/gray ç.png"]
    assert {s["path"] for s in doc["skipped"]} == {"notes.txt", "broken.jpg"}
    assert "2 entries are not coded photos" in out.stderr
    out = run(["classify", archive, "nested/b.jpg", "--task", task, "--csv", "--no-progress"], env)
    assert out.returncode == 0 and out.stdout.splitlines()[0] == "path,label,confidence,quality"
    assert out.stdout.splitlines()[1].startswith("nested/b.jpg,")

    npz = tmp_path / "l.npz"
    out = run(["latents", archive, "--out", npz, "--no-progress"], env)
    assert out.returncode == 0 and "latents of 3 photos" in out.stdout
    assert len(api.load_latents_npz(npz)) == 3

    # Bad input: one line, non-zero exit.
    one_clean_error(run(["classify", archive, "notes.txt", "--task", task, "--no-progress"], env), "notes.txt", "not a coded photo")
    one_clean_error(run(["latents", archive, "--strict", "--no-progress"], env), "not a coded photo")
    one_clean_error(run(["classify", archive, "--task", tmp_path / "none.imgtask"], env), "does not exist")
    (tmp_path / "cut.imgtask").write_bytes(task.read_bytes()[:-40])
    one_clean_error(run(["classify", archive, "--task", tmp_path / "cut.imgtask"], env), "damaged")
    (tmp_path / "notes.imgtask").write_text("hello")
    one_clean_error(run(["classify", archive, "--task", tmp_path / "notes.imgtask"], env), "not a task file")
    other = random_task(tiny_model)
    other.model_id = "msh128-mixed-vr1"
    write_task(other, tmp_path / "other.imgtask")
    one_clean_error(run(["classify", archive, "--task", tmp_path / "other.imgtask"], env), "msh128-mixed-vr1", "tiny-test")
    (labeled / "empty").mkdir()
    one_clean_error(run(["learn", labeled, "--out", tmp_path / "x.imgtask"], env), "empty", "has no images")


@pytest.mark.slow
def test_latents_and_classify_never_import_torch(tmp_path, photo_folder, tiny_model, tiny_model_dir):
    archive = tmp_path / "photos.iarc"
    api.compress_folder(photo_folder, archive, model_id=tiny_model)
    task = tmp_path / "t.imgtask"
    write_task(random_task(tiny_model), task)
    code = (
        "import sys\n"
        "from imgarc.cli.app import app\n"
        f"for args in (['latents', {str(archive)!r}, '--out', {str(tmp_path / 'l.npz')!r}, '--no-progress'],\n"
        f"             ['classify', {str(archive)!r}, '--task', {str(task)!r}, '--no-progress']):\n"
        "    try:\n"
        "        app(args)\n"
        "    except SystemExit as e:\n"
        "        assert not e.code, e.code\n"
        "heavy = {'torch', 'compressai'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "IMGARC_MODEL_PATH": str(tiny_model_dir), "IMGARC_RUNTIME": "onnx"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
