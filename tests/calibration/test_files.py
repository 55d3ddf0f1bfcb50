"""Calibration files are written complete or not at all, through ``mvspin.atomic`` (the one
writer): a short or empty write is caught and leaves the old file, EasyMocap's pair appears
together, and a killed writer's temporary is removed by the stale-temporary cleanup."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mvspin.atomic as atomic
from calibration import Camera, Rig, load_rig, save_rig
from calibration.formats import easymocap
from mvspin.atomic import TEMPORARY_MARK, IncompleteWriteError, atomic_path, remove_stale_temporaries

ROOT = Path(__file__).resolve().parents[2]


def _rig():
    return Rig([Camera.look_at(eye=(i, -3.0, 1.5), target=(0, 0, 1), up=(0, 0, 1), focal=800, image_size=(640, 480),
                               name=f"cam{i}") for i in range(2)])


def test_killed_writer_leaves_a_temporary_that_mvspin_cleanup_removes(tmp_path):
    code = ("import os, sys\nfrom mvspin.atomic import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n    tmp.write_text('[cam_0]\\n')\n    os._exit(9)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "rig.toml")], cwd=ROOT, capture_output=True)
    assert proc.returncode == 9, proc.stderr.decode()
    (left,) = list(tmp_path.iterdir())  # the killed process's temporary, no rig.toml
    assert left.name.startswith(".rig.toml.mvspin-tmp.") and left.suffix == ".toml"
    assert remove_stale_temporaries(tmp_path) == [left]  # the process is gone: mvspin's cleanup takes it
    assert list(tmp_path.iterdir()) == []


def test_live_writer_temporary_is_kept_by_the_cleanup(tmp_path):
    with atomic_path(tmp_path / "rig.qca.txt") as tmp:
        tmp.write_text("<calibration/>")
        assert remove_stale_temporaries(tmp_path) == []  # this process still runs
        assert tmp.name.startswith(f".rig.qca.txt.{TEMPORARY_MARK}.") and tmp.suffix == ".txt"
    assert (tmp_path / "rig.qca.txt").read_text() == "<calibration/>"


class _LyingFile:
    """A file object that writes only the first half and reports the whole (a full disk seen by a
    writer that ignores short writes)."""

    def __init__(self, path):
        self._f = open(path, "wb")

    def write(self, data):
        self._f.write(data[: len(data) // 2])
        return len(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def test_short_write_is_caught_and_the_old_file_stays(tmp_path, monkeypatch):
    target = tmp_path / "rig.calibration"
    target.write_text("old\n")
    monkeypatch.setattr(atomic, "open", lambda path, mode: _LyingFile(path), raising=False)
    with pytest.raises(IncompleteWriteError, match=r"rig.calibration: only \d+ of \d+ bytes were written"):
        save_rig(_rig(), target)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rig.calibration"]


def test_a_pair_that_does_not_read_back_commits_neither_file(tmp_path, monkeypatch):
    intri, extri = tmp_path / "intri.yml", tmp_path / "extri.yml"
    intri.write_text("old intri\n")
    extri.write_text("old extri\n")
    real = Path.write_bytes

    def cut_extri(path, data):  # the second file of the pair reaches the disk cut off
        return real(path, data[: len(data) // 2] if path.name.startswith(".extri.yml.") else data)

    monkeypatch.setattr(Path, "write_bytes", cut_extri)
    with pytest.raises(IncompleteWriteError, match="extri.yml: the written file does not read back complete"):
        easymocap.write_easymocap(_rig(), tmp_path)
    assert sorted((p.name, p.read_text()) for p in tmp_path.iterdir()) == [("extri.yml", "old extri\n"),
                                                                          ("intri.yml", "old intri\n")]
    assert isinstance(IncompleteWriteError("x"), OSError)  # the CLI prints it as one line


@pytest.mark.parametrize("name", ["rig.toml", "rig.qca.txt", "cams.json", "cams.h5", "rig.calibration", "easymocap"])
def test_every_format_writes_through_the_checked_writer(tmp_path, name):
    rig = _rig()
    path = save_rig(rig, tmp_path / name)
    back = load_rig(path)
    np.testing.assert_allclose(back.project(np.array([[0.1, 0.2, 1.0]])), rig.project(np.array([[0.1, 0.2, 1.0]])),
                               atol=1e-6)
    assert not [p for p in path.parent.iterdir() if TEMPORARY_MARK in p.name]
