"""The training dataset: augmented crops consistent with keypoints, crop cameras and 3D targets,
left/right flips, ratio mixing, worker determinism and bad input."""
from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import torch

from calibration import Camera
from mvspin.body import BodyModel
from mvspin.body.keypoint_sets import get_keypoint_set
from mvspin.config import load_config
from mvspin.data.bundle_format import BundleFormatError, BundleWriter
from mvspin.data.synthetic_capture import generate_capture_file
from mvspin.data.synthetic_options import SyntheticOptions
from mvspin.geometry import perspective_projection
from mvspin.learning.augment import AugmentConfig, AugmentParams, flip_smpl_pose
from mvspin.learning.training_dataset import DataConfig, TrainingDataset, make_loader

H36M = get_keypoint_set("h36m17")


def _cameras(rng, num_views, size=(200, 160)):
    cams = []
    for v in range(num_views):
        a = 2 * np.pi * v / num_views + rng.uniform(-0.3, 0.3)
        eye = np.array([3.0 * np.sin(a), 1.0 + rng.uniform(0.0, 0.8), 3.0 * np.cos(a)])
        cams.append(Camera.look_at(eye, (0.0, 1.0, 0.0), focal=150.0 * rng.uniform(0.95, 1.05), image_size=size))
    return cams


def write_fabricated(path, *, dataset="h36m", num_bundles=6, num_views=3, keypoint_set="h36m17", seed=0,
                     cameras=True, frame="world"):
    """A small consistent bundle file: random world joints, look-at cameras, exact 2D projections
    and images with one bright dot per keypoint."""
    rng = np.random.default_rng(seed)
    k = len(get_keypoint_set(keypoint_set))
    with BundleWriter(path, dataset=dataset, split="train", num_views=num_views, keypoint_set=keypoint_set,
                      joints_3d_keypoint_set=keypoint_set, joints_3d_frame=frame, cameras=cameras,
                      image_storage="bytes") as w:
        for i in range(num_bundles):
            cams = _cameras(rng, num_views)
            joints = rng.normal(scale=0.3, size=(k, 3)) + [0.0, 1.0, 0.0]
            uv = np.stack([c.project(joints) for c in cams])
            images = []
            for v, c in enumerate(cams):
                img = np.zeros((c.image_size[1], c.image_size[0], 3), np.uint8)
                for x, y in uv[v]:
                    cv2.circle(img, (int(round(x)), int(round(y))), 2, (255, 255, 255), -1)
                images.append(cv2.imencode(".png", img)[1])
            lo, hi = uv.min(1), uv.max(1)
            bundle = {
                "images": images,
                "image_size": np.array([c.image_size for c in cams], dtype=np.int32),
                "center": (lo + hi) / 2, "scale": 1.2 * (hi - lo).max(1) / 200.0,
                "keypoints_2d": np.concatenate([uv, np.ones((num_views, k, 1))], -1),
                "subject": "S1", "sequence": "fab", "frame": i,
                "camera_names": [f"c{v}" for v in range(num_views)],
            }
            if frame == "world":
                bundle["joints_3d"] = np.c_[joints, np.ones(k)]
            else:
                bundle["joints_3d"] = np.c_[joints @ cams[0].R.T + cams[0].t, np.ones(k)]
            if cameras:
                bundle.update(camera_K=np.stack([c.K for c in cams]), camera_dist=np.zeros((num_views, 5)),
                              camera_R=np.stack([c.R for c in cams]), camera_t=np.stack([c.t for c in cams]))
            w.append(bundle)
    return path


def _silhouette(uv: np.ndarray, faces: np.ndarray, size: int = 224, ss: int = 4) -> np.ndarray:
    """Pixels (centres at integers) more than half covered by the projected triangles ``uv[faces]``,
    filled one by one with OpenCV at ``ss`` x resolution."""
    hi = np.zeros((size * ss, size * ss), np.uint8)
    for tri in np.round(((uv[faces] + 0.5) * ss - 0.5) * 16).astype(np.int32):
        cv2.fillConvexPoly(hi, tri, 255, shift=4)
    return cv2.resize(hi, (size, size), interpolation=cv2.INTER_AREA) > 127


def _project(item):
    """Project ``joints_3d`` with ``crop_K`` (both augmented): (V, K3, 2) crop pixels."""
    return perspective_projection(item["joints_3d"][..., :3].double(), item["crop_K"].double()).float()


