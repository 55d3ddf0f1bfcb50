import json

import cv2
import h5py
import numpy as np
import pytest
from cdflib.cdfwrite import CDF as CDFWriter

from mvspin.body.keypoint_sets import get_keypoint_set
from mvspin.data.builders import build
from mvspin.data.builders.h36m import build_h36m, load_h36m_cameras
from mvspin.data.bundle_format import BundleFile

CAMS = ("54138969", "55011271", "58860488", "60457274")
# Raw Human3.6M joint rows of the h36m17 names, from the dataset's skeleton metadata (Hips,
# RightUpLeg.., LeftUpLeg.., Spine1, Neck, Head, head site, LeftArm.., RightArm..).
RAW_INDEX = {"pelvis": 0, "right_hip": 1, "right_knee": 2, "right_ankle": 3, "left_hip": 6, "left_knee": 7,
             "left_ankle": 8, "spine": 12, "thorax": 13, "neck": 14, "head": 15, "left_shoulder": 17,
             "left_elbow": 18, "left_wrist": 19, "right_shoulder": 25, "right_elbow": 26, "right_wrist": 27}
F_DIRECTIONS = 45
OUTSIDE_FRAME = 10
NAN_FRAME = 30
SHORT_CAMERA, SHORT_LENGTH = 2, 35  # camera 58860488's video stops before frame 40
K = np.array([[40.0, 0, 32], [0, 41.0, 24], [0, 0, 1]])
DIST_K, DIST_P = np.array([0.01, -0.005, 0.001]), np.array([0.0005, -0.0003])


def _cameras(fab):
    out = []
    for v in range(4):
        a = np.deg2rad(45 + 90 * v)
        center = np.array([4 * np.cos(a), 4 * np.sin(a), 1.0])
        R = fab.look_at(center, np.array([0.0, 0.0, 1.0]))
        out.append((R, center))
    return out


def _write_cdf(path, poses_mm):
    path.parent.mkdir(parents=True, exist_ok=True)
    w = CDFWriter(str(path), cdf_spec={"Majority": "Row_major"}, delete=True)
    frames = len(poses_mm)
    w.write_var({"Variable": "Pose", "Data_Type": CDFWriter.CDF_FLOAT, "Num_Elements": 1, "Rec_Vary": True,
                 "Dim_Sizes": [frames, 96]}, var_data=poses_mm.reshape(1, frames, 96).astype(np.float32))
    w.close()


def _poses(rng, frames):
    base = np.column_stack([rng.uniform(-0.3, 0.3, 32), rng.uniform(-0.3, 0.3, 32), rng.uniform(0.1, 1.8, 32)])
    drift = np.linspace(0, 0.2, frames)[:, None, None] * np.array([1.0, 0.5, 0.0])
    return base[None] + drift  # (F, 32, 3) metres


@pytest.fixture
def h36m_root(tmp_path, fab):
    rng = np.random.default_rng(5)
    root = tmp_path / "h36m"
    cams = _cameras(fab)
    root.mkdir()
    with h5py.File(root / "cameras.h5", "w") as f:
        for subject in (1, 9):
            for m, (R, C) in enumerate(cams, 1):
                g = f.create_group(f"subject{subject}/camera{m}")
                g["R"] = R.T  # the file stores the world-to-camera rotation transposed
                g["T"] = (C * 1000.0).reshape(3, 1)
                g["f"] = np.array([[K[0, 0]], [K[1, 1]]])
                g["c"] = np.array([[K[0, 2]], [K[1, 2]]])
                g["k"] = DIST_K.reshape(3, 1)
                g["p"] = DIST_P.reshape(2, 1)
                g["Name"] = np.frombuffer(CAMS[m - 1].encode(), dtype=np.uint8)
    raw = {}
    poses = _poses(rng, F_DIRECTIONS)
    poses[OUTSIDE_FRAME, RAW_INDEX["left_wrist"]] = (0.0, 0.0, 6.0)  # far above every camera's view
    poses[NAN_FRAME, RAW_INDEX["thorax"]] = np.nan  # a broken mocap sample
    raw["S1", "Directions 1"] = poses
    raw["S1", "Walking"] = _poses(rng, 12)
    raw["S9", "Eating"] = _poses(rng, 12)
    raw["S5", "Posing"] = _poses(rng, 12)  # S5 has no cameras in cameras.h5
    for (subject, action), p in raw.items():
        _write_cdf(root / subject / "MyPoseFeatures" / "D3_Positions" / f"{action}.cdf", p * 1000.0)
        for v, cam in enumerate(CAMS):
            if (subject, action, v) == ("S1", "Walking", 3):
                continue  # missing video
            length = SHORT_LENGTH if (action, v) == ("Directions 1", SHORT_CAMERA) else len(p)
            fab.write_test_video(root / subject / "Videos" / f"{action}.{cam}.mp4", length, v)
    return root, raw, cams


