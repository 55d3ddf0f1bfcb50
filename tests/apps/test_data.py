"""mvspin.apps.data: synthetic files, dataset builds and file descriptions from Python; outputs and
options checked before any work (exit status, one line, nothing on disk, nothing rendered or built)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mvspin.apps.data import (
    BuildDataConfig,
    DataInfoConfig,
    SyntheticDataConfig,
    run_build,
    run_info,
    run_synthetic,
)
from mvspin.body import BodyModelConfig
from mvspin.cli.main import main
from mvspin.config import ConfigError
from mvspin.data.bundle_format import BundleFile
from mvspin.data.synthetic_options import SyntheticOptions
from tests.data.conftest import fab  # noqa: F401  (fixture)
from tests.data.test_builder_h36m import h36m_root  # noqa: F401  (fixture)


def _tiny(out, **changes) -> SyntheticDataConfig:
    options = SyntheticOptions.preset("capture", num_views=2, image_size=(48, 40), focal=80.0, background="plain")
    return SyntheticDataConfig(out=out, bundles=2, seed=5, options=options, body=BodyModelConfig(resolution="low"),
                               **changes)


def test_synthetic_info_and_validation_from_python(tmp_path):
    calls = []
    report = run_synthetic(_tiny(tmp_path / "s.h5"), progress=lambda *c: calls.append(c))
    assert report.num_bundles == 2 and report.num_views == 2 and report.path == tmp_path / "s.h5"
    assert calls[0] == ("synthetic bundles", 0, 2) and calls[-1] == ("synthetic bundles", 2, 2)
    bundles = BundleFile(tmp_path / "s.h5")
    assert len(bundles) == 2 and bundles.num_views == 2 and bundles.attrs["seed"] == 5
    assert json.loads(bundles.attrs["options"])["image_size"] == [48, 40]
    assert bundles.load_images(1)[1].shape == (40, 48, 3)
    info = run_info(DataInfoConfig(file=tmp_path / "s.h5", validate=True))
    assert info.validated == 2 and info.lines()[-1].startswith("  values: valid (2 bundles")
    assert run_info(DataInfoConfig(file=tmp_path / "s.h5")).validated is None


def test_build_from_python_matches_the_file(h36m_root, tmp_path):  # noqa: F811
    root, _, _ = h36m_root
    calls = []
    config = BuildDataConfig(dataset="h36m", root=root, out=tmp_path / "h.h5", subjects=["S1"], every_nth=20,
                             report=tmp_path / "r.json")
    report = run_build(config, progress=lambda *c: calls.append(c))
    assert report.num_bundles == len(BundleFile(tmp_path / "h.h5")) > 0
    assert json.loads((tmp_path / "r.json").read_text())["num_bundles"] == report.num_bundles
    assert calls[-1][0] == "Human3.6M sequences" and calls[-1][1] == calls[-1][2] > 0


def test_build_options_are_checked_in_the_config():
    with pytest.raises(ConfigError, match="cameras names 54138969 more than once") as err:
        BuildDataConfig(dataset="h36m", root="r", out="o.h5", cameras=["54138969", "55011271", "54138969"])
    assert err.value.field == "cameras"
    with pytest.raises(ConfigError, match="subjects is not an option of the 3dpw builder") as err:
        BuildDataConfig(dataset="3dpw", root="r", out="o.h5", subjects=["S1"])
    assert err.value.field == "subjects"
    with pytest.raises(ConfigError, match="jpeg_quality must be in 0..100"):
        BuildDataConfig(dataset="3dpw", root="r", out="o.h5", jpeg_quality=101)
    assert BuildDataConfig(dataset="mpi-inf-3dhp", root="r", out="o.h5", cameras=["0", "2"]).builder_options() == \
        {"cameras": [0, 2]}


def test_synthetic_outputs_in_the_way_fail_before_the_body_model_loads(tmp_path, capsys, monkeypatch):
    loaded = []
    monkeypatch.setattr(BodyModelConfig, "load", lambda self, *a, **k: loaded.append(1))
    (tmp_path / "dir.h5").mkdir()
    (tmp_path / "file").write_text("keep")
    for out, words in ((tmp_path / "dir.h5", "is a directory"), (tmp_path / "file" / "x.h5", "is a file, not a folder")):
        code = main(["data", "synthetic", "-o", str(out), "--bundles", "1"])
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith(f"mvspin data: error: --out {out}")
        assert words in lines[0]
    assert loaded == [] and sorted(p.name for p in tmp_path.iterdir()) == ["dir.h5", "file"]


@pytest.mark.parametrize("flags, words", [
    (["--num-views", "100000"], "--num-views must be in 1..64, got 100000"),
    (["--set", "options.num_views=100000"], "--num-views must be in 1..64, got 100000"),
    (["--keypoint-set", "nope"], "--keypoint-set must be one of smpl24"),
    (["--set", "options.joints_3d_set=nope"], "--joints-3d-set must be one of smpl24"),
    (["--bundles", "0"], "--bundles must be in 1..10000000, got 0"),
])
def test_synthetic_bad_values_end_in_one_line(tmp_path, capsys, monkeypatch, flags, words):
    monkeypatch.setattr(BodyModelConfig, "load", lambda self, *a, **k: pytest.fail("loaded the body model"))
    code = main(["data", "synthetic", "-o", str(tmp_path / "x.h5"), "--bundles", "1", *flags])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and words in lines[0] and list(tmp_path.iterdir()) == []


def test_build_outputs_in_the_way_fail_before_building(h36m_root, tmp_path, capsys, monkeypatch):  # noqa: F811
    import mvspin.data.builders as builders

    root, _, _ = h36m_root
    monkeypatch.setattr(builders, "build", lambda *a, **k: pytest.fail("built"))
    (tmp_path / "o.h5").mkdir()
    (tmp_path / "file").write_text("keep")
    cases = [(["-o", str(tmp_path / "o.h5")], f"--out {tmp_path / 'o.h5'}: is a directory"),
             (["-o", str(tmp_path / "ok.h5"), "--report", str(tmp_path / "file" / "r.json")],
              f"--report {tmp_path / 'file' / 'r.json'}: {tmp_path / 'file'} is a file, not a folder"),
             (["-o", str(tmp_path / "ok.h5"), "--cameras", "54138969", "54138969"],
              "--cameras names 54138969 more than once")]
    before = sorted(p.name for p in tmp_path.iterdir())
    for flags, words in cases:
        code = main(["data", "build", "h36m", str(root), *flags])
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and words in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_synthetic_config_holds_the_capture_preset():
    config = SyntheticDataConfig(out="x.h5", bundles=3)
    assert config.options == SyntheticOptions.preset("capture")
    assert np.isclose(config.options.focal, 360.0)


def test_a_refused_run_leaves_no_folder_it_made(tmp_path, capsys):
    # the output check makes new/deeper/, then the body model is refused: both folders go again
    code = main(["data", "synthetic", "-o", str(tmp_path / "new" / "deeper" / "x.h5"), "--bundles", "1",
                 "--smpl-dir", str(tmp_path / "no_smpl_here")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "no_smpl_here" in lines[0]
    assert list(tmp_path.iterdir()) == []
    # an existing folder stays, with what it held
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "a.txt").write_text("x")
    assert main(["data", "synthetic", "-o", str(tmp_path / "kept" / "x.h5"), "--bundles", "1",
                 "--smpl-dir", str(tmp_path / "no_smpl_here")]) == 2
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["a.txt"]


def test_a_full_disk_while_writing_names_the_file_not_its_temporary(tmp_path, capsys, monkeypatch):
    import h5py

    real = h5py.Dataset.__setitem__

    def full(self, key, value):  # what h5py raises when the disk fills (it names the temporary)
        if self.name == "/images":
            raise OSError(f"Can't write data (file write failed: time = Sun Dec  6 05:00:00 2026, filename = "
                          f"'{self.file.filename}', file descriptor = 5, errno = 28, error message = "
                          "'No space left on device', buf = 0x1, total write size = 4096, bytes this sub-write = "
                          "4096, bytes actually written = 18446744073709551615, offset = 0)")
        return real(self, key, value)

    monkeypatch.setattr(h5py.Dataset, "__setitem__", full)
    out = tmp_path / "s.h5"
    code = main(["data", "synthetic", "-o", str(out), "--bundles", "1", "--num-views", "1", "--image-size", "32", "32",
                 "--resolution", "low"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and lines[-1] == (f"mvspin data: error: {out}: could not be written (No space left on device); "
                                       "nothing was left under that name")
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary
