"""`prometar data`: layout check on fake datasets, offline failure path, local unpacking. No network."""
import io
import os
import shutil
import tarfile
import urllib.error

import pytest
from fake_data import make_fake_dataset

from prometar.data import download
from prometar.data.download import data_main, verify
from prometar.data.sources import Fetch


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def offline(step, dest):
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(download, "fetch", offline)


def test_check_reports_each_dataset(tmp_path, capsys):
    make_fake_dataset("EuroSAT", tmp_path, n_classes=2)
    ddir = make_fake_dataset("Caltech101", tmp_path, n_classes=2)
    os.remove(os.path.join(ddir, "101_ObjectCategories", "Faces", "image_0001.jpg"))
    assert data_main(["--check", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    status = {line.split()[0]: line.split()[1] for line in out.splitlines() if line and line.split()[0] in download.SPECS}
    assert status["EuroSAT"] == "ok" and status["Caltech101"] == "incomplete" and status["ImageNet"] == "missing"
    assert os.path.join(ddir, "101_ObjectCategories", "Faces", "image_0001.jpg") in out
    assert data_main(["--check", "--strict", "--root", str(tmp_path)]) == 1
    assert data_main(["--check", "--strict", "eurosat", "--root", str(tmp_path)]) == 0
    assert not os.path.exists(os.path.join(tmp_path, "eurosat", "split_fewshot"))  # check writes nothing


@pytest.mark.parametrize("name", ["FGVCAircraft", "ImageNet", "ImageNetV2", "ImageNetA", "PrometarWorld"])
def test_check_ok_on_other_layouts(name, tmp_path, capsys):
    make_fake_dataset(name, tmp_path, n_classes=2, n_per_class=3)
    assert data_main(["--check", "--strict", name, "--root", str(tmp_path)]) == 0
    if name.startswith("ImageNet"):
        os.remove(os.path.join(tmp_path, download.SPECS[name].dataset_dir, "classnames.txt"))
        assert data_main(["--check", "--strict", name, "--root", str(tmp_path)]) == 1
        assert "classnames.txt (class-name file" in capsys.readouterr().out


def test_offline_prints_manual_steps_and_fails(tmp_path, capsys):
    assert data_main(["eurosat", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "from: http://madm.dfki.de/files/sentinel/EuroSAT.zip" in out
    assert f"save as: {os.path.join(tmp_path, '_downloads', 'EuroSAT.zip')}" in out
    assert f"ends up at {os.path.join(tmp_path, 'eurosat', '2750')}" in out
    assert "https://drive.google.com/file/d/1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o/view" in out
    assert f"save as: {os.path.join(tmp_path, 'eurosat', 'split_zhou_EuroSAT.json')}" in out
    assert data_main(["ImageNetSketch", "--root", str(tmp_path)]) == 1
    assert "sketch/ folder to imagenet-sketch/images/" in capsys.readouterr().out


def test_local_archive_is_verified_unpacked_and_resumable(tmp_path, monkeypatch, capsys):
    src = tmp_path / "src"
    make_fake_dataset("EuroSAT", src, n_classes=2)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tf:
        tf.add(src / "eurosat" / "2750", arcname="2750")
    root = tmp_path / "data"

    def local_fetch(step, dest):
        assert not os.path.exists(dest)
        if step.is_archive:
            with open(dest, "wb") as f:
                f.write(archive.getvalue())
        else:
            shutil.copy(src / "eurosat" / "split_zhou_EuroSAT.json", dest)

    monkeypatch.setattr(download, "fetch", local_fetch)
    assert data_main(["EuroSAT", "--root", str(root)]) == 0
    assert "EuroSAT is complete" in capsys.readouterr().out
    assert os.listdir(root / "_downloads") == []  # archive removed after unpacking, no .part left
    assert not any(e.startswith(".unpack-") for e in os.listdir(root))
    monkeypatch.setattr(download, "fetch", lambda step, dest: pytest.fail("finished steps must be skipped"))
    assert data_main(["EuroSAT", "--root", str(root)]) == 0
    assert capsys.readouterr().out.count("[skip]") == 2


def test_verify_rejects_html_and_bad_split(tmp_path):
    page = tmp_path / "split_zhou_X.json"
    page.write_text("<!DOCTYPE html><html>quota exceeded</html>")
    step = Fetch("split", "x/split_zhou_X.json", "x/split_zhou_X.json", drive_id="abc")
    with pytest.raises(download.DownloadError, match="HTML page"):
        verify(str(page), step)
    page.write_text('{"train": []}')
    with pytest.raises(download.DownloadError, match="train.*val.*test"):
        verify(str(page), step)
    bad = tmp_path / "a.tar.gz"
    bad.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(download.DownloadError, match="does not open as an archive"):
        verify(str(bad), Fetch("a", "a.tar.gz", "a", url="http://x", members=(("a", "a"),)))


def test_bad_arguments(tmp_path, capsys):
    assert data_main(["NoSuchSet", "--root", str(tmp_path)]) == 2
    assert "expected one of" in capsys.readouterr().err
    assert data_main(["--root", str(tmp_path)]) == 2
    assert data_main([]) == 2