@pytest.mark.parametrize("image_storage", ["bytes", "paths"])
def test_build_h36m_train(h36m_root, tmp_path, fab, image_storage):
    root, raw, cams = h36m_root
    out = tmp_path / "out" / "h36m_train.h5"
    report = build_h36m(root, out, split="train", image_storage=image_storage)

    # frame selection: every 10th; 10 has a joint outside, 30 a NaN, 40 is past camera 3's video
    assert report.bundles == [("S1", "Directions_1", 0), ("S1", "Directions_1", 20)]
    by_frame = {s.frame: s for s in report.skipped if s.sequence == "Directions_1"}
    assert set(by_frame) == {OUTSIDE_FRAME, NAN_FRAME, 40}
    assert "non-finite" in by_frame[NAN_FRAME].reason
    assert "joints outside the image" in by_frame[OUTSIDE_FRAME].reason
    assert "left_wrist" in by_frame[OUTSIDE_FRAME].reason
    assert by_frame[40].camera == CAMS[SHORT_CAMERA] and "missing video frame" in by_frame[40].reason
    walking = [s for s in report.skipped if s.sequence == "Walking"]
    assert len(walking) == 1 and walking[0].frame is None and walking[0].camera == CAMS[3]
    assert str(root / "S1" / "Videos" / f"Walking.{CAMS[3]}.mp4") in walking[0].reason
    assert {s.subject for s in report.skipped_sequences() if "missing pose folder" in s.reason} == {"S6", "S7", "S8"}
    (s5,) = [s for s in report.skipped if s.subject == "S5"]
    assert "no camera parameters" in s5.reason and str(root / "cameras.h5") in s5.reason
    assert "S9" not in {b[0] for b in report.bundles}

    bf = BundleFile(out)
    assert len(bf) == 2 and bf.num_views == 4 and bf.keypoint_set == "h36m17"
    assert bf.attrs["dataset"] == "h36m" and bf.attrs["split"] == "train" and bf.joints_3d_frame == "world"
    h36m17 = get_keypoint_set("h36m17")
    for i, frame in enumerate((0, 20)):
        b = bf[i]
        assert list(b["camera_names"]) == list(CAMS) and b["frame"] == frame and b["subject"] == "S1"
        # joint order: each h36m17 name holds the raw joint of that name
        for name, row in RAW_INDEX.items():
            np.testing.assert_allclose(b["joints_3d"][h36m17.index(name), :3], raw["S1", "Directions 1"][frame, row],
                                       atol=1e-6, err_msg=name)
        assert np.all(b["joints_3d"][:, 3] == 1)
        for v, (R, C) in enumerate(cams):
            # camera conversion: transposed file rotation, t = -R C
            np.testing.assert_allclose(b["camera_R"][v], R, atol=1e-12)
            np.testing.assert_allclose(b["camera_t"][v], -R @ C, atol=1e-12)
            np.testing.assert_allclose(b["camera_dist"][v], [*DIST_K[:2], *DIST_P, DIST_K[2]])
            np.testing.assert_allclose(b["camera_K"][v], K)
            # 3D -> 2D: stored keypoints are the projection of the stored joints
            uv = fab.cv2_project(b["joints_3d"][:, :3], b["camera_K"][v], b["camera_dist"][v], b["camera_R"][v],
                                 b["camera_t"][v])
            np.testing.assert_allclose(b["keypoints_2d"][v, :, :2], uv, atol=1e-3)
            assert np.all(b["keypoints_2d"][v, :, 2] == 1)
            lo, hi = uv.min(0), uv.max(0)
            np.testing.assert_allclose(b["center"][v], (lo + hi) / 2, atol=1e-3)
            assert b["scale"][v] == pytest.approx(1.2 * np.max(hi - lo) / 200, rel=1e-5)
        assert np.array_equal(b["image_size"], [[fab.W, fab.H]] * 4)
        for v, image in enumerate(bf.load_images(i)):
            assert image.shape == (fab.H, fab.W, 3)
            fab.assert_frame_is(image, frame, v)
    if image_storage == "paths":
        assert (out.parent / "h36m_train_frames" / "S1" / f"Directions_1.{CAMS[0]}" / "000020.jpg").is_file()


