"""Synthetic keypoint captures: geometry, corruption statistics, crop frames, determinism."""
import numpy as np
import pytest
import torch

from mvspin.body import BodyModel
from mvspin.data.synthetic_keypoints import (
    PELVIS_HEIGHT,
    SyntheticOptions,
    make_capture,
    random_rig,
    sample_bodies,
    smooth_motion,
)
from mvspin.geometry import axis_angle_to_matrix, crop_intrinsics, perspective_projection


@pytest.fixture(scope="module")
def body():
    return BodyModel.free("low")


@pytest.fixture(scope="module")
def bodies(body):
    return sample_bodies(body, 6, torch.Generator().manual_seed(3))


def test_random_rig_surrounds_and_sees_the_subject():
    rig = random_rig(4, np.random.default_rng(0))
    centres = np.stack([c.center for c in rig])
    dist = np.linalg.norm(centres[:, [0, 2]], axis=1)
    assert np.all((dist > 3.4) & (dist < 5.1))
    az = np.sort(np.degrees(np.arctan2(centres[:, 0], centres[:, 2])) % 360)
    gaps = np.diff(np.concatenate([az, az[:1] + 360]))
    assert gaps.min() > 45.0  # evenly spread +-20 degrees
    px = rig.project(np.array([[0.0, PELVIS_HEIGHT, 0.0]]))[:, 0]
    assert np.all(np.abs(px - 499.5) < 80)  # the subject is near the image centre


def test_capture_noise_drops_and_projection(body, bodies):
    opts = SyntheticOptions(noise_px=2.0, drop_rate=0.1)
    cap = make_capture(body, bodies, 4, seed=5, options=opts)
    b, v, k = cap.keypoints.shape[:3]
    assert (b, v, k) == (6, 4, 25)
    conf = cap.keypoints[..., 2]
    visible = cap.keypoints_clean[..., 2] > 0
    assert visible.float().mean() > 0.99
    kept = float(conf[visible].mean())
    assert 0.86 < kept < 0.94  # 10% dropped
    assert torch.all(cap.keypoints[..., :2][conf == 0] == 0)
    res = (cap.keypoints[..., :2] - cap.keypoints_clean[..., :2])[conf > 0]
    assert float(res.std()) == pytest.approx(2.0, rel=0.1)
    # the clean keypoints are the body's keypoints through each camera (independent numpy path)
    orient = axis_angle_to_matrix(bodies.global_orient)
    world = body.keypoints("openpose25", bodies.body_pose, bodies.betas, orient, bodies.transl)
    ref = cap.rigs[2].project(world[2].detach().numpy())
    np.testing.assert_allclose(cap.keypoints_clean[2, :, :, :2].numpy(), ref, atol=1e-3)


def test_crop_frame_ground_truth_reproduces_crop_keypoints(body, bodies):
    cap = make_capture(body, bodies, 3, seed=2, options=SyntheticOptions(noise_px=0.0, drop_rate=0.0))
    kp = body.keypoints_multiview("openpose25", bodies.body_pose, bodies.betas, cap.crop_orient, cap.crop_transl)
    crop_px = perspective_projection(kp, crop_intrinsics())
    err = (crop_px - cap.crop_keypoints[..., :2]).norm(dim=-1)
    # SPIN's crop camera is nearly orthographic, the real one is not: a few crop pixels apart
    assert float(err.mean()) < 3.0 and float(err.max()) < 20.0
    pelvis = crop_px[..., 8, :]  # mid_hip sits on the pelvis, which the crop frame keeps exact
    # exact up to the tilt between the crop camera's image plane and the real one
    torch.testing.assert_close(pelvis, cap.crop_keypoints[..., 8, :2], atol=0.25, rtol=0)
    scale, center = cap.crop_scale, cap.crop_center
    assert torch.all((scale * 200 > 300) & (scale * 200 < 800))
    assert torch.all((center > 200) & (center < 800))


def test_estimates_are_noisy_truth(body, bodies):
    cap = make_capture(body, bodies, 4, seed=4, options=SyntheticOptions(estimate_pose_deg=8.0))
    gt = axis_angle_to_matrix(bodies.body_pose.view(-1, 23, 3))[:, None]
    rel = gt.transpose(-1, -2) @ cap.estimate.rotmat[:, :, 1:]
    angle = torch.rad2deg(torch.arccos(((rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)))
    assert 10.0 < float(angle.mean()) < 16.0  # per-axis 8 deg: mean angle 8 * 1.6
    assert cap.estimate.cam.shape == (6, 4, 3) and torch.all(cap.estimate.cam[..., 0] > 0)


def test_outlier_views_hold_another_person(body, bodies):
    cap = make_capture(body, bodies, 4, seed=6, options=SyntheticOptions(outlier_views=1))
    assert cap.outlier_views.sum(1).tolist() == [1] * 6
    mask = cap.outlier_views
    moved = (cap.keypoints[..., :2] - cap.keypoints_clean[..., :2]).norm(dim=-1)
    both = (cap.keypoints[..., 2] > 0) & (cap.keypoints_clean[..., 2] > 0)
    assert float(moved[mask][both[mask]].median()) > 100.0
    assert float(moved[~mask][both[~mask]].median()) < 5.0


def test_determinism_and_smooth_motion(body, bodies):
    a = make_capture(body, bodies, 2, seed=9)
    b = make_capture(body, bodies, 2, seed=9)
    torch.testing.assert_close(a.keypoints, b.keypoints, rtol=0, atol=0)
    motion = smooth_motion(body, 30, torch.Generator().manual_seed(0))
    assert len(motion) == 30 and torch.all(motion.betas == motion.betas[0])
    step = (motion.body_pose[1:] - motion.body_pose[:-1]).abs().amax(1)
    assert float(step.max()) < 0.35  # radians per frame: smooth
    root = motion.transl + 0  # pelvis path: moves, but little per frame
    assert 0.02 < float((root[1:] - root[:-1]).norm(dim=1).max()) < 0.1
