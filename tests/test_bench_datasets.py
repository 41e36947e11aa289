"""Finding, downloading and checking benchmark data sets (never the network: fetch is faked)."""

from __future__ import annotations

import hashlib
import io
import urllib.error
import zipfile
from pathlib import Path

import pytest

from imgarc.bench import datasets
from imgarc.bench.datasets import DatasetError, resolve_dataset
from tests.conftest import image_bytes, noise_rgb


@pytest.fixture
def fake_kodak(monkeypatch) -> dict[str, bytes]:
    """Three small PNGs standing in for Kodak, with their hashes recorded as Kodak's."""
    files = {f"kodim0{i}.png": image_bytes(noise_rgb(24, 32, i), "PNG") for i in range(1, 4)}
    monkeypatch.setattr(datasets, "KODAK_SHA256", {n: hashlib.sha256(b).hexdigest() for n, b in files.items()})
    monkeypatch.delenv(datasets.ENV_VAR, raising=False)
    return files


def write_set(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def fetch_from(files: dict[str, bytes], calls: list[str]):
    def fetch(url: str, dest: Path) -> None:
        calls.append(url)
        dest.write_bytes(files[url.rsplit("/", 1)[1]])
    return fetch


def offline(url: str, dest: Path) -> None:
    raise urllib.error.URLError("Name or service not known")


def test_real_kodak_hashes_are_recorded():
    assert sorted(datasets.KODAK_SHA256) == [f"kodim{i:02d}.png" for i in range(1, 25)]
    assert all(len(h) == 64 for h in datasets.KODAK_SHA256.values())


def test_data_root_then_env_then_cache(tmp_path, fake_kodak, monkeypatch):
    cache = write_set(tmp_path / "cache" / "kodak", fake_kodak).parent
    env_root = tmp_path / "env"
    write_set(env_root / "kodak", fake_kodak)
    data_root = tmp_path / "data"
    write_set(data_root / "kodak", fake_kodak)
    monkeypatch.setenv(datasets.ENV_VAR, str(env_root))
    d = resolve_dataset("kodak", data_root, cache_dir=cache, fetch=offline)
    assert (d.folder, d.found_via, len(d.images), d.verified) == (data_root / "kodak", "--data", 3, 3)
    d = resolve_dataset("kodak", None, cache_dir=cache, fetch=offline)
    assert (d.folder, d.found_via) == (env_root / "kodak", "$IMGARC_DATA")
    monkeypatch.delenv(datasets.ENV_VAR)
    d = resolve_dataset("kodak", None, cache_dir=cache, fetch=offline)
    assert (d.folder, d.found_via) == (cache / "kodak", "cache")
    # --data may also name the set's own folder
    assert resolve_dataset("kodak", data_root / "kodak", cache_dir=cache, fetch=offline).folder == data_root / "kodak"


def test_offline_says_where_to_put_the_files(tmp_path, fake_kodak):
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError) as e:
        resolve_dataset("kodak", tmp_path, cache_dir=cache, fetch=offline)
    msg = str(e.value)
    assert "could not be downloaded" in msg and "kodim01.png" in msg and str(cache) in msg and "--data" in msg
    assert "\n" not in msg


def test_no_download_says_where_to_put_the_files(tmp_path, fake_kodak):
    calls: list[str] = []
    with pytest.raises(DatasetError, match="was not found.*kodim01.png"):
        resolve_dataset("kodak", tmp_path, cache_dir=tmp_path / "c", download=False,
                        fetch=fetch_from(fake_kodak, calls))
    assert calls == []


def test_download_is_verified_and_then_found_in_the_cache(tmp_path, fake_kodak):
    calls: list[str] = []
    cache = tmp_path / "cache"
    d = resolve_dataset("kodak", None, cache_dir=cache, fetch=fetch_from(fake_kodak, calls))
    assert d.found_via == "download" and d.verified == 3 and d.folder == cache / "kodak"
    assert calls == [datasets.KODAK_URL.format(name=n) for n in sorted(fake_kodak)]
    assert all((cache / "kodak" / n).read_bytes() == b for n, b in fake_kodak.items())
    d = resolve_dataset("kodak", None, cache_dir=cache, fetch=offline)
    assert d.found_via == "cache"