# --- consistency on the synthetic capture ------------------------------------------------------


@pytest.fixture(scope="module")
def body():
    return BodyModel.free("low")


@pytest.fixture(scope="module")
def synthetic_file(tmp_path_factory, body):
    path = tmp_path_factory.mktemp("synthetic") / "synth.h5"
    opts = SyntheticOptions.preset("capture", num_views=3, noise_px=0.0, drop_rate=0.0, background="plain", image_format=".png",
                          colors="parts")
    generate_capture_file(path, 3, seed=11, options=opts, body=body)
    return path


@pytest.mark.parametrize("flip, rotation, factor", [(False, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]),
                                                     (True, [15.0, -20.0, 0.0], [0.8, 1.25, 1.0]),
                                                     (True, [0.0, 7.5, -11.0], [1.1, 0.9, 0.75])])
def test_ground_truth_joints_land_on_augmented_keypoints(synthetic_file, flip, rotation, factor):
    """3D joints in the augmented camera frame, projected with the augmented crop camera, fall on
    the augmented 2D keypoints (< 1 px; exactly up to float32)."""
    ds = TrainingDataset([synthetic_file], augment=None)
    params = AugmentParams(flip, np.array(rotation), np.array(factor), np.ones((3, 3)))
    for bundle in range(3):
        item = ds.get(0, bundle, params)
        kp = item["keypoints_2d"]
        assert kp.shape == (3, 17, 3) and item["joints_3d"].shape == (3, 17, 4)
        visible = kp[..., 2] > 0
        assert visible.sum() > 40
        err = (_project(item) - kp[..., :2]).norm(dim=-1)[visible]
        assert err.max() < 1.0 and err.median() < 0.05, err.max()


def test_augmented_image_matches_augmented_crop_camera(synthetic_file, body):
    """The body in the augmented crop sits where the mesh projects through crop_K with the
    augmented (and mirrored) SMPL parameters."""
    ds = TrainingDataset([synthetic_file], augment=None)
    params = AugmentParams(True, np.array([12.0, 0.0, -16.0]), np.array([1.2, 0.85, 1.0]), np.ones((3, 3)))
    item = ds.get(0, 1, params)
    raw = ds.sources[0].read_bundle(1)
    # Mesh of the flipped pose under each view's augmented root, placed by the pelvis joint.
    pose = item["smpl_body_pose"][None].expand(3, 23, 3, 3)
    out = body(pose, item["smpl_betas"][None].expand(3, 10), item["smpl_global_orient"], keypoints="h36m17")
    shift = item["joints_3d"][:, :1, :3] - out.keypoints[:, :1]
    verts = out.vertices + shift
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    grey = round(0.5 * 255)
    for v in range(3):
        rgb = ((item["images"][v] * std + mean) * 255).round().permute(1, 2, 0).numpy()
        # Body: not the plain background, and not the black fill where the crop leaves the image.
        seen = (np.abs(rgb - grey) > 12).any(-1) & (rgb > 4).any(-1)
        ref = _silhouette(perspective_projection(verts[v].double(), item["crop_K"][v].double()).numpy(), body.faces)
        iou = (seen & ref).sum() / (seen | ref).sum()
        assert iou > 0.9, (v, iou)
    # The mirrored joints agree with the flipped pose's joints (the free template is symmetric).
    kp_model = out.keypoints + shift
    err = (kp_model - item["joints_3d"][..., :3]).norm(dim=-1)
    assert err.max() < 0.005, err.max()
    assert bool(item["has_smpl"]) and raw["has_smpl"]


