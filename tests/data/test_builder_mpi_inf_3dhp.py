import cv2
import h5py
import numpy as np
import pytest
import scipy.io

from mvspin.body.keypoint_sets import get_keypoint_set
from mvspin.data.builders import build
from mvspin.data.builders.mpi_inf_3dhp import build_mpi_inf_3dhp, read_mpi_calibration
from mvspin.data.bundle_format import BundleFile

NUM_CAMS = 14
FRAMES = 25
# A few of the 28 training joints by their row in annot2/annot3 (the dataset's joint list).
RAW = {"head_top": 7, "neck": 5, "pelvis": 4, "spine": 3, "head": 6, "left_wrist": 11, "right_wrist": 16,
       "right_hip": 23, "right_ankle": 25, "left_knee": 19, "left_toe": 22}
OUTSIDE_FRAME = 10  # right wrist leaves camera 7's image
TOE_FRAME = 20  # left toe (not one of the 17) leaves every image: the frame stays
K = np.array([[45.0, 0, 31.5], [0, 44.0, 24.5], [0, 0, 1]])


def _calibration_text(cams):
    lines = ["Skeletool Camera Calibration File V1.0"]
    for c, (R, t_mm) in enumerate(cams):
        intr = np.eye(4)
        intr[:3, :3] = K
        extr = np.eye(4)
        extr[:3, :3], extr[:3, 3] = R, t_mm
        lines += [f"name          {c}", "  sensor      10 10", "  size        64 48", "  animated    0",
                  "  intrinsic   " + " ".join(f"{x:.10g}" for x in intr.reshape(-1)),
                  "  extrinsic   " + " ".join(f"{x:.10g}" for x in extr.reshape(-1)), "  radial      0"]
    return "\n".join(lines) + "\n"


def _sequence(seq_dir, rng, fab, skip_video=None):
    cams = []
    for c in range(NUM_CAMS):
        a = 2 * np.pi * c / NUM_CAMS
        center = np.array([3500 * np.cos(a), 3500 * np.sin(a), 1000.0])  # mm, world z up
        R = fab.look_at(center, np.array([0.0, 0.0, 900.0]))
        cams.append((R, -R @ center))
    world = np.column_stack([rng.uniform(-250, 250, 28), rng.uniform(-250, 250, 28), rng.uniform(100, 1700, 28)])
    world = np.repeat(world[None], FRAMES, axis=0) + rng.normal(scale=5, size=(FRAMES, 28, 3))
    world[OUTSIDE_FRAME, RAW["right_wrist"]] = (0.0, 0.0, 6000.0)  # high above every camera's view
    world[TOE_FRAME, RAW["left_toe"]] = (0.0, 0.0, 6000.0)
    annot2 = np.empty((NUM_CAMS, 1), dtype=object)
    annot3 = np.empty((NUM_CAMS, 1), dtype=object)
    univ = np.empty((NUM_CAMS, 1), dtype=object)
    for c, (R, t) in enumerate(cams):
        cam = world @ R.T + t
        uv = cam[..., :2] / cam[..., 2:] * K[[0, 1], [0, 1]] + K[:2, 2]
        annot2[c, 0] = uv.reshape(FRAMES, 56)
        annot3[c, 0] = cam.reshape(FRAMES, 84)
        univ[c, 0] = (cam * 0.95).reshape(FRAMES, 84)
    seq_dir.mkdir(parents=True)
    scipy.io.savemat(seq_dir / "annot.mat", {"annot2": annot2, "annot3": annot3, "univ_annot3": univ,
                                             "cameras": np.arange(NUM_CAMS)[None],
                                             "frames": np.arange(FRAMES)[:, None]})
    (seq_dir / "camera.calibration").write_text(_calibration_text(cams))
    for v, c in enumerate((0, 2, 7, 8)):
        if c != skip_video:
            fab.write_test_video(seq_dir / "imageSequence" / f"video_{c}.avi", FRAMES, v)
    return world, cams


@pytest.fixture
def mpi_train_root(tmp_path, fab):
    rng = np.random.default_rng(11)
    root = tmp_path / "mpi"
    world, cams = _sequence(root / "S1" / "Seq1", rng, fab)
    _sequence(root / "S1" / "Seq2", rng, fab, skip_video=8)
    return root, world, cams


def test_build_train_bundles(mpi_train_root, tmp_path, fab):
    root, world, cams = mpi_train_root
    out = tmp_path / "mpi_train.h5"
    report = build_mpi_inf_3dhp(root, out, subjects=["S1", "S2"])

    assert report.bundles == [("S1", "Seq1", 0), ("S1", "Seq1", 20)]
    (outside,) = [s for s in report.skipped if s.frame == OUTSIDE_FRAME]
    assert "joints outside the image" in outside.reason and "right_wrist" in outside.reason
    (seq2,) = [s for s in report.skipped if (s.subject, s.sequence) == ("S1", "Seq2")]
    assert seq2.frame is None and seq2.camera == "8"
    assert str(root / "S1" / "Seq2" / "imageSequence" / "video_8.avi") in seq2.reason
    assert {(s.subject, s.sequence) for s in report.skipped if "missing sequence folder" in s.reason} == \
        {("S2", "Seq1"), ("S2", "Seq2")}

    bf = BundleFile(out)
    assert len(bf) == 2 and bf.num_views == 4 and bf.keypoint_set == "mpi_inf_3dhp17"
    mpi17 = get_keypoint_set("mpi_inf_3dhp17")
    for i, frame in enumerate((0, 20)):
        b = bf[i]
        assert list(b["camera_names"]) == ["0", "2", "7", "8"] and b["frame"] == frame
        for name, row in RAW.items():  # joint order, world frame, metres
            if name in mpi17.names:
                np.testing.assert_allclose(b["joints_3d"][mpi17.index(name), :3], world[frame, row] / 1000,
                                           atol=1e-5, err_msg=name)
        for v, c in enumerate((0, 2, 7, 8)):
            R, t_mm = cams[c]
            np.testing.assert_allclose(b["camera_R"][v], R, atol=1e-8)
            np.testing.assert_allclose(b["camera_t"][v], t_mm / 1000, atol=1e-8)
            uv = fab.cv2_project(b["joints_3d"][:, :3], b["camera_K"][v], b["camera_dist"][v], b["camera_R"][v],
                                 b["camera_t"][v])
            np.testing.assert_allclose(b["keypoints_2d"][v, :, :2], uv, atol=1e-3)
            assert np.all(b["keypoints_2d"][v, :, 2] == 1)
        for v, image in enumerate(bf.load_images(i)):
            fab.assert_frame_is(image, frame, v)


