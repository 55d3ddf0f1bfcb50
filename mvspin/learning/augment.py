"""Training augmentation of multi-view bundles: the maths that keeps images, 2D keypoints, crop
cameras and 3D targets consistent.

One augmentation of a bundle (:class:`AugmentParams`) is a horizontal **flip shared by all views**
(it swaps the subject's left and right, so every view of a bundle must agree) and, per view, an
in-plane **rotation**, a crop **scale** factor and per-channel colour **gains** (SPIN's "pn"
noise). Defaults (:class:`AugmentConfig`) are MV-SPIN's: flip p=0.5, gains U[0.6, 1.4],
rotation N(0, 10 deg) clipped to +-20 deg and zero with p=0.6, scale N(1, 0.25) clipped to
[0.75, 1.25], as in the published MV-SPIN code (https://github.com/leezhongguo/MVSPIN_NEW), after
SPIN's (https://github.com/nkolot/SPIN).

Geometry. Every per-view augmentation is one affine map of image pixels to augmented crop pixels
(:func:`augmented_crop_transform`)::

    A = Flip @ Rot @ Crop(center, scale * scale_factor)

``Crop`` is SPIN's box -> ``crop_size`` map (:func:`mvspin.geometry.image_to_crop_transform`, box
centre -> crop centre ``c = crop_size / 2``), ``Rot`` turns the content counter-clockwise as
displayed by ``rotation_deg`` about ``c`` (``cv2.getRotationMatrix2D``, as SPIN and
:func:`mvspin.regressor.preprocess.crop_image`), ``Flip`` mirrors about the vertical line ``x = c``.
Mirroring about ``c`` (not about the pixel grid's middle ``(crop_size - 1) / 2`` as ``cv2.flip``
does) keeps the box centre on SPIN's crop-camera principal point ``(112, 112)`` in every
augmented crop.

The same augmentation acts on 3D camera-frame points as the orthogonal matrix
(:func:`camera_augmentation_matrix`)::

    M = F @ Rz,   Rz = [[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]],   F = diag(-1, 1, 1) if flip

(an image rotation about any point equals a camera rotation about its optical axis plus a
principal-point move; a mirror of the image equals mirroring x in the camera frame). For a
camera with intrinsics ``K`` (image pixels), the **augmented crop camera**
``K_aug = A @ K @ M.T`` (:func:`augmented_intrinsics`) projects the augmented 3D points
``M @ X_cam`` exactly onto the augmented crop pixels ``A @ (K @ X_cam)`` -- for any ``K``
(``K_aug`` may have a skew term when ``fx != fy``; :func:`mvspin.geometry.perspective_projection`
applies it). Under a flip the body is mirrored too: keypoints swap left and right
(:func:`swap_left_right`), and SMPL parameters are mirrored (:func:`flip_smpl_pose`: joints
permuted left <-> right, axis-angle ``(x, y, z) -> (x, -y, -z)``; a camera-frame global orientation
becomes ``M @ R @ F`` (:func:`augment_global_orient`).

Conventions: pixels with pixel centres at integer coordinates (OpenCV), OpenCV camera axes,
rotation matrices inside, axis-angle only where SMPL files use it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import cv2
import numpy as np
import torch

from mvspin.body.keypoint_sets import get_keypoint_set
from mvspin.geometry import SPIN_CROP_SIZE, SPIN_SCALE_UNIT, image_to_crop_transform
from mvspin.regressor.preprocess import crop_image

__all__ = [
    "AugmentConfig",
    "AugmentParams",
    "sample_augmentation",
    "no_augmentation",
    "augmented_crop_transform",
    "camera_augmentation_matrix",
    "augmented_intrinsics",
    "transform_keypoints",
    "swap_left_right",
    "flip_smpl_pose",
    "augment_global_orient",
    "apply_channel_gains",
    "crop_and_augment",
    "normalize_keypoints",
    "MIRROR",
]

MIRROR = np.diag([-1.0, 1.0, 1.0])
"""Mirror of the camera x axis (and of SMPL's body x axis, the body's left-right axis)."""


@dataclass
class AugmentConfig:
    """Augmentation strengths. Defaults: MV-SPIN paper section 3 / SPIN's ``rgb``, ``rot``, ``sc``.

    Attributes:
        flip_prob: probability of a horizontal flip, shared by all views (MV-SPIN: 0.5).
        noise_factor: channel gains ~ U[1 - f, 1 + f] per view and channel (SPIN/MV-SPIN: 0.4).
        rotation_std_deg: std of the in-plane rotation, degrees (MV-SPIN: 10).
        rotation_max_deg: rotation clipped to +-this (MV-SPIN: 20, i.e. 2 std as SPIN).
        rotation_zero_prob: probability that a view is not rotated (SPIN/MV-SPIN: 0.6).
        scale_std: std of the crop-size factor around 1 (SPIN/MV-SPIN: 0.25).
        scale_max_dev: factor clipped to [1 - d, 1 + d] (SPIN/MV-SPIN: 0.25).
    """

    flip_prob: float = 0.5
    noise_factor: float = 0.4
    rotation_std_deg: float = 10.0
    rotation_max_deg: float = 20.0
    rotation_zero_prob: float = 0.6
    scale_std: float = 0.25
    scale_max_dev: float = 0.25

    def __post_init__(self) -> None:
        for name in ("flip_prob", "rotation_zero_prob"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"AugmentConfig.{name} must be a probability in [0, 1], got {p}")
        for name in ("noise_factor", "rotation_std_deg", "rotation_max_deg", "scale_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"AugmentConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.scale_max_dev < 1.0:
            raise ValueError(f"AugmentConfig.scale_max_dev must be in [0, 1), got {self.scale_max_dev}")
        if self.noise_factor >= 1.0:
            raise ValueError(f"AugmentConfig.noise_factor must be < 1 (gains stay positive), got {self.noise_factor}")


@dataclass
class AugmentParams:
    """One bundle's augmentation.

    Attributes:
        flip: mirror every view (shared: a flip swaps the subject's left and right).
        rotation_deg: ``(V,)`` in-plane rotation per view, degrees, counter-clockwise as displayed.
        scale_factor: ``(V,)`` crop-box size factor per view (> 1 zooms out).
        channel_gain: ``(V, 3)`` RGB gains per view.
    """

    flip: bool
    rotation_deg: np.ndarray
    scale_factor: np.ndarray
    channel_gain: np.ndarray

    @property
    def num_views(self) -> int:
        return int(self.rotation_deg.shape[0])


def sample_augmentation(num_views: int, rng: np.random.Generator,
                        config: Optional[AugmentConfig] = None) -> AugmentParams:
    """Draw one bundle's augmentation: a shared flip, per-view rotation, scale and channel gains.

    Args:
        num_views: V.
        rng: numpy generator (the caller seeds it, e.g. from (seed, epoch, item)).
        config: strengths (default :class:`AugmentConfig`, MV-SPIN's values).
    """
    cfg = config or AugmentConfig()
    if num_views < 1:
        raise ValueError(f"num_views must be >= 1, got {num_views}")
    flip = bool(rng.uniform() < cfg.flip_prob)
    gain = rng.uniform(1.0 - cfg.noise_factor, 1.0 + cfg.noise_factor, size=(num_views, 3))
    rot = np.clip(rng.normal(0.0, cfg.rotation_std_deg, size=num_views), -cfg.rotation_max_deg, cfg.rotation_max_deg)
    rot = np.where(rng.uniform(size=num_views) < cfg.rotation_zero_prob, 0.0, rot)
    scale = np.clip(rng.normal(1.0, cfg.scale_std, size=num_views), 1.0 - cfg.scale_max_dev, 1.0 + cfg.scale_max_dev)
    return AugmentParams(flip=flip, rotation_deg=rot, scale_factor=scale, channel_gain=gain)


def no_augmentation(num_views: int) -> AugmentParams:
    """The identity augmentation of V views (evaluation)."""
    return AugmentParams(flip=False, rotation_deg=np.zeros(num_views), scale_factor=np.ones(num_views),
                         channel_gain=np.ones((num_views, 3)))


# --- geometry -------------------------------------------------------------------------------


def augmented_crop_transform(center: np.ndarray | Sequence[float], scale: float, rotation_deg: float = 0.0,
                             scale_factor: float = 1.0, flip: bool = False, crop_size: int = SPIN_CROP_SIZE,
                             scale_unit: float = SPIN_SCALE_UNIT) -> np.ndarray:
    """Affine map ``(3, 3)`` (float64) from full-image pixels to augmented crop pixels.

    ``A = Flip @ Rot @ Crop(center, scale * scale_factor)`` (see the module docstring); without
    ``flip`` its top two rows equal the ``M`` returned by
    :func:`mvspin.regressor.preprocess.crop_image` for the same box and rotation.

    Args:
        center: ``(2,)`` box centre, image pixels. scale: box side / ``scale_unit``.
        rotation_deg: counter-clockwise as displayed, about the crop centre.
        scale_factor: multiplies the box side. flip: mirror about ``x = crop_size / 2``.
    """
    c = np.asarray(center, dtype=np.float64).reshape(2)
    box = image_to_crop_transform(torch.from_numpy(c), torch.tensor(float(scale) * float(scale_factor),
                                                                    dtype=torch.float64),
                                  crop_size, scale_unit).numpy()
    half = crop_size / 2.0
    rot = np.eye(3)
    rot[:2] = cv2.getRotationMatrix2D((half, half), float(rotation_deg), 1.0)
    out = rot @ box
    if flip:
        out = np.array([[-1.0, 0.0, crop_size], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) @ out
    return out


def camera_augmentation_matrix(rotation_deg: float = 0.0, flip: bool = False) -> np.ndarray:
    """Orthogonal ``(3, 3)`` map of camera-frame points for an augmentation: ``M = F @ Rz``.

    ``Rz`` rotates about the optical axis by the image rotation (same sense as
    ``cv2.getRotationMatrix2D`` in y-down pixels); ``F = diag(-1, 1, 1)`` when flipped
    (``det M = -1`` then).
    """
    a = math.radians(float(rotation_deg))
    ca, sa = math.cos(a), math.sin(a)
    m = np.array([[ca, sa, 0.0], [-sa, ca, 0.0], [0.0, 0.0, 1.0]])
    return MIRROR @ m if flip else m


def augmented_intrinsics(K: np.ndarray, crop_transform: np.ndarray, camera_matrix: np.ndarray) -> np.ndarray:
    """Intrinsics of the augmented crop camera: ``K_aug = A @ K @ M.T`` ``(..., 3, 3)``.

    Projecting ``M @ X_cam`` with ``K_aug`` gives the augmented crop pixels of a camera-frame
    point ``X_cam`` seen through ``K`` (exact; no lens distortion: undistort keypoints first).

    Args:
        K: ``(..., 3, 3)`` image intrinsics, pixels.
        crop_transform: ``(..., 3, 3)`` :func:`augmented_crop_transform`.
        camera_matrix: ``(..., 3, 3)`` :func:`camera_augmentation_matrix`.
    """
    return np.asarray(crop_transform) @ np.asarray(K) @ np.swapaxes(np.asarray(camera_matrix), -1, -2)


def transform_keypoints(keypoints: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Map ``(..., K, 3)`` keypoints (x, y, confidence) with a ``(3, 3)`` affine; confidences are
    kept, and keypoints with confidence 0 are set to (0, 0, 0)."""
    kp = np.asarray(keypoints, dtype=np.float64)
    xy = kp[..., :2] @ transform[:2, :2].T + transform[:2, 2]
    out = np.concatenate([xy, kp[..., 2:3]], axis=-1)
    out[kp[..., 2] <= 0] = 0.0
    return out


def swap_left_right(points: np.ndarray, keypoint_set: str, axis: int = -2) -> np.ndarray:
    """Reorder keypoints of a named set for a mirrored image: the subject's left becomes right.

    Only the order changes; coordinates are mirrored by the crop transform (2D) or by
    :func:`camera_augmentation_matrix` (3D).

    Args:
        points: array with the keypoint axis at ``axis`` (default: ``(..., K, C)``).
        keypoint_set: name of the set (its :attr:`KeypointSet.flip_permutation`).
    """
    perm = np.asarray(get_keypoint_set(keypoint_set).flip_permutation)
    points = np.asarray(points)
    if points.shape[axis] != len(perm):
        raise ValueError(f"swap_left_right: {keypoint_set} has {len(perm)} keypoints, got {points.shape[axis]} "
                         f"along axis {axis} of shape {points.shape}")
    return np.take(points, perm, axis=axis)


_SMPL_FLIP = np.asarray(get_keypoint_set("smpl24").flip_permutation)


def flip_smpl_pose(pose: np.ndarray) -> np.ndarray:
    """Mirror an SMPL pose (left <-> right about the body's sagittal plane).

    Joints are permuted left <-> right and each rotation is conjugated by ``F = diag(-1, 1, 1)``
    (axis-angle ``(x, y, z) -> (x, -y, -z)``). Accepts axis-angle ``(..., 72)`` (with the root)
    or ``(..., 69)`` (body pose), or rotation matrices ``(..., 24, 3, 3)`` / ``(..., 23, 3, 3)``.
    A root in axis-angle flipped this way is only right when the frame it is expressed in is
    mirrored by the same ``x -> -x`` (SPIN's crop frame); for a camera-frame root under a
    rotated augmentation use :func:`augment_global_orient`.
    """
    p = np.asarray(pose, dtype=np.float64)
    if p.ndim >= 3 and p.shape[-2:] == (3, 3) and p.shape[-3] in (23, 24):
        perm = _SMPL_FLIP if p.shape[-3] == 24 else _SMPL_FLIP[1:] - 1
        return MIRROR @ p[..., perm, :, :] @ MIRROR
    if p.shape[-1:] in ((72,), (69,)):
        joints = p.shape[-1] // 3
        aa = p.reshape(*p.shape[:-1], joints, 3)
        perm = _SMPL_FLIP if joints == 24 else _SMPL_FLIP[1:] - 1
        aa = aa[..., perm, :] * np.array([1.0, -1.0, -1.0])
        return aa.reshape(p.shape)
    raise ValueError(f"flip_smpl_pose: expected axis-angle (..., 72) or (..., 69) or rotation matrices "
                     f"(..., 24, 3, 3) or (..., 23, 3, 3), got {p.shape}")


def augment_global_orient(orient: np.ndarray, camera_matrix: np.ndarray, flip: bool) -> np.ndarray:
    """Camera-frame root orientation ``(..., 3, 3)`` after an augmentation: ``M @ R (@ F)``.

    The augmented scene is ``M @ X``; when ``M`` mirrors, the mirrored body is the body with the
    flipped pose (:func:`flip_smpl_pose`) whose root is ``M @ R @ F`` (a proper rotation).
    """
    out = np.asarray(camera_matrix) @ np.asarray(orient)
    return out @ MIRROR if flip else out


# --- images ---------------------------------------------------------------------------------


def apply_channel_gains(crop: np.ndarray, gain: np.ndarray | Sequence[float]) -> np.ndarray:
    """Multiply an RGB uint8 image ``(H, W, 3)`` by per-channel gains, clipped to [0, 255]."""
    g = np.asarray(gain, dtype=np.float32).reshape(1, 1, 3)
    return np.clip(np.asarray(crop, dtype=np.float32) * g + 0.5, 0, 255).astype(np.uint8)


def crop_and_augment(image: np.ndarray, center: np.ndarray, scale: float, rotation_deg: float = 0.0,
                     scale_factor: float = 1.0, flip: bool = False, gain: Optional[np.ndarray] = None,
                     crop_size: int = SPIN_CROP_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Cut one view's augmented crop out of an RGB image.

    Returns:
        (crop ``(crop_size, crop_size, 3)`` uint8, ``A (3, 3)`` image -> crop affine equal to
        :func:`augmented_crop_transform`). A flipped crop is the unflipped one mirrored about
        ``x = crop_size / 2``: its column 0 would come from just outside the box and is black.
    """
    crop, M = crop_image(image, center, float(scale) * float(scale_factor), crop_size=crop_size,
                         rotation=float(rotation_deg))
    A = np.vstack([M, [0.0, 0.0, 1.0]])
    if flip:
        mirrored = np.zeros_like(crop)
        mirrored[:, 1:] = crop[:, :0:-1]  # new[x] = old[crop_size - x]
        crop = mirrored
        A = np.array([[-1.0, 0.0, crop_size], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) @ A
    if gain is not None:
        crop = apply_channel_gains(crop, gain)
    return crop, A


def normalize_keypoints(keypoints: np.ndarray | torch.Tensor, crop_size: int = SPIN_CROP_SIZE):
    """Crop pixels -> SPIN's normalised coordinates ``2 x / crop_size - 1`` (x, y of
    ``(..., 2|3)``; a confidence column is kept). The crop centre maps to 0."""
    out: Any = keypoints.clone() if isinstance(keypoints, torch.Tensor) else np.array(keypoints, dtype=np.float64)
    out[..., :2] = 2.0 * out[..., :2] / crop_size - 1.0
    return out
