"""``mvspin data``: synthetic, build, info -- outputs and one-line errors."""
from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest

from mvspin.cli.main import main
from mvspin.data.bundle_format import BundleFile
from tests.data.test_builder_h36m import h36m_root  # noqa: F401  (fixture: a tiny raw Human3.6M)


def test_synthetic_writes_the_asked_capture(tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="mvspin")
    out = tmp_path / "synth.h5"
    config = tmp_path / "synth.yaml"
    config.write_text("options:\n  num_views: 2\n  image_size: [160, 120]\n  focal: 300\n  keypoint_set: coco17\n")
    rc = main(["data", "synthetic", "--out", str(out), "--bundles", "2", "--seed", "3", "--resolution", "low",
               "--config", str(config), "--set", "options.focal=260", "options.distance=[3,4]",
               "--image-format", ".png"])
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
    # The resolved options (capture preset < YAML < --set < flags) are saved with the file.
    saved = json.loads(bf.attrs["options"])
    assert saved["focal"] == 260 and saved["image_size"] == [160, 120] and saved["distance"] == [3.0, 4.0]
    assert saved["noise_px"] == 1.0 and saved["joints_3d_set"] == "h36m17"  # the capture preset's

    rc = main(["data", "info", str(out), "--validate"])
    text = capsys.readouterr().out
    assert rc == 0 and "2 bundles x 2 views" in text and "values: valid" in text and "generator" in text


