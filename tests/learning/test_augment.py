"""Augmentation maths: crops, crop cameras, left/right flips of keypoints and SMPL poses."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from mvspin.body.keypoint_sets import SMPL_JOINT_NAMES, SMPL_PARENTS, get_keypoint_set
from mvspin.learning.augment import (
    MIRROR,
    AugmentConfig,
    augment_global_orient,
    augmented_crop_transform,
    augmented_intrinsics,
    camera_augmentation_matrix,
    crop_and_augment,
    flip_smpl_pose,
    no_augmentation,
    normalize_keypoints,
    sample_augmentation,
    swap_left_right,
    transform_keypoints,
)
from mvspin.regressor.preprocess import crop_image


def _rotation(rng: np.random.Generator) -> np.ndarray:
    R, _ = cv2.Rodrigues(rng.normal(size=3))
    return R


def _blob_image(points: np.ndarray, shape=(480, 640), sigma=3.0) -> np.ndarray:
    """One Gaussian dot per channel at sub-pixel positions (pixel centres at integers)."""
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    image = np.zeros((*shape, 3), np.uint8)
    for channel, (x, y) in enumerate(points):
        image[..., channel] = np.round(255 * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma ** 2)))
    return image


def _centroids(crop: np.ndarray) -> np.ndarray:
    ys, xs = np.mgrid[0:crop.shape[0], 0:crop.shape[1]].astype(np.float64)
    w = crop.astype(np.float64)
    return np.array([[(w[..., c] * xs).sum() / w[..., c].sum(), (w[..., c] * ys).sum() / w[..., c].sum()]
                     for c in range(3)])


@pytest.mark.parametrize("rotation", [0.0, 17.0, -35.0])
def test_transform_matches_crop_image_and_flip_mirrors_about_the_crop_centre(rotation):
    center, scale = np.array([301.2, 188.7]), 1.6
    _, M = crop_image(np.zeros((400, 600, 3), np.uint8), center, scale * 1.1, rotation=rotation)
    A = augmented_crop_transform(center, scale, rotation, 1.1, flip=False)
    np.testing.assert_allclose(A[:2], M, atol=1e-12)
    Af = augmented_crop_transform(center, scale, rotation, 1.1, flip=True)
    p = np.array([[250.0, 170.0], [center[0], center[1]]])
    q, qf = transform_keypoints(np.c_[p, np.ones(2)], A), transform_keypoints(np.c_[p, np.ones(2)], Af)
    np.testing.assert_allclose(qf[:, 0], 224.0 - q[:, 0], atol=1e-9)
    np.testing.assert_allclose(qf[:, 1], q[:, 1], atol=1e-9)
    np.testing.assert_allclose(qf[1, :2], [112.0, 112.0], atol=1e-9)  # box centre stays on the principal point


@pytest.mark.parametrize("rotation, factor, flip", [(0.0, 1.0, True), (14.0, 0.8, False), (-20.0, 1.25, True)])
def test_crop_pixels_follow_transformed_keypoints(rotation, factor, flip):
    """The augmented crop shows each blob where the augmented keypoint says (sub-pixel)."""
    points = np.array([[280.3, 200.6], [330.8, 241.2], [305.5, 170.1]])
    image = _blob_image(points)
    center, scale = np.array([305.0, 205.0]), 1.3
    crop, A = crop_and_augment(image, center, scale, rotation, factor, flip)
    np.testing.assert_allclose(A, augmented_crop_transform(center, scale, rotation, factor, flip), atol=1e-12)
    expected = transform_keypoints(np.c_[points, np.ones(3)], A)[:, :2]
    np.testing.assert_allclose(_centroids(crop), expected, atol=0.1)


def test_augmented_crop_camera_projects_augmented_points_exactly():
    """A K X (augmented pixels) == K_aug M X for a non-square-pixel camera, with rotation and flip."""
    rng = np.random.default_rng(3)
    K = np.array([[1150.0, 0.0, 512.3], [0.0, 1142.0, 498.1], [0.0, 0.0, 1.0]])
    R, t = _rotation(rng), np.array([0.1, -0.2, 4.5])
    world = rng.normal(scale=0.5, size=(20, 3))
    cam = world @ R.T + t
    uv, _ = cv2.projectPoints(world, cv2.Rodrigues(R)[0], t, K, np.zeros(5))  # independent reference
    for rotation, flip in [(0.0, False), (12.5, False), (-18.0, True), (0.0, True)]:
        A = augmented_crop_transform([520.0, 480.0], 5.1, rotation, 0.9, flip)
        M = camera_augmentation_matrix(rotation, flip)
        assert np.isclose(np.linalg.det(M), -1.0 if flip else 1.0)
        K_aug = augmented_intrinsics(K, A, M)
        target = transform_keypoints(np.c_[uv.reshape(-1, 2), np.ones(20)], A)[:, :2]
        proj = (cam @ M.T) @ K_aug.T
        np.testing.assert_allclose(proj[:, :2] / proj[:, 2:], target, atol=1e-6)
        np.testing.assert_allclose(K_aug[2], [0, 0, 1], atol=1e-12)


def test_swap_left_right_swaps_named_keypoints():
    coco = get_keypoint_set("coco17")
    kp = np.arange(17 * 3, dtype=float).reshape(17, 3)
    out = swap_left_right(kp, "coco17")
    np.testing.assert_array_equal(out[coco.index("left_wrist")], kp[coco.index("right_wrist")])
    np.testing.assert_array_equal(out[coco.index("right_ear")], kp[coco.index("left_ear")])
    np.testing.assert_array_equal(out[coco.index("nose")], kp[coco.index("nose")])
    np.testing.assert_array_equal(swap_left_right(out, "coco17"), kp)
    with pytest.raises(ValueError, match="coco17 has 17 keypoints"):
        swap_left_right(kp[:5], "coco17")


def test_flip_smpl_pose_layouts_agree_and_are_involutions():
    rng = np.random.default_rng(0)
    aa = rng.normal(scale=0.4, size=72)
    flipped = flip_smpl_pose(aa)
    np.testing.assert_allclose(flip_smpl_pose(flipped), aa)
    left_hip, right_hip = SMPL_JOINT_NAMES.index("left_hip"), SMPL_JOINT_NAMES.index("right_hip")
    np.testing.assert_allclose(flipped[3 * left_hip:3 * left_hip + 3], aa[3 * right_hip:3 * right_hip + 3] * [1, -1, -1])
    np.testing.assert_allclose(flip_smpl_pose(aa[3:]), flipped[3:])  # body pose only
    mats = np.stack([cv2.Rodrigues(v)[0] for v in aa.reshape(24, 3)])
    np.testing.assert_allclose(flip_smpl_pose(mats), np.stack([cv2.Rodrigues(v)[0] for v in flipped.reshape(24, 3)]),
                               atol=1e-12)
    np.testing.assert_allclose(flip_smpl_pose(mats[1:]), flip_smpl_pose(mats)[1:])
    with pytest.raises(ValueError, match="expected axis-angle"):
        flip_smpl_pose(np.zeros(70))


def _symmetric_rest_joints(rng: np.random.Generator) -> np.ndarray:
    """SMPL-tree rest joints mirror-symmetric about x = 0 (left joints at +x)."""
    joints = np.zeros((24, 3))
    for j, name in enumerate(SMPL_JOINT_NAMES):
        if name.startswith("right_"):
            continue
        p = rng.normal(scale=0.3, size=3)
        if name.startswith("left_"):
            p[0] = abs(p[0]) + 0.05
            joints[SMPL_JOINT_NAMES.index("right_" + name[5:])] = p * [-1, 1, 1]
        else:
            p[0] = 0.0
        joints[j] = p
    return joints


def _forward_kinematics(root: np.ndarray, local: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """Posed joint positions (24, 3), pelvis at the origin: independent of mvspin.body."""
    rot, pos = [root], [np.zeros(3)]
    for j in range(1, 24):
        p = SMPL_PARENTS[j]
        pos.append(pos[p] + rot[p] @ (rest[j] - rest[p]))
        rot.append(rot[p] @ local[j - 1])
    return np.stack(pos)


@pytest.mark.parametrize("rotation", [0.0, 16.0])
def test_flipped_pose_and_orientation_reproduce_the_mirrored_body(rotation):
    """Mirror the camera-frame skeleton; the flipped pose under the augmented root gives it back,
    with the subject's left and right swapped."""
    rng = np.random.default_rng(7)
    rest = _symmetric_rest_joints(rng)
    local = np.stack([_rotation(rng) for _ in range(23)])
    root_cam = _rotation(rng)
    joints = _forward_kinematics(root_cam, local, rest)
    M = camera_augmentation_matrix(rotation, flip=True)
    mirrored = swap_left_right(joints @ M.T, "smpl24")
    rebuilt = _forward_kinematics(augment_global_orient(root_cam, M, True), flip_smpl_pose(local), rest)
    np.testing.assert_allclose(rebuilt, mirrored, atol=1e-12)
    # Without a flip the rotation alone just turns the body.
    M0 = camera_augmentation_matrix(rotation, flip=False)
    np.testing.assert_allclose(_forward_kinematics(augment_global_orient(root_cam, M0, False), local, rest),
                               joints @ M0.T, atol=1e-12)
    assert np.allclose(MIRROR @ MIRROR, np.eye(3))


