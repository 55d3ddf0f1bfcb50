"""Pinhole cameras: SPIN's crop camera, OpenCV-model projection, and crop <-> image mapping.

Conventions: OpenCV camera frame (x right, y down, z forward), metres in 3D, pixels in 2D,
extrinsics ``(R, t)`` map world to camera (``X_cam = R @ X_world + t``). All functions accept
arbitrary leading batch dims that broadcast against each other.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from calibration.projection import DISTORTION_SIZES, MIN_DEPTH, project_points
from mvspin.errors import ShapeError, check_shape

__all__ = [
    "SPIN_FOCAL_LENGTH",
    "SPIN_CROP_SIZE",
    "SPIN_SCALE_UNIT",
    "crop_cam_to_translation",
    "translation_to_crop_cam",
    "crop_intrinsics",
    "crop_camera_rotation",
    "world_to_camera",
    "perspective_projection",
    "image_to_crop_transform",
    "crop_to_image_transform",
    "image_to_crop_points",
    "crop_to_image_points",
]

# SPIN (nkolot/SPIN constants.py): focal length of the crop camera in pixels, and the side in
# pixels of the square network input crop.
SPIN_FOCAL_LENGTH: float = 5000.0
SPIN_CROP_SIZE: int = 224
# SPIN's bounding-box `scale` is the box side divided by 200 pixels.
SPIN_SCALE_UNIT: float = 200.0

# SPIN adds this to the denominator of tz = 2 f / (crop s) so s = 0 does not divide by zero.
_CROP_CAM_EPS = 1e-9
_DIST_SIZES = DISTORTION_SIZES[1:]  # 0 coefficients: pass dist=None


def crop_cam_to_translation(
    cam: Tensor, focal_length: float = SPIN_FOCAL_LENGTH, crop_size: int = SPIN_CROP_SIZE
) -> Tensor:
    r"""Convert SPIN's weak-perspective crop camera ``[s, tx, ty]`` to a camera translation.

    Returns ``[tx, ty, 2 f / (crop_size * s + 1e-9)]``: the depth at which a perspective camera
    with focal length ``f`` and principal point at the crop centre sees the body at scale ``s``
    (the network's camera predicts scale in units of half the crop). Metres.

    Args:
        cam: crop cameras ``[s, tx, ty]`` of shape :math:`(*, 3)`.
        focal_length: crop focal length in pixels (SPIN: 5000).
        crop_size: crop side in pixels (SPIN: 224).

    Returns:
        translations ``[tx, ty, tz]`` of shape :math:`(*, 3)`, metres.

    Example:
        >>> crop_cam_to_translation(torch.tensor([0.9, 0.1, -0.2]))
        tensor([ 0.1000, -0.2000, 49.6032])
    """
    check_shape("crop_cam_to_translation: cam", cam, ["*", 3])
    s, tx, ty = cam.unbind(dim=-1)
    tz = 2.0 * focal_length / (crop_size * s + _CROP_CAM_EPS)
    return torch.stack([tx, ty, tz], dim=-1)


def translation_to_crop_cam(
    transl: Tensor, focal_length: float = SPIN_FOCAL_LENGTH, crop_size: int = SPIN_CROP_SIZE
) -> Tensor:
    r"""Inverse of :func:`crop_cam_to_translation`: ``[tx, ty, tz] -> [s, tx, ty]``.

    ``s = (2 f / tz - 1e-9) / crop_size``, the exact inverse including SPIN's 1e-9 (it changes
    ``s`` by 4e-12). ``tz`` must be positive (in front of the camera).

    Args:
        transl: camera translations of shape :math:`(*, 3)`, metres.
        focal_length: crop focal length in pixels (SPIN: 5000).
        crop_size: crop side in pixels (SPIN: 224).

    Returns:
        crop cameras ``[s, tx, ty]`` of shape :math:`(*, 3)`.
    """
    check_shape("translation_to_crop_cam: transl", transl, ["*", 3])
    tx, ty, tz = transl.unbind(dim=-1)
    s = (2.0 * focal_length / tz - _CROP_CAM_EPS) / crop_size
    return torch.stack([s, tx, ty], dim=-1)


def crop_intrinsics(
    focal_length: float = SPIN_FOCAL_LENGTH,
    crop_size: int = SPIN_CROP_SIZE,
    batch_shape: Sequence[int] = (),
    dtype: Optional[torch.dtype] = None,
    device: Optional[torch.device | str] = None,
) -> Tensor:
    r"""Intrinsic matrix of SPIN's crop camera: focal ``f``, principal point at the crop centre.

    Returns ``[[f, 0, c/2], [0, f, c/2], [0, 0, 1]]`` with ``c = crop_size`` (112 for SPIN),
    in crop pixels.

    Args:
        focal_length: focal length in pixels.
        crop_size: crop side in pixels.
        batch_shape: leading shape of the result.
        dtype: result dtype (default: torch's default dtype).
        device: result device.

    Returns:
        intrinsics of shape ``(*batch_shape, 3, 3)`` (a fresh tensor, safe to modify).

    Example:
        >>> crop_intrinsics(batch_shape=(2,)).shape
        torch.Size([2, 3, 3])
    """
    c = crop_size / 2.0
    K = torch.tensor(
        [[focal_length, 0.0, c], [0.0, focal_length, c], [0.0, 0.0, 1.0]],
        dtype=dtype,
        device=device,
    )
    return K.expand(*tuple(batch_shape), 3, 3).clone()


def crop_camera_rotation(center: Tensor, K: Tensor) -> Tensor:
    """Rotation ``(..., 3, 3)`` from a real camera's frame to the frame of the SPIN crop camera
    of a crop centred at ``center``.

    A crop cut around an off-centre subject is seen by a virtual camera at the same centre
    looking along the ray through the crop centre (upright: its x axis stays horizontal in the
    real camera). A regressor's root orientation is relative to that camera, so the real
    camera's orientation is ``R^T @ R_crop``.

    Args:
        center: ``(..., 2)`` crop centres, image pixels.
        K: ``(..., 3, 3)`` the real camera's intrinsics.

    Returns:
        ``(..., 3, 3)`` with rows the crop camera's axes in the real camera frame
        (``x_crop = R @ x_real``); identity for a crop centred on the principal point.

    Example:
        >>> K = torch.tensor([[1000.0, 0, 500], [0, 1000.0, 500], [0, 0, 1]])
        >>> crop_camera_rotation(torch.tensor([500.0, 500.0]), K)
        tensor([[1., 0., 0.],
                [0., 1., 0.],
                [0., 0., 1.]])
    """
    check_shape("crop_camera_rotation: center", center, ["*", 2])
    check_shape("crop_camera_rotation: K", K, ["*", 3, 3])
    y_n = (center[..., 1] - K[..., 1, 2]) / K[..., 1, 1]
    x_n = (center[..., 0] - K[..., 0, 2] - K[..., 0, 1] * y_n) / K[..., 0, 0]
    ray = torch.stack([x_n, y_n, torch.ones_like(x_n)], -1)
    z = ray / ray.norm(dim=-1, keepdim=True)
    up = torch.zeros_like(z)
    up[..., 1] = 1.0
    x = torch.cross(up, z, dim=-1)
    x = x / x.norm(dim=-1, keepdim=True)
    return torch.stack([x, torch.cross(z, x, dim=-1), z], dim=-2)


def world_to_camera(
    points: Tensor, R: Optional[Tensor] = None, t: Optional[Tensor] = None
) -> Tensor:
    r"""Transform points from world to camera coordinates: ``X_cam = R @ X + t``.

    Args:
        points: points of shape :math:`(*, N, 3)`.
        R: world-to-camera rotations of shape :math:`(*, 3, 3)`; ``None`` means identity.
        t: world-to-camera translations of shape :math:`(*, 3)`, same unit as ``points``;
            ``None`` means zero.

    Returns:
        camera-frame points of shape :math:`(*, N, 3)` (leading dims broadcast).
    """
    check_shape("world_to_camera: points", points, ["*", None, 3])
    out = points
    if R is not None:
        check_shape("world_to_camera: R", R, ["*", 3, 3])
        out = out @ R.transpose(-1, -2)
    if t is not None:
        check_shape("world_to_camera: t", t, ["*", 3])
        out = out + t.unsqueeze(-2)
    return out


def perspective_projection(
    points: Tensor,
    K: Tensor,
    R: Optional[Tensor] = None,
    t: Optional[Tensor] = None,
    dist: Optional[Tensor] = None,
    min_depth: float = MIN_DEPTH,
) -> Tensor:
    r"""Project 3D points to pixels with OpenCV's camera model (same result as
    ``cv2.projectPoints``), differentiable in every input: this package's checks around the
    one implementation of the model, :func:`calibration.projection.project_points`.

    ``X_cam = R @ X + t``; ``(x, y) = (X_cam_x, X_cam_y) / max(X_cam_z, min_depth)``; lens
    distortion with OpenCV coefficients ``(k1, k2, p1, p2[, k3[, k4, k5, k6]])``; then
    ``u = K00 x + K01 y + K02``, ``v = K10 x + K11 y + K12`` (last row of K taken as [0, 0, 1];
    a skew ``K01`` is applied, which cv2.projectPoints ignores).

    Depth is clamped to ``min_depth`` (metres) so points on or behind the camera plane give
    large but finite pixels and zero depth gradient instead of inf/NaN; such points are not
    visible and their projection means nothing. cv2 does not clamp.

    Args:
        points: 3D points of shape :math:`(*, N, 3)`, world frame (camera frame if ``R`` and
            ``t`` are None), metres.
        K: intrinsics of shape :math:`(*, 3, 3)`, pixels.
        R: world-to-camera rotations of shape :math:`(*, 3, 3)` or None (identity).
        t: world-to-camera translations of shape :math:`(*, 3)` or None (zero), metres.
        dist: OpenCV distortion coefficients of shape :math:`(*, D)`, D in {4, 5, 8}, or None.
        min_depth: smallest depth used in the division, metres.

    Returns:
        pixel coordinates of shape :math:`(*, N, 2)`; leading dims of all inputs broadcast
        (e.g. points ``(B, V, N, 3)`` with per-view ``K`` of shape ``(V, 3, 3)``).

    Example:
        >>> K = crop_intrinsics()
        >>> perspective_projection(torch.tensor([[0.1, -0.2, 50.0]]), K)
        tensor([[122.,  92.]])
    """
    check_shape("perspective_projection: points", points, ["*", None, 3])
    check_shape("perspective_projection: K", K, ["*", 3, 3])
    if dist is not None and check_shape("perspective_projection: dist", dist, ["*", "D"])["D"] not in _DIST_SIZES:
        raise ShapeError(f"perspective_projection: dist must have shape (..., D) with D in {_DIST_SIZES}, "
                         f"got {tuple(dist.shape)}")
    return project_points(points, K, R, t, dist, min_depth)


def _scale_offset_matrix(ratio: Tensor, offset: Tensor) -> Tensor:
    """(*, 3, 3) homogeneous matrices of p -> ratio * p + offset; ratio (*), offset (*, 2)."""
    ratio, ox, oy = torch.broadcast_tensors(ratio, offset[..., 0], offset[..., 1])
    zero, one = torch.zeros_like(ratio), torch.ones_like(ratio)
    rows = [
        torch.stack([ratio, zero, ox], dim=-1),
        torch.stack([zero, ratio, oy], dim=-1),
        torch.stack([zero, zero, one], dim=-1),
    ]
    return torch.stack(rows, dim=-2)


def _check_box(center: Tensor, scale: Tensor, func: str) -> None:
    check_shape(f"{func}: center", center, ["*", 2])
    if not isinstance(scale, Tensor):
        raise TypeError(f"{func}: scale must be a torch.Tensor, got {type(scale).__name__}")
    try:
        torch.broadcast_shapes(center.shape[:-1], scale.shape)
    except RuntimeError:
        raise ShapeError(
            f"{func}: scale must have shape {tuple(center.shape[:-1])} (center's leading dims), "
            f"got {tuple(scale.shape)}"
        ) from None


def image_to_crop_transform(
    center: Tensor,
    scale: Tensor,
    crop_size: int = SPIN_CROP_SIZE,
    scale_unit: float = SPIN_SCALE_UNIT,
) -> Tensor:
    r"""Affine map from full-image pixels to crop pixels for SPIN's square crops.

    The crop is the square box of side ``h = scale * scale_unit`` centred at ``center``,
    resized to ``crop_size``: ``q = (p - center) * crop_size / h + crop_size / 2``. The box
    centre lands on the crop centre, which is the principal point of :func:`crop_intrinsics`.
    This is the exact continuous map; SPIN's own code rounds crop corners and keypoints to
    integers, which moves points by up to a pixel. Warping an image with
    ``cv2.warpAffine(img, A[:2], (crop_size, crop_size))`` and mapping its keypoints with ``A``
    keeps the two consistent.

    Args:
        center: box centres of shape :math:`(*, 2)`, image pixels (x, y).
        scale: box sides divided by ``scale_unit``, shape :math:`(*)`.
        crop_size: crop side in pixels.
        scale_unit: pixels per unit of ``scale`` (SPIN: 200).

    Returns:
        homogeneous affine matrices of shape :math:`(*, 3, 3)`, image -> crop.

    Example:
        >>> image_to_crop_transform(torch.tensor([100., 50.]), torch.tensor(1.12))
        tensor([[ 1.,  0., 12.],
                [ 0.,  1., 62.],
                [ 0.,  0.,  1.]])
    """
    _check_box(center, scale, "image_to_crop_transform")
    ratio = crop_size / (scale * scale_unit)
    return _scale_offset_matrix(ratio, crop_size / 2.0 - ratio.unsqueeze(-1) * center)


def crop_to_image_transform(
    center: Tensor,
    scale: Tensor,
    crop_size: int = SPIN_CROP_SIZE,
    scale_unit: float = SPIN_SCALE_UNIT,
) -> Tensor:
    r"""Affine map from crop pixels back to full-image pixels (inverse of
    :func:`image_to_crop_transform`): ``p = (q - crop_size / 2) * h / crop_size + center``.

    Args:
        center: box centres of shape :math:`(*, 2)`, image pixels (x, y).
        scale: box sides divided by ``scale_unit``, shape :math:`(*)`.
        crop_size: crop side in pixels.
        scale_unit: pixels per unit of ``scale`` (SPIN: 200).

    Returns:
        homogeneous affine matrices of shape :math:`(*, 3, 3)`, crop -> image.
    """
    _check_box(center, scale, "crop_to_image_transform")
    ratio = scale * scale_unit / crop_size
    return _scale_offset_matrix(ratio, center - (ratio * crop_size / 2.0).unsqueeze(-1))


def image_to_crop_points(
    points: Tensor,
    center: Tensor,
    scale: Tensor,
    crop_size: int = SPIN_CROP_SIZE,
    scale_unit: float = SPIN_SCALE_UNIT,
) -> Tensor:
    r"""Map full-image pixel coordinates into SPIN crop pixels (:func:`image_to_crop_transform`).

    Args:
        points: image points of shape :math:`(*, N, 2)`, pixels (x, y).
        center: box centres of shape :math:`(*, 2)`.
        scale: box sides divided by ``scale_unit``, shape :math:`(*)`.
        crop_size: crop side in pixels.
        scale_unit: pixels per unit of ``scale``.

    Returns:
        crop points of shape :math:`(*, N, 2)`.
    """
    check_shape("image_to_crop_points: points", points, ["*", None, 2])
    _check_box(center, scale, "image_to_crop_points")
    ratio = (crop_size / (scale * scale_unit))[..., None, None]
    return (points - center.unsqueeze(-2)) * ratio + crop_size / 2.0


def crop_to_image_points(
    points: Tensor,
    center: Tensor,
    scale: Tensor,
    crop_size: int = SPIN_CROP_SIZE,
    scale_unit: float = SPIN_SCALE_UNIT,
) -> Tensor:
    r"""Map SPIN crop pixel coordinates back to full-image pixels (inverse of
    :func:`image_to_crop_points`).

    Args:
        points: crop points of shape :math:`(*, N, 2)`, pixels (x, y).
        center: box centres of shape :math:`(*, 2)`.
        scale: box sides divided by ``scale_unit``, shape :math:`(*)`.
        crop_size: crop side in pixels.
        scale_unit: pixels per unit of ``scale``.

    Returns:
        image points of shape :math:`(*, N, 2)`.
    """
    check_shape("crop_to_image_points: points", points, ["*", None, 2])
    _check_box(center, scale, "crop_to_image_points")
    ratio = (scale * scale_unit / crop_size)[..., None, None]
    return (points - crop_size / 2.0) * ratio + center.unsqueeze(-2)
