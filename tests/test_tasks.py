"""Reading archives as data: latents without pixels, task files, classify (tiny random model).

What must hold: latents and classify never run the synthesis network; the latents of an archive
entry are exactly those of the photo quantized in memory (what `learn` trains on); every kind of
bad input is one ImgarcError (one line at the CLI), never a traceback.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from imgarc import api
from imgarc.codec.image_codec import ImageCodec
from imgarc.codec.registry import load_codec
from imgarc.errors import ImgarcError
from imgarc.photo import read_photo
from imgarc.runtime.base import Networks
from imgarc.tasks import (FEATURES, LATENT_CLASSIFIER, Task, TaskFileError, TaskModelMismatchError, classify_archive,
                          extract_by_class, read_task, write_task)
from imgarc.tasks.classify import member_pattern
from imgarc.tasks.dataset import scan_labeled, split_holdout
from imgarc.tasks.errors import LabeledFolderError
from imgarc.tasks.features import DIHEDRAL, code_features, dihedral, photo_features
from imgarc.tasks.network import latent_net, rgb_net
from imgarc.tasks.onnx_classifier import Classifier
from imgarc.tasks.taskfile import PREFIX, task_bytes
from tests.conftest import image_bytes, noise_rgb


@pytest.fixture
def no_synthesis(monkeypatch):
    """Any call of g_s (through the codec or a runtime) fails the test."""

    def forbidden(*args, **kwargs):
        raise AssertionError("the synthesis network ran")

    monkeypatch.setattr(ImageCodec, "synthesize", forbidden)
    for cls in [Networks, *Networks.__subclasses__()]:
        monkeypatch.setattr(cls, "synthesis", forbidden)


@pytest.fixture
def archive(tmp_path, photo_folder, tiny_model) -> Path:
    out = tmp_path / "photos.iarc"
    api.compress_folder(photo_folder, out, model_id=tiny_model, quality=60)
    return out


def random_task(model_id: str, classes=("field", "forest", "town"), seed=0, kind=LATENT_CLASSIFIER) -> Task:
    codec = load_codec(model_id)
    spec = latent_net(2 * codec.architecture.M, len(classes))
    rng = np.random.default_rng(seed)
    arrays = {n: (rng.normal(0, 0.1, s)).astype(np.float32) for n, s in spec.array_shapes().items()}
    arrays["norm.scale"] = np.ones_like(arrays["norm.scale"])
    return Task(kind, FEATURES, list(classes), spec, arrays, codec.model_id, codec.weights_sha256)


def test_latents_of_every_photo_without_synthesis(archive, photo_folder, tiny_model, no_synthesis):
    reader = api.ArchiveLatents(archive)
    photos = {p.path: p for p in reader}
    assert set(photos) == {"a.png", "nested/b.jpg", "nested/deeper/gray ç.png"}
    assert {s.path for s in reader.skipped} == {"notes.txt", "broken.jpg"} and not reader.damaged
    codec = load_codec(tiny_model)
    m = codec.architecture.M
    for path, p in photos.items():
        assert p.quality == 60 and p.model_id == tiny_model and p.weights_sha256 == codec.weights_sha256
        assert p.y_hat.shape == p.scales.shape == p.means.shape == p.y_symbols.shape == (m, -(-p.height // 64) * 4,
                                                                                          -(-p.width // 64) * 4)
        assert (p.rows, p.cols) == (-(-p.height // 16), -(-p.width // 16))
        assert np.all(p.scales > 0) and p.payload_size > 0
        # The archive gives back exactly what quantizing the photo in memory gives: what learn trains on.
        code = codec.analyse(read_photo((photo_folder / path).read_bytes()).rgb, 60)
        np.testing.assert_array_equal(p.y_symbols, code.y_symbols)
        np.testing.assert_array_equal(p.y_hat, codec.y_hat(code))
        np.testing.assert_array_equal(photo_features(p), code_features(codec, code, p.height, p.width))
    a = photos["a.png"]
    assert photo_features(a).shape == (2 * m, 5, 6)  # 70x90 photo: 5x6 latents of 16 pixels


def test_latents_npz_round_trip(archive, tmp_path, tiny_model):
    out = tmp_path / "latents.npz"
    assert api.write_latents_npz(iter(api.ArchiveLatents(archive)), out) == 3
    loaded = api.load_latents_npz(out)
    again = list(api.ArchiveLatents(archive))
    assert [d["path"] for d in loaded] == [p.path for p in again]
    for d, p in zip(loaded, again):
        assert (d["width"], d["height"], d["quality"], d["payload_size"]) == (p.width, p.height, p.quality, p.payload_size)
        for key in api.latents.NPZ_ARRAYS:
            np.testing.assert_array_equal(d[key], getattr(p, key))
    with np.load(out, allow_pickle=False) as raw:  # plain numpy reads it, no pickle
        assert raw["y_hat/0"].dtype == np.float32 and list(raw["quality"]) == [60, 60, 60]
    with pytest.raises(ImgarcError, match="already exists"):
        api.write_latents_npz(iter(()), out)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_a_named_or_strict_non_photo_is_refused_before_decoding(archive, no_synthesis):
    with pytest.raises(api.NotAPhotoError, match="notes.txt.*not a coded photo"):
        list(api.ArchiveLatents(archive, api.MemberSelection(("notes.txt",))))
    with pytest.raises(api.NotAPhotoError, match="and 1 more"):
        list(api.ArchiveLatents(archive, strict=True))
    only = list(api.ArchiveLatents(archive, api.MemberSelection(("nested/*.jpg",))))
    assert [p.path for p in only] == ["nested/b.jpg"]


def test_classify_reads_latents_only(archive, tiny_model, no_synthesis):
    task = random_task(tiny_model)
    report = classify_archive(archive, task, top=2)
    assert [p.path for p in report.predictions] == ["a.png", "nested/b.jpg", "nested/deeper/gray ç.png"]
    for p in report.predictions:
        assert p.label in task.classes and p.top[0] == (p.label, p.confidence) and len(p.top) == 2
        assert 1 / 3 <= p.confidence <= 1 and p.quality == 60
    assert {s.path for s in report.skipped} == {"notes.txt", "broken.jpg"}
    # The same photo's latents through the classifier directly: the same probabilities.
    photo = next(iter(api.ArchiveLatents(archive, api.MemberSelection(("a.png",)))))
    probs = task.classifier().probabilities(photo_features(photo)[None])[0]
    assert probs.max() == pytest.approx(report.predictions[0].confidence, abs=1e-6)


def test_classify_refuses_a_task_for_another_model(archive, tiny_model, tiny_model_dir, tmp_path, monkeypatch):
    from tests.conftest import export_tiny_model

    other = tmp_path / "other-models"
    export_tiny_model(other, seed=1, model_id="tiny-other")
    monkeypatch.setenv("IMGARC_MODEL_PATH", f"{tiny_model_dir}:{other}")
    task = random_task("tiny-other")
    with pytest.raises(TaskModelMismatchError, match="tiny-other.*'a.png'.*and 2 more.*tiny-test"):
        classify_archive(archive, task)
    same_id_other_weights = random_task(tiny_model)
    same_id_other_weights.weights_sha256 = "0" * 64
    with pytest.raises(TaskModelMismatchError, match="weights 000000000000"):
        classify_archive(archive, same_id_other_weights)


def test_task_file_round_trip_and_every_kind_of_damage(tmp_path, tiny_model):
    task = random_task(tiny_model)
    task.trained = {"note": "ünïcode"}
    path = tmp_path / "t.imgtask"
    write_task(task, path)
    back = read_task(path)
    assert (back.kind, back.classes, back.network, back.model_id, back.weights_sha256, back.trained) == \
        (task.kind, task.classes, task.network, task.model_id, task.weights_sha256, task.trained)
    for name, a in task.arrays.items():
        np.testing.assert_array_equal(back.arrays[name], a)
    with pytest.raises(ImgarcError, match="already exists"):
        write_task(task, path)

    data = path.read_bytes()
    json_len = PREFIX.unpack(data[:PREFIX.size])[3]

    def bad(content: bytes, message: str) -> None:
        p = tmp_path / "bad.imgtask"
        p.write_bytes(content)
        with pytest.raises(TaskFileError, match=message) as e:
            read_task(p)
        assert "\n" not in str(e.value)

    bad(b"", "not a task file")
    bad(b"PK\x03\x04" + data[4:], "not a task file")
    bad(data[:-1], "damaged")
    bad(data + b"x", "damaged")
    flipped = bytearray(data)
    flipped[PREFIX.size + json_len + 10] ^= 1  # one bit of one weight
    bad(bytes(flipped), "sha256 does not match")
    bad(data[:8] + struct.pack("<H", 9) + data[10:], "version 9, made by a newer imgarc")
    with pytest.raises(TaskFileError, match="does not exist"):
        read_task(tmp_path / "missing.imgtask")
    with pytest.raises(TaskFileError, match="is a folder"):
        read_task(tmp_path)
    # Well-formed bytes that describe something impossible: caught by the checks, not by luck.
    broken = random_task(tiny_model)
    broken.classes = ["a", "../b", "c"]
    with pytest.raises(TaskFileError, match="cannot be a folder name"):
        task_bytes(broken)


def test_classify_refuses_pixel_tasks_and_other_features(archive, tiny_model):
    task = random_task(tiny_model, kind="rgb-classifier")
    with pytest.raises(TaskFileError, match="not a latent classifier"):
        classify_archive(archive, task)
    task = random_task(tiny_model)
    task.features = "something-else/v9"
    with pytest.raises(TaskFileError, match="train it again"):
        classify_archive(archive, task)


def test_extract_by_class_puts_each_photo_in_its_class_folder(archive, tmp_path, tiny_model):
    report = classify_archive(archive, random_task(tiny_model))
    dest = tmp_path / "sorted"
    extract_by_class(archive, report.predictions, dest)
    found = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert found == sorted(f"{p.label}/{p.path}" for p in report.predictions)
    with pytest.raises(ImgarcError, match="not empty"):
        extract_by_class(archive, report.predictions, dest)


def test_member_pattern_matches_only_its_own_name():
    sel = api.MemberSelection((member_pattern("a[1]*?.png"),))
    assert sel.matches("a[1]*?.png") and not sel.matches("a1xx.png") and not sel.matches("a[1]ab.png")


def labeled_folder(root: Path, classes=("cats", "dogs"), per_class=5, size=40) -> Path:
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            rgb = noise_rgb(size, size, seed=100 * c + i)
            rgb[..., c % 3] = 255 if c else 0  # classes differ in colour: learnable from latents
            (root / name / f"{i}.png").write_bytes(image_bytes(rgb, "PNG"))
    return root


def test_labeled_folders(tmp_path):
    root = labeled_folder(tmp_path / "lab", per_class=5)
    (root / "cats" / "readme.txt").write_text("not a photo")
    (root / ".hidden").mkdir()
    labeled = scan_labeled(root)
    assert labeled.classes == ["cats", "dogs"] and len(labeled.images) == 10
    assert [p.name for p in labeled.not_images] == ["readme.txt"]
    train, held = split_holdout(labeled, 0.2)
    assert len(held.images) == 2 and sorted(held.labels) == [0, 1] and len(train.images) == 8
    assert split_holdout(labeled, 0.2)[1].images == held.images  # deterministic

    (root / "birds").mkdir()
    (root / "birds" / "notes.txt").write_text("x")
    with pytest.raises(LabeledFolderError, match="class folder .*birds has no images"):
        scan_labeled(root)
    with pytest.raises(LabeledFolderError, match="2 or more"):
        scan_labeled(labeled_folder(tmp_path / "one", classes=("only",)))
    with pytest.raises(LabeledFolderError, match="does not have"):
        scan_labeled(labeled_folder(tmp_path / "val", classes=("cats", "cows")), ["cats", "dogs"], "held-out folder")
    with pytest.raises(LabeledFolderError, match="not a folder"):
        scan_labeled(tmp_path / "nowhere")


def test_dihedral_transforms_are_the_eight_symmetries():
    a = np.arange(2 * 3).reshape(2, 3, 1)
    seen = {dihedral(a, t).tobytes() + bytes(dihedral(a, t).shape) for t in range(len(DIHEDRAL))}
    assert len(seen) == 8
    assert all(dihedral(a, t).shape[:2] == (2, 3) for t in range(4))  # the first four keep the shape


def test_network_sizes():
    latent, rgb = latent_net(384, 30), rgb_net(30)
    assert 250_000 < latent.parameters() < 400_000 and 250_000 < rgb.parameters() < 400_000
    assert latent.macs(10, 10) < rgb.macs(150, 150) / 2


def test_onnx_graph_matches_the_torch_network():
    torch = pytest.importorskip("torch")
    from imgarc.tasks.train import TorchClassifier

    spec = latent_net(16, 4)
    torch.manual_seed(0)
    model = TorchClassifier(spec)
    for m in model.modules():  # non-trivial batch-norm statistics, so that folding is tested
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    model.eval()
    mean = np.linspace(-1, 1, 16).astype(np.float32)
    scale = np.linspace(0.5, 2, 16).astype(np.float32)
    arrays = {"norm.mean": mean, "norm.scale": scale, **model.arrays()}
    x = np.random.default_rng(0).normal(size=(3, 16, 6, 7)).astype(np.float32)
    with torch.no_grad():
        expected = torch.softmax(model((torch.from_numpy(x) - torch.from_numpy(mean)[None, :, None, None])
                                       * torch.from_numpy(scale)[None, :, None, None]), 1).numpy()
    got = Classifier(spec, arrays).probabilities(x)
    np.testing.assert_allclose(got, expected, atol=2e-5)


def test_a_damaged_photo_is_named_and_the_others_still_come(archive, tiny_model):
    from imgarc.archive import ArchiveReader

    with ArchiveReader(archive) as reader:
        i = next(i for i in range(len(reader)) if reader.header(i).path == "nested/b.jpg")
        offset = reader.payload_offset(i) + 5
    data = bytearray(archive.read_bytes())
    data[offset] ^= 0xFF
    archive.write_bytes(bytes(data))
    reader = api.ArchiveLatents(archive)
    assert [p.path for p in reader] == ["a.png", "nested/deeper/gray ç.png"]
    assert [d.name for d in reader.damaged] == ["nested/b.jpg"] and "checksum" in reader.damaged[0].detail
    report = classify_archive(archive, random_task(tiny_model))
    assert len(report.predictions) == 2 and [d.name for d in report.damaged] == ["nested/b.jpg"]


def test_latents_decoded_side_by_side_are_those_decoded_one_at_a_time(archive, tiny_model):
    one = list(api.ArchiveLatents(archive, workers=1))
    for workers in (2, 3):
        side_by_side = list(api.ArchiveLatents(archive, workers=workers))
        assert [p.path for p in side_by_side] == [p.path for p in one]  # archive order
        for a, b in zip(one, side_by_side):
            for key in api.latents.NPZ_ARRAYS:
                np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