def test_synthetic_bad_options_are_one_line_errors(tmp_path, capsys):
    rc = main(["data", "synthetic", "--out", str(tmp_path / "x.h5"), "--bundles", "1", "--num-views", "2",
               "--outlier-views", "3"])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip() == "mvspin data: error: --outlier-views must be in 0..1, got 3"
    rc = main(["data", "synthetic", "--out", str(tmp_path / "x.h5"), "--bundles", "0"])
    assert rc == 2 and "--bundles must be in 1..10000000, got 0" in capsys.readouterr().err
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
    assert main(["data", "synthetic", "--out", str(out), "--bundles", "1", "--num-views", "1", "--resolution", "low"]) == 0
    capsys.readouterr()
    data = out.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    rc = main(["data", "info", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and f"{out}: not a readable HDF5 file (truncated or corrupt?)" in err


def test_options_out_of_range_and_outputs_in_the_way_fail_before_work(tmp_path, capsys):
    base = ["data", "synthetic", "--bundles", "1", "--resolution", "low"]
    cases = [
        (["--jpeg-quality", "500"], "--jpeg-quality must be in 0..100, got 500"),
        (["--drop-rate", "1.5"], "--drop-rate must be in [0, 1), got 1.5"),
        (["--focal", "-3"], "--focal must be positive, got -3.0"),
        (["--set", "options.distance=[5,2]"], "--distance must be (min, max) with min <= max, got (5.0, 2.0)"),
        (["--image-size", "0", "10"], "--image-size must be at least 16 pixels per side, got (0, 10)"),
        (["--image-size", "5000", "100"],
         "--image-size must be at most 4096 pixels per side for rendering, got (5000, 100)"),
        (["--num-views", "100000"], "--num-views must be in 1..64, got 100000"),
        (["--keypoint-set", "nope"], "--keypoint-set must be one of smpl24, openpose25, openpose25b, coco17, "
                                     "coco18, halpe26, h36m17, lsp14, mpi_inf_3dhp17, spin49, blazepose33, got 'nope'"),
        (["--set", "options.views=2"],
         "invalid configuration: Key 'views' not in 'SyntheticOptions'. Did you mean: 'num_views'?"),
    ]
    for extra, message in cases:
        assert main([*base, "--out", str(tmp_path / "x.h5"), *extra]) == 2
        assert capsys.readouterr().err.strip() == f"mvspin data: error: {message}"
    (tmp_path / "a_dir.h5").mkdir()
    assert main([*base, "--out", str(tmp_path / "a_dir.h5")]) == 2
    assert capsys.readouterr().err.strip() == f"mvspin data: error: --out {tmp_path / 'a_dir.h5'}: is a directory (expected a file name)"
    (tmp_path / "file").write_text("x")
    assert main([*base, "--out", str(tmp_path / "file" / "x.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"mvspin data: error: --out {tmp_path / 'file' / 'x.h5'}: {tmp_path / 'file'} is a file, not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_dir.h5", "file"]


def test_build_that_yields_nothing_exits_non_zero_and_names_bad_frames(tmp_path, capsys):
    from tests.data.test_builder_pw3d import FRAMES, SEQ, _py2_style_pickle

    rng = np.random.default_rng(0)
    root = tmp_path / "3dpw"
    (root / "sequenceFiles" / "test").mkdir(parents=True)
    cam = np.tile(np.eye(4), (FRAMES, 1, 1))
    cam[:, 2, 3] = 4.0
    data = {"poses": [rng.normal(scale=0.1, size=(FRAMES, 72))], "betas": [np.zeros(10)],
            "trans": [np.zeros((FRAMES, 3))], "genders": ["f"],
            "jointPositions": [np.tile(rng.uniform(-0.3, 0.3, (1, 72)), (FRAMES, 1))],
            "campose_valid": [np.ones(FRAMES)], "cam_poses": cam,
            "cam_intrinsics": np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])}
    (root / "sequenceFiles" / "test" / f"{SEQ}.pkl").write_bytes(_py2_style_pickle(data))
    images = root / "imageFiles" / SEQ
    images.mkdir(parents=True)
    jpg = cv2.imencode(".jpg", rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))[1].tobytes()
    for i in range(FRAMES):  # every source frame is cut short (a copy interrupted half-way)
        (images / f"image_{i:05d}.jpg").write_bytes(jpg[: len(jpg) // 2])
    out, report = tmp_path / "pw3d.h5", tmp_path / "report.json"
    out.write_bytes(b"yesterday's good build")
    rc = main(["data", "build", "3dpw", str(root), "--out", str(out), "--report", str(report)])
    text = capsys.readouterr()
    last = text.err.strip().splitlines()[-1]  # after the progress bar
    assert rc == 2 and last.startswith("mvspin data: error: no bundle could be built from")
    assert out.read_bytes() == b"yesterday's good build"  # not replaced by an empty file
    skipped = json.loads(report.read_text())["skipped"]
    assert len(skipped) == FRAMES
    assert all(s["reason"].startswith("bad source image: ") and "truncated JPEG" in s["reason"] for s in skipped)
    assert skipped[3]["reason"].count(str(images / "image_00003.jpg")) == 1


def test_info_validate_reads_every_image(tmp_path, capsys):
    from mvspin.data.bundle_format import BundleWriter

    rng = np.random.default_rng(0)
    jpg = cv2.imencode(".jpg", rng.integers(0, 255, (12, 16, 3), dtype=np.uint8))[1].tobytes()
    out = tmp_path / "b.h5"
    with BundleWriter(out, dataset="d", split="s", num_views=1, keypoint_set="coco17") as w:
        for i, data in enumerate([jpg, jpg[:-40]]):
            w.append({"image_size": np.array([[16, 12]]), "center": np.array([[8.0, 6.0]]), "scale": np.array([0.1]),
                      "keypoints_2d": np.zeros((1, 17, 3)), "subject": "s", "sequence": "q", "frame": i,
                      "camera_names": ["c"], "images": [np.frombuffer(data, np.uint8)]})
    assert main(["data", "info", str(out)]) == 0
    capsys.readouterr()
    assert main(["data", "info", str(out), "--validate"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert err.startswith("mvspin data: error:") and "bundle 1 view 0: truncated JPEG" in err and str(out) in err


def test_info_validate_refuses_a_jpeg_garbled_in_the_middle(tmp_path, capsys):
    """libjpeg decodes such a file with only a warning on stderr; validation names it as an error."""
    from mvspin.data.bundle_format import BundleWriter, validate_bundle_contents
    from mvspin.errors import BundleFormatError

    image = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8), (5, 5), 0)
    good = cv2.imencode(".jpg", image)[1].tobytes()
    garbled = bytearray(good)
    for i in range(len(good) // 2, len(good) // 2 + 40):
        garbled[i] = (garbled[i] * 7 + 13) % 256
    assert cv2.imdecode(np.frombuffer(bytes(garbled), np.uint8), cv2.IMREAD_COLOR) is not None  # OpenCV takes it
    out = tmp_path / "g.h5"
    with BundleWriter(out, dataset="d", split="s", num_views=2, keypoint_set="coco17") as w:
        for i, second in enumerate([good, bytes(garbled)]):
            w.append({"image_size": np.array([[80, 64]] * 2), "center": np.array([[40.0, 32.0]] * 2),
                      "scale": np.array([0.3, 0.3]), "keypoints_2d": np.zeros((2, 17, 3)), "subject": "s",
                      "sequence": "q", "frame": i, "camera_names": ["a", "b"],
                      "images": [np.frombuffer(good, np.uint8), np.frombuffer(second, np.uint8)]})
    with pytest.raises(BundleFormatError, match=r"bundle 1 view 1: corrupt image data \(embedded\): Corrupt JPEG data"):
        validate_bundle_contents(out)
    assert main(["data", "info", str(out), "--validate"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("mvspin data: error:") and str(out) in err and "bundle 1 view 1: corrupt image data" in err
