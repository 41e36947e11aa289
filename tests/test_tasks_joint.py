"""`learn --joint`: the encoder and the classifier fine-tuned together into a variant model.

A tiny random model and tiny labeled photos; the checks are on what a user relies on: the
variant decodes with its parent's decoder, the task file is made for the variant and classifies
its archives, and the training objective reads the latents `classify` reads.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from imgarc import api  # noqa: E402
from imgarc.codec.registry import default_model_id, find_model, load_codec  # noqa: E402
from imgarc.codec.weights import load_weights  # noqa: E402
from imgarc.errors import UsageError  # noqa: E402
from imgarc.photo import read_photo  # noqa: E402
from imgarc.tasks import classify_archive, read_task  # noqa: E402
from imgarc.tasks.dataset import scan_labeled  # noqa: E402
from imgarc.tasks.features import code_features  # noqa: E402
from imgarc.tasks.joint import MAX_CROP, JointConfig, JointObjective, training_batch  # noqa: E402
from imgarc.tasks.learn import JointOptions, LearnOptions, learn  # noqa: E402
from tests.conftest import TINY_MODEL_ID  # noqa: E402
from tests.test_tasks import labeled_folder, random_task  # noqa: E402
from tests.test_tasks_learn import one_clean_error, run  # noqa: E402

DECODER = ("g_s.", "h_s.", "entropy_bottleneck.", "gaussian_conditional.")


@pytest.fixture
def variants(tmp_path, tiny_model_dir, monkeypatch) -> Path:
    """A model folder for variants, read before the tiny model's."""
    folder = tmp_path / "variants"
    folder.mkdir()
    monkeypatch.setenv("IMGARC_MODEL_PATH", os.pathsep.join([str(folder), str(tiny_model_dir)]))
    return folder


def test_joint_variant_decodes_with_its_parents_decoder_and_its_task_classifies_its_archives(tmp_path, variants):
    labeled = labeled_folder(tmp_path / "labeled", classes=("blue", "green", "red"), per_class=5, size=48)
    joint = JointOptions("tiny-joint", variants, JointConfig(seconds=3.0, gamma=1.0, batch=4, lr=1e-3))
    options = LearnOptions(model_id=TINY_MODEL_ID, qualities=(40, 90), augment=2, seconds=1.0,
                           cache=tmp_path / "cache", threads=1, joint=joint)
    report = learn(labeled, options)

    assert report.joint is not None and report.joint.steps > 0
    assert set(report.plain) == set(report.heldout) == {40, 90} and report.overall.count == 6
    task = report.task
    record = find_model("tiny-joint")
    assert task.model_id == "tiny-joint" and task.weights_sha256 == record.sha256
    assert task.trained["joint"]["parent"] == TINY_MODEL_ID and task.trained["joint"]["steps"] == report.joint.steps
    assert default_model_id() == TINY_MODEL_ID  # a variant never becomes the default by being exported

    parent, _ = load_weights(find_model(TINY_MODEL_ID).path)
    variant, _ = load_weights(record.path)
    assert variant.meta["parent"] == TINY_MODEL_ID
    for name, value in parent.params.items():
        if name.startswith(DECODER):
            assert np.array_equal(variant.params[name], value), name
    assert any(not np.array_equal(variant.params[n], parent.params[n]) for n in parent.params if n.startswith("g_a."))
    assert variant.tables_sha256 == parent.tables_sha256  # the same coding tables and integer h_s

    # What the variant codes, the parent decodes to the same pixels.
    rgb = read_photo((labeled / "red" / "0.png").read_bytes()).rgb
    code = load_codec("tiny-joint").analyse(rgb, 90)
    assert np.array_equal(load_codec(TINY_MODEL_ID).synthesize(code, 48, 48), load_codec("tiny-joint").synthesize(code, 48, 48))

    # The task labels an archive made with the variant, exactly as on the features learn scored.
    archive = tmp_path / "a.iarc"
    api.compress_folder(labeled / "red", archive, model_id="tiny-joint", quality=90)
    result = classify_archive(archive, task, top=3)
    codec, classifier = load_codec("tiny-joint"), task.classifier()
    assert len(result.predictions) == 5
    for p in result.predictions:
        photo = read_photo((labeled / "red" / p.path).read_bytes())
        expected = classifier.probabilities(code_features(codec, codec.analyse(photo.rgb, 90), 48, 48)[None])[0]
        assert dict(p.top) == pytest.approx({c: float(expected[k]) for k, c in enumerate(task.classes)}, abs=2e-3)