def test_flip_swaps_left_and_right(synthetic_file):
    ds = TrainingDataset([synthetic_file], augment=None)
    plain = ds.get(0, 0, AugmentParams(False, np.zeros(3), np.ones(3), np.ones((3, 3))))
    flipped = ds.get(0, 0, AugmentParams(True, np.zeros(3), np.ones(3), np.ones((3, 3))))
    for left in ("left_wrist", "left_knee", "left_shoulder", "left_ankle"):
        right = "right" + left[4:]
        li, ri = H36M.index(left), H36M.index(right)
        # 2D: the flipped image's left wrist is the mirror of the original right wrist.
        expected = plain["keypoints_2d"][:, ri].clone()
        expected[:, 0] = 224.0 - expected[:, 0]
        torch.testing.assert_close(flipped["keypoints_2d"][:, li], expected, atol=1e-4, rtol=0)
        # 3D: the same in every camera frame, x mirrored.
        torch.testing.assert_close(flipped["joints_3d"][:, li], plain["joints_3d"][:, ri] * torch.tensor([-1.0, 1, 1, 1]),
                                   atol=1e-5, rtol=0)
    centre = H36M.index("spine")
    torch.testing.assert_close(flipped["joints_3d"][:, centre, 1:], plain["joints_3d"][:, centre, 1:], atol=1e-5, rtol=0)
    # The flipped image is the mirrored image (about x = 112).
    assert torch.equal(flipped["images"][..., 1:], plain["images"][..., 1:].flip(-1))
    # SMPL: the body pose is mirrored (left and right joints swapped, y/z axis-angle negated).
    np.testing.assert_allclose(flipped["smpl_body_pose"].numpy(), flip_smpl_pose(plain["smpl_body_pose"].numpy()),
                               atol=1e-6)
    assert bool(flipped["flip"]) and not bool(plain["flip"])


def test_default_mix_and_augmented_items(synthetic_file, tmp_path):
    """One item through the random path: shapes, dtypes, shared flip, conventions."""
    ds = TrainingDataset([synthetic_file], epoch_size=8, seed=3)
    item = ds[5]
    assert item["images"].shape == (3, 3, 224, 224) and item["images"].dtype == torch.float32
    assert item["smpl_global_orient"].shape == (3, 3, 3) and item["smpl_body_pose"].shape == (23, 3, 3)
    assert item["flip"].shape == () and item["rotation_deg"].shape == (3,)
    R = item["smpl_global_orient"].double()
    torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(3, 3, 3),
                               atol=1e-5, rtol=0)
    assert torch.allclose(torch.det(R), torch.ones(3, dtype=torch.float64), atol=1e-5)
    err = (_project(item) - item["keypoints_2d"][..., :2]).norm(dim=-1)[item["keypoints_2d"][..., 2] > 0]
    assert err.max() < 1.0
    again = TrainingDataset([synthetic_file], epoch_size=8, seed=3)[5]
    assert torch.equal(item["images"], again["images"]) and torch.equal(item["keypoints_2d"], again["keypoints_2d"])


# --- sampling, mixing, workers ------------------------------------------------------------------


def test_ratio_sampling_by_dataset_defaults_and_explicit(tmp_path):
    h36m = write_fabricated(tmp_path / "h36m.h5", dataset="h36m", num_bundles=7, seed=1)
    mpi = write_fabricated(tmp_path / "mpi.h5", dataset="mpi_inf_3dhp", num_bundles=4, seed=2,
                           keypoint_set="mpi_inf_3dhp17")
    ds = TrainingDataset([h36m, mpi], epoch_size=1000, augment=None, seed=5)
    np.testing.assert_allclose(ds.ratios, [0.9, 0.1])  # MV-SPIN's mix by dataset name
    src, idx = ds.plan()
    assert np.bincount(src).tolist() == [900, 100]
    # Within a source, bundles are drawn evenly (permutations, repeated).
    assert np.bincount(idx[src == 0], minlength=7).min() >= 900 // 7
    assert np.bincount(idx[src == 1], minlength=4).tolist() == [25, 25, 25, 25]
    assert ds.keypoint_set == "h36m17"  # the first file's set; MPI's 17 joints map onto it
    assert np.array_equal(TrainingDataset([h36m, mpi], epoch_size=1000, seed=5).plan()[1], idx)
    ds.set_epoch(1)
    assert not np.array_equal(ds.plan()[1], idx)
    explicit = TrainingDataset([h36m, mpi], [1.0, 3.0], epoch_size=10, augment=None)
    assert np.bincount(explicit.plan()[0]).tolist() == [3, 7] or np.bincount(explicit.plan()[0]).tolist() == [2, 8]
    seq = TrainingDataset([h36m, mpi], augment=None, sequential=True)
    assert len(seq) == 11 and seq.plan()[0].tolist() == [0] * 7 + [1] * 4 and seq.plan()[1].tolist()[-4:] == [0, 1, 2, 3]
    other = write_fabricated(tmp_path / "other.h5", dataset="synthetic", num_bundles=2, seed=3)
    np.testing.assert_allclose(TrainingDataset([h36m, other], augment=None).ratios, [7 / 9, 2 / 9])  # by size