def test_calibration_errors_name_file_and_camera(tmp_path):
    path = tmp_path / "camera.calibration"
    path.write_text("Skeletool Camera Calibration File V1.0\nname 0\n  size 64 48\n  intrinsic 1 0 0 0\n")
    with pytest.raises(ValueError, match=r"camera.calibration: camera '0': missing 'extrinsic'"):
        read_mpi_calibration(path)


def _write_v73(path, arrays):
    """A MATLAB v7.3 file: HDF5 with a 512-byte user block; arrays in h5py's transposed view."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for key, value in arrays.items():
            f[key] = value
            f[key].attrs["MATLAB_class"] = np.bytes_("double")
    with open(path, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2018 HDF5 schema 1.00 .")


@pytest.fixture
def mpi_test_root(tmp_path):
    rng = np.random.default_rng(12)
    base = tmp_path / "mpi" / "mpi_inf_3dhp_test_set"
    truth = {}
    for ts, frames, v73 in (("TS1", 6, True), ("TS2", 3, False)):
        annot2 = np.concatenate([rng.uniform(5, 55, (frames, 17, 1)), rng.uniform(5, 40, (frames, 17, 1))], -1)
        univ = rng.normal(size=(frames, 17, 3)) * 300 + [0, 0, 4000]
        valid = np.ones(frames)
        if ts == "TS1":
            valid[2] = 0
            annot2[5, 3] = (70.0, 10.0)  # right_elbow outside the 64-wide image: kept, confidence 0
        (base / ts).mkdir(parents=True)
        if v73:  # h5py sees MATLAB's (2, 17, 1, F) as (F, 1, 17, 2)
            _write_v73(base / ts / "annot_data.mat", {"annot2": annot2[:, None], "annot3": univ[:, None] / 0.95,
                                                       "univ_annot3": univ[:, None], "valid_frame": valid[:, None]})
        else:  # a v5 file holds MATLAB's own order
            scipy.io.savemat(base / ts / "annot_data.mat", {"annot2": annot2[:, None].transpose(3, 2, 1, 0),
                                                            "univ_annot3": univ[:, None].transpose(3, 2, 1, 0),
                                                            "valid_frame": valid[None]})
        for f in range(frames):
            if (ts, f) == ("TS1", 4):
                continue  # missing image
            img = base / ts / "imageSequence" / f"img_{f + 1:06d}.jpg"
            img.parent.mkdir(exist_ok=True)
            cv2.imwrite(str(img), np.full((48, 64, 3), 3 * f, np.uint8))
        truth[ts] = (annot2, univ)
    return tmp_path / "mpi", base, truth


def test_build_test_set(mpi_test_root, tmp_path):
    root, base, truth = mpi_test_root
    out = tmp_path / "mpi_test.h5"
    report = build("mpi-inf-3dhp", root, out, split="test")
    assert report.bundles == [("TS1", "TS1", f) for f in (0, 1, 3, 5)] + [("TS2", "TS2", f) for f in (0, 1, 2)]
    reasons = {(s.subject, s.frame): s.reason for s in report.skipped}
    assert reasons[("TS1", 2)] == "valid_frame is 0"
    assert str(base / "TS1" / "imageSequence" / "img_000005.jpg") in reasons[("TS1", 4)]
    assert str(base / "TS3" / "annot_data.mat") in reasons[("TS3", None)]

    bf = BundleFile(out)
    assert bf.num_views == 1 and not bf.has_cameras and bf.joints_3d_frame == "view0_camera"
    for i, (ts, _, frame) in enumerate(report.bundles):
        b = bf[i]
        annot2, univ = truth[ts]
        np.testing.assert_allclose(b["keypoints_2d"][0, :, :2], annot2[frame], atol=1e-4)
        np.testing.assert_allclose(b["joints_3d"][:, :3], univ[frame] / 1000, atol=1e-6)
        assert list(b["camera_names"]) == [ts] and np.array_equal(b["image_size"], [[64, 48]])
        img = base / ts / "imageSequence" / f"img_{frame + 1:06d}.jpg"
        assert b["images"][0].tobytes() == img.read_bytes()
    elbow = get_keypoint_set("mpi_inf_3dhp17").index("right_elbow")
    last = bf[3]["keypoints_2d"][0]
    assert last[elbow, 2] == 0 and np.sum(last[:, 2]) == 16