def test_downloaded_file_with_wrong_checksum_is_deleted(tmp_path, fake_kodak):
    tampered = dict(fake_kodak, **{"kodim02.png": fake_kodak["kodim02.png"][:-1] + b"x"})
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError, match="did not match the recorded Kodak sha256"):
        resolve_dataset("kodak", None, cache_dir=cache, fetch=fetch_from(tampered, []))
    assert not (cache / "kodak" / "kodim02.png").exists()
    assert not list((cache / "kodak").glob("*.part"))


def test_local_file_with_wrong_checksum_is_refused(tmp_path, fake_kodak):
    root = tmp_path / "data"
    write_set(root / "kodak", dict(fake_kodak, **{"kodim03.png": b"not the original"}))
    with pytest.raises(DatasetError, match="kodim03.png does not match its recorded sha256"):
        resolve_dataset("kodak", root, cache_dir=tmp_path / "c", fetch=offline)


def test_clic_download_unpacks_and_checks_the_known_images(tmp_path, monkeypatch):
    known = {"known.png": image_bytes(noise_rgb(20, 20, 1), "PNG")}
    monkeypatch.setattr(datasets, "CLIC_SHA256", {n: hashlib.sha256(b).hexdigest() for n, b in known.items()})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("professional/valid/known.png", known["known.png"])
        z.writestr("professional/valid/other.png", image_bytes(noise_rgb(20, 20, 2), "PNG"))
        z.writestr("__MACOSX/._known.png", b"junk")
    monkeypatch.setattr(datasets, "CLIC_URL", "https://example.invalid/clic.zip")

    def fetch(url, dest):
        dest.write_bytes(buf.getvalue())

    d = resolve_dataset("clic", None, cache_dir=tmp_path / "cache", fetch=fetch)
    assert [p.name for p in d.images] == ["known.png", "other.png"]
    assert d.verified == 1 and d.full_count == 41 and "2 images of the 41" in d.note
    # The local 2-of-41 layout of ../shared/datasets is found under clic/ too.
    local = write_set(tmp_path / "root" / "clic" / "professional_valid_1of41", known)
    assert resolve_dataset("clic", tmp_path / "root", cache_dir=tmp_path / "none", fetch=offline).folder == local


def test_clic_zip_with_a_tampered_known_image_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "CLIC_SHA256", {"known.png": "0" * 64})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("known.png", b"tampered")
    with pytest.raises(DatasetError, match="known.png .* does not match"):
        resolve_dataset("clic", None, cache_dir=tmp_path / "cache", fetch=lambda u, d: d.write_bytes(buf.getvalue()))
    assert not (tmp_path / "cache" / "clic" / "professional_valid").exists()


def test_a_folder_of_images(tmp_path):
    folder = write_set(tmp_path / "pics", {"b.png": image_bytes(noise_rgb(8, 8), "PNG"), "notes.txt": b"x",
                                           ".hidden.png": b"x"})
    write_set(folder / "sub", {"a.JPG": image_bytes(noise_rgb(8, 8), "JPEG")})
    d = resolve_dataset(str(folder))
    assert [p.relative_to(folder).as_posix() for p in d.images] == ["b.png", "sub/a.JPG"]
    assert d.found_via == "folder" and d.name == "pics"
    with pytest.raises(DatasetError, match="no image files"):
        resolve_dataset(str(write_set(tmp_path / "empty", {"x.txt": b"x"})))
    with pytest.raises(DatasetError, match="neither 'kodak', 'clic' nor a folder"):
        resolve_dataset(str(tmp_path / "missing"))
