"""Training losses against hand-computed values; masked terms ignore invalid crops."""
from __future__ import annotations

import math

import torch

from mvspin.body.keypoint_sets import get_keypoint_set
from mvspin.geometry import crop_cam_to_translation
from mvspin.learning.train_config import LossWeights
from mvspin.learning.training_losses import LossInputs, centre_index, training_losses

K = len(get_keypoint_set("h36m17"))


def _inputs(n=2, crop=64):
    torch.manual_seed(0)
    eye = torch.eye(3).expand(n, 24, 3, 3).clone()
    cam = torch.tensor([[0.9, 0.0, 0.0]]).expand(n, 3).clone()
    kp3 = torch.zeros(n, K, 3)
    kp3[:, :, 0] = torch.linspace(-0.5, 0.5, K)
    # Targets where the network's projection lands exactly: x = f X / tz + c = X * crop * s / 2 + c.
    t = crop_cam_to_translation(cam, 5000.0, crop)
    u = 5000.0 * kp3[..., 0] / t[:, 2:3] + crop / 2
    kp2 = torch.stack([u, torch.full_like(u, crop / 2), torch.ones_like(u)], -1)
    joints = torch.cat([kp3, torch.ones(n, K, 1)], -1)
    return LossInputs(pred_keypoints_2d_3d=kp3, pred_joints_3d=kp3.clone(), pred_rotmat=eye, pred_betas=torch.zeros(n, 10),
                      pred_cam=cam, pred_vertices=torch.zeros(n, 5, 3), keypoints_2d=kp2, joints_3d=joints,
                      target_rotmat=eye.clone(), target_betas=torch.zeros(n, 10), target_vertices=torch.zeros(n, 5, 3),
                      target_valid=torch.ones(n))


def test_perfect_predictions_cost_only_the_camera_penalty():
    total, terms = training_losses(_inputs(), LossWeights(), 64, "h36m17")
    for k in ("keypoints_2d", "keypoints_3d", "pose", "betas", "mesh"):
        assert float(terms[k]) < 1e-10, k
    assert math.isclose(float(terms["camera"]), math.exp(-18.0), rel_tol=1e-5)
    assert math.isclose(float(total), 60.0 * math.exp(-18.0), rel_tol=1e-4)


def test_terms_equal_hand_computed_values():
    x = _inputs()
    x.keypoints_2d[0, :, 0] += 3.2  # 3.2 px = 0.1 in [-1, 1] coordinates of a 64 px crop
    x.keypoints_2d[1, :, 2] = 0.5  # half confidence on crop 1, unchanged targets
    x.joints_3d[0, :, 1] += 0.2  # a shift: removed by centring on the hips
    x.joints_3d[0, 3, 2] += 0.3  # one joint 0.3 m off
    x.target_betas[0] += 1.0
    x.target_valid[1] = 0.0  # crop 1's target is rejected: its betas error must not count
    x.target_betas[1] += 100.0
    x.target_vertices[0] += 0.1
    w = LossWeights()
    total, terms = training_losses(x, w, 64, "h36m17")
    assert math.isclose(float(terms["keypoints_2d"]), 0.1 ** 2 / 4, rel_tol=1e-4)  # 1 of 2 crops x 2 coords
    assert math.isclose(float(terms["keypoints_3d"]), 0.3 ** 2 / (2 * K * 3), rel_tol=1e-4)
    assert math.isclose(float(terms["betas"]), 1.0, rel_tol=1e-6)  # only the valid crop
    assert math.isclose(float(terms["mesh"]), 0.01, rel_tol=1e-5)
    expected = w.scale * (w.keypoints_2d * 0.1 ** 2 / 4 + w.keypoints_3d * 0.3 ** 2 / (2 * K * 3) + w.betas * 1.0
                          + w.mesh * 0.01 + w.camera * math.exp(-18.0))
    assert math.isclose(float(total), expected, rel_tol=1e-4)


def test_centring_uses_the_hips_or_the_pelvis():
    names = get_keypoint_set("h36m17").names
    assert [names[i] for i in centre_index("h36m17")] == ["left_hip", "right_hip"]
