import os
import pickle

import cv2
import numpy as np
import pytest

from mvspin.data.builders import build
from mvspin.data.builders.pw3d import UnsafePickleError, build_3dpw, load_3dpw_pickle
from mvspin.data.bundle_format import BundleFile

FRAMES = 6
SEQ = "courtyard_test_00"
INVALID = (1, 2)  # person 1, frame 2: campose_valid false
MISSING_IMAGE = 4
K = np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])


def _py2_style_pickle(obj) -> bytes:
    """Protocol 2 with numpy's pre-2.0 module path, as the Python 2 files name it."""
    return pickle.dumps(obj, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


@pytest.fixture
def pw3d_root(tmp_path, fab):
    rng = np.random.default_rng(21)
    root = tmp_path / "3dpw"
    cam_poses = np.zeros((FRAMES, 4, 4))
    for i in range(FRAMES):
        center = np.array([0.1 * i, -4.0, 1.0])
        cam_poses[i, :3, :3] = R = fab.look_at(center, np.array([0.0, 0.0, 1.0]))
        cam_poses[i, :3, 3] = -R @ center
        cam_poses[i, 3, 3] = 1
    joints = [np.column_stack([rng.uniform(-0.3, 0.3, 24) + dx, rng.uniform(-0.2, 0.2, 24), rng.uniform(0.1, 1.7, 24)])
              for dx in (-0.4, 0.4)]
    joints = [np.repeat(j.reshape(1, 72), FRAMES, 0) for j in joints]
    poses2d = [np.zeros((FRAMES, 3, 18)) for _ in range(2)]
    poses2d[0][:, 0, :] = rng.uniform(10, 30, (FRAMES, 18))  # person 0: detections; person 1: none
    poses2d[0][:, 1, :] = rng.uniform(8, 40, (FRAMES, 18))
    poses2d[0][:, 2, :] = 0.8
    poses2d[0][:, 2, 5] = 0.0  # an undetected joint far away must not widen the box
    poses2d[0][:, :2, 5] = 1000.0
    valid = [np.ones(FRAMES), np.ones(FRAMES)]
    valid[INVALID[0]][INVALID[1]] = 0
    data = {
        "sequence": SEQ,
        "poses": [rng.normal(scale=0.2, size=(FRAMES, 72)) for _ in range(2)],
        "betas": [rng.normal(size=10), rng.normal(size=300)],
        "trans": [rng.normal(size=(FRAMES, 3)) for _ in range(2)],
        "genders": ["m", "f"],
        "jointPositions": joints,
        "poses2d": poses2d,
        "campose_valid": valid,
        "cam_poses": cam_poses,
        "cam_intrinsics": K,
        # As in the real files: indices into the 60 Hz capture, not image numbers (SPIN and VIBE
        # open image_{i:05d} for pose frame i).
        "img_frame_ids": 2 * np.arange(FRAMES) + 3,
    }
    (root / "sequenceFiles" / "test").mkdir(parents=True)
    (root / "sequenceFiles" / "test" / f"{SEQ}.pkl").write_bytes(_py2_style_pickle(data))
    for i in range(FRAMES):
        if i != MISSING_IMAGE:
            img = root / "imageFiles" / SEQ / f"image_{i:05d}.jpg"
            img.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(img), np.full((48, 64, 3), 7 * i, np.uint8))
    return root, data


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo should-never-run",))