def test_the_objective_reads_the_latents_classify_reads(tiny_model):
    """ŷ and log σ̂ as the training objective computes them (float h_s, rounded in torch) vs the
    integer pipeline's: the same but for the rare latent whose mean lies at a rounding edge."""
    parent, _ = load_weights(find_model(tiny_model).path)
    codec = load_codec(tiny_model)
    task = random_task(tiny_model)
    objective = JointObjective(parent, task).eval()
    rgb = np.random.default_rng(3).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    with torch.no_grad():
        terms = objective(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255, 60)
    ours = terms.features[0].numpy()
    theirs = code_features(codec, codec.analyse(rgb, 60), 70, 90)
    assert ours.shape == theirs.shape == (2 * parent.architecture.M, 5, 6)
    m = parent.architecture.M
    assert np.mean(np.isclose(ours[:m], theirs[:m], atol=0.01)) > 0.97
    assert np.median(np.abs(ours[m:] - theirs[m:])) < 0.05  # σ̂ snapped to levels ~5 % apart


def test_joint_refuses_what_it_cannot_make(tmp_path, variants):
    labeled = labeled_folder(tmp_path / "labeled", per_class=3, size=32)

    def run(joint: JointOptions):
        learn(labeled, LearnOptions(model_id=TINY_MODEL_ID, qualities=(50,), augment=1, seconds=0.5,
                                    cache=None, threads=1, joint=joint))

    with pytest.raises(UsageError, match="already installed"):
        run(JointOptions(TINY_MODEL_ID, variants))
    with pytest.raises(UsageError, match="not a model folder imgarc reads"):
        run(JointOptions("new-one", tmp_path))
    with pytest.raises(UsageError, match="cannot be a model id"):
        run(JointOptions("a/b", variants))
    with pytest.raises(UsageError, match="--gamma"):
        run(JointOptions("new-one", variants, JointConfig(gamma=-1)))
    assert not list(variants.iterdir())  # refused before anything was trained or written
    assert scan_labeled(labeled).classes == ["cats", "dogs"]


@pytest.mark.slow
def test_learn_joint_on_the_command_line(tmp_path, variants, tiny_model_dir):
    labeled = labeled_folder(tmp_path / "labeled", per_class=3, size=32)
    env = {**os.environ, "IMGARC_CACHE": str(tmp_path / "cache")}  # IMGARC_MODEL_PATH: the variants fixture's
    task = tmp_path / "t.imgtask"
    common = ["learn", labeled, "--out", task, "--minutes", "0.01", "--augment", "1", "--qualities", "75",
              "--no-progress", "--threads", "1", "--model", TINY_MODEL_ID, "--joint-minutes", "0.05"]
    out = run(common + ["--joint", "tiny-cli-joint", "--export-dir", variants], env)
    assert out.returncode == 0, out.stderr
    assert "before joint fine-tuning" in out.stdout and "model tiny-cli-joint" in out.stdout
    assert read_task(task).model_id == "tiny-cli-joint" and (variants / "tiny-cli-joint.npz").is_file()

    one_clean_error(run(common + ["--joint", "other", "--export-dir", tmp_path, "--force"], env), "IMGARC_MODEL_PATH")
    one_clean_error(run(common + ["--joint", "tiny-cli-joint", "--export-dir", variants, "--force"], env), "already installed")


def test_training_crops_follow_the_batchs_smallest_photo():
    rng = np.random.default_rng(0)
    photos = [rng.integers(0, 256, (300, 500, 3), dtype=np.uint8), rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)]
    assert training_batch(photos, np.array([0, 1]), rng).shape == (2, 3, 40, 40)
    alone = training_batch(photos, np.array([0]), rng)
    assert alone.shape == (1, 3, MAX_CROP, MAX_CROP) and 0 <= float(alone.min()) and float(alone.max()) <= 1
    # Every crop is some flip/rotation of a window of its photo.
    window = training_batch([photos[1][:40, :40]], np.array([0]), rng)[0].permute(1, 2, 0).mul(255).round().byte().numpy()
    assert any(np.array_equal(window, np.rot90(m, t)) for t in range(4) for m in (photos[1][:40, :40], photos[1][:40, :40][:, ::-1]))