def test_keypoints_of_another_set_are_mapped_by_anatomical_point(tmp_path):
    mpi = write_fabricated(tmp_path / "mpi.h5", dataset="mpi_inf_3dhp", num_bundles=2, keypoint_set="mpi_inf_3dhp17")
    ds = TrainingDataset([mpi], augment=None, keypoint_set="h36m17", joints_3d_set="h36m17")
    native = TrainingDataset([mpi], augment=None)
    a, b = ds.get(0, 1), native.get(0, 1)
    mpi_set = get_keypoint_set("mpi_inf_3dhp17")
    # MPI-INF-3DHP's head_top is placed at the Human3.6M head point: the same keypoint.
    torch.testing.assert_close(a["keypoints_2d"][:, H36M.index("head")], b["keypoints_2d"][:, mpi_set.index("head_top")])
    torch.testing.assert_close(a["joints_3d"][:, H36M.index("left_knee")], b["joints_3d"][:, mpi_set.index("left_knee")])
    assert (a["keypoints_2d"][..., 2] > 0).all()


def test_fabricated_files_keep_joints_and_keypoints_consistent(tmp_path):
    """World joints, and view-0-camera joints with cameras, both give < 1 px after augmentation."""
    for frame in ("world", "view0_camera"):
        path = write_fabricated(tmp_path / f"{frame}.h5", num_bundles=2, frame=frame, seed=4)
        ds = TrainingDataset([path], epoch_size=6, seed=1, augment=AugmentConfig(flip_prob=0.5, rotation_zero_prob=0.0))
        for i in range(6):
            item = ds[i]
            err = (_project(item) - item["keypoints_2d"][..., :2]).norm(dim=-1)
            assert err.max() < 1e-3, (frame, i, err.max())
        assert not item["has_smpl"] and item["has_camera"]


def test_view0_camera_joints_without_cameras_are_known_in_view_0_only(tmp_path):
    path = write_fabricated(tmp_path / "nocam.h5", num_bundles=1, frame="view0_camera", cameras=False)
    item = TrainingDataset([path], augment=None).get(0, 0)
    assert (item["joints_3d"][0, :, 3] == 1).all() and (item["joints_3d"][1:, :, 3] == 0).all()
    assert not item["has_camera"] and (item["crop_K"] == 0).all()


def test_loader_batches_do_not_depend_on_workers(tmp_path):
    path = write_fabricated(tmp_path / "f.h5", num_bundles=5, seed=9)
    config = load_config(DataConfig, overrides=[f"files=[{path}]", "epoch_size=6", "seed=2", "augment.flip_prob=0.7"])
    ds = TrainingDataset.from_config(config)
    assert ds.augment.flip_prob == 0.7 and len(ds) == 6
    batches = {}
    for workers in (0, 2):
        ds.set_epoch(3)
        batches[workers] = list(make_loader(ds, batch_size=3, num_workers=workers, seed=2))
    assert len(batches[0]) == 2
    b0, b2 = batches[0][1], batches[2][1]
    assert b0["images"].shape == (3, 3, 3, 224, 224) and b0["keypoints_2d"].shape == (3, 3, 17, 3)
    for key in b0:
        assert torch.equal(b0[key], b2[key]), key


# --- bad input ---------------------------------------------------------------------------------


def test_bad_inputs_give_clear_errors(tmp_path):
    three = write_fabricated(tmp_path / "three.h5", num_views=3, num_bundles=1)
    two = write_fabricated(tmp_path / "two.h5", num_views=2, num_bundles=1)
    with pytest.raises(ValueError, match=r"different camera counts: .*three.h5 has 3 views .*two.h5 has 2"):
        TrainingDataset([three, two])
    truncated = tmp_path / "truncated.h5"
    shutil.copy(three, truncated)
    with open(truncated, "r+b") as f:
        f.truncate(truncated.stat().st_size // 2)
    with pytest.raises(BundleFormatError, match="truncated.h5"):
        TrainingDataset([truncated])
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        TrainingDataset([tmp_path / "missing.h5"])
    with pytest.raises(ValueError, match="2 ratios for 1 bundle files"):
        TrainingDataset([three], [0.5, 0.5])
    with pytest.raises(ValueError, match="ratios must be non-negative"):
        TrainingDataset([three, three], [0.0, 0.0])
    with pytest.raises(ValueError, match="at least one bundle file"):
        TrainingDataset([])
    with pytest.raises(IndexError):
        TrainingDataset([three])[5]