def test_build_3dpw(pw3d_root, tmp_path, fab):
    root, data = pw3d_root
    (root / "sequenceFiles" / "test" / "evil_00.pkl").write_bytes(pickle.dumps({"poses": _RunsCode()}, protocol=2))
    out = tmp_path / "pw3d_test.h5"
    report = build_3dpw(root, out)

    expected = [(f"{SEQ}/person{p}", SEQ, i) for i in range(FRAMES) for p in range(2)
                if (p, i) != INVALID and i != MISSING_IMAGE]
    assert report.bundles == expected
    reasons = {(s.subject, s.frame): s.reason for s in report.skipped}
    assert reasons[(f"{SEQ}/person1", 2)] == "campose_valid is false"
    assert str(root / "imageFiles" / SEQ / "image_00004.jpg") in reasons[(f"{SEQ}/person0", MISSING_IMAGE)]
    assert "refused to load global" in reasons[("", None)] and "evil_00.pkl" in reasons[("", None)]

    bf = BundleFile(out)
    assert bf.num_views == 1 and bf.has_smpl and bf.keypoint_set == "smpl24" and bf.joints_3d_frame == "world"
    for n, (subject, _, i) in enumerate(report.bundles):
        p = int(subject[-1])
        b = bf[n]
        np.testing.assert_allclose(b["smpl_global_orient"], data["poses"][p][i][:3], rtol=1e-6)
        np.testing.assert_allclose(b["smpl_body_pose"], data["poses"][p][i][3:], rtol=1e-6)
        np.testing.assert_allclose(b["smpl_betas"], data["betas"][p][:10], rtol=1e-6)
        np.testing.assert_allclose(b["smpl_transl"], data["trans"][p][i], rtol=1e-6)
        assert b["smpl_gender"] == ("male", "female")[p] and b["has_smpl"]
        np.testing.assert_allclose(b["camera_R"][0], data["cam_poses"][i][:3, :3], atol=1e-12)
        np.testing.assert_allclose(b["camera_t"][0], data["cam_poses"][i][:3, 3], atol=1e-12)
        np.testing.assert_allclose(b["joints_3d"][:, :3], data["jointPositions"][p][i].reshape(24, 3), atol=1e-6)
        uv = fab.cv2_project(b["joints_3d"][:, :3], b["camera_K"][0], b["camera_dist"][0], b["camera_R"][0],
                             b["camera_t"][0])
        np.testing.assert_allclose(b["keypoints_2d"][0, :, :2], uv, atol=1e-3)
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < 64) & (uv[:, 1] >= 0) & (uv[:, 1] < 48)
        np.testing.assert_array_equal(b["keypoints_2d"][0, :, 2], inside.astype(np.float32))
        # crop: person 0 from its confident detections (SPIN), person 1 from the projected joints
        pts = data["poses2d"][0][i].T[data["poses2d"][0][i][2] > 0, :2] if p == 0 else uv[inside]
        lo, hi = pts.min(0), pts.max(0)
        np.testing.assert_allclose(b["center"][0], (lo + hi) / 2, atol=1e-3)
        assert b["scale"][0] == pytest.approx(1.2 * np.max(hi - lo) / 200, rel=1e-5)
        assert b["images"][0].tobytes() == (root / "imageFiles" / SEQ / f"image_{i:05d}.jpg").read_bytes()
        assert list(b["camera_names"]) == [SEQ]


def test_every_nth_and_paths_via_dispatcher(pw3d_root, tmp_path):
    root, _ = pw3d_root
    report = build("pw3d", root, tmp_path / "p.h5", every_nth=2, image_storage="paths")
    assert sorted({f for _, _, f in report.bundles}) == [0, 2]  # frame 4 has no image
    bf = BundleFile(tmp_path / "p.h5")
    assert bf[0]["image_paths"][0] == f"imageFiles/{SEQ}/image_00000.jpg"
    assert bf.load_images(0)[0].shape == (48, 64, 3)


def test_restricted_unpickler(tmp_path):
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"poses": _RunsCode()}, protocol=2))
    with pytest.raises(UnsafePickleError, match="refused to load global posix.system") as err:
        load_3dpw_pickle(evil)
    assert str(evil) in str(err.value)
    ok = tmp_path / "ok.pkl"
    ok.write_bytes(_py2_style_pickle({"a": [np.arange(3.0)], "b": "text", "c": np.float32(2)}))
    loaded = load_3dpw_pickle(ok)
    np.testing.assert_array_equal(loaded["a"][0], [0.0, 1.0, 2.0])
    assert loaded["b"] == "text" and loaded["c"] == 2 and isinstance(loaded["c"], np.float32)
    assert b"numpy.core.multiarray" in ok.read_bytes() and b"numpy._core" not in ok.read_bytes()
    (tmp_path / "cut.pkl").write_bytes(ok.read_bytes()[:20])
    with pytest.raises(ValueError, match="cut.pkl: cannot unpickle"):
        load_3dpw_pickle(tmp_path / "cut.pkl")


def test_unknown_split_and_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="known: train, validation, test"):
        build_3dpw(tmp_path, tmp_path / "o.h5", split="val")
    with pytest.raises(FileNotFoundError, match="sequenceFiles/test"):
        build_3dpw(tmp_path, tmp_path / "o.h5")