def test_build_h36m_test_split_and_dispatcher(h36m_root, tmp_path):
    root, raw, _ = h36m_root
    report = build("human36m", root, tmp_path / "test.h5", split="test")
    assert report.bundles == [("S9", "Eating", 0), ("S9", "Eating", 5), ("S9", "Eating", 10)]
    assert [(s.subject, s.frame) for s in report.skipped] == [("S11", None)]
    assert str(root / "S11" / "MyPoseFeatures" / "D3_Positions") in report.skipped[0].reason
    assert "3 bundles" in report.summary()
    with pytest.raises(ValueError, match="known datasets: h36m, h36m_spin_npz, mpi_inf_3dhp, 3dpw"):
        build("coco", root, tmp_path / "x.h5")


def test_missing_camera_file_is_named(tmp_path):
    (tmp_path / "S1").mkdir()
    with pytest.raises(FileNotFoundError, match="cameras.h5"):
        build_h36m(tmp_path, tmp_path / "o.h5")


def test_json_cameras_equal_h5_cameras(h36m_root, tmp_path):
    root, _, cams = h36m_root
    from_h5 = load_h36m_cameras(root / "cameras.h5")
    data = {"S1": {}}
    for cam, (R, C) in zip(CAMS, cams):
        data["S1"][cam] = {"R": R.tolist(), "T": (C * 1000).tolist(), "f": [K[0, 0], K[1, 1]],
                           "c": [K[0, 2], K[1, 2]], "k": DIST_K.tolist(), "p": DIST_P.tolist()}
    path = tmp_path / "cameras.json"
    path.write_text(json.dumps(data))
    from_json = load_h36m_cameras(path)
    for cam in CAMS:
        a, b = from_h5["S1"][cam], from_json["S1"][cam]
        for field in ("K", "dist", "R", "t"):
            np.testing.assert_allclose(getattr(a, field), getattr(b, field), atol=1e-12)
    data["S1"][CAMS[0]].pop("k")
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=f"cameras.json: S1/{CAMS[0]}: missing k"):
        load_h36m_cameras(path)


def test_build_from_spin_npz(tmp_path):
    rng = np.random.default_rng(7)
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    names, rows = [], []
    # frames 1 and 6 (1-based) with all four cameras, frame 11 without camera 3
    for frame1 in (1, 6, 11):
        for v, cam in enumerate(CAMS):
            if frame1 == 11 and v == 3:
                continue
            name = f"images/S1_Directions_1.{cam}_{frame1:06d}.jpg"
            cv2.imwrite(str(tmp_path / name), np.full((48, 64, 3), 10 * v, np.uint8))
            names.append(name)
            rows.append((frame1, v))
    n = len(names)
    part = np.concatenate([rng.uniform(0, 60, (n, 24, 2)), np.ones((n, 24, 1))], -1)
    S = np.concatenate([rng.normal(size=(n, 24, 3)), np.ones((n, 24, 1))], -1)
    openpose = np.concatenate([rng.uniform(0, 60, (n, 25, 2)), rng.uniform(0, 1, (n, 25, 1))], -1)
    np.savez(tmp_path / "h36m_train.npz", imgname=np.array(names), center=rng.uniform(20, 40, (n, 2)),
             scale=rng.uniform(0.1, 0.3, n), part=part, S=S, openpose=openpose)

    report = build("h36m_spin_npz", tmp_path / "h36m_train.npz", tmp_path / "b.h5")
    assert report.bundles == [("S1", "Directions_1", 0), ("S1", "Directions_1", 5)]
    assert len(report.skipped) == 1 and report.skipped[0].frame == 10 and report.skipped[0].camera == CAMS[3]

    bf = BundleFile(tmp_path / "b.h5")
    assert bf.keypoint_set == "spin49" and bf.joints_3d_frame == "view0_camera" and bf.joints_3d_root_relative
    b = bf[1]
    idx = [rows.index((6, v)) for v in range(4)]
    np.testing.assert_allclose(b["keypoints_2d"][:, 25:], part[idx], rtol=1e-6)
    np.testing.assert_allclose(b["keypoints_2d"][:, :25], openpose[idx], rtol=1e-6)
    np.testing.assert_allclose(b["joints_3d"][25:], S[idx[0]], rtol=1e-6)
    assert np.all(b["joints_3d"][:25, 3] == 0)
    assert list(b["camera_names"]) == list(CAMS)
    assert b["images"][2].tobytes() == (tmp_path / names[idx[2]]).read_bytes()
    assert np.array_equal(b["image_size"], [[64, 48]] * 4)
