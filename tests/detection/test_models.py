"""The BlazePose model files: installed from a wheel, checked by SHA-256, found or named missing."""
from __future__ import annotations

import hashlib
import zipfile

import pytest

from mvspin.detection import models
from mvspin.errors import ModelFilesError


def _fake_wheel(path, contents):
    with zipfile.ZipFile(path, "w") as z:
        for member, data in contents.items():
            z.writestr(member, data)
    return path


@pytest.fixture
def fake_files(monkeypatch):
    """Two small stand-ins for the model files, with their hashes in place of the real ones."""
    data = {"pose_detection.tflite": b"detector bytes", "pose_landmark_full.tflite": b"landmark bytes"}
    table = {name: (models.BLAZEPOSE_FILES[name][0], hashlib.sha256(blob).hexdigest()) for name, blob in data.items()}
    monkeypatch.setattr(models, "BLAZEPOSE_FILES", table)
    return {table[name][0]: blob for name, blob in data.items()}


def test_install_extracts_checks_and_keeps_the_licence(tmp_path, monkeypatch, fake_files):
    monkeypatch.setenv("MVSPIN_HOME", str(tmp_path / "home"))
    wheel = _fake_wheel(tmp_path / "mediapipe.whl", {**fake_files, "mediapipe-0.10.21.dist-info/LICENSE": b"Apache"})
    files = models.install_blazepose(wheel=wheel)
    assert files.detector == tmp_path / "home" / "blazepose" / "pose_detection.tflite"
    assert files.detector.read_bytes() == b"detector bytes"
    assert (files.detector.parent / models.LICENSE_NAME).read_bytes() == b"Apache"
    assert models.find_blazepose().landmarks.read_bytes() == b"landmark bytes"
    # a hand-copied folder works the same
    other = models.install_blazepose(tmp_path / "copied", wheel=wheel)
    assert models.find_blazepose(tmp_path / "copied") == other


def test_a_wrong_file_is_refused_and_nothing_is_written(tmp_path, fake_files):
    bad = dict(fake_files)
    bad[next(iter(bad))] = b"tampered"
    wheel = _fake_wheel(tmp_path / "mediapipe.whl", bad)
    with pytest.raises(ModelFilesError, match="SHA-256"):
        models.install_blazepose(tmp_path / "models", wheel=wheel)
    assert not any(p.suffix == ".tflite" for p in (tmp_path / "models").iterdir())
    with pytest.raises(ModelFilesError, match="not a wheel"):
        models.install_blazepose(tmp_path / "models", wheel=tmp_path / "mediapipe.whl.missing")


def test_missing_or_changed_files_name_the_install_command(tmp_path, monkeypatch, fake_files):
    monkeypatch.setenv("MVSPIN_HOME", str(tmp_path))
    with pytest.raises(ModelFilesError) as err:
        models.find_blazepose()
    assert "mvspin detect install-model" in str(err.value) and str(tmp_path / "blazepose") in str(err.value)
    assert "\n" not in str(err.value)
    models.install_blazepose(wheel=_fake_wheel(tmp_path / "m.whl", fake_files))
    (tmp_path / "blazepose" / "pose_landmark_full.tflite").write_bytes(b"changed")
    with pytest.raises(ModelFilesError, match="install-model"):
        models.find_blazepose()