def test_sampling_follows_the_configured_distributions():
    rng = np.random.default_rng(0)
    samples = [sample_augmentation(4, rng) for _ in range(3000)]
    flips = np.array([s.flip for s in samples])
    rot = np.concatenate([s.rotation_deg for s in samples])
    scale = np.concatenate([s.scale_factor for s in samples])
    gain = np.concatenate([s.channel_gain for s in samples])
    assert abs(flips.mean() - 0.5) < 0.03
    assert abs((rot == 0).mean() - 0.6) < 0.02  # a drawn N(0, 10) is never exactly 0
    # N(0, 10) clipped at +-2 sigma has std 10 * sqrt(0.9205) = 9.59 degrees.
    assert np.abs(rot).max() <= 20.0 and abs(np.std(rot[rot != 0]) - 9.59) < 0.4
    assert scale.min() >= 0.75 and scale.max() <= 1.25 and abs(scale.mean() - 1.0) < 0.01
    assert gain.min() >= 0.6 and gain.max() <= 1.4 and abs(gain.mean() - 1.0) < 0.01
    a, b = sample_augmentation(3, np.random.default_rng(5)), sample_augmentation(3, np.random.default_rng(5))
    assert a.flip == b.flip and np.array_equal(a.rotation_deg, b.rotation_deg)
    ident = no_augmentation(2)
    assert not ident.flip and np.all(ident.scale_factor == 1) and np.all(ident.channel_gain == 1)
    off = sample_augmentation(2, rng, AugmentConfig(flip_prob=0, noise_factor=0, rotation_zero_prob=1, scale_std=0))
    assert not off.flip and np.all(off.rotation_deg == 0) and np.all(off.scale_factor == 1)
    with pytest.raises(ValueError, match="flip_prob"):
        AugmentConfig(flip_prob=1.5)


def test_channel_gains_and_normalised_keypoints():
    image = np.full((300, 300, 3), 100, np.uint8)
    crop, _ = crop_and_augment(image, np.array([150.0, 150.0]), 1.0, gain=np.array([0.5, 1.0, 3.0]))
    assert tuple(crop[100, 100]) == (50, 100, 255)
    kp = np.array([[0.0, 224.0, 1.0], [112.0, 56.0, 0.5]])
    np.testing.assert_allclose(normalize_keypoints(kp), [[-1.0, 1.0, 1.0], [0.0, -0.5, 0.5]])
