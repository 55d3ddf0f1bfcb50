"""``mvspin data``: synthetic, build, info -- outputs and one-line errors."""
from __future__ import annotations

import json
import logging

import numpy as np

from mvspin.cli.main import main
from mvspin.data.bundle_format import BundleFile
from tests.data.test_builder_h36m import h36m_root  # noqa: F401  (fixture: a tiny raw Human3.6M)


def test_synthetic_writes_the_asked_capture(tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="mvspin")
    out = tmp_path / "synth.h5"
    rc = main(["data", "synthetic", "--out", str(out), "--bundles", "2", "--views", "2", "--seed", "3",
               "--resolution", "low", "--image-size", "160", "120", "--focal", "260", "--radius", "3", "4",
               "--keypoint-set", "coco17", "--image-format", ".png"])
    assert rc == 0
    text = capsys.readouterr()
    assert "2 bundles x 2 views (free-collapse10pc)" in text.out and "views/s" in text.out
    assert "body model: free-collapse10pc" in caplog.text  # the command says which model it uses
    bf = BundleFile(out)
    assert len(bf) == 2 and bf.num_views == 2 and bf.keypoint_set == "coco17" and bf.attrs["seed"] == 3
    rec = bf.read_bundle(1)
    assert rec["image_size"].tolist() == [[160, 120]] * 2
    np.testing.assert_allclose(rec["camera_K"][:, 0, 0], 260, rtol=0.031)
    distance = np.linalg.norm(-np.einsum("vji,vj->vi", rec["camera_R"], rec["camera_t"])[:, [0, 2]]
                              - rec["smpl_transl"][[0, 2]], axis=1)
    assert np.all((distance > 2.4) & (distance < 4.6))  # radius 3-4 m around a subject within 0.3 m + pelvis offset
    assert bf.load_images(0)[0].shape == (120, 160, 3)

    rc = main(["data", "info", str(out), "--validate"])
    text = capsys.readouterr().out
    assert rc == 0 and "2 bundles x 2 views" in text and "values: valid" in text and "generator" in text


def test_synthetic_bad_options_are_one_line_errors(tmp_path, capsys):
    rc = main(["data", "synthetic", "--out", str(tmp_path / "x.h5"), "--bundles", "1", "--views", "2",
               "--outlier-views", "3"])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip() == "mvspin data: error: outlier_views must be in 0..1, got 3"
    rc = main(["data", "synthetic", "--out", str(tmp_path / "x.h5"), "--bundles", "0"])
    assert rc == 2 and "--bundles must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()


def test_build_reports_written_and_skipped(h36m_root, tmp_path, capsys):  # noqa: F811
    root, _, _ = h36m_root
    out, report = tmp_path / "h36m.h5", tmp_path / "report.json"
    rc = main(["data", "build", "h36m", str(root), "--out", str(out), "--subjects", "S1", "--every-nth", "20",
               "--report", str(report)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "h36m train:" in text and "bundles ->" in text
    data = json.loads(report.read_text())
    assert data["num_bundles"] == len(BundleFile(out)) > 0
    # The missing video of S1 Walking camera 60457274 is named in the report.
    missing = [s for s in data["skipped"] if "Walking.60457274.mp4" in s["reason"]]
    assert missing and missing[0]["reason"].startswith("missing video") and missing[0]["frame"] is None


def test_build_bad_input_is_a_one_line_error(tmp_path, capsys):
    rc = main(["data", "build", "coco", str(tmp_path), "--out", str(tmp_path / "o.h5")])
    assert rc == 2 and "unknown dataset 'coco'; known datasets: h36m" in capsys.readouterr().err
    rc = main(["data", "build", "3dpw", str(tmp_path), "--out", str(tmp_path / "o.h5"), "--subjects", "S1"])
    err = capsys.readouterr().err
    assert rc == 2 and "--subjects is not an option of the 3dpw builder" in err
    (tmp_path / "S1").mkdir()
    rc = main(["data", "build", "h36m", str(tmp_path), "--out", str(tmp_path / "o.h5")])
    err = capsys.readouterr().err
    assert rc == 2 and "cameras.h5" in err and len(err.strip().splitlines()) == 1
    rc = main(["data", "build", "mpi_inf_3dhp", str(tmp_path), "--out", str(tmp_path / "o.h5"), "--cameras", "a"])
    assert rc == 2 and "cameras are integers" in capsys.readouterr().err


def test_info_on_a_truncated_file_names_it(tmp_path, capsys):
    out = tmp_path / "s.h5"
    assert main(["data", "synthetic", "--out", str(out), "--bundles", "1", "--views", "1", "--resolution", "low"]) == 0
    capsys.readouterr()
    data = out.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    rc = main(["data", "info", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and f"{out}: not a readable HDF5 file (truncated or corrupt?)" in err
